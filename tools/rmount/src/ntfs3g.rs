//! NTFS through ntfs-3g (FUSE): Debian's 6.1 kernel has no NTFS driver.
//! `ntfs-3g -o ro DEV DIR` mounts and then stays as a daemon serving the
//! mount; after the unmount it exits on its own, and is found again by
//! its command line in /proc.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where ntfs-3g is looked for after PATH.
pub const FALLBACKS: [&str; 2] = ["/usr/bin/ntfs-3g", "/bin/ntfs-3g"];

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The ntfs-3g program: on PATH, else at one of [`FALLBACKS`].
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("ntfs-3g"))
        .chain(FALLBACKS.iter().map(PathBuf::from))
        .find(|p| executable(p))
}

/// Runs `program -o options node dir`; Ok with what it printed when it
/// exited 0, else Err with its exit status and output. Its output is
/// read only after it exits (the daemon it leaves behind has its output
/// on /dev/null, so waiting for the pipes' end could wait for the
/// unmount); a few KiB of messages fit in the pipes meanwhile.
pub fn run(
    program: &Path,
    options: &str,
    node: &Path,
    dir: &Path,
) -> Result<Vec<String>, (String, Vec<String>)> {
    let mut child = Command::new(program)
        .arg("-o")
        .arg(options)
        .arg(node)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| (format!("cannot run {}: {e}", program.display()), Vec::new()))?;
    let status = child.wait();
    let mut lines = Vec::new();
    for pipe in [
        child.stdout.take().map(|p| p.into()),
        child.stderr.take().map(|p| p.into()),
    ]
    .into_iter()
    .flatten()
    {
        let fd: std::os::fd::OwnedFd = pipe;
        let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK);
        let mut f = std::fs::File::from(fd);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while buf.len() < 64 * 1024 {
            match f.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        lines.extend(
            String::from_utf8_lossy(&buf)
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    match status {
        Ok(s) if s.success() => Ok(lines),
        Ok(s) => Err((format!("ntfs-3g failed ({s})"), lines)),
        Err(e) => Err((format!("waiting for ntfs-3g: {e}"), lines)),
    }
}

/// The arguments of process `pid` (empty for a zombie or a gone one).
fn cmdline(proc: &Path, pid: u32) -> Vec<String> {
    std::fs::read(proc.join(pid.to_string()).join("cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn is_ntfs3g(args: &[String], dir: &Path) -> bool {
    args.first().is_some_and(|a| a.ends_with("ntfs-3g")) && args.iter().any(|a| Path::new(a) == dir)
}

/// The ntfs-3g daemon serving the mount at `dir`.
pub fn daemon_for(proc: &Path, dir: &Path) -> Option<u32> {
    std::fs::read_dir(proc)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| is_ntfs3g(&cmdline(proc, pid), dir))
}

/// Whether process `pid` is still the ntfs-3g of `dir` and running (a
/// zombie has exited; its parent reaps it).
fn running(proc: &Path, pid: u32, dir: &Path) -> bool {
    let stat = std::fs::read_to_string(proc.join(pid.to_string()).join("stat"));
    let Ok(stat) = stat else { return false };
    // `pid (comm) S ...`: the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next());
    state != Some('Z') && state != Some('X') && is_ntfs3g(&cmdline(proc, pid), dir)
}

/// Waits up to `timeout` for the daemon to exit; whether it did.
pub fn wait_exit(proc: &Path, pid: u32, dir: &Path, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if !running(proc, pid, dir) {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_found_by_command_line_and_zombies_count_as_exited() {
        let proc = testkit::TempDir::new("rmount-proc");
        let p = proc.join("4242");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("cmdline"),
            b"ntfs-3g\0-o\0ro\0/dev/sdb1\0/mnt/sdb1\0",
        )
        .unwrap();
        std::fs::write(p.join("stat"), b"4242 (ntfs-3g) S 1 4242").unwrap();
        std::fs::create_dir_all(proc.join("self")).unwrap();
        let dir = Path::new("/mnt/sdb1");
        assert_eq!(daemon_for(&proc, dir), Some(4242));
        assert_eq!(daemon_for(&proc, Path::new("/mnt/sdb2")), None);
        assert!(running(&proc, 4242, dir));
        assert!(!wait_exit(&proc, 4242, dir, Duration::from_millis(60)));
        std::fs::write(p.join("stat"), b"4242 (ntfs-3g) Z 1 4242").unwrap();
        assert!(wait_exit(&proc, 4242, dir, Duration::from_secs(1)));
        std::fs::remove_dir_all(&p).unwrap();
        assert!(!running(&proc, 4242, dir));
    }
}
