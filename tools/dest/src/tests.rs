//! Listing on a fake sysfs tree with real filesystems made by mkfs in
//! image files standing in for the device nodes.

use super::*;
use std::fs;

struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        let p = std::env::temp_dir().join(format!("dest-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(p.join("sys/class/block")).unwrap();
        fs::create_dir_all(p.join("sys/devices/virtual/block")).unwrap();
        fs::create_dir_all(p.join("dev")).unwrap();
        Tree(p)
    }
    fn sys(&self) -> PathBuf {
        self.0.join("sys")
    }
    fn dev(&self) -> PathBuf {
        self.0.join("dev")
    }
    /// A disk (and optionally partitions) in sysfs; device nodes are files.
    fn block(&self, disk: &str, parts: &[&str]) {
        let d = self.sys().join("devices/virtual/block").join(disk);
        fs::create_dir_all(d.join("holders")).unwrap();
        std::os::unix::fs::symlink(&d, self.sys().join("class/block").join(disk)).unwrap();
        for p in parts {
            let pd = d.join(p);
            fs::create_dir_all(pd.join("holders")).unwrap();
            fs::write(pd.join("partition"), "1\n").unwrap();
            std::os::unix::fs::symlink(&pd, self.sys().join("class/block").join(p)).unwrap();
        }
    }
    fn mkfs(&self, name: &str, cmd: &[&str]) {
        let img = self.dev().join(name);
        fs::File::create(&img).unwrap().set_len(48 << 20).unwrap();
        let ok = std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .arg(&img)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("{} is needed: {e}", cmd[0]))
            .success();
        assert!(ok);
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn rescuedata_first_source_unusable_swap_skipped() {
    let t = Tree::new("list");
    t.block("sda", &["sda1", "sda2"]);
    t.block("vda", &[]);
    t.block("nvme0n1", &[]);
    t.block("loop0", &[]);
    t.mkfs("sda1", &["mkfs.vfat", "-n", "EFI"]);
    t.mkfs("sda2", &["mkfs.exfat", "-L", "RescueData"]);
    t.mkfs("vda", &["mkfs.ext4", "-q", "-F", "-L", "RESCUEDEST"]);
    t.mkfs("nvme0n1", &["mkswap", "-q"]);
    t.mkfs("loop0", &["mkfs.ext4", "-q", "-F"]);
    let mounts = format!("{}/vda /mnt/dest/vda ext4 rw 0 0\n", t.dev().display());
    let l = list(&t.sys(), &t.dev(), &mounts, &["vda".into()]);
    let names: Vec<&str> = l.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["sda2", "sda1", "vda"], "{l:#?}");
    assert!(l[0].rescue_data, "label matched case-insensitively");
    assert_eq!(l[0].filesystem, "exFAT");
    assert_eq!(l[0].disk, "sda");
    assert!(l[0].free_is_estimate && l[0].free_bytes.unwrap() > 40 << 20);
    assert_eq!(l[1].label.as_deref(), Some("EFI"));
    assert_eq!(l[2].unusable.as_deref(), Some("on the source disk"));
    assert!(l[2].mounted_at.is_some());
    let text = render(&l);
    assert!(text.lines().next().unwrap().contains("DEVICE"));
    assert!(
        text.contains("RescueData") && text.contains("boot stick data partition"),
        "{text}"
    );
    assert!(text.contains("unusable: on the source disk"), "{text}");
}

#[test]
fn held_devices_are_unusable_and_mount_refuses_them() {
    let t = Tree::new("held");
    t.block("sdb", &[]);
    fs::write(t.sys().join("devices/virtual/block/sdb/holders/md0"), "").unwrap();
    t.mkfs("sdb", &["mkfs.ext4", "-q", "-F"]);
    let l = list(&t.sys(), &t.dev(), "", &[]);
    assert_eq!(l[0].unusable.as_deref(), Some("in use by md0"));
    let e = mount(&l[0], &t.dev(), &|_| Ok(())).unwrap_err();
    assert!(e.contains("not usable") && e.contains("md0"), "{e}");
}

#[test]
fn mounts_parse_with_escapes_and_unmount_refuses_non_destinations() {
    let m = parse_mounts("/dev/sdb1 /mnt/dest/my\\040disk exfat rw 0 0\nproc /proc proc rw 0 0\n");
    assert_eq!(m[0].1, "/mnt/dest/my disk");
    let t = Tree::new("umount");
    let e = unmount(
        &t.sys(),
        &t.dev(),
        "/dev/sda1 /boot ext4 rw 0 0\n",
        "/dev/sda1",
    )
    .unwrap_err();
    assert!(e.contains("not a destination mount"), "{e}");
    let e = unmount(&t.sys(), &t.dev(), "", "sdz").unwrap_err();
    assert!(e.contains("not mounted"), "{e}");
}

#[test]
fn question_names_device_and_mount_point() {
    let c = Candidate {
        name: "vda".into(),
        device: "/dev/vda".into(),
        disk: "vda".into(),
        filesystem: "ext4",
        label: Some("RESCUEDEST".into()),
        size_bytes: 4 << 30,
        free_bytes: None,
        free_is_estimate: false,
        mounted_at: None,
        rescue_data: false,
        unusable: None,
    };
    let q = cli::question(&c);
    assert!(
        q.contains("/dev/vda (ext4 \"RESCUEDEST\", 4.0 GiB) read-write at /mnt/dest/vda"),
        "{q}"
    );
    assert!(q.ends_with("Type yes to mount: "));
}
