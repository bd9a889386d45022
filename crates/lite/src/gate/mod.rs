//! CI verdicts from stored results alone, with the rules of `crate::verdict`: a run that failed or
//! did not finish, a verified paper number the runs fall *below* (or that they did not produce), a
//! metric that dropped beyond the tolerance *and* significantly against the same configuration in
//! a baseline results folder, and a record that cannot be read are failures (exit 1). Secondary and
//! unverified numbers, the per-epoch monitor k-NN, speed and parity are reported, never gated. Runs
//! made by another build are flagged.

use anyhow::Result;

use crate::results::{self, BuildInfo, MetricKind, SuiteRecords};
use crate::verdict::{self, Summary};
use crate::Outcome;

#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Pass(String),
    Fail(String),
    Info(String),
    /// Not a failure: made by another build.
    Stale(String),
}

impl Line {
    pub fn fails(&self) -> bool {
        matches!(self, Line::Fail(_))
    }
}

/// The `--tolerance` value: a finite number >= 0 (points for accuracies).
pub fn parse_tolerance(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number; give the allowed drop in points, e.g. 1.0"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s} is not a tolerance: expected a finite number >= 0 (points), e.g. 1.0"));
    }
    Ok(v)
}

/// Every verdict for a results folder, optionally against a baseline folder.
///
/// With `require_baseline`, a target the baseline lacks (or holds only in another configuration)
/// fails instead of being noted, so a committed baseline cannot silently stop covering a suite.
pub fn verdicts(current: &SuiteRecords, baseline: Option<&SuiteRecords>, tolerance: f64, require_baseline: bool, build: &BuildInfo) -> Vec<Line> {
    let mut out = Vec::new();
    for p in &current.problems {
        out.push(Line::Fail(format!("{p} (`repro run --move-aside` moves it out of the way)")));
    }
    if let Some(b) = baseline {
        for p in &b.problems {
            out.push(Line::Info(format!("baseline {p}")));
        }
    }
    for r in &current.runs {
        let label = r.config.target.run_label(r.config.seed);
        if !r.finished() {
            let why = r.failure.as_ref().map_or("failed: no metrics.json (interrupted? `repro run` resumes it)".to_owned(), |f| f.detail());
            out.push(Line::Fail(format!("{label}: {why}")));
        }
        if let Some(env) = r.env.as_ref().filter(|e| e.is_stale(build)) {
            out.push(Line::Stale(format!("{label}: made by {}, this build is {}", env.commit_label(), build.label())));
        }
    }
    let base_groups = baseline.map(|b| results::group(&b.runs));
    for g in results::group(&current.runs) {
        let t = g.target();
        for e in &t.expected {
            let higher = g.runs.iter().find_map(|r| r.value(&e.metric)).is_none_or(|m| m.higher_is_better);
            let c = verdict::against_paper(e, Summary::new(g.values(&e.metric)), higher);
            let line = format!("{}: {} = {} ({}: {})", g.id, e.metric, c.label(), e.status.word(), e.source);
            out.push(match e.status {
                crate::plan::Provenance::Verified if c.fails => Line::Fail(line),
                crate::plan::Provenance::Verified => Line::Pass(line),
                _ => Line::Info(format!("{line} [not gated]")),
            });
        }
        let Some(base_groups) = &base_groups else { continue };
        let Some(base) = base_groups.iter().find(|b| b.config_key == g.config_key) else {
            let why = match base_groups.iter().find(|b| b.id == g.id) {
                Some(b) => {
                    format!("{}: the baseline's {} has another configuration ({} vs {}): not compared", g.id, b.id, results::short(&b.config_key), results::short(&g.config_key))
                }
                None => format!("{}: not in the baseline: not compared", g.id),
            };
            out.push(if require_baseline {
                Line::Fail(format!("{why} (--require-baseline: refresh the baseline folder from a run of this configuration)"))
            } else {
                Line::Info(why)
            });
            continue;
        };
        let eval_metrics: std::collections::BTreeSet<&String> =
            base.runs.iter().filter_map(|r| r.metrics.as_ref()).flat_map(|m| m.metrics.iter().filter(|(_, v)| v.kind == MetricKind::Eval).map(|(k, _)| k)).collect();
        for name in eval_metrics {
            let (Some(cur), Some(bas)) = (Summary::new(g.values(name)), Summary::new(base.values(name))) else { continue };
            let higher = base.runs.iter().find_map(|r| r.value(name)).is_none_or(|m| m.higher_is_better);
            let c = verdict::against_baseline(name, cur, bas, higher, tolerance);
            let line = format!("{}: {name} = {}", g.id, c.label(tolerance));
            out.push(if c.regressed { Line::Fail(line) } else { Line::Pass(line) });
        }
    }
    out
}

