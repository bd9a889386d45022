//! Run records on disk. A run is one target at one seed: `reports/<suite>/<target-id>/` holds it
//! (or `.../<target-id>/seed-<N>/` when the target has several seeds): `config.json` (the resolved
//! target and the run's keys), `env.json` (versions, commit, device, wall time), `metrics.json`
//! (every metric with its protocol in its name, its direction and kind), `train_log.jsonl`,
//! `encoder.onnx` and the checkpoint. `metrics.json` is written last, atomically: its presence is
//! what "finished" means. A failed run gets `failure.json` instead.
//!
//! Every record carries [`SCHEMA_VERSION`], checked on read. A folder whose records cannot be read,
//! are older or newer than this build, or belong elsewhere is reported as a [`RecordProblem`] by its
//! path and left where it is; one bad folder never stops the others from being read. Serde only:
//! report and gate read these without libtorch.

pub mod identity;
#[cfg(test)]
pub mod testing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::plan::Target;
pub use identity::{BuildInfo, Keys};

/// Version 2: run identity (keys), seeds, metric kinds and protocols. Version 1 records (written
/// before it) are reported as older and left in place.
pub const SCHEMA_VERSION: u32 = 2;

/// Folder (under `reports/<suite>/`) that runs moved out of the way go to; never read as results.
pub const SUPERSEDED: &str = ".superseded";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub schema_version: u32,
    pub suite: String,
    pub suite_version: u32,
    /// Position of the target in its suite (tables keep the suite's order).
    pub position: usize,
    pub seed: u64,
    pub keys: Keys,
    /// The resolved target. `description` and `expected` may be rewritten in place: they are not
    /// part of the run's identity.
    pub target: Target,
}

/// What a metric measures: only `Eval` accuracies are compared with papers or baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// The evaluation protocol's accuracy (k-NN, linear probes).
    Eval,
    /// The per-epoch held-out k-NN of training: a progress signal, never gated.
    Monitor,
    /// Throughput: machine-dependent, never gated.
    Speed,
    /// ONNX-vs-libtorch agreement of the export.
    Parity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub value: f64,
    pub higher_is_better: bool,
    pub unit: String,
    pub kind: MetricKind,
    /// Every parameter of the protocol that produced the value (also spelled out in the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    pub schema_version: u32,
    /// The run these numbers belong to (equals `config.json`'s `keys.run`).
    pub run_key: String,
    pub metrics: BTreeMap<String, Metric>,
}

/// The build and the machine: what `repro env` prints and every `env.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub repro_version: String,
    pub git_commit: Option<String>,
    /// The build's sources differed from `git_commit` (uncommitted changes).
    pub git_dirty: Option<bool>,
    pub libtorch_version: Option<String>,
    /// The folder libtorch was loaded from.
    pub libtorch_dir: Option<String>,
    /// CUDA devices libtorch sees (0 without a GPU).
    pub cuda_devices: i64,
    pub cudnn: bool,
    /// The first GPU's name (`nvidia-smi`), when CUDA is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// Why CUDA is not available (None when it is).
    pub cuda_absent: Option<String>,
    pub onnxruntime_version: Option<String>,
    /// Execution providers the loaded ONNX Runtime library offers.
    pub onnxruntime_providers: Vec<String>,
    pub threads: i32,
    /// CPU model and the vector extensions libtorch's kernels may use (results differ between them).
    pub cpu: String,
}

