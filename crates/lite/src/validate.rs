//! A suite checked before anything runs: parsed, resolved into a plan (schema, defaults, every
//! problem by YAML path) and checked against `datasets.lock` (each dataset pinned, its splits and
//! image size fit the target). `repro validate`, `repro-lite validate` and `repro run` share it.

use std::path::Path;

use anyhow::{bail, Result};

use crate::cli::ValidateArgs;
use crate::lock::{self, Lock};
use crate::plan::{self, Plan};
use crate::{suite, Outcome};

/// Loads and validates a suite, and checks its datasets against the lock (returned with the plan).
pub fn load_plan(lock: &Path, path: &Path, set: &[String]) -> Result<(Plan, Lock)> {
    let overrides = set.iter().map(|s| suite::Override::parse(s)).collect::<Result<Vec<_>>>()?;
    let loaded = suite::load(path, &overrides)?;
    let plan = plan::build(&loaded)?;
    let lockfile = Lock::load(lock)?;
    let mut problems = Vec::new();
    for t in &plan.targets {
        match lockfile.get(&t.dataset) {
            Err(e) => problems.push(format!("target {}: dataset: {e:#}", t.id)),
            Ok(entry) if t.data.unlabeled && !lock::has_unlabeled(entry.format) => problems.push(format!(
                "target {}: data.unlabeled: dataset {} (format {}) has no unlabeled split; remove the key or use stl10",
                t.id,
                t.dataset,
                entry.format.name()
            )),
            Ok(entry) => {
                let size = t.data.image_size.unwrap_or(entry.image_size);
                if matches!(t.backbone, plan::Backbone::Amdim { .. }) && ![32, 64, 128].contains(&size) {
                    problems.push(format!(
                        "target {}: backbone.arch amdim takes 32, 64 or 128 px images (the official encoder_size); {} images are {size} px: set data.image_size",
                        t.id, t.dataset
                    ));
                }
                for l in t.eval.linears().filter(|l| l.test_resize.is_some_and(|side| side < size)) {
                    problems.push(format!(
                        "target {}: {}: test_resize {} is smaller than the {size} px images; the centre crop needs at least the image size (CorInfoMax: int(size·8/7))",
                        t.id,
                        l.metric_name(),
                        l.test_resize.unwrap_or_default()
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}:\n  {}", path.display(), problems.join("\n  "));
    }
    Ok((plan, lockfile))
}

/// `validate`: every suite checked; all problems of all suites in one error.
pub fn command(lock: &Path, a: &ValidateArgs) -> Result<Outcome> {
    let (suites, set) = (&a.suites, &a.set);
    let mut errors = Vec::new();
    for s in suites {
        match load_plan(lock, s, set) {
            Ok((p, _)) => println!("{}: ok ({} targets: {})", s.display(), p.targets.len(), p.target_ids()),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(Outcome::Success)
}
