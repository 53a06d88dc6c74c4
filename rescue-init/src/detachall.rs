//! Shutdown's order for attached devices: the mounts on them are gone
//! (PID 1 unmounted every disk-backed mount), then the LVM volumes are
//! deactivated and the md arrays built on attached devices stopped, then
//! the devices are disconnected, so that no layer loses its device while
//! still in use.

use std::time::Duration;

/// The serving processes of attached devices (kept alive until
/// [`detach_all`]).
pub fn servers() -> Vec<u32> {
    attach::records(&attach::Paths::system())
        .into_iter()
        .filter(|(_, stale)| !stale)
        .map(|(r, _)| r.pid)
        .collect()
}

/// Stops the arrays on attached devices and detaches every attached
/// device. Lines for the console.
pub fn detach_all() -> Vec<String> {
    let paths = attach::Paths::system();
    let records = attach::records(&paths);
    if records.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let env = lvm::system::Env::system();
    if !lvm::system::active_lvs(&env.sys).is_empty() {
        match lvm::dm::Control::open(&env.dev, &env.sys) {
            Ok(ctl) => {
                let mut said = Vec::new();
                if let Err(e) = lvm::system::deactivate(&env, &ctl, None, &mut said) {
                    out.push(format!("deactivating LVM volumes: {e}"));
                }
                out.extend(String::from_utf8_lossy(&said).lines().map(str::to_string));
            }
            Err(e) => out.push(format!("device-mapper: {e}")),
        }
    }
    let md = mdkernel::Md::system();
    for array in md.running() {
        let on_attached = array.members.iter().any(|m| m.starts_with("nbd"));
        if on_attached {
            match md.stop(&array.name) {
                Ok(()) => out.push(format!("stopped {} (on attached devices)", array.name)),
                Err(e) => out.push(format!("stopping {}: {e}", array.name)),
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for (r, _) in records {
        match attach::detach(&paths, &mounts, &r.device, Duration::from_secs(5)) {
            Ok(m) => out.push(m),
            Err(e) => out.push(format!("detaching {}: {e}", r.device)),
        }
    }
    out
}
