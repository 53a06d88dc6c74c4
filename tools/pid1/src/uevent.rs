//! Kernel uevents over netlink: new devices after boot (a USB stick plugged
//! in, a disk a controller finds late).

use rustix::fd::OwnedFd;
use rustix::net::{netlink, AddressFamily, SocketFlags, SocketType};
use std::collections::BTreeMap;
use std::time::Duration;

pub struct UeventSocket {
    fd: OwnedFd,
}

/// One uevent: `ACTION@DEVPATH` then `KEY=VALUE` strings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uevent {
    pub vars: BTreeMap<String, String>,
}

impl Uevent {
    pub fn parse(msg: &[u8]) -> Option<Uevent> {
        let mut parts = msg.split(|&b| b == 0);
        let head = std::str::from_utf8(parts.next()?).ok()?;
        // Messages from udevd start with "libudev"; only the kernel's have '@'.
        head.split_once('@')?;
        let mut vars = BTreeMap::new();
        for p in parts {
            if let Some((k, v)) = std::str::from_utf8(p).ok().and_then(|s| s.split_once('=')) {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        Some(Uevent { vars })
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(|s| s.as_str())
    }
}

impl UeventSocket {
    pub fn open() -> std::io::Result<UeventSocket> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::KOBJECT_UEVENT),
        )?;
        // Boot bursts are large (one event per device); don't drop any.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, 4 << 20);
        rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 1))?;
        Ok(UeventSocket { fd })
    }

    /// Waits up to `timeout` (None: forever) for the next kernel uevent.
    pub fn recv(&self, timeout: Option<Duration>) -> std::io::Result<Option<Uevent>> {
        rustix::net::sockopt::set_socket_timeout(
            &self.fd,
            rustix::net::sockopt::Timeout::Recv,
            timeout,
        )?;
        let mut buf = vec![0u8; 16384];
        loop {
            match rustix::net::recv(&self.fd, &mut buf[..], rustix::net::RecvFlags::empty()) {
                Ok((n, _)) => {
                    if let Some(ev) = Uevent::parse(&buf[..n]) {
                        return Ok(Some(ev));
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(None),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_kernel_messages_only() {
        let msg = b"add@/devices/pci0000:00/0000:00:04.0/host2/block/sdb\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=sdb\0DEVTYPE=disk\0";
        let ev = Uevent::parse(msg).unwrap();
        assert_eq!(ev.get("DEVNAME"), Some("sdb"));
        assert_eq!(ev.get("SUBSYSTEM"), Some("block"));
        assert!(Uevent::parse(b"libudev\0\0\0junk").is_none());
        assert!(Uevent::parse(b"").is_none());
    }
}
