//! Writing a plan: undo file first (fsynced), then the backup phase, sync,
//! then the primary phase, sync, then read back and compare. Also the undo
//! of a repair from its undo file.

use crate::plan::{Phase, Plan, SectorChange};
use crate::undofile::{UndoFile, UndoRecord};
use crate::GptError;
use blockdev::{BlockDevice, Device};
use std::io::Write;
use std::path::Path;

fn io_err(offset: u64, what: &str, e: impl std::fmt::Display) -> GptError {
    GptError::new(offset, format!("{what}: {e}"))
}

fn read(dev: &dyn BlockDevice, offset: u64, len: usize) -> Result<Vec<u8>, GptError> {
    let mut b = vec![0u8; len];
    dev.read_exact_at(&mut b, offset)
        .map_err(|e| io_err(offset, "read", e))?;
    Ok(b)
}

/// Checks that the disk still holds what the plan was computed from.
fn check_unchanged(dev: &Device, plan: &Plan) -> Result<(), GptError> {
    if dev.size() != plan.device_size {
        return Err(io_err(
            0,
            "disk size changed since the plan",
            format!("{} != {}", dev.size(), plan.device_size),
        ));
    }
    let ss = u64::from(plan.sector_size);
    for c in &plan.changes {
        if read(dev, c.lba * ss, c.old.len())? != c.old {
            return Err(io_err(
                c.lba * ss,
                "the disk changed since the plan was made",
                format!("LBA {} ({})", c.lba, c.what),
            ));
        }
    }
    Ok(())
}

/// Writes the undo file; refuses to replace an existing file.
pub fn write_undo(path: &Path, undo: &UndoFile) -> Result<(), GptError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err(0, &format!("undo file {}", path.display()), e))?;
    f.write_all(&undo.encode())
        .and_then(|_| f.sync_all())
        .map_err(|e| io_err(0, &format!("writing undo file {}", path.display()), e))?;
    // The directory entry must be durable too before the disk is touched.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_phase(dev: &Device, ss: u64, changes: &[&SectorChange]) -> Result<(), GptError> {
    for c in changes {
        dev.write_all_at(&c.new, c.lba * ss).map_err(|e| {
            io_err(
                c.lba * ss,
                &format!("writing LBA {} ({})", c.lba, c.what),
                e,
            )
        })?;
    }
    dev.sync().map_err(|e| io_err(0, "sync", e))
}

/// Drops the (synced, clean) cached pages of `dev` so the read-back comes
/// from the disk, not from the page cache the write just filled. Advice
/// only: where the kernel ignores it the read-back still checks the cache.
fn drop_cache(dev: &Device) {
    let _ = rustix::fs::fadvise(dev.file(), 0, None, rustix::fs::Advice::DontNeed);
}

/// What [`apply`] did, step by step.
#[derive(Clone, Debug, Default)]
pub struct ApplyLog {
    pub lines: Vec<String>,
}

/// Applies `plan` to `dev` (opened writable): undo file at `undo_path`
/// first, then backup-phase sectors, sync, primary-phase sectors, sync,
/// then everything read back and compared.
pub fn apply(dev: &Device, plan: &Plan, undo_path: &Path) -> Result<ApplyLog, GptError> {
    let mut log = ApplyLog::default();
    if plan.changes.is_empty() {
        log.lines.push("nothing to write".into());
        return Ok(log);
    }
    check_unchanged(dev, plan)?;
    let ss = u64::from(plan.sector_size);
    let undo = UndoFile {
        sector_size: plan.sector_size,
        device_size: plan.device_size,
        device_name: plan.device.clone(),
        records: plan
            .changes
            .iter()
            .map(|c| UndoRecord {
                offset: c.lba * ss,
                old: c.old.clone(),
            })
            .collect(),
    };
    write_undo(undo_path, &undo)?;
    log::info!(
        "gpt: undo file {} written ({} sectors of {}) before writing",
        undo_path.display(),
        undo.records.len(),
        plan.device
    );
    log.lines.push(format!(
        "undo file {} written and synced ({} sectors)",
        undo_path.display(),
        undo.records.len()
    ));
    for phase in [Phase::Backup, Phase::Primary] {
        let part: Vec<&SectorChange> = plan.changes.iter().filter(|c| c.phase == phase).collect();
        if part.is_empty() {
            continue;
        }
        write_phase(dev, ss, &part)?;
        log.lines.push(
            format!("{phase:?} copy: {} sectors written and synced", part.len()).to_lowercase(),
        );
    }
    drop_cache(dev);
    for c in &plan.changes {
        if read(dev, c.lba * ss, c.new.len())? != c.new {
            return Err(io_err(
                c.lba * ss,
                "read-back differs from what was written",
                format!("LBA {} ({}); undo with the undo file", c.lba, c.what),
            ));
        }
    }
    log.lines.push(format!(
        "read back {} sectors: all as written",
        plan.changes.len()
    ));
    let bytes: usize = plan.changes.iter().map(|c| c.new.len()).sum();
    let places: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("LBA {} ({})", c.lba, c.what))
        .collect();
    log::info!(
        "gpt: wrote {bytes} bytes in {} sectors of {}-byte sectors to {}: {}; read back as \
         written; undo file {}",
        plan.changes.len(),
        plan.sector_size,
        plan.device,
        places.join(", "),
        undo_path.display()
    );
    Ok(log)
}