/// `gate DIR [--baseline DIR]`: prints every verdict; exit 1 on any failure.
pub fn command(a: &crate::cli::GateArgs) -> Result<Outcome> {
    let tolerance = a.tolerance;
    if a.require_baseline && a.baseline.is_none() {
        anyhow::bail!("--require-baseline needs --baseline DIR (the results folder to compare against)");
    }
    let current = results::load_suite_dir(&a.dir)?;
    let base = a.baseline.as_deref().map(results::load_suite_dir).transpose()?;
    let build = BuildInfo::current();
    let lines = verdicts(&current, base.as_ref(), tolerance, a.require_baseline, &build);
    let mut failures = 0;
    let checks = lines.iter().filter(|l| !matches!(l, Line::Stale(_))).count();
    for l in &lines {
        match l {
            Line::Pass(s) => println!("PASS   {s}"),
            Line::Fail(s) => {
                failures += 1;
                println!("FAIL   {s}");
            }
            Line::Info(s) => println!("INFO   {s}"),
            Line::Stale(s) => println!("STALE  {s}"),
        }
    }
    println!("gate: {checks} checks, {failures} failure(s){}", if base.is_some() { format!(", tolerance {tolerance} points against the baseline") } else { String::new() });
    Ok(if failures > 0 { Outcome::Failed } else { Outcome::Success })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::testing::{self, floor_and_method, run, targets};
    use crate::results::{ProblemKind, RecordProblem, StoredRun};

    fn records(runs: Vec<StoredRun>) -> SuiteRecords {
        SuiteRecords { runs, problems: vec![] }
    }

    fn fails(lines: &[Line]) -> Vec<&String> {
        lines.iter().filter_map(|l| if let Line::Fail(s) = l { Some(s) } else { None }).collect()
    }

    #[test]
    fn a_clear_regression_fails_and_noise_passes() {
        let build = testing::build();
        let base = records(floor_and_method(&[(0, 60.0, 85.0), (1, 60.0, 85.2), (2, 60.0, 84.9)]));
        // A rerun with the same numbers passes every check.
        let l = verdicts(&base, Some(&base), 1.0, false, &build);
        assert!(fails(&l).is_empty() && l.iter().filter(|x| matches!(x, Line::Pass(_))).count() == 4, "{l:?}");
        // A clear drop of the method's k-NN (and linear) fails, naming the target and metric.
        let dropped = records(floor_and_method(&[(0, 60.0, 80.0), (1, 60.0, 80.3), (2, 60.0, 79.8)]));
        let l = verdicts(&dropped, Some(&base), 1.0, false, &build);
        let f = fails(&l);
        assert_eq!(f.len(), 2, "{l:?}");
        assert!(f[0].starts_with("m: knn_top1@") && f[0].contains("drop 5.00 > tolerance 1") && f[0].contains("Welch p ="), "{}", f[0]);
        // The same mean drop with seed noise that explains it passes.
        let noisy = records(floor_and_method(&[(0, 60.0, 78.0), (1, 60.0, 86.0), (2, 60.0, 82.0)]));
        let noisy_base = records(floor_and_method(&[(0, 60.0, 88.0), (1, 60.0, 80.0), (2, 60.0, 84.5)]));
        assert!(fails(&verdicts(&noisy, Some(&noisy_base), 1.0, false, &build)).is_empty());
    }

    #[test]
    fn monitor_and_speed_are_never_gated() {
        let build = testing::build();
        let base = records(floor_and_method(&[(0, 60.0, 85.0)]));
        let mut slow = floor_and_method(&[(0, 60.0, 85.0)]);
        for r in &mut slow {
            for (name, m) in r.metrics.as_mut().unwrap().metrics.iter_mut() {
                if !name.starts_with("knn_top1") && !name.starts_with("linear_top1") {
                    m.value /= 100.0; // monitor k-NN and images/s collapse
                }
            }
        }
        let l = verdicts(&records(slow), Some(&base), 1.0, false, &build);
        assert!(fails(&l).is_empty(), "{l:?}");
        assert!(!l.iter().any(|x| format!("{x:?}").contains("monitor") || format!("{x:?}").contains("images_per_s")), "{l:?}");
    }

    #[test]
    fn verified_numbers_gate_and_missing_ones_are_judged_by_status() {
        let build = testing::build();
        let t = targets(&[0], "");
        let knn = t[1].eval.knn.metric_name();
        let lin = t[1].eval.linear.metric_name();
        let with = |expected: &str, knn_v: f64| {
            let t = targets(&[0], expected);
            records(vec![run(&t[0], 0, 0, 60.0, 55.0), run(&t[1], 1, 0, knn_v, knn_v - 5.0)])
        };
        let verified = format!("{{metric: \"{knn}\", value: 90.0, tolerance: 1.0, source: paper, status: verified}}");
        assert!(fails(&verdicts(&with(&verified, 89.5), None, 1.0, false, &build)).is_empty());
        let f = verdicts(&with(&verified, 85.0), None, 1.0, false, &build);
        assert!(fails(&f)[0].contains("85.00 vs 90 ± 1: below (n = 1)"), "{f:?}");
        // A verified metric the runs did not produce fails; an unverified one is reported only.
        let mut missing = with(&verified, 90.0);
        missing.runs[1].metrics.as_mut().unwrap().metrics.remove(&knn);
        assert!(fails(&verdicts(&missing, None, 1.0, false, &build))[0].contains("missing"));
        let unverified = format!("{{metric: \"{lin}\", value: 90.0, tolerance: 1.0, source: recalled, status: unverified}}");
        let mut missing = with(&unverified, 50.0);
        missing.runs[1].metrics.as_mut().unwrap().metrics.remove(&lin);
        let l = verdicts(&missing, None, 1.0, false, &build);
        assert!(fails(&l).is_empty() && l.iter().any(|x| matches!(x, Line::Info(s) if s.contains("missing") && s.contains("not gated"))), "{l:?}");
    }

    #[test]
    fn stale_records_are_flagged_and_bad_folders_fail() {
        let build = testing::build();
        let mut runs = floor_and_method(&[(0, 60.0, 85.0)]);
        runs[1].env.as_mut().unwrap().machine.git_commit = Some("0123456789".into());
        let mut rec = records(runs);
        rec.problems.push(RecordProblem { path: "/r/t/x".into(), kind: ProblemKind::Older, message: "config.json has schema version 1".into() });
        let l = verdicts(&rec, None, 1.0, false, &build);
        assert!(l.iter().any(|x| matches!(x, Line::Stale(s) if s == "m: made by 0123456, this build is feedfac")), "{l:?}");
        assert!(fails(&l)[0].contains("/r/t/x: older record"), "{l:?}");
    }

    #[test]
    fn baselines_are_matched_by_configuration() {
        let build = testing::build();
        let base = records(floor_and_method(&[(0, 60.0, 85.0)]));
        let mut other = floor_and_method(&[(0, 60.0, 70.0)]);
        other[1].config.keys.config = "another-configuration".into();
        let l = verdicts(&records(other), Some(&base), 1.0, false, &build);
        assert!(fails(&l).is_empty(), "{l:?}");
        assert!(l.iter().any(|x| matches!(x, Line::Info(s) if s.contains("has another configuration"))), "{l:?}");
        // Required, the uncovered target fails (and only it).
        let mut other = floor_and_method(&[(0, 60.0, 70.0)]);
        other[1].config.keys.config = "another-configuration".into();
        let l = verdicts(&records(other), Some(&base), 1.0, true, &build);
        let f = fails(&l);
        assert!(f.len() == 1 && f[0].contains("has another configuration") && f[0].contains("--require-baseline"), "{l:?}");
    }

    #[test]
    fn tolerance_must_be_a_finite_non_negative_number() {
        assert_eq!(parse_tolerance("1.5"), Ok(1.5));
        for bad in ["nan", "NaN", "-1", "inf", "x"] {
            assert!(parse_tolerance(bad).is_err(), "{bad}");
        }
    }
}
