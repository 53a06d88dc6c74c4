//! The menu's network screen (`n`): the links with their addresses, the
//! default route and DNS; bring a link up by DHCP or with a static
//! address, or take one down; start or stop the SSH server (the remote
//! console). The same library calls as `rescue net` and `rescue ssh`.

use crate::menu::read_line;
use std::cell::RefCell;
use std::io::{BufRead, Write};

/// Returns false when the input ended.
pub fn run(input: &mut impl BufRead, out: &mut impl Write) -> bool {
    run_with(&net::Paths::default(), input, out)
}

fn ask(input: &mut impl BufRead, out: &mut impl Write, question: &str) -> Option<String> {
    let _ = write!(out, "{question}");
    let _ = out.flush();
    read_line(input).map(|l| l.trim().to_string())
}

/// Asks how one logs in (a pasted public key, or a one-time password
/// shown on the local consoles) and starts the SSH server. Returns false
/// when the input ended.
fn ssh_on(paths: &sshd::Paths, input: &mut impl BufRead, out: &mut impl Write) -> bool {
    let _ = writeln!(
        out,
        "\nThe SSH login is this menu, as root. Paste a public key (one line, e.g.\n'ssh-ed25519 AAAA... you@desk'), or Enter for a one-time password shown\non the local consoles only."
    );
    let Some(key) = ask(input, out, "Key (Enter: one-time password): ") else {
        return false;
    };
    let req = if key.is_empty() {
        sshd::Request {
            once: true,
            ..sshd::Request::default()
        }
    } else {
        match sshd::keys::PublicKey::parse_joined(&key) {
            Ok(k) => sshd::Request {
                keys: vec![k],
                ..sshd::Request::default()
            },
            Err(e) => {
                let _ = writeln!(out, "Not started: {e}");
                return true;
            }
        }
    };
    log::info!(
        "menu: ssh on ({})",
        if req.once { "one-time password" } else { "key" }
    );
    let shared = RefCell::new(&mut *out);
    let said = |l: &str| {
        let mut o = shared.borrow_mut();
        let _ = writeln!(o, "{l}");
        let _ = o.flush();
    };
    let result = sshd::start(&req, paths, &crate::local_consoles(), &said);
    let out = shared.into_inner();
    match result {
        Ok(s) => {
            let _ = writeln!(
                out,
                "SSH is on, port {}. Check the host key when you connect:\n  {} {}\nConnect with: ssh -t root@ADDRESS",
                s.port, s.host_key_type, s.host_key_fingerprint
            );
        }
        Err(e) => {
            let _ = writeln!(out, "Not started: {e}");
        }
    }
    true
}

pub fn run_with(paths: &net::Paths, input: &mut impl BufRead, out: &mut impl Write) -> bool {
    run_with_ssh(paths, &sshd::Paths::default(), input, out)
}

