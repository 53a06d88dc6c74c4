//! The receiver's side of a tree session (`rescue vmfs extract ...
//! rescue://HOST:PORT/NAME`): files and folders written under `DIR/NAME/`.
//!
//! Paths come from the sender and are untrusted: every component is
//! checked ([`check_rel_path`]: no `..`, `.`, empty or absolute parts, no
//! NUL, at most 255 bytes), and the tree is walked one component at a
//! time from a directory descriptor, with `O_NOFOLLOW` everywhere:
//! directories are made with `mkdirat` and opened with
//! `O_DIRECTORY|O_NOFOLLOW`, files with `O_NOFOLLOW`, so an existing
//! symlink (even one the sender created earlier in the session) is never
//! followed; an entry that meets one is skipped. A path that breaks the
//! rules ends the session (a sender that tries to leave DIR is hostile).
//!
//! Resume is per file. A file is written as `FILE.rescue-partial` and
//! renamed to `FILE` only after its SHA-256 matched the sender's, so a
//! file under its own name is complete. When the sender offers a file:
//! - `FILE` exists with the same size: Accept(size): the sender sends no
//!   data, only its digest, and the file is kept if the digests agree
//!   (else it is removed, and the next run sends it again);
//! - `FILE.rescue-partial` exists: Accept(its length): the sender
//!   continues from that offset (it still reads and hashes the bytes
//!   before it), and the whole file is hashed here at the end;
//! - otherwise Accept(0).
//!
//! `--force` with a tree of another source merges over it: every file
//! offered is written anew (Accept(0)); files not offered stay.
//!
//! At the end the digests of the files verified in the session go to
//! `DIR/NAME.sha256` (sha256sum format, paths relative to DIR).

use crate::channel::{self, Channel};
use crate::frame::{Entry, EntryKind, Frame, Hello};
use crate::receiver::{ended, fail, refuse, SessionEnd, Shared};
use crate::store::SourceRecord;
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Suffix of a file being received.
pub const PARTIAL: &str = ".rescue-partial";
/// Longest path in a tree.
pub const MAX_PATH: usize = 4096;

/// Checks a path relative to the tree's root ("" is the root itself when
/// `root_ok`) and gives its components.
pub fn check_rel_path(path: &str, root_ok: bool) -> Result<Vec<&str>, String> {
    let show = || path.escape_default().to_string();
    if path.is_empty() {
        return if root_ok {
            Ok(Vec::new())
        } else {
            Err("an empty path".into())
        };
    }
    if path.len() > MAX_PATH {
        return Err(format!("path of {} bytes, at most {MAX_PATH}", path.len()));
    }
    if path.contains('\0') {
        return Err(format!("path '{}' contains a NUL byte", show()));
    }
    if path.starts_with('/') {
        return Err(format!("path '{}' is absolute", show()));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts {
        let why = match *p {
            "" => "an empty component",
            "." => "a '.' component",
            ".." => "a '..' component",
            p if p.len() > 255 => "a component longer than 255 bytes",
            p if p.ends_with(PARTIAL) => "a name ending in .rescue-partial",
            _ => continue,
        };
        return Err(format!("path '{}' has {why}", show()));
    }
    Ok(parts)
}

fn refused(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// `errno` of a failed open that met something in the way.
fn in_the_way(e: rustix::io::Errno, shown: &str) -> io::Error {
    match e {
        rustix::io::Errno::LOOP => refused(format!("{shown}: a symlink is in the way: refused")),
        rustix::io::Errno::NOTDIR => refused(format!(
            "{shown}: a symlink or a file is in the way of a directory: refused"
        )),
        rustix::io::Errno::ISDIR => refused(format!("{shown}: a directory is in the way")),
        e => io::Error::new(io::Error::from(e).kind(), format!("{shown}: {e}")),
    }
}

/// The directory holding the last component of `parts` (made if
/// `create`), opened from `root` without following symlinks.
fn open_parent(root: &OwnedFd, parts: &[&str], create: bool) -> io::Result<OwnedFd> {
    let mut fd = rustix::io::dup(root)?;
    let dirs = &parts[..parts.len().saturating_sub(1)];
    for (i, d) in dirs.iter().enumerate() {
        fd = open_dir_in(&fd, d, create, &dirs[..=i].join("/"))?;
    }
    Ok(fd)
}

fn open_dir_in(parent: &OwnedFd, name: &str, create: bool, shown: &str) -> io::Result<OwnedFd> {
    if create {
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(in_the_way(e, shown)),
        }
    }
    rustix::fs::openat(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| in_the_way(e, shown))
}

fn times(atime: u32, mtime: u32) -> Timestamps {
    let ts = |s: u32| Timespec {
        tv_sec: s.into(),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    }
}

/// SHA-256 of the first `size` bytes of `f` (reads past its end as zeros).
pub fn file_sha256(f: &File, size: u64) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < size {
        let want = (size - pos).min(buf.len() as u64) as usize;
        let n = f.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            buf[..want].fill(0);
            h.update(&buf[..want]);
            pos += want as u64;
            continue;
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h.finalize().into())
}

