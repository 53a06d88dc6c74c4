//! Typing a secret (a pairing code, a password) without it showing: echo
//! is switched off on a terminal for as long as an [`EchoOff`] lives.

use std::os::fd::AsFd;

/// Echo off on a terminal until dropped, then the old settings back. On
/// anything that is not a terminal (a script, a test's input) it does
/// nothing: there is nothing to hide.
pub struct EchoOff<F: AsFd> {
    fd: F,
    old: Option<rustix::termios::Termios>,
}

impl<F: AsFd> EchoOff<F> {
    /// Switches echo off on `fd` (the newline after the secret still
    /// shows, so the next line starts on its own line).
    pub fn new(fd: F) -> EchoOff<F> {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
        let old = tcgetattr(&fd).ok();
        if let Some(o) = &old {
            let mut quiet = o.clone();
            quiet.local_modes.remove(LocalModes::ECHO);
            quiet.local_modes.insert(LocalModes::ECHONL);
            let _ = tcsetattr(&fd, OptionalActions::Now, &quiet);
        }
        EchoOff { fd, old }
    }

    /// Whether echo was switched off (the fd is a terminal).
    pub fn active(&self) -> bool {
        self.old.is_some()
    }
}

impl EchoOff<std::io::Stdin> {
    /// On the standard input (the menu's console).
    pub fn stdin() -> EchoOff<std::io::Stdin> {
        EchoOff::new(std::io::stdin())
    }
}

impl<F: AsFd> Drop for EchoOff<F> {
    fn drop(&mut self) {
        if let Some(o) = &self.old {
            let _ = rustix::termios::tcsetattr(&self.fd, rustix::termios::OptionalActions::Now, o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_terminal_is_left_alone() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = EchoOff::new(&f);
        assert!(!e.active());
    }

    #[test]
    fn a_pseudo_terminal_gets_echo_off_and_back() {
        use rustix::termios::{tcgetattr, LocalModes};
        // A pty pair from /dev/ptmx: the secondary is a real terminal.
        let Ok(master) =
            rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
        else {
            panic!("no /dev/ptmx: the pty test needs one");
        };
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        let before = tcgetattr(&tty).unwrap().local_modes;
        assert!(before.contains(LocalModes::ECHO));
        {
            let e = EchoOff::new(&tty);
            assert!(e.active());
            assert!(!tcgetattr(&tty)
                .unwrap()
                .local_modes
                .contains(LocalModes::ECHO));
        }
        assert_eq!(tcgetattr(&tty).unwrap().local_modes, before);
    }
}