impl MachineRecord {
    /// The build that recorded this.
    pub fn build(&self) -> BuildInfo {
        BuildInfo { version: self.repro_version.clone(), git_commit: self.git_commit.clone(), git_dirty: self.git_dirty }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvRecord {
    pub schema_version: u32,
    pub run_key: String,
    #[serde(flatten)]
    pub machine: MachineRecord,
    /// The device the run trained on (`Cpu`, `Cuda(0)`), and why not CUDA when `--device auto` fell back.
    pub device: String,
    pub device_note: Option<String>,
    /// Training precision: `fp32`, or `bf16 autocast` (CUDA; losses keep their own float64).
    pub precision: String,
    /// `train.deterministic`: deterministic algorithms, no cuDNN benchmark mode.
    pub deterministic: bool,
    /// ONNX Runtime's execution provider for the evaluation.
    pub eval_provider: String,
    pub seed: u64,
    pub train_s: f64,
    pub eval_s: f64,
    pub wall_s: f64,
    pub train_images_per_s: f64,
    /// Images each pre-training epoch draws from (after subsetting; labelled plus unlabeled).
    pub train_images: usize,
    pub onnx_parity_rel_diff: Option<f64>,
    pub finished_at: String,
    /// Restarts from a checkpoint at a lower rate after a divergence (`train.on_divergence`): the
    /// run finished, but not at the rate its configuration names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub divergence_restarts: Vec<Restart>,
}

impl EnvRecord {
    /// Whether another build made this run (another commit or, without commits, another version).
    pub fn is_stale(&self, build: &BuildInfo) -> bool {
        let m = &self.machine;
        match (&m.git_commit, &build.git_commit) {
            (Some(a), Some(b)) => a != b,
            _ => m.repro_version != build.version,
        }
    }

    /// `2c08976` or `2c08976-dirty` (`v0.1.0` without a commit).
    pub fn commit_label(&self) -> String {
        self.build().label()
    }

    /// The build that made this run.
    pub fn build(&self) -> BuildInfo {
        self.machine.build()
    }
}

/// Why a run has no metrics: `failure.json`. Fields after `error` were added with issue 14; records
/// written before read as `kind: error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub schema_version: u32,
    pub run_key: String,
    /// What went wrong and what to try, in words.
    pub error: String,
    #[serde(default)]
    pub kind: FailureKind,
    /// How the run's process ended when it did not end by itself (`killed by signal 11 (SIGSEGV)`,
    /// `exit status 134`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// The last lines the run's process printed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// The first non-finite loss or gradient, for `kind: diverged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Divergence>,
}

impl FailureRecord {
    pub fn new(run_key: &str, kind: FailureKind, error: String) -> Self {
        Self { schema_version: SCHEMA_VERSION, run_key: run_key.to_owned(), error, kind, exit: None, log_tail: Vec::new(), divergence: None }
    }

    /// `failed`, `diverged`, `out of memory` or `crashed`, then the error's first sentence (at most
    /// 120 characters): a table's status cell. The whole error stays in the record.
    pub fn summary(&self) -> String {
        let line = self.said().lines().next().unwrap_or("");
        let sentence = line.split_once(". ").map_or(line, |(s, _)| s).trim_end_matches('.');
        let word = self.kind.word();
        let mut short: String = sentence.chars().take(120).collect();
        if short.len() < sentence.len() {
            short.push('…');
        }
        format!("{word}: {short}")
    }

    /// The kind's word, then the whole error: the gate's line.
    pub fn detail(&self) -> String {
        format!("{}: {}", self.kind.word(), self.said())
    }

    /// The error without a leading repeat of the kind's word.
    fn said(&self) -> &str {
        self.error.strip_prefix(self.kind.word()).map_or(self.error.as_str(), |s| s.trim_start_matches([':', ' ']))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// An error the run reported (configuration it could not use, a file it could not write, ...).
    #[default]
    Error,
    /// The loss or a gradient became NaN or infinite: a verdict on the configuration, never a pass.
    Diverged,
    /// CUDA or host memory ran out.
    OutOfMemory,
    /// The run's process died: a signal (segfault, abort, the kernel's OOM killer) or an exit
    /// without a record.
    Crashed,
}

impl FailureKind {
    pub fn word(self) -> &'static str {
        match self {
            FailureKind::Error => "failed",
            FailureKind::Diverged => "diverged",
            FailureKind::OutOfMemory => "out of memory",
            FailureKind::Crashed => "crashed",
        }
    }
}

/// Where training first met a non-finite value. Losses are JSON numbers when finite and the strings
/// `NaN`, `inf`, `-inf` otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// 1-based epoch and step within it; `step` counts from the start of training.
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub step: usize,
    /// `loss` (the objective was non-finite), `gradient` (the loss was finite, a gradient was not)
    /// or `parameters` (both finite, but the epoch's last step left a parameter non-finite).
    pub what: String,
    pub loss: serde_json::Value,
    pub terms: BTreeMap<String, serde_json::Value>,
    pub lr: f64,
    /// Restarts from the last checkpoint at a lower rate before this one (`train.on_divergence`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<Restart>,
}

