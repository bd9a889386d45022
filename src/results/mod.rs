//! Run records on disk: `reports/<suite>/<target-id>/` holds `config.json` (the resolved target),
//! `env.json` (versions, device, seeds, wall time), `metrics.json` (every metric with its parameters
//! in its name and its direction), `train_log.jsonl`, `encoder.onnx` and the checkpoint.
//! `metrics.json` is written last, atomically: its presence is what "finished" means. A failed
//! target gets `failure.json` instead. Serde only: report and gate read these without libtorch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::plan::Target;
use crate::util;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub schema_version: u32,
    pub suite: String,
    pub suite_version: u32,
    /// sha256 of the canonical JSON of `target`: a rerun with another config does not reuse results.
    pub config_hash: String,
    pub target: Target,
}

impl ConfigRecord {
    pub fn new(suite: &str, suite_version: u32, target: &Target) -> Result<Self> {
        let canonical = serde_json::to_vec(target)?;
        Ok(Self {
            schema_version: SCHEMA_VERSION,
            suite: suite.to_owned(),
            suite_version,
            config_hash: util::sha256_hex(&canonical),
            target: target.clone(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub value: f64,
    pub higher_is_better: bool,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    pub schema_version: u32,
    pub metrics: BTreeMap<String, Metric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvRecord {
    pub repro_version: String,
    pub git_commit: Option<String>,
    pub libtorch_version: Option<String>,
    pub onnxruntime_version: Option<String>,
    pub device: String,
    pub seed: u64,
    pub threads: i32,
    pub train_s: f64,
    pub eval_s: f64,
    pub wall_s: f64,
    pub train_images_per_s: f64,
    /// Images each pre-training epoch draws from (after subsetting; labelled plus unlabeled).
    #[serde(default)]
    pub train_images: usize,
    pub onnx_parity_rel_diff: Option<f64>,
    pub finished_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub error: String,
}

/// One target's folder.
#[derive(Debug, Clone)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn new(out: &Path, suite: &str, target: &str) -> Self {
        Self(out.join(suite).join(target))
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.0).with_context(|| format!("cannot create {}", self.0.display()))
    }
    pub fn config(&self) -> Result<Option<ConfigRecord>> {
        read_opt(&self.path("config.json"))
    }
    pub fn metrics(&self) -> Result<Option<MetricsRecord>> {
        read_opt(&self.path("metrics.json"))
    }
    pub fn env(&self) -> Result<Option<EnvRecord>> {
        read_opt(&self.path("env.json"))
    }
    pub fn failure(&self) -> Result<Option<FailureRecord>> {
        read_opt(&self.path("failure.json"))
    }
}

fn read_opt<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if path.exists() {
        util::read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// A finished or failed target as read back from disk.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub config: ConfigRecord,
    pub metrics: Option<MetricsRecord>,
    pub env: Option<EnvRecord>,
    pub failure: Option<FailureRecord>,
}

/// Every target folder under `dir` (a suite folder `reports/<suite>`), sorted by folder name.
pub fn load_suite_dir(dir: &Path) -> Result<Vec<StoredRun>> {
    let mut runs = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read results folder {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    paths.sort();
    for p in paths {
        let rd = RunDir(p);
        let Some(config) = rd.config()? else { continue };
        runs.push(StoredRun { config, metrics: rd.metrics()?, env: rd.env()?, failure: rd.failure()? });
    }
    if runs.is_empty() {
        anyhow::bail!("{} holds no run records (expected <target>/config.json folders, as `repro run` writes under reports/<suite>/)", dir.display());
    }
    Ok(runs)
}