/// A file being received.
struct Open {
    entry: Entry,
    parent: OwnedFd,
    last: String,
    file: File,
    /// Writing to `last + PARTIAL` (else: the complete file is checked).
    partial: bool,
    accepted: u64,
}

#[derive(Default)]
struct Counts {
    files: u64,
    already: u64,
    continued: u64,
    received: u64,
    lost_bytes: u64,
    lost_files: u64,
    mismatched: Vec<String>,
    skipped: Vec<String>,
    sums: String,
}

/// The tree session after Hello: Welcome, then entries until Finish and Bye.
pub(crate) fn receive(sh: &Shared, ch: &mut Channel, peer: SocketAddr, h: &Hello) -> SessionEnd {
    let name = h.name.as_str();
    let d = &sh.dir;
    let src_name = format!("{name}.source");
    let want = SourceRecord::new(0, &h.identity);
    let have = match d.read(&src_name) {
        Ok(x) => x,
        Err(e) => return refuse(sh, ch, peer, e.to_string()),
    };
    let exists = match d.exists(name) {
        Ok(x) => x,
        Err(e) => return refuse(sh, ch, peer, e.to_string()),
    };
    if exists && !d.is_dir(name) {
        return refuse(
            sh,
            ch,
            peer,
            format!(
                "{} exists and is not a directory: choose another NAME for the files",
                d.show(name)
            ),
        );
    }
    let mut fresh = false;
    match have.as_deref().map(SourceRecord::parse) {
        Some(Ok(r)) if r == want => {}
        other => {
            let why = match other {
                Some(Ok(r)) => Some(format!(
                    "{} holds files of another source ({}); this one is {}",
                    d.show(name),
                    r.identity,
                    want.identity
                )),
                Some(Err(e)) => Some(format!("{}: {e}", d.show(&src_name))),
                None if exists => Some(format!(
                    "{} exists and was not written by rescue receive",
                    d.show(name)
                )),
                None => None,
            };
            if let Some(why) = why {
                if !sh.opts.force {
                    return refuse(
                        sh,
                        ch,
                        peer,
                        format!("{why}: refusing to write into it (choose another NAME, or run rescue receive with --force)"),
                    );
                }
                (sh.say)(format!("{why}: writing every file offered anew (--force)"));
                fresh = true;
            }
            if let Err(e) = d.save_atomic(&src_name, &want.render()) {
                return fail(sh, ch, peer, Some(name), e.to_string());
            }
        }
    }
    let root = match d.open_tree(name) {
        Ok(fd) => fd,
        Err(e) => return refuse(sh, ch, peer, e.to_string()),
    };
    (sh.say)(format!(
        "{name} from {peer}: files ({} stored bytes to read, source {}) into {}/",
        h.size,
        want.identity,
        d.show(name)
    ));
    if let Err(e) = ch.send(&Frame::Welcome(String::new())) {
        return ended(sh, Some(name), peer, e);
    }
    let mut c = Counts::default();
    let mut open: Option<Open> = None;
    let mut last_line = Instant::now();
    loop {
        let f = match ch.recv() {
            Ok(f) => f,
            Err(e) => {
                if channel::is_altered(&e) || e.kind() == io::ErrorKind::InvalidData {
                    return fail(sh, ch, peer, Some(name), e.to_string());
                }
                return ended(sh, Some(name), peer, e);
            }
        };
        if last_line.elapsed() >= Duration::from_secs(10) {
            (sh.say)(format!(
                "{name} from {peer}: {} files done, {} received",
                c.files,
                screen::decimal_size(c.received)
            ));
            last_line = Instant::now();
        }
        let r: Result<(), String> = match f {
            Frame::Entry(e) if open.is_none() => {
                let parts = match check_rel_path(
                    &e.path,
                    matches!(e.kind, EntryKind::Dir | EntryKind::DirTimes),
                ) {
                    Ok(p) => p,
                    Err(why) => {
                        return fail(
                            sh,
                            ch,
                            peer,
                            Some(name),
                            format!("refused: {why} (paths must stay inside {name}/)"),
                        )
                    }
                };
                let shown = format!("{name}/{}", e.path.escape_default());
                match entry(&root, &parts, &e, fresh, &shown) {
                    Ok((reply, o)) => {
                        if let Some(o) = o {
                            if o.accepted == e.size && !o.partial {
                                c.already += 1;
                            } else if o.accepted > 0 {
                                c.continued += 1;
                            }
                            open = Some(o);
                        }
                        ch.send(&reply).map_err(|e| e.to_string())
                    }
                    Err(err) => {
                        let why = err.to_string();
                        (sh.say)(format!("{name} from {peer}: skipped: {why}"));
                        c.skipped.push(why.clone());
                        if err.kind() == io::ErrorKind::InvalidInput {
                            ch.send(&Frame::Skip(why)).map_err(|e| e.to_string())
                        } else {
                            // Our disk failed (full, read-only): the
                            // session cannot go on.
                            return fail(sh, ch, peer, Some(name), why);
                        }
                    }
                }
            }
            Frame::Data { offset, bytes } => match open.as_mut() {
                Some(o) if o.partial => {
                    if offset < o.accepted
                        || offset
                            .checked_add(bytes.len() as u64)
                            .is_none_or(|end| end > o.entry.size)
                    {
                        Err(format!(
                            "data at byte {offset} (+{}) of {} is outside {}..{}",
                            bytes.len(),
                            o.entry.path.escape_default(),
                            o.accepted,
                            o.entry.size
                        ))
                    } else {
                        c.received += bytes.len() as u64;
                        o.file
                            .write_all_at(&bytes, offset)
                            .map_err(|e| format!("writing {name}/{}: {e}", o.entry.path))
                    }
                }
                _ => Err("data without a file being sent".into()),
            },
            Frame::FileEnd { sha256, lost } => match open.take() {
                Some(o) => {
                    let path = o.entry.path.clone();
                    match end_file(o, &sha256) {
                        Ok(ours) => {
                            if ours == sha256 {
                                c.files += 1;
                                if !lost.is_empty() {
                                    c.lost_files += 1;
                                    c.lost_bytes += lost.iter().map(|r| r.1).sum::<u64>();
                                }
                                c.sums.push_str(&imaging::hash::sha256sum_line(
                                    &ours,
                                    &format!("{name}/{path}"),
                                ));
                            } else {
                                (sh.say)(format!(
                                    "{name}/{} from {peer}: SHA-256 MISMATCH: removed here; the next run sends it again",
                                    path.escape_default()
                                ));
                                c.mismatched.push(path);
                            }
                            ch.send(&Frame::Digest(ours)).map_err(|e| e.to_string())
                        }
                        Err(e) => Err(format!("{name}/{path}: {e}")),
                    }
                }
                None => Err("FileEnd without a file being sent".into()),
            },
            Frame::Finish(files) if open.is_none() => {
                if let Err(e) = d.save_atomic(&format!("{name}.sha256"), &c.sums) {
                    (sh.say)(format!("{name}: {e}"));
                }
                let _ = rustix::fs::fsync(&root);
                (sh.say)(format!(
                    "{name} from {peer}: {} of {files} files verified ({} were already here, {} continued), {} received, {} bytes lost in {} files (zeros; see {name}/{}), {} mismatched, {} skipped here",
                    c.files,
                    c.already,
                    c.continued,
                    screen::decimal_size(c.received),
                    c.lost_bytes,
                    c.lost_files,
                    vmfs::extract::REPORT_NAME,
                    c.mismatched.len(),
                    c.skipped.len()
                ));
                let _ = ch.send(&Frame::Ack);
                let _ = ch.recv();
                return if c.mismatched.is_empty() {
                    SessionEnd::Verified {
                        name: name.to_string(),
                        all_rescued: c.lost_files == 0 && c.skipped.is_empty() && c.files == files,
                    }
                } else {
                    SessionEnd::Mismatch {
                        name: name.to_string(),
                    }
                };
            }
            Frame::Bye => {
                (sh.say)(format!(
                    "{name} from {peer}: the sender stopped after {} files; the same command continues",
                    c.files
                ));
                return SessionEnd::Ended {
                    name: Some(name.to_string()),
                    why: "the sender stopped".into(),
                };
            }
            other => Err(format!("unexpected {other:?}")),
        };
        if let Err(why) = r {
            return fail(sh, ch, peer, Some(name), why);
        }
    }
}