/// One restart of `train.on_divergence: {action: restart}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restart {
    /// The divergence's epoch and step, and the epoch training went back to.
    pub epoch: usize,
    pub step: usize,
    pub from_epoch: usize,
    /// The learning rate multiplier from then on (product of the factors so far).
    pub lr_scale: f64,
}

/// A float as JSON: a number when finite, else `NaN`, `inf` or `-inf` as a string.
pub fn json_float(x: f64) -> serde_json::Value {
    if x.is_finite() {
        serde_json::json!(x)
    } else {
        serde_json::Value::String(if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        })
    }
}

/// The files a run writes in its folder.
pub const RUN_FILES: [&str; 8] = ["config.json", "metrics.json", "env.json", "failure.json", "train_log.jsonl", "encoder.onnx", "checkpoint.json", "checkpoint.safetensors"];

/// One run's folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// `out/<suite>/<id>/`, or `out/<suite>/<id>/seed-<N>/` for a target with several seeds.
    pub fn new(out: &Path, suite: &str, target: &Target, seed: u64) -> Self {
        let base = out.join(suite).join(&target.id);
        Self(if target.train.seeds.len() > 1 { base.join(format!("seed-{seed}")) } else { base })
    }

    /// Where the same run would live with the other layout (one seed ↔ several).
    pub fn other_layout(out: &Path, suite: &str, target: &Target, seed: u64) -> Self {
        let base = out.join(suite).join(&target.id);
        Self(if target.train.seeds.len() > 1 { base } else { base.join(format!("seed-{seed}")) })
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.0).with_context(|| format!("cannot create {}", self.0.display()))
    }

    /// Whether any run file is here.
    pub fn holds_files(&self) -> bool {
        RUN_FILES.iter().any(|f| self.path(f).exists())
    }

    /// Reads the run here: `Ok(None)` when the folder holds no run files.
    pub fn read(&self) -> std::result::Result<Option<StoredRun>, RecordProblem> {
        if !self.holds_files() {
            return Ok(None);
        }
        let problem = |kind, message: String| RecordProblem { path: self.0.clone(), kind, message };
        let config_path = self.path("config.json");
        if !config_path.exists() {
            return Err(problem(ProblemKind::Foreign, "run files without a config.json".into()));
        }
        let config: ConfigRecord = read_record(&config_path).map_err(|(kind, m)| problem(kind, m))?;
        let key = &config.keys.run;
        let metrics: Option<MetricsRecord> = read_opt(&self.path("metrics.json")).map_err(|(kind, m)| problem(kind, m))?;
        let env: Option<EnvRecord> = read_opt(&self.path("env.json")).map_err(|(kind, m)| problem(kind, m))?;
        let failure: Option<FailureRecord> = read_opt(&self.path("failure.json")).map_err(|(kind, m)| problem(kind, m))?;
        for (file, k) in
            [("metrics.json", metrics.as_ref().map(|m| &m.run_key)), ("env.json", env.as_ref().map(|e| &e.run_key)), ("failure.json", failure.as_ref().map(|f| &f.run_key))]
        {
            if let Some(k) = k.filter(|k| *k != key) {
                return Err(problem(ProblemKind::Foreign, format!("{file} belongs to run {} but config.json to run {}", short(k), short(key))));
            }
        }
        if metrics.is_some() && env.is_none() {
            return Err(problem(ProblemKind::Unreadable, "metrics.json without env.json".into()));
        }
        Ok(Some(StoredRun { dir: self.0.clone(), config, metrics, env, failure }))
    }

    /// Moves this folder's run files to `<suite dir>/.superseded/<name>/` (never deletes them);
    /// `keep` names files left in place. Returns the new folder.
    pub fn move_aside(&self, suite_dir: &Path, keep: &[&str]) -> Result<PathBuf> {
        let rel = self.0.strip_prefix(suite_dir).unwrap_or(&self.0);
        let name = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join(".");
        let stamp = crate::util::unix_now();
        let mut dest = suite_dir.join(SUPERSEDED).join(format!("{name}.{stamp}"));
        let mut i = 1;
        while dest.exists() {
            dest = suite_dir.join(SUPERSEDED).join(format!("{name}.{stamp}.{i}"));
            i += 1;
        }
        std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
        for entry in std::fs::read_dir(&self.0).with_context(|| format!("cannot read {}", self.0.display()))? {
            let p = entry?.path();
            let file = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if p.is_file() && !keep.contains(&file.as_str()) {
                std::fs::rename(&p, dest.join(&file)).with_context(|| format!("cannot move {} to {}", p.display(), dest.display()))?;
            }
        }
        Ok(dest)
    }

    /// Moves this folder's files (not its sub-folders) into `to` (which must hold no run).
    pub fn relocate(&self, to: &RunDir) -> Result<()> {
        to.create()?;
        for entry in std::fs::read_dir(&self.0).with_context(|| format!("cannot read {}", self.0.display()))? {
            let p = entry?.path();
            if p.is_file() {
                let dest = to.0.join(p.file_name().unwrap_or_default());
                std::fs::rename(&p, &dest).with_context(|| format!("cannot move {} to {}", p.display(), dest.display()))?;
            }
        }
        Ok(())
    }
}

