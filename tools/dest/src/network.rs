//! Network destinations: an NFS export or an SMB share mounted read-write
//! under [`MOUNT_ROOT`]`/<name>` by the kernel's own clients through
//! mount(2), with no helper program (the appliance has no mount.nfs or
//! mount.cifs): the server's address is resolved here and passed as
//! `addr=`/`ip=`.
//!
//! - `nfs://HOST[:PORT]/EXPORT[?mountport=N]`: NFS v4.2, 4.1, 4.0, then v3
//!   with `nolock` (no lock daemon here) over TCP; `PORT` is the NFS port,
//!   `mountport` v3's MOUNT service port (without it the kernel asks the
//!   server's portmapper).
//! - `smb://[USER@]HOST[:PORT]/SHARE`: SMB 3.1.1, 3.0, then 2.1 (cifs.ko).
//!   The password never appears on a command line, in a log or in
//!   /proc/mounts (cifs shows no `password=` there): it is only in the
//!   mount(2) data, built in a buffer that is zeroed when dropped.

use crate::{Candidate, MOUNT_ROOT};
use blockdev::sys::ModuleLoader;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Nfs,
    Smb,
}

/// A parsed `nfs://` or `smb://` URL; every part is checked, so none can
/// smuggle a mount option (`,`), a path escape or shell syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetUrl {
    pub scheme: Scheme,
    /// SMB only: the user to log in as.
    pub user: Option<String>,
    /// An IPv4 address or a host name.
    pub host: String,
    /// NFS: the NFS port (default 2049); SMB: the SMB port (default 445).
    pub port: Option<u16>,
    /// NFS: the export path, starting with `/`; SMB: the share name.
    pub path: String,
    /// NFS v3: the MOUNT service's port (`?mountport=N`).
    pub mountport: Option<u16>,
}

const USER_CHARS: &str = "letters, digits, '.', '_', '-'";

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn port(s: &str, what: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("{what} {s:?}: expected a number from 1 to 65535")),
    }
}

