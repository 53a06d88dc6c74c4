//! The menu's way from a VM disk (or a disk image) to the guest's files:
//! the disk is attached read-only (`attach`: /dev/nbdN with the
//! partitions the kernel finds), what is inside is listed (filesystems,
//! md members, LVM PVs), an md array is assembled read-only, a volume
//! group activated read-only, a filesystem mounted read-only with its
//! recovery options (`rmount`, each attempt shown), its files browsed and
//! copied to a destination ([`crate::filebrowser`]). Leaving undoes what
//! this flow made, in order: unmount, deactivate the LVs, stop the
//! arrays, detach; or keeps it all for the shell.
//!
//! Every kernel step goes through [`Kernel`], so that host tests drive
//! the screens with a fake and check the choices, the messages and the
//! order of the teardown; [`System`] is the appliance's.

use crate::destmenu::{ask, Machine};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// What to attach: a VM disk (through its chain) or an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As `rescue attach` takes it: a host path, or a path in the VMFS
    /// volume on `vmfs`.
    pub source: String,
    pub vmfs: Vec<String>,
    /// A ddrescue mapfile of an image: its unrescued areas read as errors.
    pub map: Option<String>,
    /// File-name-safe name of the disk (`vm1-000001`): the folder that
    /// what is copied from it goes to.
    pub stem: String,
    /// Disks holding the source (never offered as destinations).
    pub source_disks: Vec<String>,
}

/// The kernel's part of the flow. The appliance's is [`System`]; tests
/// use a fake that records the calls.
pub trait Kernel {
    /// Attaches the target read-only; its record (device, partitions).
    fn attach(&mut self, t: &Target) -> Result<attach::Record, String>;
    /// Detaches `device` (`nbd0`); what was detached.
    fn detach(&mut self, device: &str) -> Result<String, String>;
    /// Assembles the md array `uuid` read-only; the md device's name.
    fn assemble(&mut self, uuid: &str, out: &mut dyn Write) -> Result<String, String>;
    /// Stops md device `md` (`md127`).
    fn stop(&mut self, md: &str, out: &mut dyn Write) -> Result<(), String>;
    /// Activates the LVs of volume group `vg` read-only.
    fn activate(
        &mut self,
        vg: &str,
        out: &mut dyn Write,
    ) -> Result<Vec<lvm::system::Activated>, String>;
    /// Removes the LV whose node is `path` (`/dev/mapper/vg0-root`).
    fn deactivate(&mut self, path: &str, out: &mut dyn Write) -> Result<(), String>;
    /// Mounts `node` read-only, each attempt said on `log`; the mount
    /// point.
    fn mount(&mut self, node: &Path, log: &mut dyn Write) -> Result<PathBuf, String>;
    /// Unmounts what [`Kernel::mount`] mounted at `dir`.
    fn umount(&mut self, dir: &Path, out: &mut dyn Write) -> Result<(), String>;
    /// A shell whose working directory is `cwd`, until it exits.
    fn shell(&mut self, cwd: &Path, out: &mut dyn Write);
    /// The node of kernel device `name` (`/dev/nbd0p1`).
    fn node(&self, name: &str) -> PathBuf;
}

/// The flow's context: the kernel and where destinations are found.
pub struct Flow<'a> {
    pub kernel: &'a mut dyn Kernel,
    /// The machine for choosing a destination, read afresh each time (a
    /// destination mounted in between shows as mounted).
    pub dest: &'a dyn Fn() -> Machine<'a>,
}

/// What one flow made, so that leaving undoes exactly that.
#[derive(Debug, Default)]
pub struct Session {
    pub record: Option<attach::Record>,
    /// md devices assembled here.
    pub assembled: Vec<String>,
    /// (array UUID, md device) of those, for the members' rows.
    pub arrays: Vec<(String, String)>,
    /// Volume groups activated here.
    pub vgs: Vec<String>,
    /// LV nodes activated here (not those that were active already).
    pub activated: Vec<String>,
    /// (node, mount point) mounted here.
    pub mounted: Vec<(PathBuf, PathBuf)>,
}

/// What a device inside the disk holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holds {
    Filesystem(fsmagic::Kind, Option<String>),
    /// An md member: array UUID and its words (`md raid1 member (DS:2)`).
    Md(String, String),
    /// An LVM PV and its volume group, if its metadata names one.
    Pv(Option<String>),
    /// Nothing to open: swap, an unknown signature, an unreadable device.
    Other(String),
}