/// Creates a directory or symlink, or opens a file to receive; the reply
/// to send.
fn entry(
    root: &OwnedFd,
    parts: &[&str],
    e: &Entry,
    fresh: bool,
    shown: &str,
) -> io::Result<(Frame, Option<Open>)> {
    let Some(&last) = parts.last() else {
        // The root: it exists; its times.
        if e.kind == EntryKind::DirTimes {
            let _ = rustix::fs::futimens(root, &times(e.atime, e.mtime));
        }
        return Ok((Frame::Accept(0), None));
    };
    let parent = open_parent(root, parts, e.kind != EntryKind::DirTimes)?;
    match e.kind {
        EntryKind::Dir => {
            open_dir_in(&parent, last, true, shown)?;
            Ok((Frame::Accept(0), None))
        }
        EntryKind::DirTimes => {
            let d = open_dir_in(&parent, last, false, shown)?;
            let _ = rustix::fs::futimens(&d, &times(e.atime, e.mtime));
            Ok((Frame::Accept(0), None))
        }
        EntryKind::Symlink => {
            if e.target.is_empty() || e.target.contains('\0') {
                return Err(refused(format!("{shown}: an empty symlink target")));
            }
            match rustix::fs::statat(&parent, last, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st)
                    if rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Symlink =>
                {
                    rustix::fs::unlinkat(&parent, last, AtFlags::empty())
                        .map_err(|er| in_the_way(er, shown))?;
                }
                Ok(_) => return Err(refused(format!("{shown}: something else is in the way"))),
                Err(_) => {}
            }
            // The link is made, never followed: nothing here opens
            // through it (O_NOFOLLOW on every component).
            rustix::fs::symlinkat(e.target.as_str(), &parent, last)
                .map_err(|er| in_the_way(er, shown))?;
            let _ = rustix::fs::utimensat(
                &parent,
                last,
                &times(e.atime, e.mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            );
            Ok((Frame::Accept(0), None))
        }
        EntryKind::File => {
            let complete = match rustix::fs::statat(&parent, last, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    if rustix::fs::FileType::from_raw_mode(st.st_mode)
                        != rustix::fs::FileType::RegularFile
                    {
                        return Err(refused(format!(
                            "{shown}: something that is not a file is in the way"
                        )));
                    }
                    !fresh && st.st_size as u64 == e.size
                }
                Err(_) => false,
            };
            if complete {
                let fd = rustix::fs::openat(
                    &parent,
                    last,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                    Mode::empty(),
                )
                .map_err(|er| in_the_way(er, shown))?;
                let size = e.size;
                return Ok((
                    Frame::Accept(size),
                    Some(Open {
                        entry: e.clone(),
                        parent,
                        last: last.to_string(),
                        file: File::from(fd),
                        partial: false,
                        accepted: size,
                    }),
                ));
            }
            let part = format!("{last}{PARTIAL}");
            let fd = rustix::fs::openat(
                &parent,
                part.as_str(),
                OFlags::RDWR
                    | OFlags::CREATE
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC
                    | OFlags::NONBLOCK,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|er| in_the_way(er, &format!("{shown}{PARTIAL}")))?;
            let file = File::from(fd);
            let st = file.metadata()?;
            if !st.is_file() {
                return Err(refused(format!("{shown}{PARTIAL}: not a regular file")));
            }
            let mut have = st.len();
            if fresh || have > e.size {
                file.set_len(0)?;
                have = 0;
            }
            Ok((
                Frame::Accept(have),
                Some(Open {
                    entry: e.clone(),
                    parent,
                    last: last.to_string(),
                    file,
                    partial: true,
                    accepted: have,
                }),
            ))
        }
    }
}