/// First 12 hex digits of a key, for messages.
pub fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

/// Why a folder's records were not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Cannot be read or is not valid JSON.
    Unreadable,
    /// Written by an earlier repro with an older record schema.
    Older,
    /// Written by a newer repro.
    Newer,
    /// Not a repro run record, or one that belongs to another run, target or suite.
    Foreign,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordProblem {
    pub path: PathBuf,
    pub kind: ProblemKind,
    pub message: String,
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::Older => "older record",
            ProblemKind::Newer => "newer record",
            ProblemKind::Foreign => "foreign record",
        };
        write!(f, "{}: {kind}: {}; left in place", self.path.display(), self.message)
    }
}

type ReadError = (ProblemKind, String);

/// Reads a record, checking its schema version before its fields.
fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> std::result::Result<T, ReadError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("record").to_owned();
    let text = std::fs::read_to_string(path).map_err(|e| (ProblemKind::Unreadable, format!("cannot read {name}: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| (ProblemKind::Unreadable, format!("{name} is not valid JSON: {e}")))?;
    match value.get("schema_version").and_then(serde_json::Value::as_u64) {
        None => return Err((ProblemKind::Foreign, format!("{name} has no schema_version: not written by repro"))),
        Some(v) if v < u64::from(SCHEMA_VERSION) => {
            return Err((ProblemKind::Older, format!("{name} has schema version {v}, this repro reads {SCHEMA_VERSION} (see the README's migration notes)")))
        }
        Some(v) if v > u64::from(SCHEMA_VERSION) => {
            return Err((ProblemKind::Newer, format!("{name} has schema version {v}, newer than this repro's {SCHEMA_VERSION}; use a newer repro")))
        }
        Some(_) => {}
    }
    serde_json::from_value(value).map_err(|e| (ProblemKind::Foreign, format!("{name} is not a run record of this schema: {e}")))
}

fn read_opt<T: serde::de::DeserializeOwned>(path: &Path) -> std::result::Result<Option<T>, ReadError> {
    if path.exists() {
        read_record(path).map(Some)
    } else {
        Ok(None)
    }
}

/// One line of `train_log.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub terms: std::collections::BTreeMap<String, f64>,
    pub lr: f64,
    pub images_per_s: f64,
    /// k-NN top-1 (%) of held-out training images against a bank of training images.
    pub monitor_knn_top1: Option<f64>,
    pub epoch_s: f64,
}

/// A run as read back from disk.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub dir: PathBuf,
    pub config: ConfigRecord,
    pub metrics: Option<MetricsRecord>,
    pub env: Option<EnvRecord>,
    pub failure: Option<FailureRecord>,
}