/// One device of the disk: a partition, an array assembled from it, an LV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub node: PathBuf,
    /// For folder names: `p1`, `md127`, `vg0-root`.
    pub short: String,
    pub size: Option<u64>,
    pub holds: Holds,
}

/// What `node` holds, read through a read-only handle.
pub fn examine(node: &Path) -> (Option<u64>, Holds) {
    use blockdev::BlockDevice;
    let size = blockdev::Device::open(node).ok().map(|d| d.size());
    let h = probe::contents::examine(node);
    if let Some(m) = &h.md_member {
        let words = format!(
            "md {} member{}",
            m.level,
            m.name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        return (size, Holds::Md(m.array_uuid.clone(), words));
    }
    match h.filesystem {
        Some(s) if s.kind == fsmagic::Kind::LvmPv => {
            let path = node.display().to_string();
            let report = lvm::system::scan_paths(&[(path, None)], false);
            (size, Holds::Pv(report.vgs.first().map(|v| v.name.clone())))
        }
        Some(s) if matches!(s.kind, fsmagic::Kind::Swap | fsmagic::Kind::Iso9660) => {
            (size, Holds::Other(s.kind.name().to_string()))
        }
        Some(s) => (size, Holds::Filesystem(s.kind, s.label)),
        None => (
            size,
            Holds::Other(
                h.open_error
                    .or(h.problem)
                    .map(|e| format!("unreadable: {e}"))
                    .unwrap_or_else(|| "no known filesystem".into()),
            ),
        ),
    }
}

impl Session {
    /// The devices to show: the partitions (or the whole disk when it has
    /// none), then the arrays and LVs made here.
    pub fn volumes(&self, kernel: &dyn Kernel) -> Vec<Volume> {
        let Some(r) = &self.record else {
            return Vec::new();
        };
        let mut nodes: Vec<(PathBuf, String)> = if r.partitions.is_empty() {
            vec![(kernel.node(&r.device), "disk".into())]
        } else {
            r.partitions
                .iter()
                .map(|p| {
                    let short = p
                        .strip_prefix(&r.device)
                        .unwrap_or(p)
                        .trim_start_matches('p');
                    (kernel.node(p), format!("p{short}"))
                })
                .collect()
        };
        nodes.extend(self.assembled.iter().map(|m| (kernel.node(m), m.clone())));
        nodes.extend(self.activated.iter().map(|p| {
            let short = p.rsplit('/').next().unwrap_or(p).to_string();
            (PathBuf::from(p), short)
        }));
        nodes
            .into_iter()
            .map(|(node, short)| {
                let (size, holds) = examine(&node);
                Volume {
                    node,
                    short,
                    size,
                    holds,
                }
            })
            .collect()
    }

    /// The md device this session assembled array `uuid` as.
    fn array_of(&self, uuid: &str) -> Option<&str> {
        self.arrays
            .iter()
            .find(|(u, _)| u == uuid)
            .map(|(_, m)| m.as_str())
    }

    fn mount_point(&self, node: &Path) -> Option<&Path> {
        self.mounted
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, d)| d.as_path())
    }

    /// Unmounts, deactivates, stops and detaches what this session made,
    /// in that order, saying each step; stops at the first failure (what
    /// is left stays recorded, so leaving can be tried again).
    pub fn teardown(&mut self, kernel: &mut dyn Kernel, out: &mut dyn Write) -> Result<(), String> {
        while let Some((node, dir)) = self.mounted.last().cloned() {
            kernel
                .umount(&dir, out)
                .map_err(|e| format!("unmounting {}: {e}", dir.display()))?;
            let _ = writeln!(out, "unmounted {} ({})", dir.display(), node.display());
            self.mounted.pop();
        }
        while let Some(lv) = self.activated.last().cloned() {
            kernel
                .deactivate(&lv, out)
                .map_err(|e| format!("deactivating {lv}: {e}"))?;
            self.activated.pop();
        }
        self.vgs.clear();
        while let Some(md) = self.assembled.last().cloned() {
            kernel
                .stop(&md, out)
                .map_err(|e| format!("stopping /dev/{md}: {e}"))?;
            self.assembled.pop();
            self.arrays.retain(|(_, m)| *m != md);
        }
        if let Some(r) = &self.record {
            let said = kernel
                .detach(&r.device)
                .map_err(|e| format!("detaching {}: {e}", r.device))?;
            let _ = writeln!(out, "{said}");
            log::info!("guest: {said}");
            self.record = None;
        }
        Ok(())
    }
}

