//! ddrescue-class disk imaging for the rescue appliance.
//!
//! - GNU ddrescue's mapfile (parse, write, atomic save, extent list) is the
//!   [`ddmap`] crate, shared with vmfs's damage maps.
//! - [`engine`]: the phased copy (copy / trim / scrape / retry) over any
//!   [`blockdev::BlockDevice`], resumable from its mapfile.
//! - [`fault`]: a fault-injecting device (bad sectors, slow areas, vanishing).
//! - [`progress`]: progress snapshots and the console renderer.
//! - [`hash`]: SHA-256 of the image with bad areas as zeros.
//! - [`job`]: an imaging job: validate, prepare, run, report.
//! - [`console`]: a job run with `rescue image`'s console output.
//! - [`cli`]: `rescue image`: arguments and the --json result.

pub mod cli;
pub mod console;
pub mod engine;
pub mod fault;
pub mod hash;
pub mod job;
pub mod progress;

pub use ddmap::{Extent, Map, PhaseChar, Status};
pub use engine::{rescue, FileSink, MapStore, Options, Outcome, Report, Sink, Totals};
pub use fault::FaultDevice;
pub use job::{HashAlgorithm, Job, JobError, JobReport};