impl NetUrl {
    /// Parses `url`; the error names the part that is wrong and what was
    /// expected. Never panics.
    pub fn parse(url: &str) -> Result<NetUrl, String> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("nfs://") {
            (Scheme::Nfs, r)
        } else if let Some(r) = url.strip_prefix("smb://") {
            (Scheme::Smb, r)
        } else {
            return Err(format!(
                "{url:?}: expected nfs://HOST/EXPORT or smb://[USER@]HOST/SHARE"
            ));
        };
        if let Some(b) = url.bytes().find(|b| !b.is_ascii_graphic()) {
            return Err(format!(
                "{url:?}: byte {b:#04x} (a space or control character) is not allowed in a URL"
            ));
        }
        let (authority, path_query) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => {
                return Err(format!(
                    "{url:?}: no {} after the host",
                    if scheme == Scheme::Nfs {
                        "/EXPORT"
                    } else {
                        "/SHARE"
                    }
                ))
            }
        };
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_query, None),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let user = match user {
            None => None,
            Some(_) if scheme == Scheme::Nfs => {
                return Err(format!(
                    "{url:?}: NFS has no user to log in as (AUTH_SYS: the server trusts the \
                     address)"
                ))
            }
            Some(u) if u.contains(':') => {
                return Err(format!(
                    "{url:?}: no password in the URL, please: it would show in the shell's \
                     history and the process list (use --password-file FILE or the prompt)"
                ))
            }
            Some(u) if u.is_empty() || u.len() > 64 || !u.bytes().all(plain) => {
                return Err(format!("user {u:?}: expected 1 to 64 of {USER_CHARS}"))
            }
            Some(u) => Some(u.to_string()),
        };
        if hostport.starts_with('[') {
            return Err(format!(
                "host {hostport:?}: IPv6 addresses are not supported"
            ));
        }
        let (host, port_) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(port(p, "port")?)),
            None => (hostport, None),
        };
        if host.parse::<Ipv4Addr>().is_err() && !net::dns::valid_name(host) {
            return Err(format!(
                "host {host:?}: expected an IPv4 address or a host name (letters, digits, '-', \
                 labels separated by '.')"
            ));
        }
        let path = match scheme {
            Scheme::Nfs => {
                let trimmed = match path.trim_end_matches('/') {
                    "" => "/",
                    t => t,
                };
                if trimmed.len() > 1024 {
                    return Err(format!("export: {} bytes, at most 1024", trimmed.len()));
                }
                for seg in trimmed.split('/').skip(1) {
                    if trimmed == "/" {
                        break;
                    }
                    if seg.is_empty() || seg == "." || seg == ".." {
                        return Err(format!("export {trimmed:?}: empty, '.' or '..' component"));
                    }
                    if let Some(b) = seg.bytes().find(|&b| !(plain(b) || b == b'+')) {
                        return Err(format!(
                            "export {trimmed:?}: character {:?} not allowed (expected {USER_CHARS}, \
                             '+', '/')",
                            b as char
                        ));
                    }
                }
                trimmed.to_string()
            }
            Scheme::Smb => {
                let share = path.trim_start_matches('/').trim_end_matches('/');
                if share.contains('/') {
                    return Err(format!(
                        "share {share:?}: a share name only (no folder inside it: write into \
                         the folder once mounted)"
                    ));
                }
                if share.is_empty()
                    || share.len() > 80
                    || !share.bytes().all(|b| plain(b) || b == b'$')
                {
                    return Err(format!(
                        "share {share:?}: expected 1 to 80 of {USER_CHARS}, '$'"
                    ));
                }
                share.to_string()
            }
        };
        let mut mountport = None;
        if let Some(q) = query {
            for kv in q.split('&') {
                match (scheme, kv.split_once('=')) {
                    (Scheme::Nfs, Some(("mountport", v))) => {
                        mountport = Some(port(v, "mountport")?)
                    }
                    _ => {
                        return Err(format!(
                            "query {kv:?}: unknown (the only one is mountport=N, for nfs://)"
                        ))
                    }
                }
            }
        }
        Ok(NetUrl {
            scheme,
            user,
            host: host.to_string(),
            port: port_,
            path,
            mountport,
        })
    }

    /// The URL written back in its canonical form.
    pub fn text(&self) -> String {
        format!(
            "{}://{}{}{}{}{}{}",
            match self.scheme {
                Scheme::Nfs => "nfs",
                Scheme::Smb => "smb",
            },
            self.user
                .as_deref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            self.host,
            self.port.map(|p| format!(":{p}")).unwrap_or_default(),
            if self.scheme == Scheme::Smb { "/" } else { "" },
            self.path,
            self.mountport
                .map(|p| format!("?mountport={p}"))
                .unwrap_or_default()
        )
    }

    /// The mount point's name: `nfs-HOST-EXPORT` (slashes as `_`, `root`
    /// for `/`) or `smb-HOST-SHARE`.
    pub fn mount_name(&self) -> String {
        match self.scheme {
            Scheme::Nfs => {
                let p = self.path.trim_matches('/').replace('/', "_");
                format!(
                    "nfs-{}-{}",
                    self.host,
                    if p.is_empty() { "root" } else { &p }
                )
            }
            Scheme::Smb => format!("smb-{}-{}", self.host, self.path),
        }
    }

    /// mount(2)'s source: `HOST:/EXPORT` or `//HOST/SHARE`.
    pub fn source(&self) -> String {
        match self.scheme {
            Scheme::Nfs => format!("{}:{}", self.host, self.path),
            Scheme::Smb => format!("//{}/{}", self.host, self.path),
        }
    }

    /// The kernel modules the mounts need (their dependencies come along).
    pub fn modules(&self) -> &'static [&'static str] {
        match self.scheme {
            Scheme::Nfs => &["nfs", "nfsv4", "nfsv3"],
            Scheme::Smb => &["cifs"],
        }
    }
}

/// A password, zeroed in memory when dropped and never shown by `Debug`.
#[derive(Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The first line of `text`, without its line end: what a password
    /// file holds.
    pub fn from_file_text(mut text: Vec<u8>) -> Secret {
        if let Some(n) = text.iter().position(|&b| b == b'\n') {
            text.truncate(n);
        }
        if text.last() == Some(&b'\r') {
            text.pop();
        }
        Secret(text)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// How an SMB mount logs in.
#[derive(Debug)]
pub enum Login {
    /// As the URL's user, with this password.
    Password(Secret),
    /// Anonymously (`sec=none`: the server maps it to its guest account).
    Guest,
}

/// One mount(2) call of the ladder.
#[derive(Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The kernel filesystem type.
    pub fstype: &'static str,
    /// "NFS v4.2", "SMB 3.1.1".
    pub label: String,
    /// The options, without the password (what is logged and shown).
    pub options: String,
}