fn holds_words(v: &Volume) -> String {
    match &v.holds {
        Holds::Filesystem(k, Some(l)) => format!("{} \"{l}\"", k.name()),
        Holds::Filesystem(k, None) => k.name().to_string(),
        Holds::Md(_, w) => w.clone(),
        Holds::Pv(Some(vg)) => format!("LVM2 PV, VG {vg}"),
        Holds::Pv(None) => "LVM2 PV, no VG found".into(),
        Holds::Other(w) => w.clone(),
    }
}

/// The disk's screen: its devices with what they hold and what was done.
fn render(r: &attach::Record, session: &Session, volumes: &[Volume]) -> String {
    let mut s = format!(
        "\n{} ({}, read-only): {}\n",
        r.node,
        screen::human_size(r.size),
        r.what
    );
    for n in &r.notes {
        s.push_str(&screen::wrap_words(
            &format!("  note: {n}"),
            screen::SCREEN_WIDTH,
            8,
        ));
    }
    if let Some(m) = &r.map {
        s.push_str(&screen::wrap_words(
            &format!(
                "  {} unreadable per {m}: reads there fail",
                screen::human_size(r.bad_bytes)
            ),
            screen::SCREEN_WIDTH,
            4,
        ));
    }
    for (i, v) in volumes.iter().enumerate() {
        let state = match (session.mount_point(&v.node), &v.holds) {
            (Some(d), _) => format!("mounted at {}", d.display()),
            (None, Holds::Filesystem(..)) => "not mounted".into(),
            (None, Holds::Md(uuid, _)) => match session.array_of(uuid) {
                Some(md) => format!("in /dev/{md}"),
                None => "assemble the array".into(),
            },
            (None, Holds::Pv(Some(vg))) if session.vgs.contains(vg) => "LVs active".into(),
            (None, Holds::Pv(Some(_))) => "activate its LVs".into(),
            _ => String::new(),
        };
        let row = format!(
            " {:>2}  {:<22} {:>10}  {}{}",
            i + 1,
            v.node.display(),
            v.size.map(screen::human_size).unwrap_or_default(),
            holds_words(v),
            if state.is_empty() {
                String::new()
            } else {
                format!("  ({state})")
            }
        );
        s.push_str(&screen::wrap_words(&row, screen::SCREEN_WIDTH, 6));
    }
    if volumes.is_empty() {
        s.push_str("  no devices\n");
    }
    s
}

