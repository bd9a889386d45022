//! repro-lite: everything of repro that reads and writes stored JSON and YAML, with no libtorch or
//! ONNX Runtime: suites and their validation against `datasets.lock`, run records, verdicts,
//! reports (tables, plots), the CI gate, and the Slurm executor's scripts and `repro status`. The `repro` crate re-exports these modules and adds
//! training, export and evaluation; the `repro-lite` binary validates, reports and gates on a
//! machine that has neither library. Data flows suite → plan → results → verdict → report → gate.

pub mod cli;
pub mod gate;
pub mod lock;
pub mod plan;
pub mod report;
pub mod results;
pub mod slurm;
pub mod status;
pub mod suite;
pub mod util;
pub mod validate;
pub mod verdict;

/// How a command that ran ended (errors are exit 2, via `anyhow::Error`).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// A target failed or the gate found a regression: exit 1.
    Failed,
}

impl Outcome {
    /// The documented exit status: 0 all good, 1 a target failed or a gate regression.
    pub fn exit_code(result: &anyhow::Result<Outcome>) -> std::process::ExitCode {
        match result {
            Ok(Outcome::Success) => std::process::ExitCode::SUCCESS,
            Ok(Outcome::Failed) => std::process::ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::from(2)
            }
        }
    }
}
