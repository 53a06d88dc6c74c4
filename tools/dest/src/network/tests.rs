use super::*;
use proptest::prelude::*;

fn url(s: &str) -> NetUrl {
    NetUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn urls_give_their_parts() {
    let u = url("nfs://10.0.2.100/export");
    assert_eq!(
        u,
        NetUrl {
            scheme: Scheme::Nfs,
            user: None,
            host: "10.0.2.100".into(),
            port: None,
            path: "/export".into(),
            mountport: None,
        }
    );
    assert_eq!(u.mount_name(), "nfs-10.0.2.100-export");
    assert_eq!(u.source(), "10.0.2.100:/export");
    let u = url("nfs://nas.lab:20490/srv/backup/images/?mountport=20491");
    assert_eq!(u.port, Some(20490));
    assert_eq!(u.mountport, Some(20491));
    assert_eq!(u.path, "/srv/backup/images");
    assert_eq!(u.mount_name(), "nfs-nas.lab-srv_backup_images");
    assert_eq!(
        u.text(),
        "nfs://nas.lab:20490/srv/backup/images?mountport=20491"
    );
    assert_eq!(url("nfs://nas/").mount_name(), "nfs-nas-root");
    assert_eq!(url("nfs://nas/").source(), "nas:/");

    let u = url("smb://rescuer@10.0.2.100/share");
    assert_eq!(u.scheme, Scheme::Smb);
    assert_eq!(u.user.as_deref(), Some("rescuer"));
    assert_eq!(u.path, "share");
    assert_eq!(u.source(), "//10.0.2.100/share");
    assert_eq!(u.mount_name(), "smb-10.0.2.100-share");
    assert_eq!(u.text(), "smb://rescuer@10.0.2.100/share");
    let u = url("smb://fs01:4450/C$/");
    assert_eq!((u.user, u.port, u.path.as_str()), (None, Some(4450), "C$"));
}

#[test]
fn bad_urls_say_which_part_is_wrong() {
    let err = |s: &str| NetUrl::parse(s).unwrap_err();
    assert!(err("ftp://x/y").contains("expected nfs://"));
    assert!(err("nfs://host").contains("no /EXPORT"));
    assert!(err("smb://host").contains("no /SHARE"));
    assert!(err("smb://u:pw@host/s").contains("no password in the URL"));
    assert!(err("nfs://u@host/e").contains("NFS has no user"));
    assert!(err("nfs://host:0/e").contains("port \"0\""));
    assert!(err("nfs://host:70000/e").contains("port \"70000\""));
    assert!(err("nfs://host:+5/e").contains("port"));
    assert!(err("nfs://[::1]/e").contains("IPv6"));
    assert!(err("nfs://ho_st/e").contains("host \"ho_st\""));
    assert!(err("nfs://host/a/../b").contains("'..'"));
    assert!(err("nfs://host/a//b").contains("empty"));
    assert!(err("nfs://host/a?port=1").contains("unknown"));
    assert!(err("smb://host/s?mountport=1").contains("unknown"));
    assert!(err("smb://host/share/dir").contains("a share name only"));
    // What could reach a mount option list or a shell.
    for junk in [
        "nfs://host/e,vers=2",
        "nfs://host/e;reboot",
        "nfs://host/$(reboot)",
        "nfs://host/e`x`",
        "nfs://host/e x",
        "nfs://host/e\n",
        "smb://us,er@host/s",
        "smb://user@host/s,password=x",
        "smb://user@host/s'",
        "smb://user@ho,st/s",
        "nfs://host/e?mountport=1,vers=2",
    ] {
        assert!(NetUrl::parse(junk).is_err(), "{junk:?} was accepted");
    }
}

#[test]
fn the_nfs_ladder_tries_v4_then_v3_without_locks() {
    let u = url("nfs://nas:20490/export?mountport=20491");
    let a = nfs_attempts(
        &u,
        Ipv4Addr::new(10, 0, 2, 100),
        Some(Ipv4Addr::new(10, 0, 2, 15)),
    );
    let got: Vec<(&str, &str, &str)> = a
        .iter()
        .map(|a| (a.fstype, a.label.as_str(), a.options.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("nfs4", "NFS v4.2", "vers=4.2,addr=10.0.2.100,clientaddr=10.0.2.15,port=20490,proto=tcp"),
            ("nfs4", "NFS v4.1", "vers=4.1,addr=10.0.2.100,clientaddr=10.0.2.15,port=20490,proto=tcp"),
            ("nfs4", "NFS v4.0", "vers=4.0,addr=10.0.2.100,clientaddr=10.0.2.15,port=20490,proto=tcp"),
            (
                "nfs",
                "NFS v3",
                "vers=3,nolock,proto=tcp,mountproto=tcp,addr=10.0.2.100,mountaddr=10.0.2.100,port=20490,mountport=20491"
            ),
        ]
    );
    let plain = nfs_attempts(&url("nfs://nas/e"), Ipv4Addr::new(10, 0, 0, 1), None);
    assert_eq!(plain[0].options, "vers=4.2,addr=10.0.0.1,proto=tcp");
    assert_eq!(
        plain[3].options,
        "vers=3,nolock,proto=tcp,mountproto=tcp,addr=10.0.0.1,mountaddr=10.0.0.1"
    );
    // No password ever, and the data is the options.
    let d = mount_data(&plain[0], &Login::Guest).unwrap();
    assert_eq!(d.0, b"vers=4.2,addr=10.0.0.1,proto=tcp\0");
}

#[test]
fn the_smb_ladder_keeps_the_password_out_of_what_is_shown() {
    let u = url("smb://rescuer@10.0.2.100:4450/share");
    let pw = "p,ss,,w0rd,";
    let login = Login::Password(Secret::new(pw.as_bytes().to_vec()));
    let a = smb_attempts(&u, Ipv4Addr::new(10, 0, 2, 100), &login);
    let shown: Vec<&str> = a.iter().map(|a| a.options.as_str()).collect();
    assert_eq!(
        shown,
        [
            "vers=3.1.1,ip=10.0.2.100,port=4450,username=rescuer",
            "vers=3.0,ip=10.0.2.100,port=4450,username=rescuer",
            "vers=2.1,ip=10.0.2.100,port=4450,username=rescuer",
        ]
    );
    for x in &a {
        assert!(!format!("{x:?}").contains("w0rd"), "{x:?}");
    }
    assert!(!format!("{login:?}").contains("w0rd"));
    // The data: commas doubled, as the cifs parser reads them back.
    let d = mount_data(&a[0], &login).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&d.0),
        "vers=3.1.1,ip=10.0.2.100,port=4450,username=rescuer,password=p,,ss,,,,w0rd,,\0"
    );
    assert_eq!(
        cifs_split(&d.0[..d.0.len() - 1]).last().unwrap(),
        &format!("password={pw}")
    );
    assert!(!format!("{d:?}").contains("w0rd"));
    // Guests log in anonymously.
    let g = smb_attempts(
        &url("smb://host/public"),
        Ipv4Addr::new(10, 0, 0, 1),
        &Login::Guest,
    );
    assert_eq!(g[0].options, "vers=3.1.1,ip=10.0.0.1,sec=none");
    assert!(mount_data(&g[0], &Login::Guest)
        .unwrap()
        .0
        .ends_with(b"sec=none\0"));
    // A NUL cannot be passed.
    let nul = Login::Password(Secret::new(b"a\0b".to_vec()));
    assert!(mount_data(&a[0], &nul).is_err());
}