impl Flow<'_> {
    /// Attaches `t`, shows what is inside and lets the user open it; false
    /// when the input ended (what was made is then left as it is).
    pub fn run(&mut self, t: &Target, input: &mut impl BufRead, out: &mut impl Write) -> bool {
        let _ = writeln!(out, "Attaching {} read-only ...", t.source);
        let _ = out.flush();
        log::info!("guest: attaching {} read-only", t.source);
        let record = match self.kernel.attach(t) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(out, "attach failed: {e}");
                return ask(input, out, "Enter: back: ").is_some();
            }
        };
        let _ = writeln!(out, "attached as {}", record.node);
        let mut session = Session {
            record: Some(record),
            ..Default::default()
        };
        loop {
            let Some(r) = session.record.clone() else {
                return true;
            };
            let volumes = session.volumes(&*self.kernel);
            let _ = write!(out, "{}", render(&r, &session, &volumes));
            let Some(a) = ask(
                input,
                out,
                "N: open device N (mount and browse, assemble, activate), x: leave this disk: ",
            ) else {
                return false;
            };
            if a == "x" || a.is_empty() {
                match self.leave(&mut session, input, out) {
                    None => return false,
                    Some(true) => return true,
                    Some(false) => continue,
                }
            }
            let Some(v) = crate::menu::pick(&a, &volumes) else {
                let _ = writeln!(out, "'{a}' is not one of the devices.");
                continue;
            };
            if !self.open(&mut session, v, t, input, out) {
                return false;
            }
        }
    }

    /// The natural action on device `v`. False when the input ended.
    fn open(
        &mut self,
        session: &mut Session,
        v: &Volume,
        t: &Target,
        input: &mut impl BufRead,
        out: &mut impl Write,
    ) -> bool {
        match &v.holds {
            Holds::Filesystem(..) => {
                let dir = match session.mount_point(&v.node) {
                    Some(d) => d.to_path_buf(),
                    None => {
                        let _ = writeln!(
                            out,
                            "Mounting {} read-only (each attempt shown):",
                            v.node.display()
                        );
                        log::info!("guest: mounting {} read-only", v.node.display());
                        match self.kernel.mount(&v.node, out) {
                            Ok(d) => {
                                let _ = writeln!(
                                    out,
                                    "{} mounted read-only at {}",
                                    v.node.display(),
                                    d.display()
                                );
                                session.mounted.push((v.node.clone(), d.clone()));
                                d
                            }
                            Err(e) => {
                                let _ = writeln!(out, "not mounted: {e}");
                                return ask(input, out, "Enter: back: ").is_some();
                            }
                        }
                    }
                };
                let place = crate::filebrowser::Place {
                    root: dir,
                    what: format!("{} {}", v.node.display(), holds_words(v)),
                    folder: format!("{}/{}", t.stem, v.short),
                    source_disks: t.source_disks.clone(),
                };
                crate::filebrowser::browse(self, &place, input, out)
            }
            Holds::Md(uuid, _) if session.array_of(uuid).is_some() => {
                let md = session.array_of(uuid).unwrap_or_default();
                let _ = writeln!(out, "Its array runs as /dev/{md}: open that.");
                true
            }
            Holds::Pv(Some(vg)) if session.vgs.contains(vg) => {
                let _ = writeln!(out, "{vg}'s logical volumes are active: open them.");
                true
            }
            Holds::Md(uuid, _) => {
                log::info!("guest: assembling md array {uuid} read-only");
                match self.kernel.assemble(uuid, out) {
                    Ok(md) => {
                        let _ = writeln!(out, "array {uuid} runs read-only as /dev/{md}");
                        session.arrays.push((uuid.clone(), md.clone()));
                        session.assembled.push(md);
                    }
                    Err(e) => {
                        let _ = writeln!(out, "not assembled: {e}");
                    }
                }
                true
            }
            Holds::Pv(Some(vg)) => {
                log::info!("guest: activating volume group {vg} read-only");
                match self.kernel.activate(vg, out) {
                    Ok(done) => {
                        if done.is_empty() {
                            let _ = writeln!(out, "{vg}: no logical volume could be activated");
                        } else {
                            session.vgs.push(vg.clone());
                        }
                        session
                            .activated
                            .extend(done.into_iter().filter(|a| !a.already).map(|a| a.path));
                    }
                    Err(e) => {
                        let _ = writeln!(out, "not activated: {e}");
                    }
                }
                true
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{}: {}; nothing to open on it.",
                    v.node.display(),
                    holds_words(v)
                );
                true
            }
        }
    }

    /// Leaving the disk: undo what was made, or keep it. Some(true): left;
    /// Some(false): back to the disk; None: the input ended.
    fn leave(
        &mut self,
        session: &mut Session,
        input: &mut impl BufRead,
        out: &mut impl Write,
    ) -> Option<bool> {
        let r = session.record.clone()?;
        let mut made = Vec::new();
        if !session.mounted.is_empty() {
            made.push(format!(
                "unmount {}",
                screen::plural(session.mounted.len() as u64, "filesystem", "filesystems")
            ));
        }
        if !session.activated.is_empty() {
            made.push(format!(
                "deactivate {}",
                screen::plural(
                    session.activated.len() as u64,
                    "logical volume",
                    "logical volumes"
                )
            ));
        }
        if !session.assembled.is_empty() {
            made.push(format!(
                "stop {}",
                screen::plural(session.assembled.len() as u64, "array", "arrays")
            ));
        }
        made.push(format!("detach {}", r.device));
        let q = format!(
            "Leave {}:\n{}  k: keep it all (rescue detach {} later; power-off detaches)\n\
             Enter: back to the disk: ",
            r.device,
            screen::wrap_words(
                &format!("  d: {}", made.join(", ")),
                screen::SCREEN_WIDTH,
                5
            ),
            r.device
        );
        let a = ask(input, out, &q)?;
        match a.as_str() {
            "d" => {
                log::info!("guest: leaving {}: undoing what was made", r.device);
                match session.teardown(self.kernel, out) {
                    Ok(()) => Some(true),
                    Err(e) => {
                        let _ = writeln!(out, "{e}\nThe rest is left as it is.");
                        Some(false)
                    }
                }
            }
            "k" => {
                log::info!("guest: leaving {} attached", r.device);
                let _ = writeln!(out, "{} stays attached.", r.device);
                Some(true)
            }
            _ => Some(false),
        }
    }
}