/// The NFS ladder for `url` at `addr`; `clientaddr` is this machine's
/// address toward the server (for v4 callbacks).
pub fn nfs_attempts(url: &NetUrl, addr: Ipv4Addr, clientaddr: Option<Ipv4Addr>) -> Vec<Attempt> {
    let port = url.port.map(|p| format!(",port={p}")).unwrap_or_default();
    let mut out: Vec<Attempt> = ["4.2", "4.1", "4.0"]
        .iter()
        .map(|v| Attempt {
            fstype: "nfs4",
            label: format!("NFS v{v}"),
            options: format!(
                "vers={v},addr={addr}{}{port},proto=tcp",
                clientaddr
                    .map(|c| format!(",clientaddr={c}"))
                    .unwrap_or_default()
            ),
        })
        .collect();
    out.push(Attempt {
        fstype: "nfs",
        label: "NFS v3".into(),
        options: format!(
            "vers=3,nolock,proto=tcp,mountproto=tcp,addr={addr},mountaddr={addr}{port}{}",
            url.mountport
                .map(|p| format!(",mountport={p}"))
                .unwrap_or_default()
        ),
    });
    out
}

/// The SMB ladder for `url` at `addr` (options without the password).
pub fn smb_attempts(url: &NetUrl, addr: Ipv4Addr, login: &Login) -> Vec<Attempt> {
    let port = url.port.map(|p| format!(",port={p}")).unwrap_or_default();
    let who = match (login, &url.user) {
        (Login::Guest, _) => "sec=none".to_string(),
        (Login::Password(_), Some(u)) => format!("username={u}"),
        (Login::Password(_), None) => "username=guest".to_string(),
    };
    ["3.1.1", "3.0", "2.1"]
        .iter()
        .map(|v| Attempt {
            fstype: "cifs",
            label: format!("SMB {v}"),
            options: format!("vers={v},ip={addr}{port},{who}"),
        })
        .collect()
}

/// mount(2)'s data for `a`: its options, and for a password login
/// `,password=` with every comma doubled (how the cifs option parser takes
/// a comma inside a value). Zeroed when dropped.
pub fn mount_data(a: &Attempt, login: &Login) -> Result<Secret, String> {
    let mut d = a.options.clone().into_bytes();
    if let (Login::Password(pw), "cifs") = (login, a.fstype) {
        if pw.0.contains(&0) {
            return Err("the password contains a NUL byte".into());
        }
        d.extend_from_slice(b",password=");
        for &b in &pw.0 {
            d.push(b);
            if b == b',' {
                d.push(b',');
            }
        }
    }
    d.push(0);
    Ok(Secret(d))
}

/// Errors after which the next rung would fail the same way, or worse
/// (another failed login): the server is unreachable, refuses the
/// connection, the credentials or the share.
fn final_error(errno: i32) -> bool {
    use rustix::io::Errno;
    [
        Errno::ACCESS,
        Errno::PERM,
        Errno::TIMEDOUT,
        Errno::HOSTUNREACH,
        Errno::NETUNREACH,
        Errno::HOSTDOWN,
        Errno::KEYREJECTED,
    ]
    .iter()
    .any(|e| e.raw_os_error() == errno)
}

/// This machine's address toward `server` (the route's source address),
/// from a UDP socket connected to it (nothing is sent).
pub fn local_address_toward(server: Ipv4Addr) -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect((server, 2049)).ok()?;
    match s.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(a) if !a.is_unspecified() => Some(a),
        _ => None,
    }
}

/// What a network mount did: where, which rung, and the rungs refused.
#[derive(Debug)]
pub struct Mounted {
    pub at: PathBuf,
    pub label: String,
    pub refused: Vec<String>,
}

