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
fn rescuedata_first_source_unusable_swap_listed_apart() {
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
    assert_eq!(names, vec!["sda2", "sda1", "nvme0n1", "vda"], "{l:#?}");
    assert_eq!(
        l[2].unusable.as_deref(),
        Some("swap space, not a filesystem")
    );
    assert!(l[0].rescue_data, "label matched case-insensitively");
    assert_eq!(l[0].filesystem, "exFAT");
    assert_eq!(l[0].disk, "sda");
    assert!(l[0].free_is_estimate && l[0].free_bytes.unwrap() > 40 << 20);
    assert_eq!(l[1].label.as_deref(), Some("EFI"));
    assert_eq!(l[3].unusable.as_deref(), Some("on the source disk"));
    assert!(l[3].mounted_at.is_some());
    let text = render(&l);
    assert!(text.lines().next().unwrap().contains("DEVICE"));
    assert!(
        text.contains("RescueData") && text.contains("boot stick data partition"),
        "{text}"
    );
    assert!(
        text.contains("Not offered:") && text.contains("on the source disk"),
        "{text}"
    );
}

/// A minimal VMFS LVM device header (what `vmfs::detect` recognises) at
/// 1 MiB of a device image.
fn put_vmfs_lvm_header(img: &Path) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(&0xC001_D00Du32.to_le_bytes(), 1 << 20)
        .unwrap();
    f.write_all_at(&5u32.to_le_bytes(), (1 << 20) + 4).unwrap();
}

/// Filesystems on a disk that holds VMFS (an ESXi boot disk's bootbanks
/// beside its datastore) are not offered, listed apart with the reason, and
/// `unsafe` in JSON; mount refuses them without the second confirmation.
#[test]
fn filesystems_on_a_disk_being_rescued_are_not_offered() {
    let t = Tree::new("unsafe");
    t.block("sda", &["sda5", "sda3"]);
    t.block("vda", &[]);
    t.mkfs("sda5", &["mkfs.vfat", "-n", "BOOTBANK1"]);
    fs::File::create(t.dev().join("sda3"))
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    put_vmfs_lvm_header(&t.dev().join("sda3"));
    t.mkfs("vda", &["mkfs.ext4", "-q", "-F", "-L", "RESCUEDEST"]);
    let l = list(&t.sys(), &t.dev(), "", &[]);
    let names: Vec<&str> = l.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["vda", "sda5"], "{l:#?}");
    assert!(l[0].usable(), "{l:#?}");
    assert!(!l[1].usable());
    assert_eq!(
        l[1].unsafe_reason.as_deref(),
        Some("disk sda holds a VMFS extent (sda3)")
    );
    let json = serde_json::to_value(&l).unwrap();
    assert_eq!(json[1]["unsafe"], "disk sda holds a VMFS extent (sda3)");
    assert!(json[0]["unsafe"].is_null());
    let text = render(&l);
    let (offered, apart) = text.split_once("Not offered:").expect(&text);
    assert!(
        offered.contains("RESCUEDEST") && !offered.contains("sda5"),
        "{text}"
    );
    assert!(
        apart.contains("/dev/sda5") && apart.contains("VMFS extent"),
        "{text}"
    );
    let e = mount(&l[1], &t.dev(), &|_| Ok(()), false).unwrap_err();
    assert!(e.contains("not offered") && e.contains("VMFS"), "{e}");
    let q = cli::second_question(&l[1]);
    assert!(
        q.contains("disk sda holds a VMFS extent") && q.ends_with("(sda) to mount it anyway: "),
        "{q}"
    );
}

#[test]
fn held_devices_are_unusable_and_mount_refuses_them() {
    let t = Tree::new("held");
    t.block("sdb", &[]);
    fs::write(t.sys().join("devices/virtual/block/sdb/holders/md0"), "").unwrap();
    t.mkfs("sdb", &["mkfs.ext4", "-q", "-F"]);
    let l = list(&t.sys(), &t.dev(), "", &[]);
    assert_eq!(l[0].unusable.as_deref(), Some("in use by md0"));
    let e = mount(&l[0], &t.dev(), &|_| Ok(()), false).unwrap_err();
    assert!(e.contains("not usable") && e.contains("md0"), "{e}");
}

#[test]
fn unmount_refuses_non_destinations() {
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
        network: false,
        unusable: None,
        unsafe_reason: None,
    };
    let q = cli::question(&c);
    assert!(
        q.contains("/dev/vda (ext4 \"RESCUEDEST\", 4.0 GiB) read-write at /mnt/dest/vda"),
        "{q}"
    );
    assert!(q.ends_with("Type yes to mount: "));
}