impl StoredRun {
    pub fn finished(&self) -> bool {
        self.metrics.is_some()
    }

    pub fn value(&self, metric: &str) -> Option<&Metric> {
        self.metrics.as_ref().and_then(|m| m.metrics.get(metric))
    }
}

/// The readable runs of a results folder and the folders that could not be used.
#[derive(Debug, Clone, Default)]
pub struct SuiteRecords {
    pub runs: Vec<StoredRun>,
    pub problems: Vec<RecordProblem>,
}

/// The lock a process holds while it runs target `id` at `seed` in the suite folder `suite_dir`
/// (outside the run's folder, which may be moved aside).
pub fn run_lock(suite_dir: &Path, id: &str, seed: u64) -> PathBuf {
    suite_dir.join(".locks").join(format!("{id}.seed-{seed}.lock"))
}

/// Every run under `dir` (a suite folder `reports/<suite>`): `<id>/` and `<id>/seed-<N>/` folders,
/// in suite order. Hidden folders (`.superseded`) are skipped.
pub fn load_suite_dir(dir: &Path) -> Result<SuiteRecords> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read results folder {}", dir.display()))?;
    let mut out = SuiteRecords::default();
    let suite = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    for target_dir in sorted_subdirs(entries) {
        let id = target_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let mut dirs = vec![RunDir(target_dir.clone())];
        if let Ok(sub) = std::fs::read_dir(&target_dir) {
            dirs.extend(sorted_subdirs(sub).into_iter().filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("seed-"))).map(RunDir));
        }
        for rd in dirs {
            match rd.read() {
                Ok(None) => {}
                Ok(Some(run)) => {
                    let c = &run.config;
                    if c.target.id != id || c.suite != suite {
                        out.problems.push(RecordProblem {
                            path: rd.0.clone(),
                            kind: ProblemKind::Foreign,
                            message: format!("config.json is suite {:?} target {:?}, found in {suite}/{id}", c.suite, c.target.id),
                        });
                    } else {
                        out.runs.push(run);
                    }
                }
                Err(p) => out.problems.push(p),
            }
        }
    }
    out.runs.sort_by(|a, b| (a.config.position, &a.config.target.id, a.config.seed).cmp(&(b.config.position, &b.config.target.id, b.config.seed)));
    if out.runs.is_empty() && out.problems.is_empty() {
        anyhow::bail!("{} holds no run records (expected <target>/config.json folders, as `repro run` writes under reports/<suite>/)", dir.display());
    }
    Ok(out)
}

/// Whether `dir` is a suite's results folder: some subfolder holds a `config.json`, directly or in
/// a `seed-<N>/` folder.
fn is_suite_dir(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    sorted_subdirs(entries).iter().any(|t| {
        t.join("config.json").is_file()
            || std::fs::read_dir(t)
                .map(sorted_subdirs)
                .unwrap_or_default()
                .iter()
                .any(|s| s.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("seed-")) && s.join("config.json").is_file())
    })
}

/// The suites under each of `dirs`: a suite's folder (`reports/<suite>`) is itself, a root
/// (`reports/`) is every suite folder in it; (suite name, its records), in the order given.
pub fn load_results(dirs: &[PathBuf]) -> Result<Vec<(String, SuiteRecords)>> {
    let mut out = Vec::new();
    for d in dirs {
        let suites = if is_suite_dir(d) {
            vec![d.clone()]
        } else {
            let entries = std::fs::read_dir(d).with_context(|| format!("cannot read results folder {}", d.display()))?;
            let found: Vec<PathBuf> = sorted_subdirs(entries).into_iter().filter(|s| is_suite_dir(s)).collect();
            if found.is_empty() {
                anyhow::bail!("{} holds no run records: expected a suite's folder (reports/<suite>, with <target>/config.json) or a folder of them (reports/)", d.display());
            }
            found
        };
        for s in suites {
            let name = s.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            out.push((name, load_suite_dir(&s)?));
        }
    }
    Ok(out)
}