/// Mounts `url` read-write at [`crate::mount_point`]`(url.mount_name())`:
/// loads the client's modules, resolves the host, and tries the ladder
/// (v4.2..v4.0 then v3; SMB 3.1.1, 3.0, 2.1) until one mounts. Each attempt
/// is logged with its options (never the password). An existing mount
/// there is returned as it is.
pub fn mount(
    url: &NetUrl,
    login: &Login,
    load: ModuleLoader<'_>,
    files: &net::dns::Files<'_>,
) -> Result<Mounted, String> {
    let at = crate::mount_point(&url.mount_name());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if entries(&mounts).iter().any(|(_, a, _)| Path::new(a) == at) {
        return Ok(Mounted {
            at,
            label: "already mounted".into(),
            refused: Vec::new(),
        });
    }
    for m in url.modules() {
        if let Err(e) = load(m) {
            log::info!("dest: module {m}: {e}");
        }
    }
    let addr = net::dns::resolve(&url.host, files)?;
    let attempts = match url.scheme {
        Scheme::Nfs => nfs_attempts(url, addr, local_address_toward(addr)),
        Scheme::Smb => smb_attempts(url, addr, login),
    };
    std::fs::create_dir_all(&at).map_err(|e| format!("{}: {e}", at.display()))?;
    let source = url.source();
    let mut refused = Vec::new();
    for a in &attempts {
        let data = mount_data(a, login)?;
        let cdata = std::ffi::CStr::from_bytes_with_nul(&data.0)
            .map_err(|_| "mount options contain a NUL byte".to_string())?;
        let flags = rustix::mount::MountFlags::NOATIME
            | rustix::mount::MountFlags::NOSUID
            | rustix::mount::MountFlags::NODEV;
        match rustix::mount::mount(source.as_str(), &at, a.fstype, flags, Some(cdata)) {
            Ok(()) => {
                log::info!(
                    "dest: {} ({}, {}) mounted read-write at {} ({}{})",
                    url.text(),
                    addr,
                    a.label,
                    at.display(),
                    a.options,
                    if matches!(login, Login::Password(_)) {
                        ",password=<hidden>"
                    } else {
                        ""
                    }
                );
                return Ok(Mounted {
                    at,
                    label: a.label.clone(),
                    refused,
                });
            }
            Err(e) => {
                let why = std::io::Error::from(e);
                log::info!("dest: {} {} ({}): {why}", url.text(), a.label, a.options);
                refused.push(format!("{}: {why}", a.label));
                if final_error(e.raw_os_error()) {
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_dir(&at);
    Err(format!(
        "{} ({addr}) did not mount: {}",
        url.text(),
        refused.join("; ")
    ))
}

/// `(source, mount point, fstype)` of the network mounts under
/// [`MOUNT_ROOT`] in `mounts` (the text of /proc/mounts).
pub fn entries(mounts: &str) -> Vec<(String, String, String)> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (src, at, fs) = (w.next()?, w.next()?, w.next()?);
            let at = blockdev::sys::unescape(at);
            (blockdev::sys::NETWORK_FSTYPES.contains(&fs) && Path::new(&at).starts_with(MOUNT_ROOT))
                .then(|| (blockdev::sys::unescape(src), at, fs.to_string()))
        })
        .collect()
}

/// The URL a /proc/mounts source stands for: `HOST:/EXPORT` is
/// `nfs://HOST/EXPORT`, `//HOST/SHARE` (or `\\HOST\SHARE`) `smb://HOST/SHARE`.
pub fn url_of_source(src: &str, fstype: &str) -> String {
    if fstype.starts_with("nfs") {
        match src.split_once(':') {
            Some((h, p)) => format!("nfs://{h}{p}"),
            None => format!("nfs://{src}"),
        }
    } else {
        format!("smb://{}", src.replace('\\', "/").trim_start_matches('/'))
    }
}

fn static_fstype(fs: &str) -> &'static str {
    blockdev::sys::NETWORK_FSTYPES
        .iter()
        .find(|f| **f == fs)
        .copied()
        .unwrap_or("net")
}

/// The network destinations mounted now, as candidates: `device` is the
/// URL, `name` the mount point's name, size and free space from statvfs.
pub fn list(mounts: &str) -> Vec<Candidate> {
    entries(mounts)
        .into_iter()
        .map(|(src, at, fs)| {
            let st = rustix::fs::statvfs(at.as_str()).ok();
            Candidate {
                name: Path::new(&at)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                device: url_of_source(&src, &fs),
                disk: String::new(),
                filesystem: static_fstype(&fs),
                label: None,
                size_bytes: st
                    .as_ref()
                    .map(|s| s.f_blocks.saturating_mul(s.f_frsize))
                    .unwrap_or(0),
                free_bytes: st.as_ref().map(|s| s.f_bavail.saturating_mul(s.f_frsize)),
                free_is_estimate: false,
                mounted_at: Some(at),
                rescue_data: false,
                network: true,
                unusable: None,
                unsafe_reason: None,
            }
        })
        .collect()
}

/// The question asked before mounting a network destination.
pub fn question(url: &NetUrl) -> String {
    format!(
        "Mount {} read-write at {}?\nFiles written there go to that server; nothing on this \
         machine's disks is touched.\nType yes to mount: ",
        url.text(),
        crate::mount_point(&url.mount_name()).display()
    )
}

#[cfg(test)]
mod tests;
