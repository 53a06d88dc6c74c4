use super::*;
use testkit::TempDir;

fn fake(t: &TempDir) -> Paths {
    Paths {
        sys: t.join("sys"),
        dev: t.join("dev"),
        state: t.join("state"),
        proc: t.join("proc"),
    }
}

fn slot(p: &Paths, name: &str, pid: Option<u32>, parts: &[&str]) {
    let d = p.sys.join("block").join(name);
    std::fs::create_dir_all(d.join("holders")).unwrap();
    std::fs::write(d.join("size"), "2048\n").unwrap();
    if let Some(pid) = pid {
        // The kernel shows the serving thread; the process is alive.
        std::fs::write(d.join("pid"), format!("{}\n", pid + 1)).unwrap();
        std::fs::create_dir_all(p.proc.join(pid.to_string())).unwrap();
    }
    for (i, part) in parts.iter().enumerate() {
        let pd = d.join(part);
        std::fs::create_dir_all(pd.join("holders")).unwrap();
        std::fs::write(pd.join("partition"), format!("{}\n", i + 1)).unwrap();
    }
}

fn record(device: &str, pid: u32, name: Option<&str>) -> Record {
    Record {
        device: device.into(),
        node: format!("/dev/{device}"),
        name: name.map(Into::into),
        what: "VMDK vm1/vm1.vmdk (2 levels)".into(),
        source: "vm1/vm1.vmdk".into(),
        size: 40 << 30,
        map: None,
        bad_bytes: 0,
        pid,
        partitions: vec![format!("{device}p1")],
        deadline_s: 90,
        notes: vec![],
    }
}

#[test]
fn records_round_trip_and_tell_stale_ones() {
    let t = TempDir::new("attach-records");
    let p = fake(&t);
    slot(&p, "nbd0", Some(41), &["nbd0p1"]);
    slot(&p, "nbd1", None, &[]);
    record("nbd0", 41, Some("vm1")).save(&p.state).unwrap();
    // nbd1's server was killed: the kernel shows no pid any more.
    record("nbd1", 42, None).save(&p.state).unwrap();
    // nbd2's process was killed while the device is open: the kernel
    // still shows its thread.
    slot(&p, "nbd2", None, &[]);
    std::fs::write(p.sys.join("block/nbd2/pid"), "44\n").unwrap();
    record("nbd2", 43, None).save(&p.state).unwrap();
    let recs = records(&p);
    assert_eq!((recs[2].0.device.as_str(), recs[2].1), ("nbd2", true));
    let recs = &recs[..2];
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0].0.device.as_str(), recs[0].1), ("nbd0", false));
    assert_eq!((recs[1].0.device.as_str(), recs[1].1), ("nbd1", true));
    assert_eq!(
        record_of(&p, "nbd0").unwrap(),
        record("nbd0", 41, Some("vm1"))
    );
    assert_eq!(
        recs[0].0.line(),
        "nbd0  40.0 GiB  VMDK vm1/vm1.vmdk (2 levels)  [vm1]"
    );
    assert_eq!(resolve(&p, "vm1").unwrap(), "nbd0");
    assert_eq!(resolve(&p, "/dev/nbd1").unwrap(), "nbd1");
    assert!(resolve(&p, "vm2")
        .unwrap_err()
        .contains("no attached device"));
    assert!(check_name(&p, "vm1")
        .unwrap_err()
        .contains("already names nbd0"));
    assert!(check_name(&p, "nbd7").is_err());
    assert!(check_name(&p, "a/b").is_err());
    check_name(&p, "dsm-disk1").unwrap();
}

#[test]
fn a_device_in_use_is_not_detached_and_the_message_says_why() {
    let t = TempDir::new("attach-users");
    let p = fake(&t);
    slot(&p, "nbd0", Some(41), &["nbd0p1", "nbd0p2", "nbd0p3"]);
    std::fs::write(p.sys.join("block/nbd0/nbd0p2/holders/md127"), "").unwrap();
    std::fs::write(p.sys.join("block/nbd0/nbd0p3/holders/dm-0"), "").unwrap();
    record("nbd0", 41, None).save(&p.state).unwrap();
    let mounts = "/dev/nbd0p1 /mnt/nbd0p1 ext4 ro,relatime 0 0\n/dev/sda1 /mnt/dest vfat rw 0 0\n";
    let u = users(&p, mounts, "nbd0");
    assert_eq!(
        u,
        [
            "nbd0p1 is mounted at /mnt/nbd0p1: unmount it first (rescue umount /mnt/nbd0p1)",
            "nbd0p2 is in use by md127: stop it first (rescue md stop /dev/md127)",
            "nbd0p3 is in use by dm-0: deactivate it first (rescue lvm deactivate)",
        ]
    );
    let e = detach(&p, mounts, "nbd0", Duration::from_millis(10)).unwrap_err();
    assert!(e.contains("mounted at /mnt/nbd0p1"), "{e}");
    // Still recorded: nothing was done.
    assert!(record_of(&p, "nbd0").is_some());
}

