//! `rescue export` (issue 21): a disk of the appliance served read-only
//! over NBD to the lab host, through QEMU's restricted user network (a
//! host forward from 127.0.0.1; the host's connections reach the guest
//! from 10.0.2.2). `qemu-img convert` of the printed URL gives the
//! source's bytes; a wrong token, a client not in --allow and a write
//! (`qemu-io`) are refused; the source disk is unchanged.

use qemu_tests::*;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(600);
const MIB: usize = 1 << 20;

fn qemu_img_convert(url: &str, out: &std::path::Path) -> std::process::Output {
    Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", url])
        .arg(out)
        .output()
        .expect("qemu-img (qemu-utils)")
}

/// Starts `rescue export` in the guest's background and returns its
/// JSON ready line.
fn start_export(vm: &mut Vm, args: &str) -> serde_json::Value {
    let (out, code) = vm.shell(
        &format!(
            "rm -f /tmp/ex.json; rescue export /dev/vda --nbd 10809 {args} --json > /tmp/ex.json 2>/tmp/ex.err & \
             while [ ! -s /tmp/ex.json ] && kill -0 $! 2>/dev/null; do sleep 0.1; done; cat /tmp/ex.json /tmp/ex.err"
        ),
        T,
    );
    assert_eq!(code, 0, "{out}");
    json_of(&out)
}

#[test]
fn a_disk_is_served_read_only_to_allowed_clients_with_the_token() {
    let image = Image::built();
    let dir = temp_dir("export");
    let d = dir.path();
    let src = d.join("src.img");
    let mut data = vec![0u8; 48 * MIB];
    testkit::mdwriter::pattern(23, 0, &mut data);
    std::fs::write(&src, &data).unwrap();
    let src_hash = sha256_file(&src);
    let port = free_port();
    let mut cfg = VmConfig::new(vec![Disk::new(&src, Controller::VirtioBlk, "EXPSRC-001")])
        .append("rescue.net=dhcp");
    cfg.user_net_both(&[], &[(port, 10809)]);
    let mut vm = Vm::start(&image, &cfg);
    vm.wait_for("Choose: ", BOOT_TIMEOUT);
    vm.enter_shell();
    // Programs started from the shell get signals (PID 1's blocked set
    // once leaked into every one of them, and `kill` did nothing).
    let (out, _) = vm.shell("grep SigBlk /proc/self/status", T);
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");

    // Allowed: the host's connections come from 10.0.2.2.
    let ready = start_export(&mut vm, "--allow 10.0.2.2");
    let token = ready["token"].as_str().expect("token").to_string();
    let url = format!("nbd://127.0.0.1:{port}/{token}");
    let out = d.join("copy.raw");
    let r = qemu_img_convert(&url, &out);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the copy differs from the source"
    );

    // A wrong token.
    let r = qemu_img_convert(
        &format!("nbd://127.0.0.1:{port}/not-the-token"),
        &d.join("x.raw"),
    );
    assert!(!r.status.success(), "a wrong token was served");
    // A write.
    let w = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x55 0 4096", &url])
        .output()
        .expect("qemu-io (qemu-utils)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&w.stdout),
        String::from_utf8_lossy(&w.stderr)
    );
    assert!(
        !w.status.success()
            || said.contains("rror")
            || said.contains("denied")
            || said.contains("read-only"),
        "a write was accepted: {said}"
    );
    let (log, code) = vm.shell("kill $!; wait $!; cat /tmp/ex.err", T);
    assert!(code == 0 || code == 143 || code == 1, "{log}");
    assert!(
        log.contains("refused"),
        "the export did not log the refusals: {log}"
    );

    // A client not in --allow.
    start_export(&mut vm, "--allow 10.0.2.99");
    let r = qemu_img_convert(&url, &d.join("y.raw"));
    assert!(!r.status.success(), "a client not allowed was served");
    let (log, _) = vm.shell("kill $!; wait $!; cat /tmp/ex.err", T);
    assert!(
        log.contains("10.0.2.2"),
        "no refusal of 10.0.2.2 logged: {log}"
    );
    vm.power_off_from_shell();
    assert_eq!(sha256_file(&src), src_hash, "the source was written");
}
