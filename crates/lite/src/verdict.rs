//! Verdicts that account for seed noise, from per-seed values alone (report and gate share them).
//!
//! Against a published number p with tolerance τ (an `expected:` entry), over n seeds with mean m
//! and sample standard deviation s:
//! - n ≥ 2: the 95% confidence interval of the mean is m ± t(0.975, n−1)·s/√n (Student t).
//!   *reproduced* when the whole interval lies within [p − τ, p + τ]; *below* when it lies wholly
//!   under p − τ; *above* when it lies wholly over p + τ; otherwise *inconclusive* (more seeds
//!   would decide).
//! - n = 1: the value itself decides (|v − p| ≤ τ reproduced, else below or above), and the
//!   verdict says n = 1.
//! - Only the worse side fails a gate (*below* for accuracies; *above* for lower-is-better
//!   metrics), and only for `verified` numbers. A missing metric fails only a verified entry.
//!
//! Against a baseline run of the same configuration, with drop d = m_base − m (accuracies):
//! a regression is d > τ that is also significant: a one-sided Welch t-test of H0 "no drop",
//! t = d / √(s_b²/n_b + s²/n), Welch–Satterthwaite degrees of freedom, p < α = 0.05, when both
//! sides have at least two seeds; with one seed on either side, d > τ alone decides.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::plan::{Expected, Provenance};

/// Significance level of the baseline test.
pub const ALPHA: f64 = 0.05;
/// Coverage of the confidence interval against paper numbers.
pub const CONFIDENCE: f64 = 0.95;

/// A metric over seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for n = 1.
    pub std: f64,
    /// (seed, value) of every run.
    pub values: Vec<(u64, f64)>,
}

impl Summary {
    /// None for no values.
    pub fn new(values: Vec<(u64, f64)>) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().map(|v| v.1).sum::<f64>() / n as f64;
        let std = if n > 1 { (values.iter().map(|v| (v.1 - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        Some(Self { n, mean, std, values })
    }

    /// The 95% Student-t interval of the mean (None for n = 1).
    pub fn interval(&self) -> Option<(f64, f64)> {
        (self.n >= 2).then(|| {
            let half = t_quantile(1.0 - (1.0 - CONFIDENCE) / 2.0, (self.n - 1) as f64) * self.std / (self.n as f64).sqrt();
            (self.mean - half, self.mean + half)
        })
    }

    /// `85.29 ± 0.31` (n ≥ 2) or `85.29`.
    pub fn label(&self) -> String {
        if self.n >= 2 {
            format!("{:.2} ± {:.2}", self.mean, self.std)
        } else {
            format!("{:.2}", self.mean)
        }
    }
}

/// Quantile of Student's t with `df` degrees of freedom.
fn t_quantile(p: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).map(|t| t.inverse_cdf(p)).unwrap_or(f64::INFINITY)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaperVerdict {
    Reproduced,
    Below,
    Above,
    Inconclusive,
    /// The run did not produce the metric (or did not finish).
    Missing,
}

impl PaperVerdict {
    pub fn word(self) -> &'static str {
        match self {
            PaperVerdict::Reproduced => "reproduced",
            PaperVerdict::Below => "below",
            PaperVerdict::Above => "above",
            PaperVerdict::Inconclusive => "inconclusive",
            PaperVerdict::Missing => "missing",
        }
    }
}

/// One `expected:` entry judged against the runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaperCheck {
    pub expected: Expected,
    pub summary: Option<Summary>,
    pub interval: Option<(f64, f64)>,
    pub verdict: PaperVerdict,
    /// Whether this check fails a gate.
    pub fails: bool,
}

impl PaperCheck {
    /// `92.91 [91.90, 93.92] vs 93.18 ± 1.50: reproduced`, or `... (n = 1)`.
    pub fn label(&self) -> String {
        let e = &self.expected;
        let got = match (&self.summary, self.interval) {
            (Some(s), Some((lo, hi))) => format!("{:.2} [{lo:.2}, {hi:.2}]", s.mean),
            (Some(s), None) => format!("{:.2}", s.mean),
            (None, _) => "–".into(),
        };
        let n1 = if self.summary.as_ref().is_some_and(|s| s.n == 1) { " (n = 1)" } else { "" };
        format!("{got} vs {} ± {}: {}{n1}", e.value, e.tolerance, self.verdict.word())
    }
}

/// Judges one expected number; `higher_is_better` is the metric's direction (accuracies: true).
pub fn against_paper(expected: &Expected, summary: Option<Summary>, higher_is_better: bool) -> PaperCheck {
    let (lo_band, hi_band) = (expected.value - expected.tolerance, expected.value + expected.tolerance);
    let interval = summary.as_ref().and_then(Summary::interval);
    let verdict = match (&summary, interval) {
        (None, _) => PaperVerdict::Missing,
        (Some(s), None) => {
            if s.mean < lo_band {
                PaperVerdict::Below
            } else if s.mean > hi_band {
                PaperVerdict::Above
            } else {
                PaperVerdict::Reproduced
            }
        }
        (Some(_), Some((lo, hi))) => {
            if hi < lo_band {
                PaperVerdict::Below
            } else if lo > hi_band {
                PaperVerdict::Above
            } else if lo >= lo_band && hi <= hi_band {
                PaperVerdict::Reproduced
            } else {
                PaperVerdict::Inconclusive
            }
        }
    };
    let worse = if higher_is_better { PaperVerdict::Below } else { PaperVerdict::Above };
    let fails = expected.status == Provenance::Verified && (verdict == worse || verdict == PaperVerdict::Missing);
    PaperCheck { expected: expected.clone(), summary, interval, verdict, fails }
}

/// A metric of a run compared with the same configuration's baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineCheck {
    pub metric: String,
    pub current: Summary,
    pub baseline: Summary,
    /// Baseline mean − current mean, in the direction where positive is worse.
    pub drop: f64,
    /// One-sided Welch p-value of the drop (None when a side has one seed).
    pub p_value: Option<f64>,
    pub regressed: bool,
}

