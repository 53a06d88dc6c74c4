use testkit::mdwriter::ArraySpec;
pub use testkit::TempDir;

/// A temporary directory removed on drop.
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("mdraid-{tag}"))
}

/// Writes `imgs` into `dir` under `names`; returns their paths.
pub fn write_images(dir: &TempDir, names: &[String], imgs: &[Vec<u8>]) -> Vec<String> {
    names
        .iter()
        .zip(imgs)
        .map(|(n, img)| {
            let p = dir.join(n);
            std::fs::write(&p, img).unwrap();
            p.display().to_string()
        })
        .collect()
}

pub fn mdadm_examine_path(path: &str) -> String {
    let out = std::process::Command::new("mdadm")
        .arg("--examine")
        .arg(path)
        .output()
        .expect("mdadm is needed (apt-get install mdadm)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Collapses runs of spaces so "Raid Level : raid5" matches however mdadm aligns.
pub fn squash(s: &str) -> String {
    let mut o = String::new();
    for l in s.lines() {
        o.push_str(&l.split_whitespace().collect::<Vec<_>>().join(" "));
        o.push('\n');
    }
    o
}

pub fn spec(version: &'static str, level: i32, disks: u32) -> ArraySpec {
    ArraySpec::new(version, level, disks)
}

use blockdev::MemDevice;

/// Member images as named in-memory devices.
pub fn devices(names: &[&str], imgs: Vec<Vec<u8>>) -> Vec<MemDevice> {
    names
        .iter()
        .zip(imgs)
        .map(|(n, data)| MemDevice {
            data,
            sector_size: 512,
            name: n.to_string(),
        })
        .collect()
}

pub fn inputs(devs: &[MemDevice]) -> Vec<crate::scan::Input<'_>> {
    devs.iter()
        .map(|d| crate::scan::Input::new(d.name.clone(), d as &dyn blockdev::BlockDevice))
        .collect()
}

pub fn names(n: usize, suffix: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("sd{}{suffix}", (b'a' + i as u8) as char))
        .collect()
}

/// `imgs` as devices named sda, sdb, ... in order.
pub fn sd_devices(imgs: Vec<Vec<u8>>) -> Vec<MemDevice> {
    let n = names(imgs.len(), "");
    let refs: Vec<&str> = n.iter().map(|s| s.as_str()).collect();
    devices(&refs, imgs)
}

/// Scans `imgs`, expects one array, verifies it with small batches.
pub fn verify_imgs(imgs: Vec<Vec<u8>>, batch: u64) -> crate::verify::VerifyReport {
    let devs = sd_devices(imgs);
    let inp = inputs(&devs);
    let rep = crate::scan::scan(&inp);
    assert_eq!(rep.arrays.len(), 1, "{}", crate::scan::render(&rep));
    let a = &rep.arrays[0];
    let members = crate::scan::verify_members(a, &inp);
    let opts = crate::verify::Options {
        batch_bytes: batch,
        max_listed: 1000,
    };
    let mut calls = 0;
    let r = crate::verify::verify(a.geometry.as_ref().unwrap(), &members, &opts, &mut |p| {
        calls += 1;
        assert!(p.done_bytes <= p.total_bytes);
    })
    .unwrap();
    assert!(calls >= 1);
    r
}
