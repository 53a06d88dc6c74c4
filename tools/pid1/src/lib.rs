//! PID 1 of the appliance, and what the rest of `rescue` asks of it: the
//! start path (virtual filesystems, drivers, the read-only guard, consoles,
//! hot-plug, shutdown) in [`init`], module loading by name for the tools
//! that mount or assemble, and whether this is the appliance at all.
//!
//! It depends on the block layer and the module index only: what the
//! appliance does with disks lives in the crates above, which PID 1 reaches
//! through [`init::Hooks`].

pub mod bootlog;
pub mod cmdline;
pub mod init;
pub mod modules;
pub mod uevent;

pub use init::{console_paths, is_appliance, request, Hooks};