impl BaselineCheck {
    pub fn label(&self, tolerance: f64) -> String {
        let test = match self.p_value {
            Some(p) => format!("Welch p = {p:.3}"),
            None => "one seed: tolerance alone".into(),
        };
        format!(
            "{} (n = {}) vs baseline {} (n = {}): drop {:.2} {} tolerance {tolerance}, {test}",
            self.current.label(),
            self.current.n,
            self.baseline.label(),
            self.baseline.n,
            self.drop,
            if self.drop > tolerance { ">" } else { "<=" }
        )
    }
}

/// Compares `current` with `baseline` (values over seeds); `tolerance` in the metric's units.
pub fn against_baseline(metric: &str, current: Summary, baseline: Summary, higher_is_better: bool, tolerance: f64) -> BaselineCheck {
    let drop = if higher_is_better { baseline.mean - current.mean } else { current.mean - baseline.mean };
    let p_value = (current.n >= 2 && baseline.n >= 2).then(|| welch_one_sided(drop, &current, &baseline));
    let regressed = drop > tolerance && p_value.is_none_or(|p| p < ALPHA);
    BaselineCheck { metric: metric.to_owned(), current, baseline, drop, p_value, regressed }
}

/// P(T ≥ t) for Welch's t of a mean difference `diff` (> 0: a drop) between two samples.
fn welch_one_sided(diff: f64, a: &Summary, b: &Summary) -> f64 {
    let (va, vb) = (a.std * a.std / a.n as f64, b.std * b.std / b.n as f64);
    let se2 = va + vb;
    if se2 == 0.0 {
        // No spread on either side: any drop is certain, no drop is not one.
        return if diff > 0.0 { 0.0 } else { 1.0 };
    }
    let df = se2 * se2 / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64);
    let t = diff / se2.sqrt();
    StudentsT::new(0.0, 1.0, df).map(|d| 1.0 - d.cdf(t)).unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(values: &[f64]) -> Summary {
        Summary::new(values.iter().enumerate().map(|(i, &v)| (i as u64, v)).collect()).unwrap()
    }

    fn e(value: f64, tolerance: f64, status: Provenance) -> Expected {
        Expected { metric: "m".into(), value, tolerance, source: "src".into(), status }
    }

    #[test]
    fn student_t_matches_tables() {
        // Two-sided 95% critical values (any statistics table): df 1 12.706, 2 4.303, 4 2.776, 30 2.042.
        for (df, want) in [(1.0, 12.706), (2.0, 4.303), (4.0, 2.776), (30.0, 2.042)] {
            assert!((t_quantile(0.975, df) - want).abs() < 1e-3, "df {df}: {}", t_quantile(0.975, df));
        }
        let x = s(&[90.0, 91.0, 92.0]);
        assert_eq!((x.mean, x.std), (91.0, 1.0));
        let (lo, hi) = x.interval().unwrap();
        assert!((hi - 91.0 - 4.303 / 3f64.sqrt()).abs() < 1e-3 && (91.0 - lo - (hi - 91.0)).abs() < 1e-12);
    }

    #[test]
    fn paper_verdicts_follow_the_interval() {
        let v = Provenance::Verified;
        // Tight seeds inside the band: reproduced.
        let c = against_paper(&e(93.0, 1.0, v), Some(s(&[92.9, 93.1, 93.0])), true);
        assert_eq!((c.verdict, c.fails), (PaperVerdict::Reproduced, false));
        // Clearly under: below, and a verified number fails.
        let c = against_paper(&e(93.0, 1.0, v), Some(s(&[90.0, 90.2, 90.1])), true);
        assert_eq!((c.verdict, c.fails), (PaperVerdict::Below, true));
        // Clearly over: above, never a failure for an accuracy.
        let c = against_paper(&e(93.0, 1.0, v), Some(s(&[95.0, 95.2, 95.1])), true);
        assert_eq!((c.verdict, c.fails), (PaperVerdict::Above, false));
        // Mean inside but noisy enough that the interval crosses the band: inconclusive, passes.
        let c = against_paper(&e(93.0, 1.0, v), Some(s(&[91.0, 93.0, 95.0])), true);
        assert_eq!((c.verdict, c.fails), (PaperVerdict::Inconclusive, false));
        // Mean under the band but the interval reaches into it: inconclusive too.
        let c = against_paper(&e(93.0, 1.0, v), Some(s(&[90.0, 92.0, 91.0])), true);
        assert_eq!(c.verdict, PaperVerdict::Inconclusive);
        // One seed: the point decides, and says so.
        let c = against_paper(&e(93.0, 1.0, v), Some(s(&[91.5])), true);
        assert_eq!((c.verdict, c.fails), (PaperVerdict::Below, true));
        assert!(c.label().ends_with("below (n = 1)"), "{}", c.label());
        let c = against_paper(&e(93.0, 1.0, v), Some(s(&[92.5])), true);
        assert_eq!(c.verdict, PaperVerdict::Reproduced);
        // Missing: fails only a verified entry; secondary and unverified never fail.
        assert!(against_paper(&e(93.0, 1.0, v), None, true).fails);
        for status in [Provenance::Secondary, Provenance::Unverified] {
            assert!(!against_paper(&e(93.0, 1.0, status), None, true).fails);
            assert!(!against_paper(&e(93.0, 1.0, status), Some(s(&[50.0, 50.1])), true).fails);
        }
        // A lower-is-better metric fails on the high side.
        assert!(against_paper(&e(5.0, 1.0, v), Some(s(&[9.0, 9.1])), false).fails);
        assert!(!against_paper(&e(5.0, 1.0, v), Some(s(&[1.0, 1.1])), false).fails);
    }

    #[test]
    fn baseline_regressions_need_size_and_significance() {
        // A clear drop beyond the tolerance, consistent over seeds: regression.
        let c = against_baseline("m", s(&[80.0, 80.3, 79.8]), s(&[85.0, 85.2, 84.9]), true, 1.0);
        assert!(c.regressed && c.p_value.unwrap() < 1e-3, "{c:?}");
        // A drop beyond the tolerance that noise explains: not a regression.
        let c = against_baseline("m", s(&[78.0, 86.0, 82.0]), s(&[88.0, 80.0, 84.5]), true, 1.0);
        assert!(c.drop > 1.0 && !c.regressed && c.p_value.unwrap() > ALPHA, "{c:?}");
        // A significant drop within the tolerance: not a regression.
        let c = against_baseline("m", s(&[84.5, 84.6, 84.5]), s(&[85.0, 85.1, 85.0]), true, 1.0);
        assert!(!c.regressed && c.p_value.unwrap() < ALPHA, "{c:?}");
        // The same numbers again (a rerun of the same commit): no drop.
        let c = against_baseline("m", s(&[85.0, 85.0]), s(&[85.0, 85.0]), true, 1.0);
        assert!(!c.regressed && c.drop == 0.0 && c.p_value == Some(1.0), "{c:?}");
        // One seed on a side: the tolerance alone.
        let c = against_baseline("m", s(&[83.0]), s(&[85.0, 85.1]), true, 1.0);
        assert!(c.regressed && c.p_value.is_none());
        assert!(!against_baseline("m", s(&[84.5]), s(&[85.0]), true, 1.0).regressed);
        // Welch's test against an independent computation (scipy 1.x, `stats.ttest_ind(base, cur,
        // equal_var=False, alternative='greater')`): p = 2.0831067940760484e-05 and 0.27192558470344647.
        let c = against_baseline("m", s(&[80.0, 80.3, 79.8]), s(&[85.0, 85.2, 84.9]), true, 1.0);
        assert!((c.p_value.unwrap() - 2.0831067940760484e-05).abs() < 1e-9, "{c:?}");
        let c = against_baseline("m", s(&[78.0, 86.0, 82.0]), s(&[88.0, 80.0, 84.5]), true, 1.0);
        assert!((c.p_value.unwrap() - 0.27192558470344647).abs() < 1e-6, "{c:?}");
    }
}
