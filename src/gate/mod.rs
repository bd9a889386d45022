//! Verdicts from stored results alone: a failed or incomplete target, a verified paper number missed
//! by more than its tolerance, or a metric that fell more than `tolerance` points below a baseline run
//! is a regression (exit 1). Numbers marked secondary or unverified are reported, never gated.

use std::path::Path;

use anyhow::Result;

use crate::plan::Provenance;
use crate::results::{self, StoredRun};
use crate::Outcome;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass(String),
    Regressed(String),
    Info(String),
}

/// Every verdict for a results folder, optionally against a baseline folder.
pub fn verdicts(runs: &[StoredRun], baseline: Option<&[StoredRun]>, tolerance: f64) -> Vec<Verdict> {
    let mut out = Vec::new();
    for r in runs {
        let id = &r.config.target.id;
        let Some(m) = &r.metrics else {
            let why = r.failure.as_ref().map_or("no metrics.json (interrupted?)".to_owned(), |f| f.error.clone());
            out.push(Verdict::Regressed(format!("{id}: failed: {why}")));
            continue;
        };
        for e in &r.config.target.expected {
            let Some(got) = m.metrics.get(&e.metric) else {
                out.push(Verdict::Regressed(format!("{id}: expected metric {} was not produced", e.metric)));
                continue;
            };
            let line = format!("{id}: {} = {:.2} vs paper {:.2} ± {:.2} ({})", e.metric, got.value, e.value, e.tolerance, e.source);
            let ok = if got.higher_is_better { got.value >= e.value - e.tolerance } else { got.value <= e.value + e.tolerance };
            out.push(match (e.status, ok) {
                (Provenance::Verified, true) => Verdict::Pass(line),
                (Provenance::Verified, false) => Verdict::Regressed(line),
                (_, _) => Verdict::Info(format!("{line} [{:?}: not gated]", e.status).to_lowercase()),
            });
        }
        let Some(base) = baseline.and_then(|b| b.iter().find(|b| &b.config.target.id == id)) else { continue };
        let Some(bm) = &base.metrics else { continue };
        for (name, b) in &bm.metrics {
            let Some(got) = m.metrics.get(name) else { continue };
            if b.unit != "%" {
                continue; // speed and parity are not accuracy regressions
            }
            let drop = if b.higher_is_better { b.value - got.value } else { got.value - b.value };
            let line = format!("{id}: {name} = {:.2} vs baseline {:.2}", got.value, b.value);
            out.push(if drop > tolerance { Verdict::Regressed(line) } else { Verdict::Pass(line) });
        }
    }
    out
}

pub fn run(dir: &Path, baseline: Option<&Path>, tolerance: f64) -> Result<Outcome> {
    let runs = results::load_suite_dir(dir)?;
    let base = baseline.map(results::load_suite_dir).transpose()?;
    let vs = verdicts(&runs, base.as_deref(), tolerance);
    let mut regressed = 0;
    for v in &vs {
        match v {
            Verdict::Pass(s) => println!("PASS  {s}"),
            Verdict::Regressed(s) => {
                regressed += 1;
                println!("FAIL  {s}");
            }
            Verdict::Info(s) => println!("INFO  {s}"),
        }
    }
    println!("gate: {} checks, {regressed} regression(s)", vs.len());
    Ok(if regressed > 0 { Outcome::Failed } else { Outcome::Success })
}
