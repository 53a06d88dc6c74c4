//! `rescue files-hit IMAGE --map MAPFILE`: a thin front over
//! [`crate::run::run`] with the appliance's [`System`]: `rescue attach`'s
//! server, `rescue md assemble`'s and `rescue lvm activate`'s library
//! calls, and `rescue mount`.

use crate::report::SCHEMA;
use crate::run::{ActiveLv, ArrayMember, Assembled, Attached, MountedFs, Request, System};
use argh::FromArgs;
use blockdev::sys::ModuleLoader;
use cliconv::Exit;
use std::path::{Path, PathBuf};
use std::time::Duration;

const COMMAND: &str = "files-hit";

/// Which guest files the bad areas of an imaged disk hit. IMAGE is a disk
/// image made by `rescue image` and MAPFILE its ddrescue mapfile. With a
/// VMFS datastore on the image, each VM disk whose files were hit gets a
/// bad-area map (IMAGE.badmaps/NAME.vmdk.badmap) and is attached
/// read-only; without VMFS the image itself is attached. Partitions, md
/// arrays and LVM volumes inside are found, each filesystem with bad bytes
/// is mounted read-only and walked (FIEMAP; FIBMAP where unsupported):
/// the files and directories hit with the byte ranges lost, and for ext2/3/4
/// the metadata and free space hit. Everything is released afterwards.
/// The report is saved as IMAGE.files-hit.txt.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "files-hit",
    error_code(0, "done: the mapfile has no unrescued area"),
    error_code(1, "findings: bad areas were mapped (the report says to what), or some could not be"),
    error_code(2, "error: usage error (unknown option, missing argument), the mapfile is unreadable, or the report could not be saved")
)]
pub struct FilesHitCommand {
    /// the disk image
    #[argh(positional)]
    pub image: String,
    /// its ddrescue mapfile
    #[argh(option)]
    pub map: String,
    /// take the image as a disk with partitions even if it holds VMFS
    #[argh(switch)]
    pub no_vmfs: bool,
    /// where the VM disks' bad-area maps go (default IMAGE.badmaps)
    #[argh(option)]
    pub badmap_dir: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Runs `rescue files-hit`; `load` loads kernel modules.
pub fn run(c: FilesHitCommand, load: ModuleLoader<'_>) -> i32 {
    let image = PathBuf::from(&c.image);
    if !image.is_file() {
        return cliconv::fail(COMMAND, format_args!("{}: not an image file", c.image)).code();
    }
    let req = Request {
        badmap_dir: c
            .badmap_dir
            .clone()
            .unwrap_or_else(|| crate::run::badmap_dir(&image)),
        image,
        map: PathBuf::from(&c.map),
        vmfs: !c.no_vmfs,
    };
    let mut say = |s: &str| cliconv::eprint(COMMAND, s);
    let (report, saved) = run_on_appliance(&req, load, &mut say);
    let text = report.text();
    let mut exit = Exit::findings_if(report.findings());
    match saved {
        Err(e) => exit = cliconv::fail(COMMAND, e),
        Ok(p) => cliconv::eprint(COMMAND, format_args!("report saved as {}", p.display())),
    }
    if c.json {
        exit = exit.max(cliconv::print_json(COMMAND, SCHEMA, &report));
    } else {
        print!("{text}");
    }
    exit.code()
}

/// The whole walk on the appliance's kernel (attach, assemble, activate,
/// mount, walk, release), and the report saved beside the image
/// ([`crate::run::report_path`]): the command's and the menu's work.
pub fn run_on_appliance(
    req: &Request,
    load: ModuleLoader<'_>,
    say: &mut dyn FnMut(&str),
) -> (crate::report::Report, Result<PathBuf, String>) {
    let mut sys = Appliance { load };
    let report = crate::run::run(req, &mut sys, say);
    let saved = crate::run::report_path(&req.image);
    let written = ddmap::save_atomic(&saved, &report.text())
        .map(|()| saved.clone())
        .map_err(|e| format!("saving {}: {e}", saved.display()));
    (report, written)
}

/// The appliance's kernel side.
struct Appliance<'a> {
    load: ModuleLoader<'a>,
}

fn sink() -> Vec<u8> {
    Vec::new()
}

fn lvm_control(load: ModuleLoader<'_>) -> Result<lvm::dm::Control, String> {
    let _ = load("dm_mod");
    let env = lvm::system::Env::system();
    lvm::dm::Control::open(&env.dev, &env.sys).map_err(|e| format!("device-mapper: {e}"))
}

