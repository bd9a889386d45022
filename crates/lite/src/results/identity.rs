//! Run identity: what a run's results depend on, hashed, and which build made them.
//!
//! A run's keys hash the canonical JSON (keys sorted, shortest float forms) of the resolved blocks
//! that change the computation, never the target's `id`, `description` or `expected:` entries:
//! - `train`: method, dataset and the hash of its lock entry, backbone, data, augment, train (with
//!   this run's seed): what the checkpoint depends on;
//! - `run`: `train` plus the eval and export blocks: what the metrics depend on;
//! - `config`: `run` without the seed: the same target configuration over all its seeds (tables
//!   group seeds by it, and baselines are matched by it).
//!
//! Optional fields added to these blocks later must skip serialising when absent, so that records
//! made before them keep their keys.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::plan::Target;
use crate::util;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    pub config: String,
    pub train: String,
    pub run: String,
    /// sha256 of the dataset's lock entry (files and decoding), part of every key.
    pub dataset: String,
}

fn hash(v: &Value) -> String {
    // serde_json's maps are sorted by key, so this serialisation is canonical.
    util::sha256_hex(v.to_string().as_bytes())
}

/// The train block with this run's seed in place of the seed list (None: no seed at all).
fn train_block(t: &Target, seed: Option<u64>) -> Result<Value> {
    let mut train = serde_json::to_value(&t.train)?;
    if let Value::Object(m) = &mut train {
        m.remove("seeds");
        if let Some(s) = seed {
            m.insert("seed".into(), s.into());
        }
    }
    Ok(train)
}

impl Keys {
    /// The keys of `t` at `seed`; `dataset_hash` identifies the dataset's lock entry.
    pub fn new(t: &Target, seed: u64, dataset_hash: &str) -> Result<Self> {
        let trained = |train: Value| -> Result<Value> {
            Ok(json!({
                "method": serde_json::to_value(&t.method)?,
                "dataset": t.dataset,
                "dataset_lock": dataset_hash,
                "backbone": serde_json::to_value(&t.backbone)?,
                "data": serde_json::to_value(&t.data)?,
                "augment": serde_json::to_value(&t.augment)?,
                "train": train,
            }))
        };
        let evaluated = json!({ "eval": serde_json::to_value(&t.eval)?, "export": serde_json::to_value(&t.export)? });
        let train = trained(train_block(t, Some(seed))?)?;
        let config = json!({ "train": trained(train_block(t, None)?)?, "eval": evaluated });
        let run = json!({ "train": train, "eval": evaluated });
        Ok(Self { config: hash(&config), train: hash(&train), run: hash(&run), dataset: dataset_hash.to_owned() })
    }
}

/// The build of this binary: version, git commit and whether its sources were modified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: String,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
}

impl BuildInfo {
    /// This binary's (commit and dirty flag recorded by build.rs).
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            git_commit: option_env!("REPRO_GIT_COMMIT").map(String::from),
            git_dirty: option_env!("REPRO_GIT_DIRTY").map(|d| d == "true"),
        }
    }

    /// `2c08976`, `2c08976-dirty`, or `v0.1.0` without a commit.
    pub fn label(&self) -> String {
        match &self.git_commit {
            Some(c) => format!("{}{}", &c[..c.len().min(7)], if self.git_dirty == Some(true) { "-dirty" } else { "" }),
            None => format!("v{}", self.version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(extra: &str) -> Target {
        let yaml = format!(
            "version: 1\ntargets:\n  - id: t\n    description: first words\n    dataset: d\n    method: random_init\n    backbone: {{arch: resnet18, width: 2, zero_init_residual: false, stem: cifar}}\n    data: {{monitor_holdout: 1, monitor_bank: 1}}\n    augment: {{crop_scale: [1.0, 1.0], crop_ratio: [1.0, 1.0], hflip: 0.0, interpolation: bilinear}}\n    train: {{epochs: 1, batch_size: 2, seeds: [0, 1], lr: 0.1, optimizer: {{name: sgd, momentum: 0.9}}, schedule: {{name: warmup_cosine}}, weight_decay: 0.0, warmup_epochs: 0.0, min_lr: 0.0}}\n    eval: {{batch_size: 1, knn: {{k: 1, temperature: 1.0, distance: cosine}}, linear: {{epochs: 1, batch_size: 1, lr: 0.1, schedule: cosine_per_step, min_lr: 0.0, momentum: 0.0, weight_decay: 0.0, standardize: true}}}}\n    export: {{parity_tolerance: 1.0e-4, parity_images: 1}}\n{extra}"
        );
        let spec = crate::suite::parse_str(&yaml).unwrap();
        let targets = crate::suite::merge_targets(&spec, &[]).unwrap();
        crate::plan::build(&crate::suite::LoadedSuite { path: "t.yaml".into(), name: "t".into(), version: 1, description: None, targets }).unwrap().targets.remove(0)
    }

    #[test]
    fn keys_ignore_words_and_follow_the_computation() {
        let base = target("");
        let k = Keys::new(&base, 0, "lock").unwrap();
        // Rewording, renaming and editing expected numbers change nothing.
        let mut reworded = base.clone();
        reworded.description = Some("other words".into());
        reworded.id = "renamed".into();
        reworded.expected.push(crate::plan::Expected {
            metric: base.eval.knn.metric_name(),
            value: 90.0,
            tolerance: 1.0,
            source: "x".into(),
            status: crate::plan::Provenance::Verified,
        });
        assert_eq!(Keys::new(&reworded, 0, "lock").unwrap(), k);
        // Another seed: another run of the same configuration.
        let s1 = Keys::new(&base, 1, "lock").unwrap();
        assert_eq!(s1.config, k.config);
        assert_ne!(s1.train, k.train);
        assert_ne!(s1.run, k.run);
        // The seed list itself is not part of a run.
        let mut three = base.clone();
        three.train.seeds = vec![0, 1, 2];
        assert_eq!(Keys::new(&three, 0, "lock").unwrap(), k);
        // An evaluation change keeps the training key; a training or data change changes both.
        let mut eval = base.clone();
        eval.eval.knn.k = 5;
        let ke = Keys::new(&eval, 0, "lock").unwrap();
        assert_eq!(ke.train, k.train);
        assert_ne!(ke.run, k.run);
        assert_ne!(ke.config, k.config);
        let mut lr = base.clone();
        lr.train.lr = 0.2;
        let kl = Keys::new(&lr, 0, "lock").unwrap();
        assert_ne!(kl.train, k.train);
        assert_ne!(Keys::new(&base, 0, "other lock").unwrap().train, k.train);
    }
}
