//! The arguments of the commands that need no libtorch (`validate`, `report`, `gate`, `status`), shared by
//! `repro` and `repro-lite` so both accept the same flags, and `repro-lite`'s own command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::grid::{Columns, MetricChoice, Rows};
use crate::report::{Format, Layout};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[arg(required = true)]
    pub suites: Vec<PathBuf>,
    /// Override a suite key (see `repro run --help`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results folders: a suite's (reports/<suite>) or a folder of suites (reports/).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "terminal")]
    pub format: Format,
    /// `targets`: each suite's table, a row per target; `grid`: methods × datasets (or metrics),
    /// as papers print them. `auto`: grid when the results span several datasets or the format is
    /// latex, else targets.
    #[arg(long, value_enum, default_value = "auto")]
    pub layout: Layout,
    /// The grid's columns: datasets, or metrics (k-NN, linear, the paper's protocol).
    #[arg(long, value_enum, default_value = "auto")]
    pub columns: Columns,
    /// The grid's rows: methods, or target ids.
    #[arg(long, value_enum, default_value = "method")]
    pub rows: Rows,
    /// The number a dataset column shows: the metric of the target's paper number (its paper's
    /// own protocol, else the standard linear probe), the standard linear probe, or k-NN.
    #[arg(long, value_enum, default_value = "paper")]
    pub metric: MetricChoice,
    /// Also write the report to FILE (atomically) and its plots (SVG and PNG) to FILE's folder
    /// under plots/; a Markdown report links them.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    pub dir: PathBuf,
    /// A results folder (reports/<suite>) to compare against, target by target.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Allowed drop below the baseline, in points (a finite number >= 0). A drop beyond it
    /// fails only when it is also significant over seeds (one-sided Welch t-test, α 0.05).
    #[arg(long, default_value = "1.0", value_parser = crate::gate::parse_tolerance)]
    pub tolerance: f64,
    /// Fail when a target is not in the baseline in the same configuration (instead of noting
    /// it), so a committed baseline cannot silently stop covering the suite.
    #[arg(long)]
    pub require_baseline: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A suite's results folder (reports/<suite>).
    pub dir: PathBuf,
}

/// repro-lite: validate suites, render reports and gate results from stored JSON, on a machine
/// without libtorch or ONNX Runtime (the training commands are in `repro`).
///
/// Exit codes: 0 all good; 1 a target failed or the gate found a regression; 2 usage, config or
/// data error.
#[derive(Debug, Parser)]
#[command(name = "repro-lite", version, about, long_about = None)]
pub struct LiteCli {
    /// Lock file pinning every dataset's sources, sizes and hashes.
    #[arg(long, global = true, default_value = "datasets.lock")]
    pub lock: PathBuf,
    #[command(subcommand)]
    pub command: LiteCommand,
}

#[derive(Debug, Subcommand)]
pub enum LiteCommand {
    /// Check suites against the schema and datasets.lock without running anything.
    Validate(ValidateArgs),
    /// Render the tables of a results folder (reports/<suite>) from its stored JSON.
    Report(ReportArgs),
    /// Turn a results folder into a CI verdict: exit 1 when a target failed, a verified paper
    /// number is missed beyond its tolerance, or a metric fell below the baseline.
    Gate(GateArgs),
    /// Show each run of a results folder: done, running (its Slurm job and epoch), failed (the
    /// record's reason), interrupted or pending; from the records, the runs' locks and `squeue`.
    Status(StatusArgs),
}