impl System for Appliance<'_> {
    fn sys(&self) -> PathBuf {
        PathBuf::from("/sys")
    }
    fn dev(&self) -> PathBuf {
        PathBuf::from("/dev")
    }

    fn attach(&mut self, source: &str, vmfs: &[String], map: &Path) -> Result<Attached, String> {
        let map = map.display().to_string();
        let r = attach::spawn(source, vmfs, Some(&map), None, attach::DEFAULT_DEADLINE)?;
        for n in &r.notes {
            cliconv::eprint(COMMAND, format_args!("{}: {n}", r.device));
        }
        Ok(Attached { device: r.device })
    }

    fn detach(&mut self, a: &Attached) -> Result<(), String> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        attach::detach(
            &attach::Paths::system(),
            &mounts,
            &a.device,
            Duration::from_secs(15),
        )
        .map(|_| ())
    }

    fn assemble_md(&mut self, uuid: &str) -> Result<Assembled, String> {
        let md = mdkernel::Md::system();
        let (mut out, mut err) = (sink(), sink());
        let device = mdkernel::arrays::assemble(
            &md,
            uuid,
            false,
            self.load,
            &mut mdkernel::Output {
                out: &mut out,
                err: &mut err,
            },
        )?;
        let report = mdkernel::arrays::scan_system();
        let a = mdraid::scan::find_array(&report, uuid)?
            .ok_or_else(|| format!("array {uuid} is not seen after assembling it"))?;
        let geometry = a
            .geometry
            .clone()
            .ok_or_else(|| format!("array {uuid}: no usable geometry"))?;
        let members = a
            .members
            .iter()
            .filter(|m| m.status == "in-sync")
            .filter_map(|m| {
                Some(ArrayMember {
                    device: mdraid::scan::kernel_name(&m.device).to_string(),
                    role: m.role? as usize,
                    data_offset: m.data_offset,
                    data_bytes: m.data_bytes,
                })
            })
            .collect();
        Ok(Assembled {
            device,
            geometry,
            members,
            what: format!(
                "md {}{}",
                a.level,
                a.name
                    .as_deref()
                    .map(|n| format!(" \"{n}\""))
                    .unwrap_or_default()
            ),
        })
    }

    fn stop_md(&mut self, a: &Assembled) -> Result<(), String> {
        mdkernel::arrays::stop_array(&mdkernel::Md::system(), &a.device, &mut sink())
    }

    fn activate_lvm(&mut self, pvs: &[String]) -> Result<(Vec<ActiveLv>, Vec<String>), String> {
        let env = lvm::system::Env::system();
        let report = lvm::system::scan_system(&env, false);
        let ctl = lvm_control(self.load)?;
        let mut lvs = Vec::new();
        let mut notes = Vec::new();
        for vg in report.vgs.iter().filter(|v| {
            v.pvs.iter().any(|p| {
                p.found_on
                    .as_deref()
                    .is_some_and(|f| pvs.iter().any(|x| lvm::scan::kernel_name(f) == x))
            })
        }) {
            let (mut out, mut err) = (sink(), sink());
            let (done, _) =
                lvm::system::activate(&env, &ctl, &report, Some(&vg.name), &mut out, &mut err)?;
            notes.extend(
                String::from_utf8_lossy(&err)
                    .lines()
                    .map(|l| format!("LVM: {l}")),
            );
            for a in done {
                let table = vg
                    .lvs
                    .iter()
                    .find(|l| l.name == a.lv)
                    .and_then(|l| l.table.clone())
                    .unwrap_or_default();
                lvs.push(ActiveLv {
                    name: format!("{}/{}", a.vg, a.lv),
                    device: a.dm_device,
                    table,
                });
            }
        }
        Ok((lvs, notes))
    }

    fn deactivate_lvm(&mut self, lvs: &[ActiveLv]) -> Result<(), String> {
        let env = lvm::system::Env::system();
        let ctl = lvm_control(self.load)?;
        for l in lvs {
            lvm::system::deactivate(&env, &ctl, Some(&l.name), &mut sink())?;
        }
        Ok(())
    }

    fn mount(&mut self, name: &str) -> Result<MountedFs, String> {
        let req = rmount::Request::new(name);
        match rmount::mount(&req, self.load, &mut sink()) {
            Ok(m) => Ok(MountedFs {
                dir: m.mount_point,
                notes: m.notes,
            }),
            Err(f) => Err(f.reason),
        }
    }

    fn umount(&mut self, m: &MountedFs) -> Result<(), String> {
        rmount::umount(&rmount::Paths::default(), &m.dir.display().to_string()).map(|_| ())
    }
}