/// The boot stick's own FAT partition (a kernel and a boot loader
/// configuration that loads an initramfs, in its root) is not offered: an image written there
/// could fill the partition the machine boots from.
#[test]
fn a_rescue_boot_partition_is_not_offered() {
    let t = Tree::new("bootpart");
    t.block("sdc", &["sdc1", "sdc2"]);
    t.mkfs("sdc1", &["mkfs.vfat", "-n", "RESCUE"]);
    t.mkfs("sdc2", &["mkfs.vfat", "-n", "OTHER"]);
    for (part, files) in [
        ("sdc1", &["vmlinuz", "initramfs.img", "syslinux.cfg"][..]),
        ("sdc2", &["vmlinuz"][..]),
    ] {
        for f in files {
            let src = t.0.join(f);
            fs::write(
                &src,
                b"LABEL rescue\n  KERNEL /vmlinuz\n  INITRD /initramfs.img\n",
            )
            .unwrap();
            let ok = std::process::Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(t.dev().join(part))
                .arg(&src)
                .arg(format!("::/{f}"))
                .status()
                .expect("mcopy (mtools) is needed")
                .success();
            assert!(ok);
        }
    }
    let l = list(&t.sys(), &t.dev(), "", &[]);
    let c = |n: &str| l.iter().find(|c| c.name == n).unwrap();
    assert!(
        c("sdc1")
            .unsafe_reason
            .as_deref()
            .is_some_and(|w| w.contains("boot partition of a rescue medium")),
        "{l:#?}"
    );
    assert!(
        c("sdc2").usable(),
        "a FAT with only a kernel is an ordinary stick"
    );
}

/// NTFS volumes made by mkntfs: a clean one is offered with its label; one
/// Windows left hibernated is listed apart with the reason, in the table
/// and in JSON, and mount refuses it before ntfs-3g runs. ISO9660 is
/// listed as read-only; a device that cannot be opened is listed with the
/// error; nothing is left out silently.
#[test]
fn ntfs_offered_hibernated_ntfs_and_iso_listed_with_reasons() {
    let t = Tree::new("ntfs");
    t.block("sdb", &["sdb1", "sdb2", "sdb3", "sdb4"]);
    testkit::ntfs::mkntfs(&t.dev().join("sdb1"), 48 << 20, "USB BACKUP");
    testkit::ntfs::mkntfs(&t.dev().join("sdb2"), 48 << 20, "Windows");
    testkit::ntfs::hibernate(&t.dev().join("sdb2"));
    let src = t.0.join("iso-src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), "x").unwrap();
    let ok = std::process::Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "DISC", "-o"])
        .arg(t.dev().join("sdb3"))
        .arg(&src)
        .status()
        .expect("xorriso is needed")
        .success();
    assert!(ok);
    // A device node that cannot be opened (a directory stands in for it).
    fs::create_dir_all(t.dev().join("sdb4")).unwrap();
    let l = list(&t.sys(), &t.dev(), "", &[]);
    let c = |n: &str| {
        l.iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("{n} left out: {l:#?}"))
    };
    assert_eq!(c("sdb1").filesystem, "NTFS");
    assert_eq!(c("sdb1").label.as_deref(), Some("USB BACKUP"));
    assert!(c("sdb1").usable(), "{l:#?}");
    assert_eq!(l[0].name, "sdb1", "the usable one first");
    let hib = c("sdb2").unusable.as_deref().unwrap();
    assert!(hib.starts_with("Windows hibernated/fast startup"), "{hib}");
    assert!(c("sdb3")
        .unusable
        .as_deref()
        .is_some_and(|w| w.starts_with("ISO9660 is read-only")));
    assert_eq!(c("sdb3").filesystem, "ISO9660");
    assert!(c("sdb4")
        .unusable
        .as_deref()
        .is_some_and(|w| w.starts_with("cannot be opened")));
    let json = serde_json::to_value(&l).unwrap();
    let j = json
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "sdb2")
        .unwrap();
    assert_eq!(j["filesystem"], "NTFS");
    assert!(j["unusable"]
        .as_str()
        .unwrap()
        .starts_with("Windows hibernated/fast startup"));
    let text = render(&l);
    let (offered, apart) = text.split_once("Not offered:").expect(&text);
    assert!(offered.contains("USB BACKUP"), "{text}");
    assert!(
        apart.contains("/dev/sdb2") && apart.contains("Windows hibernated/fast startup"),
        "{text}"
    );
    assert!(
        apart.contains("/dev/sdb3") && apart.contains("ISO9660"),
        "{text}"
    );
    for line in text.lines() {
        assert!(line.len() < 80, "too wide: {line}");
    }
    let e = mount(c("sdb2"), &t.dev(), &|_| Ok(()), false).unwrap_err();
    assert!(e.contains("not usable") && e.contains("hibernated"), "{e}");
}