fn sorted_subdirs(entries: std::fs::ReadDir) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir() && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))).collect();
    paths.sort();
    paths
}

/// Runs grouped by target: same target id and same configuration (`keys.config`, all seeds).
#[derive(Debug, Clone)]
pub struct TargetRuns<'a> {
    pub id: String,
    pub config_key: String,
    pub runs: Vec<&'a StoredRun>,
}

impl TargetRuns<'_> {
    /// The newest description of the target (every seed's record holds one).
    pub fn target(&self) -> &Target {
        &self.runs[0].config.target
    }

    /// (seed, value) of a metric over the finished runs.
    pub fn values(&self, metric: &str) -> Vec<(u64, f64)> {
        self.runs.iter().filter_map(|r| r.value(metric).map(|m| (r.config.seed, m.value))).collect()
    }
}

/// Groups runs by (target id, configuration), keeping their order.
pub fn group(runs: &[StoredRun]) -> Vec<TargetRuns<'_>> {
    let mut groups: Vec<TargetRuns<'_>> = Vec::new();
    for r in runs {
        let (id, key) = (&r.config.target.id, &r.config.keys.config);
        match groups.iter_mut().find(|g| &g.id == id && &g.config_key == key) {
            Some(g) => g.runs.push(r),
            None => groups.push(TargetRuns { id: id.clone(), config_key: key.clone(), runs: vec![r] }),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_records_are_classified_and_named() {
        let d = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("a/config.json", "{not json");
        write("b/config.json", r#"{"schema_version": 1, "suite": "s", "config_hash": "x"}"#);
        write("c/config.json", r#"{"schema_version": 9}"#);
        write("d/config.json", r#"{"name": "somebody else's"}"#);
        write("e/metrics.json", r#"{"schema_version": 2}"#);
        write("f/notes.txt", "not a run");
        let r = load_suite_dir(d.path()).unwrap();
        assert!(r.runs.is_empty());
        let kinds: Vec<(String, ProblemKind)> = r.problems.iter().map(|p| (p.path.file_name().unwrap().to_string_lossy().into_owned(), p.kind)).collect();
        assert_eq!(
            kinds,
            [("a", ProblemKind::Unreadable), ("b", ProblemKind::Older), ("c", ProblemKind::Newer), ("d", ProblemKind::Foreign), ("e", ProblemKind::Foreign)]
                .map(|(a, b)| (a.to_owned(), b))
        );
        let text = r.problems[1].to_string();
        assert!(text.contains("/b: older record: config.json has schema version 1") && text.ends_with("left in place"), "{text}");
        // Nothing was moved or deleted.
        assert!(d.path().join("a/config.json").exists() && d.path().join("b/config.json").exists());
    }

    #[test]
    fn move_aside_keeps_what_is_asked_and_never_deletes() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir(d.path().join("t").join("seed-1"));
        run.create().unwrap();
        for f in ["config.json", "checkpoint.safetensors", "train_log.jsonl"] {
            std::fs::write(run.path(f), f).unwrap();
        }
        let dest = run.move_aside(d.path(), &["checkpoint.safetensors"]).unwrap();
        assert!(dest.starts_with(d.path().join(SUPERSEDED)) && dest.file_name().unwrap().to_string_lossy().starts_with("t.seed-1."), "{dest:?}");
        assert_eq!(std::fs::read_to_string(dest.join("config.json")).unwrap(), "config.json");
        assert!(dest.join("train_log.jsonl").exists() && !dest.join("checkpoint.safetensors").exists());
        assert!(run.path("checkpoint.safetensors").exists() && !run.path("config.json").exists());
    }
}