/// The plan that restores the bytes recorded in `undo` (sectors whose bytes
/// already match are skipped). Refuses when the device size or sector size
/// differ from the recorded ones.
pub fn undo_plan(
    dev: &dyn BlockDevice,
    sector_size: u32,
    undo: &UndoFile,
) -> Result<Plan, GptError> {
    if dev.size() != undo.device_size {
        return Err(io_err(
            0,
            "undo refused",
            format!(
                "the undo file is for a device of {} bytes, this one has {}",
                undo.device_size,
                dev.size()
            ),
        ));
    }
    if sector_size != undo.sector_size {
        return Err(io_err(
            0,
            "undo refused",
            format!(
                "the undo file uses {}-byte sectors, this disk {sector_size}",
                undo.sector_size
            ),
        ));
    }
    let ss = u64::from(undo.sector_size);
    let mut changes = Vec::new();
    for r in &undo.records {
        let current = read(dev, r.offset, r.old.len())?;
        if current != r.old {
            changes.push(SectorChange {
                lba: r.offset / ss,
                phase: Phase::Backup,
                what: "restore recorded bytes".into(),
                old: current,
                new: r.old.clone(),
            });
        }
    }
    Ok(Plan {
        mode: "undo".into(),
        device: dev.name().to_string(),
        device_size: dev.size(),
        sector_size: undo.sector_size,
        steps: vec![format!(
            "restore {} of the {} recorded sectors (the others already hold the recorded bytes), sync, read back",
            changes.len(),
            undo.records.len()
        )],
        notes: vec![format!("undo file made for {}", undo.device_name)],
        changes,
    })
}

/// Writes an undo plan (no new undo file: the undo file itself is the way
/// back to the repaired state's predecessor; keep it).
pub fn apply_undo(dev: &Device, plan: &Plan) -> Result<ApplyLog, GptError> {
    let mut log = ApplyLog::default();
    check_unchanged(dev, plan)?;
    let ss = u64::from(plan.sector_size);
    let all: Vec<&SectorChange> = plan.changes.iter().collect();
    write_phase(dev, ss, &all)?;
    drop_cache(dev);
    for c in &plan.changes {
        if read(dev, c.lba * ss, c.new.len())? != c.new {
            return Err(io_err(
                c.lba * ss,
                "read-back differs after undo",
                format!("LBA {}", c.lba),
            ));
        }
    }
    log.lines.push(format!(
        "{} sectors restored, synced and read back",
        plan.changes.len()
    ));
    let bytes: usize = plan.changes.iter().map(|c| c.new.len()).sum();
    let lbas: Vec<String> = plan.changes.iter().map(|c| c.lba.to_string()).collect();
    log::info!(
        "gpt undo: restored {bytes} bytes in {} sectors of {} (LBA {}); read back as written",
        plan.changes.len(),
        plan.device,
        lbas.join(", ")
    );
    Ok(log)
}

/// Opens `target` for writing a repair the user confirmed (naming it with
/// `--write`, or answering the menu's question), after checking that
/// nothing uses it.
pub fn open_for_writing(target: &str) -> Result<Device, String> {
    crate::inuse::check_not_in_use(Path::new(target))?;
    let access = blockdev::WriteAccess::confirmed_by_user(target);
    Device::open_writable(target, &access).map_err(|e| e.to_string())
}

/// What [`write_plan`] did.
pub struct Written {
    pub log: ApplyLog,
    /// The table as read back, verified.
    pub findings_after: Vec<crate::verify::Finding>,
    /// A disk (not an image file): the kernel keeps the old table until
    /// it re-reads it.
    pub on_block_device: bool,
    /// Setting the disk read-only again failed (the appliance keeps every
    /// disk read-only unless asked).
    pub reprotect_error: Option<String>,
}

/// Applies `plan` to `target` (the user confirmed it): undo file first,
/// then the backup copy, then the primary, each synced, then read back and
/// verified. A disk is set read-only again afterwards, whatever happened.
pub fn write_plan(target: &str, plan: &Plan, undo: &Path) -> Result<Written, String> {
    let dev = open_for_writing(target)?;
    let result = apply(&dev, plan, undo);
    let on_block_device = dev.kind() == blockdev::DeviceKind::BlockDevice;
    let reprotect_error = on_block_device
        .then(|| blockdev::set_read_only(target, true).err())
        .flatten()
        .map(|e| format!("could not set {target} read-only again: {e}"));
    let log = result.map_err(|e| e.to_string())?;
    let findings_after = crate::verify::verify(&crate::read(&dev));
    Ok(Written {
        log,
        findings_after,
        on_block_device,
        reprotect_error,
    })
}
