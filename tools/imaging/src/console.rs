//! A job run on the console as `rescue image` (and the menu, which runs
//! the same) shows it: the plan line, progress (in place on a terminal,
//! every 10 s otherwise), errors as `rescue image: …` on stderr, the
//! summary, and the sha256sum line.

use crate::cli::NAME;
use crate::engine::Report;
use crate::job::{outcome_error, Job, JobError, JobReport, ProgressSink};
use crate::progress::{ConsoleRenderer, Progress};
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Where the run's human-readable output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleOutput {
    /// Everything on stdout.
    Text,
    /// stdout is kept for a machine-readable result the caller prints: the
    /// plan and progress go to stderr, no summary or digest line.
    StderrOnly,
}

struct Console {
    render: ConsoleRenderer<Box<dyn Write>>,
    output: ConsoleOutput,
}

impl ProgressSink for Console {
    fn progress(&mut self, p: &Progress) {
        self.render.update(p);
    }

    fn copied(&mut self, report: &Report) {
        if let Some(err) = outcome_error(&report.outcome) {
            cliconv::eprint(NAME, err);
        }
        if self.output == ConsoleOutput::Text {
            self.render.finish(report);
        }
    }
}

/// Validates, prepares and runs `job`, printing as `rescue image` does.
/// An error (a refusal, an unopenable destination, a failed hash) is
/// printed as `rescue image: …` on stderr and returned.
pub fn run(job: &Job, output: ConsoleOutput, stop: &AtomicBool) -> Result<JobReport, JobError> {
    let result = run_printing(job, output, stop);
    if let Err(e) = &result {
        cliconv::eprint(NAME, e);
    }
    result
}

fn run_printing(
    job: &Job,
    output: ConsoleOutput,
    stop: &AtomicBool,
) -> Result<JobReport, JobError> {
    let prepared = job.validate()?.prepare()?;
    let text = output == ConsoleOutput::Text;
    let tty = text && io::stdout().is_terminal();
    let out: Box<dyn Write> = if text {
        Box::new(io::stdout())
    } else {
        Box::new(io::stderr())
    };
    let plan = prepared.plan_line();
    if text {
        println!("{plan}");
    } else {
        eprintln!("{plan}");
    }
    log::info!("{plan}");
    let mut console = Console {
        render: ConsoleRenderer::new(out, tty, Duration::from_secs(10)),
        output,
    };
    let report = prepared.run(stop, &mut console)?;
    drop(console);
    if text {
        match &report.sha256 {
            Some(d) => print!("{}", crate::hash::sha256sum_line(d, &job.destination)),
            None if report.hash_requested => {
                println!("sha256: not computed, the run did not complete")
            }
            None => {}
        }
    }
    Ok(report)
}
