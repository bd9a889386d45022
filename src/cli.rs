//! Command-line interface (clap derive). No logic here: `app` acts on these structs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use repro_lite::cli::{GateArgs, ReportArgs, StatusArgs, ValidateArgs};

/// Reproduce self-supervised-learning papers: train with libtorch, export to ONNX, evaluate through
/// ONNX Runtime with one k-NN and linear-probe protocol, and gate the numbers in CI.
///
/// Exit codes: 0 all good; 1 a target failed or the gate found a regression; 2 usage, config, data
/// or infrastructure error.
#[derive(Debug, Parser)]
#[command(name = "repro", version, about, long_about = None)]
pub struct Cli {
    /// Lock file pinning every dataset's sources, sizes and hashes.
    #[arg(long, global = true, default_value = "datasets.lock")]
    pub lock: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// CUDA when libtorch finds a GPU, else CPU.
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train, export and evaluate every target of a suite (or the named ones), then print the table.
    /// Finished targets are skipped and interrupted ones resume from their last epoch.
    Run(RunArgs),
    /// Check suites against the schema and datasets.lock without running anything.
    Validate(ValidateArgs),
    /// Download datasets into the cache ($REPRO_DATA_DIR) and verify them. Manual data (ImageNet)
    /// is not downloaded: the message says where to put it.
    Fetch {
        #[arg(required = true)]
        names: Vec<String>,
        /// Fetch again even when a verified copy is cached.
        #[arg(long)]
        force: bool,
        /// Also extract and decode into the cache, so a later `run` starts at once.
        #[arg(long)]
        decode: bool,
    },
    /// Re-hash cached dataset files (all datasets in the lock when none is named).
    Verify { names: Vec<String> },
    /// Write a trained checkpoint's encoder as ONNX (reads config.json beside the checkpoint).
    Export {
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluate any single-input encoder ONNX file with k-NN and a linear probe.
    Eval(EvalArgs),
    /// Render the tables of a results folder (reports/<suite>) from its stored JSON.
    Report(ReportArgs),
    /// Turn a results folder into a CI verdict: exit 1 when a target failed, a verified paper
    /// number is missed beyond its tolerance, or a metric fell below the baseline.
    Gate(GateArgs),
    /// Show each run of a results folder: done, running (its Slurm job and epoch), failed (the
    /// record's reason), interrupted or pending; from the records, the runs' locks and `squeue`.
    Status(StatusArgs),
    /// Evaluate one method's objective on given embeddings and print it as JSON.
    Loss(LossArgs),
    /// Time one suite target on this machine, stage by stage, on synthetic data of its shapes:
    /// training views, training steps (and MFU on a GPU), ONNX Runtime embedding, k-NN.
    Bench(BenchArgs),
    /// Estimate a suite before running it: per target, training FLOPs per image, images per
    /// epoch, total FLOPs, time here (from a short measured calibration) and on a GPU class, memory,
    /// and the targets that will not fit; the suite's total.
    Plan(PlanArgs),
    /// Print the build, libtorch and whether CUDA is usable (and why not), ONNX Runtime and its
    /// execution providers, threads and CPU features: what every env.json records.
    Env {
        #[arg(long)]
        json: bool,
    },
    /// List the methods a suite may name, with their paper, reference code, `method_params`
    /// (and defaults) and known deviations: the README's method table, as Markdown.
    Methods,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub suite: PathBuf,
    /// Run only these target ids (repeatable).
    #[arg(long = "target", value_name = "ID")]
    pub targets: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Results root; records go to OUT/<suite>/<target>/.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Override a suite key for every target (`train.epochs=2`, `train.seeds=[0,1,2]`) or one
    /// (`targets.ID.train.lr=0.1`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run again finished runs made by another build (another commit); their records are moved to
    /// OUT/<suite>/.superseded/, not deleted.
    #[arg(long)]
    pub rerun_stale: bool,
    /// Move unreadable, older-schema or foreign records that are in a run's way to
    /// OUT/<suite>/.superseded/ and run it (without this flag such a run is refused and left alone).
    #[arg(long)]
    pub move_aside: bool,
    /// Run only these seeds of the selected targets (repeatable; each must be in train.seeds).
    #[arg(long = "seed", value_name = "N")]
    pub seeds: Vec<u64>,
    /// `process` (default): each run in a child process of its own, so that a crash, an abort or
    /// an out-of-memory kill fails that run alone and device memory is freed between runs;
    /// `none`: every run in this process (for a debugger).
    #[arg(long, value_enum, default_value = "process")]
    pub isolation: Isolation,
    /// Internal: this process is the child that `--isolation process` starts for one run (no
    /// folder lock, which the parent holds; no tables; exit 1 on any failure).
    #[arg(long, hide = true)]
    pub child: bool,
    /// `local`: run here, one run after another. `slurm`: write a job array (one task per run)
    /// and a dependent job for the tables and gate to OUT/<suite>/slurm/, submit them with
    /// sbatch, and return (`repro status OUT/<suite>` follows them).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
    #[command(flatten)]
    pub slurm: SlurmArgs,
    /// Internal: this process is one task of a Slurm job array: it locks its run only (the other
    /// tasks share the results folder) and writes no tables.
    #[arg(long, hide = true)]
    pub array_task: bool,
    /// Internal: only render the tables of the selected runs from their records (the Slurm
    /// array's dependent job).
    #[arg(long, hide = true)]
    pub tables_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    Local,
    Slurm,
}

/// `sbatch` options for `--executor slurm` (unset: the cluster's defaults).
#[derive(Debug, Args)]
#[command(next_help_heading = "Slurm (with --executor slurm)")]
pub struct SlurmArgs {
    /// The partition (queue) the runs wait in.
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// The account the runs are charged to.
    #[arg(long, value_name = "A")]
    pub account: Option<String>,
    /// GPUs for each run (sets CUDA_VISIBLE_DEVICES there).
    #[arg(long, value_name = "N")]
    pub gpus_per_task: Option<u32>,
    /// CPU cores for each run (data loading, evaluation).
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// Memory for each run, as sbatch takes it (`32G`).
    #[arg(long, value_name = "M")]
    pub mem: Option<String>,
    /// Time limit of each run, as sbatch takes it (`1-00:00:00`). A run near it stops at its
    /// last checkpoint and requeues itself (see --signal-grace).
    #[arg(long, value_name = "T")]
    pub time: Option<String>,
    /// At most K runs at once.
    #[arg(long, value_name = "K")]
    pub array_limit: Option<u32>,
    /// Any other sbatch option, as written (`--sbatch-arg=--qos=high`; repeatable).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Seconds before the time limit at which a run is stopped and its task requeued.
    #[arg(long, value_name = "S", default_value = "120")]
    pub signal_grace: u32,
    /// Write the scripts without submitting them.
    #[arg(long)]
    pub dry_run: bool,
}

impl SlurmArgs {
    /// The first Slurm option given, by its flag (they mean nothing to the local executor).
    pub fn first_given(&self) -> Option<&'static str> {
        [
            (self.partition.is_some(), "--partition"),
            (self.account.is_some(), "--account"),
            (self.gpus_per_task.is_some(), "--gpus-per-task"),
            (self.cpus_per_task.is_some(), "--cpus-per-task"),
            (self.mem.is_some(), "--mem"),
            (self.time.is_some(), "--time"),
            (self.array_limit.is_some(), "--array-limit"),
            (!self.sbatch_args.is_empty(), "--sbatch-arg"),
            (self.signal_grace != 120, "--signal-grace"),
            (self.dry_run, "--dry-run"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    Process,
    None,
}

impl DeviceArg {
    /// The flag's spelling, for a child's command line.
    pub fn word(self) -> &'static str {
        match self {
            DeviceArg::Auto => "auto",
            DeviceArg::Cpu => "cpu",
            DeviceArg::Cuda => "cuda",
        }
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    pub suite: PathBuf,
    /// Estimate only these target ids (repeatable).
    #[arg(long = "target", value_name = "ID")]
    pub targets: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Override a suite key (see `repro run --help`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The GPU class to estimate for: H200, H100, A100, L40S, L4, A10 or V100.
    #[arg(long, default_value = "H100")]
    pub gpu: String,
    /// The model-FLOP utilisation assumed on that GPU (a fraction; `repro bench` measures it).
    #[arg(long, default_value_t = 0.3)]
    pub mfu: f64,
    /// Measured calibration steps per target after two warm-up steps (0: counts only, no timing).
    #[arg(long, default_value_t = 2)]
    pub calibrate_steps: usize,
    /// Print the estimate as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    pub suite: PathBuf,
    /// The target to time (needed when the suite has more than one).
    #[arg(long = "target", value_name = "ID")]
    pub target: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Override a suite key (see `repro run --help`), e.g. `train.batch_size=512`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Measured training steps (after two warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Images embedded through ONNX Runtime.
    #[arg(long, default_value_t = 4096)]
    pub embed_images: usize,
    /// k-NN bank rows (CIFAR's training split by default).
    #[arg(long, default_value_t = 50_000)]
    pub knn_bank: usize,
    /// k-NN query rows (CIFAR's test split by default).
    #[arg(long, default_value_t = 10_000)]
    pub knn_queries: usize,
    /// The chip's dense peak in TFLOP/s for the MFU (default: from the GPU's name; none on CPU).
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Also train this many steps on the CPU and on the device from the same weights and views,
    /// and print both losses (fp32, deterministic algorithms).
    #[arg(long, default_value_t = 0)]
    pub trace_steps: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    pub model: PathBuf,
    /// Dataset name in the lock file.
    #[arg(long)]
    pub dataset: String,
    /// Write train/test embeddings and labels as .npy files here.
    #[arg(long)]
    pub save_embeddings: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Images per ONNX Runtime call.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 20)]
    pub knn_k: usize,
    #[arg(long, default_value_t = 0.07)]
    pub knn_temperature: f64,
    #[arg(long, value_enum, default_value = "cosine")]
    pub knn_distance: DistanceArg,
    /// Use the first N training images as the k-NN bank (default: all).
    #[arg(long)]
    pub knn_bank_subset: Option<usize>,
    #[arg(long, default_value_t = 30)]
    pub linear_epochs: usize,
    #[arg(long, default_value_t = 256)]
    pub linear_batch_size: usize,
    #[arg(long, default_value_t = 0.1)]
    pub linear_lr: f64,
    #[arg(long, value_enum, default_value = "cosine-per-step")]
    pub linear_schedule: ScheduleArg,
    /// End of the cosine.
    #[arg(long, default_value_t = 0.0)]
    pub linear_min_lr: f64,
    /// Standardise features with the training split's mean and std.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub linear_standardize: bool,
    #[arg(long, default_value_t = 0.9)]
    pub linear_momentum: f64,
    #[arg(long, default_value_t = 0.0)]
    pub linear_weight_decay: f64,
    /// Fit the probe on the first N training images only.
    #[arg(long)]
    pub linear_train_subset: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// Cosine updated every mini-batch.
    CosinePerStep,
    /// Cosine updated once per epoch (PyTorch `CosineAnnealingLR`).
    CosinePerEpoch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DistanceArg {
    Cosine,
    Euclidean,
}

#[derive(Debug, Args)]
pub struct LossArgs {
    /// Method name (corinfomax).
    pub method: String,
    /// Embeddings of view 1: float32 or float64 .npy, shape N×D.
    #[arg(long)]
    pub z1: PathBuf,
    /// Embeddings of view 2, same shape (not taken by `umae` and `mmae`, whose regulariser is a
    /// function of one set of cls features; `mae` reads predictions as z1 and targets as z2).
    #[arg(long)]
    pub z2: Option<PathBuf>,
    /// Method hyper-parameter, e.g. `alpha=100` (defaults: the paper's CIFAR-10 run).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print JSON (the only output format).
    #[arg(long)]
    pub json: bool,
}