/// How the cifs option parser (smb3_fs_context_parse_monolithic) splits
/// mount data: at commas, a doubled comma standing for one inside a value.
fn cifs_split(data: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

#[test]
fn a_password_file_gives_its_first_line() {
    let s = Secret::from_file_text(b"S3cr,et pass\r\nsecond\n".to_vec());
    assert_eq!(s.0, b"S3cr,et pass");
    assert!(Secret::from_file_text(b"\n".to_vec()).is_empty());
    assert_eq!(Secret::from_file_text(b"x".to_vec()).0, b"x");
}

#[test]
fn network_mounts_are_listed_from_proc_mounts() {
    let mounts = "\
/dev/vda /mnt/dest/vda ext4 rw 0 0
10.0.2.100:/export /mnt/dest/nfs-10.0.2.100-export nfs4 rw,vers=4.2,addr=10.0.2.100 0 0
//10.0.2.100/share /mnt/dest/smb-10.0.2.100-share cifs rw,vers=3.1.1,username=root,addr=10.0.2.100 0 0
nas:/other /mnt/elsewhere nfs rw 0 0
";
    let e = entries(mounts);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(url_of_source(&e[0].0, &e[0].2), "nfs://10.0.2.100/export");
    assert_eq!(url_of_source(&e[1].0, &e[1].2), "smb://10.0.2.100/share");
    let l = list(mounts);
    assert_eq!(l[0].name, "nfs-10.0.2.100-export");
    assert_eq!(l[0].filesystem, "nfs4");
    assert!(l[0].network && l[0].usable());
    assert_eq!(l[1].device, "smb://10.0.2.100/share");
    assert_eq!(
        l[1].mounted_at.as_deref(),
        Some("/mnt/dest/smb-10.0.2.100-share")
    );
}

#[test]
fn unmounting_what_is_not_a_network_mount_is_left_to_the_disk_path() {
    let mounts = "//h/s /mnt/dest/smb-h-s cifs rw 0 0\n";
    assert_eq!(crate::unmount_network(mounts, "/mnt/dest/vda"), Ok(None));
    assert_eq!(crate::unmount_network(mounts, "vda"), Ok(None));
}

#[test]
fn the_question_names_the_server_and_the_mount_point() {
    let q = question(&url("smb://u@10.0.2.100/share"));
    assert!(
        q.contains("smb://u@10.0.2.100/share read-write at /mnt/dest/smb-10.0.2.100-share"),
        "{q}"
    );
    assert!(q.ends_with("Type yes to mount: "));
}

proptest! {
    #[test]
    fn the_url_parser_never_panics(s in "\\PC{0,80}") {
        let _ = NetUrl::parse(&s);
    }

    #[test]
    fn url_like_input_never_panics_and_what_parses_is_safe(
        scheme in prop::sample::select(vec!["nfs://", "smb://", "nfs:/", ""]),
        rest in "[a-z0-9@:/?=&.,;$%\\[\\] _-]{0,40}",
    ) {
        if let Ok(u) = NetUrl::parse(&format!("{scheme}{rest}")) {
            // Nothing that parses can carry an option separator or a space
            // into the mount data, or a path escape into the mount point.
            for part in [&u.host, &u.path, u.user.as_deref().unwrap_or("")] {
                prop_assert!(!part.contains(',') && !part.contains(' '));
                prop_assert!(!part.split('/').any(|s| s == ".."));
            }
            prop_assert!(!u.mount_name().contains('/'));
            // And the canonical text parses back to the same.
            prop_assert_eq!(NetUrl::parse(&u.text()).unwrap(), u);
        }
    }
}