pub fn run_with_ssh(
    paths: &net::Paths,
    ssh_paths: &sshd::Paths,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> bool {
    loop {
        let _ = writeln!(out, "\nNetwork:");
        match net::overview(paths) {
            Ok(o) => {
                let _ = write!(out, "{}", net::cli::render(&o));
            }
            Err(e) => {
                let _ = writeln!(out, "cannot read the network: {e}");
            }
        }
        let ssh = sshd::running(ssh_paths);
        let local = std::env::var_os("SSH_CONNECTION").is_none();
        match &ssh {
            Some(_) => {
                for l in sshd::summary_at(ssh_paths, local) {
                    let _ = writeln!(out, "{l}");
                }
            }
            None => {
                let _ = writeln!(out, "SSH: off");
            }
        }
        let Some(choice) = ask(
            input,
            out,
            if ssh.is_some() {
                "\nu up by DHCP, a up with a static address, d down, s stop SSH,\nEnter: back: "
            } else {
                "\nu up by DHCP, a up with a static address, d down, s start SSH,\nEnter: back: "
            },
        ) else {
            return false;
        };
        match choice.as_str() {
            "" => return true,
            "s" if ssh.is_some() => match sshd::stop(ssh_paths) {
                Ok(_) => {
                    log::info!("menu: ssh off");
                    let _ = writeln!(out, "SSH is off; its sessions were ended.");
                }
                Err(e) => {
                    let _ = writeln!(out, "SSH: {e}");
                }
            },
            "s" => {
                if !ssh_on(ssh_paths, input, out) {
                    return false;
                }
            }
            "u" | "a" => {
                let Some(iface) = ask(input, out, "Interface (Enter: the first with a cable): ")
                else {
                    return false;
                };
                let method = if choice == "a" {
                    let Some(addr) = ask(input, out, "Address/prefix, e.g. 192.0.2.10/24: ") else {
                        return false;
                    };
                    let Some(gw) = ask(input, out, "Gateway (Enter: none): ") else {
                        return false;
                    };
                    let Some(dns) = ask(input, out, "DNS servers, comma-separated (Enter: none): ")
                    else {
                        return false;
                    };
                    match net::cmdline::parse_static(&format!("{addr},{gw},{dns}")) {
                        Ok(s) => net::Method::Static(s),
                        Err(e) => {
                            let _ = writeln!(out, "{e}");
                            continue;
                        }
                    }
                } else {
                    net::Method::Dhcp
                };
                let req = net::UpRequest {
                    target: if iface.is_empty() {
                        net::UpTarget::FirstWithCarrier
                    } else {
                        net::UpTarget::Name(iface)
                    },
                    method,
                    dhcp: net::dhcp::Options::default(),
                    carrier_wait: net::CARRIER_WAIT,
                };
                log::info!("menu: network up {:?} {:?}", req.target, req.method);
                let shared = RefCell::new(&mut *out);
                let said = |l: &str| {
                    let mut o = shared.borrow_mut();
                    let _ = writeln!(o, "{l}");
                    let _ = o.flush();
                };
                let result = net::up(&req, paths, &said);
                let out = shared.into_inner();
                match result {
                    Ok(s) => {
                        log::info!("menu: network up: {}", s.line());
                        let _ = writeln!(out, "Up: {}", s.line());
                    }
                    Err(e) => {
                        log::info!("menu: network up failed: {e}");
                        let _ = writeln!(out, "Not up: {e}");
                    }
                }
            }
            "d" => {
                let Some(iface) = ask(input, out, "Interface to take down: ") else {
                    return false;
                };
                if iface.is_empty() {
                    continue;
                }
                match net::down(&iface, paths) {
                    Ok(()) => {
                        log::info!("menu: network {iface} down");
                        let _ = writeln!(out, "{iface} is down.");
                    }
                    Err(e) => {
                        let _ = writeln!(out, "Not down: {e}");
                    }
                }
            }
            other => {
                let _ = writeln!(out, "'{other}' is not one of the choices.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths into an empty folder: no link is listed and nothing can be
    /// configured, so the screen's answers are checked without a network.
    fn run_on(input: &str) -> (bool, String) {
        let dir = testkit::TempDir::new("netmenu");
        let paths = net::Paths {
            class_net: dir.join("class/net"),
            resolv_conf: dir.join("resolv.conf"),
            state: dir.join("net.json"),
        };
        let ssh = sshd::Paths {
            root: sshd::files::Root(dir.join("root")),
            state: dir.join("ssh.json"),
            failed: dir.join("ssh.failed"),
            once_file: dir.join("ssh.once"),
            dropbear: dir.join("no-dropbear"),
            dropbearkey: dir.join("no-dropbearkey"),
            host_key: dir.join("hostkey"),
            ..sshd::Paths::default()
        };
        let mut out = Vec::new();
        let more = run_with_ssh(&paths, &ssh, &mut input.as_bytes(), &mut out);
        (more, String::from_utf8(out).unwrap())
    }

    #[test]
    fn answers_that_change_nothing() {
        let (more, text) = run_on("x\nd\n\na\n\n192.0.2.10\n\n\n\n");
        assert!(more, "{text}");
        assert!(text.contains("'x' is not one of the choices."), "{text}");
        assert!(text.contains("expected ADDR/PREFIX"), "{text}");
        assert!(text.contains("default route:"), "{text}");
        assert!(text.contains("SSH: off"), "{text}");
        // SSH: a key that cannot be read, then one-time password without
        // dropbear in this folder: nothing starts.
        let (more, text) = run_on("s\nssh-ed25519 AA!\ns\n\n\n");
        assert!(more, "{text}");
        assert!(
            text.contains("Not started: ssh-ed25519 key: base64"),
            "{text}"
        );
        assert!(text.contains("no-dropbear is not in this image"), "{text}");
        let (more, text) = run_on("d\neth7\n");
        assert!(!more, "the input ended");
        assert!(text.contains("Not down: no interface \"eth7\""), "{text}");
    }
}
