//! PID 1's messages: every console and the kernel log.
//!
//! Consoles are opened for each message: a serial line is hung up when the
//! session on it ends, and a descriptor kept from before would then only
//! return EIO. O_NONBLOCK: an open must never hang PID 1 (a serial line
//! without CLOCAL waits for carrier).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

static CONSOLES: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn init(consoles: &[crate::cmdline::Console]) {
    let mut c = CONSOLES.lock().unwrap_or_else(|e| e.into_inner());
    *c = consoles.iter().map(|c| c.path.clone()).collect();
}

/// Prints `rescue: msg` on every console and into the kernel log.
pub fn say(msg: &str) {
    if let Ok(mut k) = OpenOptions::new().write(true).open("/dev/kmsg") {
        // Info level: shown on the console only without `quiet`.
        let _ = k.write_all(format!("<6>rescue: {msg}\n").as_bytes());
    }
    let line = format!("rescue: {msg}\r\n");
    let consoles = CONSOLES.lock().unwrap_or_else(|e| e.into_inner());
    let mut written = false;
    for path in consoles.iter() {
        if let Ok(mut f) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(path)
        {
            written |= f.write_all(line.as_bytes()).is_ok();
        }
    }
    if !written {
        eprint!("{line}");
    }
}