/// The appliance's kernel steps: the same library calls as `rescue
/// attach`, `md assemble`, `lvm activate`, `mount` and their undoing.
pub struct System;

fn load(name: &str) -> Result<(), String> {
    crate::modules::load_by_name(name)
}

impl Kernel for System {
    fn attach(&mut self, t: &Target) -> Result<attach::Record, String> {
        attach::spawn(
            &t.source,
            &t.vmfs,
            t.map.as_deref(),
            None,
            attach::DEFAULT_DEADLINE,
        )
    }

    fn detach(&mut self, device: &str) -> Result<String, String> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        attach::detach(
            &attach::Paths::system(),
            &mounts,
            device,
            std::time::Duration::from_secs(15),
        )
    }

    fn assemble(&mut self, uuid: &str, out: &mut dyn Write) -> Result<String, String> {
        let _ = load("md_mod");
        let mut err = Vec::new();
        let r = mdkernel::arrays::assemble(
            &mdkernel::Md::system(),
            uuid,
            false,
            &load,
            &mut mdkernel::Output {
                out: &mut *out,
                err: &mut err,
            },
        );
        let _ = out.write_all(&err);
        r
    }

    fn stop(&mut self, md: &str, out: &mut dyn Write) -> Result<(), String> {
        mdkernel::arrays::stop_array(&mdkernel::Md::system(), md, out)
    }

    fn activate(
        &mut self,
        vg: &str,
        out: &mut dyn Write,
    ) -> Result<Vec<lvm::system::Activated>, String> {
        let env = lvm::system::Env::system();
        let _ = load("dm_mod");
        let ctl = lvm::dm::Control::open(&env.dev, &env.sys).map_err(|e| e.to_string())?;
        let report = lvm::system::scan_system(&env, false);
        let mut err = Vec::new();
        let r = lvm::system::activate(&env, &ctl, &report, Some(vg), &mut *out, &mut err);
        let _ = out.write_all(&err);
        r.map(|(done, _)| done)
    }

    fn deactivate(&mut self, path: &str, out: &mut dyn Write) -> Result<(), String> {
        let env = lvm::system::Env::system();
        let ctl = lvm::dm::Control::open(&env.dev, &env.sys).map_err(|e| e.to_string())?;
        lvm::system::deactivate(&env, &ctl, Some(path), out).map(|_| ())
    }

    fn mount(&mut self, node: &Path, log: &mut dyn Write) -> Result<PathBuf, String> {
        let req = rmount::Request::new(node.display().to_string());
        match rmount::mount(&req, &load, log) {
            Ok(m) => {
                let _ = writeln!(log, "  with {} ({})", m.options, m.kind.name());
                for n in &m.notes {
                    let _ = writeln!(log, "  {n}");
                }
                Ok(m.mount_point)
            }
            Err(f) => {
                for n in &f.notes {
                    let _ = writeln!(log, "  {n}");
                }
                Err(match f.recovery {
                    Some(r) => format!("{}; what would still work: {r}", f.reason),
                    None => f.reason,
                })
            }
        }
    }

    fn umount(&mut self, dir: &Path, out: &mut dyn Write) -> Result<(), String> {
        let u = rmount::umount(&rmount::Paths::default(), &dir.display().to_string())?;
        for n in &u.notes {
            let _ = writeln!(out, "  {n}");
        }
        Ok(())
    }

    fn shell(&mut self, cwd: &Path, out: &mut dyn Write) {
        let _ = writeln!(
            out,
            "Shell in {} (read-only); type 'exit' to come back to the menu.",
            cwd.display()
        );
        let _ = out.flush();
        if let Err(e) = std::process::Command::new(crate::menu::SHELL)
            .current_dir(cwd)
            .status()
        {
            let _ = writeln!(out, "cannot start {}: {e}", crate::menu::SHELL);
        }
    }

    fn node(&self, name: &str) -> PathBuf {
        Path::new("/dev").join(name)
    }
}

/// The appliance's destination machine, read afresh.
pub fn system_destinations() -> Machine<'static> {
    Machine {
        sys: Path::new("/sys"),
        dev: Path::new("/dev"),
        mounts: std::fs::read_to_string("/proc/mounts").unwrap_or_default(),
        load: &load,
    }
}

#[cfg(test)]
mod tests;