/// Ends a file: its size, its digest; on a match the partial file gets
/// its mode and times and its name; on a mismatch it is removed.
fn end_file(o: Open, theirs: &[u8; 32]) -> io::Result<[u8; 32]> {
    let size = o.entry.size;
    let name = if o.partial {
        format!("{}{PARTIAL}", o.last)
    } else {
        o.last.clone()
    };
    if o.partial {
        o.file.set_len(size)?;
    }
    let ours = file_sha256(&o.file, size)?;
    if &ours != theirs {
        drop(o.file);
        let _ = rustix::fs::unlinkat(&o.parent, name.as_str(), AtFlags::empty());
        return Ok(ours);
    }
    if o.partial {
        let _ = rustix::fs::fchmod(&o.file, Mode::from_raw_mode(o.entry.mode & 0o777));
        let _ = rustix::fs::futimens(&o.file, &times(o.entry.atime, o.entry.mtime));
        o.file.sync_all()?;
        rustix::fs::renameat(&o.parent, name.as_str(), &o.parent, o.last.as_str())?;
        rustix::fs::fsync(o.parent.as_fd())?;
    }
    Ok(ours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_stay_inside() {
        assert_eq!(
            check_rel_path("a/b c/d.vmdk", false),
            Ok(vec!["a", "b c", "d.vmdk"])
        );
        assert_eq!(check_rel_path("", true), Ok(vec![]));
        for (bad, why) in [
            ("", "empty path"),
            ("/etc/passwd", "absolute"),
            ("a/../../x", "'..'"),
            ("..", "'..'"),
            ("a/./b", "'.'"),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("a\0b", "NUL"),
            ("x.rescue-partial", "rescue-partial"),
        ] {
            let e = check_rel_path(bad, false).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(check_rel_path(&"a".repeat(256), false).is_err());
        assert!(check_rel_path(&"a/".repeat(3000), false).is_err());
    }

    proptest! {
        #[test]
        fn accepted_paths_have_only_plain_components(s in "[a./\\\\\\x00]{0,12}") {
            if let Ok(parts) = check_rel_path(&s, true) {
                for p in parts {
                    prop_assert!(!p.is_empty() && p != "." && p != ".." && !p.contains('/') && !p.contains('\0'));
                }
            }
        }
    }
}
