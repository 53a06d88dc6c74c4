//! PID 1's messages: every console and the kernel log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

static SINKS: Mutex<Vec<File>> = Mutex::new(Vec::new());

pub fn init(consoles: &[crate::cmdline::Console]) {
    let mut sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner());
    for c in consoles {
        if let Ok(f) = OpenOptions::new().write(true).open(&c.path) {
            sinks.push(f);
        }
    }
}

/// Prints `rescue: msg` on every console and into the kernel log.
pub fn say(msg: &str) {
    let line = format!("rescue: {msg}\r\n");
    let mut sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner());
    if sinks.is_empty() {
        eprint!("{line}");
    }
    for s in sinks.iter_mut() {
        let _ = s.write_all(line.as_bytes());
    }
    if let Ok(mut k) = OpenOptions::new().write(true).open("/dev/kmsg") {
        // Info level: shown on the console only without `quiet`.
        let _ = k.write_all(format!("<6>rescue: {msg}\n").as_bytes());
    }
}