#[test]
fn detaching_a_device_whose_server_died_frees_its_record() {
    let t = TempDir::new("attach-stale");
    let p = fake(&t);
    slot(&p, "nbd3", None, &[]);
    // The kernel clears the size when the server's NBD_DO_IT ends.
    std::fs::write(p.sys.join("block/nbd3/size"), "0\n").unwrap();
    std::fs::create_dir_all(&p.dev).unwrap();
    record("nbd3", 4242, None).save(&p.state).unwrap();
    let m = detach(&p, "", "nbd3", Duration::from_millis(10)).unwrap();
    assert_eq!(m, "detached nbd3 (VMDK vm1/vm1.vmdk (2 levels))");
    assert!(record_of(&p, "nbd3").is_none());
    assert!(detach(&p, "", "nbd3", Duration::from_millis(10))
        .unwrap_err()
        .contains("not attached"));
}

#[test]
fn the_served_device_fails_exactly_on_the_mapfile_bad_areas() {
    let t = TempDir::new("attach-map");
    let map = t.join("disk.map");
    std::fs::write(
        &map,
        "# Mapfile. Created by GNU ddrescue\n0x0 + 1\n0x0 0x1000 +\n0x1000 0x200 -\n0x1200 0x600 /\n0x1800 0x800 +\n",
    )
    .unwrap();
    let data: Vec<u8> = (0..0x2000u32).map(|i| (i % 251) as u8).collect();
    let src: Arc<dyn BlockDevice> = Arc::new(blockdev::MemDevice::new(data.clone(), 512));
    let opts = Options {
        map: Some(map),
        ..Default::default()
    };
    let (dev, bad) = served_device(src, &opts).unwrap();
    assert_eq!(bad, 0x800);
    let mut buf = vec![0u8; 512];
    dev.read_exact_at(&mut buf, 0xe00).unwrap();
    assert_eq!(buf, data[0xe00..0x1000]);
    for off in [0x1000u64, 0x1200, 0x1600] {
        let e = dev.read_exact_at(&mut buf, off).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Other, "{off:#x}: {e}");
    }
    dev.read_exact_at(&mut buf, 0x1800).unwrap();
    assert_eq!(buf, data[0x1800..0x1a00]);
    let bad_map = Options {
        map: Some(t.join("missing.map")),
        ..Default::default()
    };
    let src: Arc<dyn BlockDevice> = Arc::new(blockdev::MemDevice::new(data, 512));
    let e = served_device(src, &bad_map).err().unwrap();
    assert!(e.contains("missing.map"), "{e}");
}

/// A stand-in for the serving process: it records its arguments and
/// prints a record line, as `rescue attach --foreground --json` does.
fn stand_in(t: &TempDir, answer: &str) -> std::path::PathBuf {
    let script = t.join("server.sh");
    let args = t.join("args");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > '{}'\nprintf '%s\\n' '{answer}'\n",
            args.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[test]
fn spawn_starts_the_serving_process_and_reads_its_record() {
    let t = TempDir::new("attach-spawn");
    let want = record("nbd2", 99, Some("vm1"));
    let line = serde_json::to_string(&want).unwrap();
    let script = stand_in(&t, &line);
    let got = spawn_program(
        &script,
        "/vm1/vm1.vmdk",
        &["/dev/sdb".to_string(), "/dev/sdc".to_string()],
        Some("/mnt/x.map"),
        Some("vm1"),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(got, want);
    let args = std::fs::read_to_string(t.join("args")).unwrap();
    assert_eq!(
        args.trim(),
        "attach /vm1/vm1.vmdk --vmfs /dev/sdb --vmfs /dev/sdc --map /mnt/x.map \
         --name vm1 --deadline 30 --foreground --json"
    );

    // A server that ends without a record, or says something else.
    let quiet = stand_in(&t, "");
    let e = spawn_program(&quiet, "x", &[], None, None, DEFAULT_DEADLINE).unwrap_err();
    assert!(e.contains("without attaching"), "{e}");
    let odd = stand_in(&t, "hello");
    let e = spawn_program(&odd, "x", &[], None, None, DEFAULT_DEADLINE).unwrap_err();
    assert!(e.contains("the server's answer \"hello\""), "{e}");
}
