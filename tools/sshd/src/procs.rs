//! Processes from /proc: whether one is alive, its parent, its program,
//! and a process's descendants (the sessions of a dropbear listener:
//! its connection processes and their login shells).

use std::path::Path;

/// One process as /proc/PID/stat tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// The state letter (R, S, Z, ...).
    pub state: char,
    /// The command name (comm), at most 15 bytes.
    pub comm: String,
}

/// Parses /proc/PID/stat: `pid (comm) state ppid ...`; comm may hold
/// spaces and parentheses, so it ends at the last `)`.
pub fn parse_stat(text: &str) -> Result<Proc, String> {
    let open = text
        .find('(')
        .ok_or_else(|| "stat: no '(' before the command name".to_string())?;
    let close = text
        .rfind(')')
        .filter(|&c| c > open)
        .ok_or_else(|| "stat: no ')' after the command name".to_string())?;
    let pid = text[..open].trim().parse().map_err(|_| {
        format!(
            "stat: pid {:?} at offset 0 is not a number",
            text[..open].trim()
        )
    })?;
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest
        .next()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| format!("stat: no state after offset {close}"))?;
    let ppid = rest
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("stat: no parent pid after offset {close}"))?;
    Ok(Proc {
        pid,
        ppid,
        state,
        comm: text[open + 1..close].to_string(),
    })
}

pub fn read(proc: &Path, pid: u32) -> Option<Proc> {
    parse_stat(&std::fs::read_to_string(proc.join(format!("{pid}/stat"))).ok()?).ok()
}

/// Every process in `proc`.
pub fn all(proc: &Path) -> Vec<Proc> {
    let mut out: Vec<Proc> = std::fs::read_dir(proc)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| read(proc, pid))
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// `pid` is running (not gone, not a zombie) and its command name is
/// `comm` (a pid reused by another program does not count).
pub fn alive_as(proc: &Path, pid: u32, comm: &str) -> bool {
    read(proc, pid).is_some_and(|p| p.state != 'Z' && p.state != 'X' && p.comm == comm)
}

/// The descendants of `pid` in `procs`, parents before children.
pub fn descendants(procs: &[Proc], pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in procs.iter().filter(|c| c.ppid == p && c.pid != pid) {
            if !out.contains(&c.pid) {
                out.push(c.pid);
                todo.push(c.pid);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let p = parse_stat("123 (drop bear)) S 45 123 123 0 -1 4194560 1 2").unwrap();
        assert_eq!(p.pid, 123);
        assert_eq!(p.comm, "drop bear)");
        assert_eq!((p.state, p.ppid), ('S', 45));
        assert!(parse_stat("x (a) S 1").unwrap_err().contains("offset 0"));
        assert!(parse_stat("1 (a) S").is_err());
        assert!(parse_stat("1 a) S 1").is_err());
        assert!(parse_stat("1 )a( S 1").is_err());
    }

    #[test]
    fn this_process_and_its_tree() {
        let me = std::process::id();
        let p = read(Path::new("/proc"), me).unwrap();
        assert!(alive_as(Path::new("/proc"), me, &p.comm));
        assert!(!alive_as(Path::new("/proc"), me, "not-this"));
        let procs = vec![
            Proc {
                pid: 10,
                ppid: 1,
                state: 'S',
                comm: "dropbear".into(),
            },
            Proc {
                pid: 11,
                ppid: 10,
                state: 'S',
                comm: "dropbear".into(),
            },
            Proc {
                pid: 12,
                ppid: 11,
                state: 'S',
                comm: "rescue-login".into(),
            },
            Proc {
                pid: 13,
                ppid: 1,
                state: 'S',
                comm: "other".into(),
            },
        ];
        assert_eq!(descendants(&procs, 10), vec![11, 12]);
        assert!(descendants(&procs, 13).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn stat_never_panics(s in ".{0,80}") {
            let _ = parse_stat(&s);
        }
    }
}
