//! Paper-style tables from stored run records alone (no libtorch, no ONNX Runtime): one row per
//! target (its seeds grouped by configuration) with k-NN and linear top-1 as mean ± std over n
//! seeds, the gain over the suite's random-init floor (paired by seed), each published number the
//! suite cites with its verdict (`crate::verdict`), wall time and the commit that made the numbers.
//! Footnotes name every protocol and source. Exporters: terminal and Markdown (the table), CSV (one
//! line per run and metric, every seed's value), JSON (rows with per-seed values, runs, problems).

pub mod grid;
pub mod plot;

use anyhow::Result;
use serde::Serialize;
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::plan::Method;
use crate::results::{self, BuildInfo, MetricKind, RecordProblem, StoredRun, TargetRuns};
use crate::suite::SweepPoint;
use crate::verdict::{self, PaperCheck, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Terminal,
    Md,
    Csv,
    Json,
    /// A booktabs table (always the grid).
    Latex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    Auto,
    Targets,
    Grid,
}

/// One table row: a target's runs over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: String,
    pub method: String,
    pub dataset: String,
    pub backbone: String,
    pub epochs: usize,
    /// Seeds the suite asked for.
    pub seeds: Vec<u64>,
    pub knn_metric: String,
    pub linear_metric: String,
    pub knn_top1: Option<Summary>,
    pub linear_top1: Option<Summary>,
    /// Mean over seeds of (target − floor) at the same seed (the floor's mean where it lacks a seed).
    pub knn_gain: Option<f64>,
    pub linear_gain: Option<f64>,
    /// Every further probe (`eval.extra_linear`): its metric and value over seeds.
    pub extra_linear: Vec<(String, Option<Summary>)>,
    pub checks: Vec<PaperCheck>,
    /// Mean wall time of a run.
    pub wall_s: Option<f64>,
    /// Commits that made the runs (`2c08976`, `-dirty` when built from modified sources).
    pub commits: Vec<String>,
    /// Some run was made by another build than the one reading it.
    pub stale: bool,
    pub status: String,
    /// The sweep this row is a point of, with the point's values.
    pub sweep: Option<SweepPoint>,
}

/// Builds the rows; gains are against the first finished `random_init` target with the same
/// dataset, image size and backbone (architecture and width).
pub fn rows(runs: &[StoredRun], build: &BuildInfo) -> Vec<Row> {
    let groups = results::group(runs);
    let is_floor = |g: &TargetRuns| matches!(g.target().method, Method::RandomInit) && g.runs.iter().any(|r| r.finished());
    groups
        .iter()
        .map(|g| {
            let t = g.target();
            let same_start = |f: &TargetRuns| {
                let u = f.target();
                u.dataset == t.dataset && u.data.image_size == t.data.image_size && u.backbone.label() == t.backbone.label()
            };
            let floor = groups.iter().find(|f| is_floor(f) && same_start(f) && f.id != g.id);
            let (knn_metric, linear_metric) = (t.eval.knn.metric_name(), t.eval.linear.metric_name());
            let gain = |metric: &str| floor.and_then(|f| paired_gain(&g.values(metric), &f.values(metric)));
            let higher = |metric: &str| g.runs.iter().find_map(|r| r.value(metric)).is_none_or(|m| m.higher_is_better);
            let checks = t.expected.iter().map(|e| verdict::against_paper(e, Summary::new(g.values(&e.metric)), higher(&e.metric))).collect();
            let envs: Vec<_> = g.runs.iter().filter_map(|r| r.env.as_ref()).collect();
            let mut commits: Vec<String> = envs.iter().map(|e| e.commit_label()).collect();
            commits.dedup();
            let finished = g.runs.iter().filter(|r| r.finished()).count();
            let failed: Vec<_> = g.runs.iter().filter(|r| !r.finished()).filter_map(|r| r.failure.as_ref().map(|f| (r.config.seed, f))).collect();
            let status = if let Some((seed, f)) = failed.first() {
                let (word, why) = f.summary().split_once(": ").map(|(w, e)| (w.to_owned(), e.to_owned())).unwrap_or_default();
                format!("{word} (seed {seed}): {why}")
            } else if finished < g.runs.len() {
                format!("incomplete ({finished}/{})", g.runs.len())
            } else {
                "ok".to_owned()
            };
            Row {
                target: t.id.clone(),
                method: t.method.name().to_owned(),
                dataset: t.dataset.clone(),
                backbone: t.backbone.label(),
                epochs: if t.method.trains() { t.train.epochs } else { 0 },
                seeds: t.train.seeds.clone(),
                knn_top1: Summary::new(g.values(&knn_metric)),
                linear_top1: Summary::new(g.values(&linear_metric)),
                knn_gain: gain(&knn_metric),
                linear_gain: gain(&linear_metric),
                knn_metric,
                linear_metric,
                extra_linear: t.eval.extra_linear.iter().map(|l| (l.metric_name(), Summary::new(g.values(&l.metric_name())))).collect(),
                checks,
                wall_s: (!envs.is_empty()).then(|| envs.iter().map(|e| e.wall_s).sum::<f64>() / envs.len() as f64),
                commits,
                stale: envs.iter().any(|e| e.is_stale(build)),
                status,
                sweep: t.sweep.clone(),
            }
        })
        .collect()
}

/// Mean of the paired differences; a seed the floor lacks is paired with the floor's mean.
fn paired_gain(mine: &[(u64, f64)], floor: &[(u64, f64)]) -> Option<f64> {
    if mine.is_empty() || floor.is_empty() {
        return None;
    }
    let floor_mean = floor.iter().map(|v| v.1).sum::<f64>() / floor.len() as f64;
    let d: f64 = mine.iter().map(|(s, v)| v - floor.iter().find(|f| f.0 == *s).map_or(floor_mean, |f| f.1)).sum();
    Some(((d / mine.len() as f64) * 1e4).round() / 1e4)
}

#[derive(Tabled)]
struct Cells {
    #[tabled(rename = "target")]
    target: String,
    #[tabled(rename = "method")]
    method: String,
    #[tabled(rename = "backbone")]
    backbone: String,
    #[tabled(rename = "epochs")]
    epochs: String,
    #[tabled(rename = "n")]
    n: String,
    #[tabled(rename = "k-NN top-1")]
    knn: String,
    #[tabled(rename = "linear top-1")]
    linear: String,
    #[tabled(rename = "Δ k-NN vs floor")]
    knn_gain: String,
    #[tabled(rename = "Δ linear vs floor")]
    linear_gain: String,
    #[tabled(rename = "paper")]
    paper: String,
    #[tabled(rename = "verdict")]
    verdict: String,
    #[tabled(rename = "wall time")]
    wall: String,
    #[tabled(rename = "commit")]
    commit: String,
    #[tabled(rename = "status")]
    status: String,
}

fn summary(v: &Option<Summary>) -> String {
    v.as_ref().map_or_else(|| "–".into(), Summary::label)
}

fn signed(v: Option<f64>) -> String {
    v.map(|v| format!("{v:+.2}")).unwrap_or_else(|| "–".into())
}

fn duration(s: Option<f64>) -> String {
    match s {
        Some(s) if s >= 60.0 => format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64),
        Some(s) => format!("{s:.1}s"),
        None => "–".into(),
    }
}

/// The table cells and the footnotes they point to (`[1]` after a paper number).
fn cells(rows: &[Row], sep: &str) -> (Vec<Cells>, Vec<String>) {
    let mut notes = Vec::new();
    let cells = rows
        .iter()
        .map(|r| {
            let n = r.knn_top1.as_ref().or(r.linear_top1.as_ref()).map_or(0, |s| s.n);
            let mut paper = Vec::new();
            let mut verdicts = Vec::new();
            for c in &r.checks {
                let e = &c.expected;
                notes.push(format!("{}: {} {} ± {} ({}): {}", r.target, e.metric, e.value, e.tolerance, e.status.word(), e.source));
                paper.push(format!("{} ± {} [{}]", e.value, e.tolerance, notes.len()));
                let got = match (&c.summary, c.interval) {
                    (Some(s), Some((lo, hi))) => format!("{:.2} [{lo:.2}, {hi:.2}]", s.mean),
                    (Some(s), None) => format!("{:.2}", s.mean),
                    (None, _) => "–".into(),
                };
                let n1 = if c.summary.as_ref().is_some_and(|s| s.n == 1) { ", n = 1" } else { "" };
                let gated = if c.expected.status == crate::plan::Provenance::Verified { "" } else { " (not gated)" };
                verdicts.push(format!("{got}: {}{n1}{gated}", c.verdict.word()));
            }
            let dash = |v: Vec<String>| {
                if v.is_empty() {
                    "–".to_owned()
                } else {
                    v.join(sep)
                }
            };
            Cells {
                target: r.target.clone(),
                method: r.method.clone(),
                backbone: r.backbone.clone(),
                epochs: r.epochs.to_string(),
                n: format!("{n}/{}", r.seeds.len()),
                knn: summary(&r.knn_top1),
                linear: summary(&r.linear_top1),
                knn_gain: signed(r.knn_gain),
                linear_gain: signed(r.linear_gain),
                paper: dash(paper),
                verdict: dash(verdicts),
                wall: duration(r.wall_s),
                commit: format!("{}{}", r.commits.join(","), if r.stale { "*" } else { "" }),
                status: r.status.clone(),
            }
        })
        .collect();
    (cells, notes)
}

/// The rows of each sweep (its id, its points), in order of first appearance.
pub fn sweep_groups(rows: &[Row]) -> Vec<(&str, Vec<&Row>)> {
    let mut sweeps: Vec<(&str, Vec<&Row>)> = Vec::new();
    for r in rows {
        if let Some(p) = &r.sweep {
            match sweeps.iter_mut().find(|(of, _)| *of == p.of) {
                Some((_, points)) => points.push(r),
                None => sweeps.push((&p.of, vec![r])),
            }
        }
    }
    sweeps
}

/// One table per sweep: a row per point, the swept values as its first columns (in the suite's
/// order), then the numbers of the main table.
fn sweep_tables(rows: &[Row], md: bool) -> Vec<String> {
    sweep_groups(rows)
        .into_iter()
        .map(|(of, points)| {
            let keys: Vec<String> = points.iter().flat_map(|r| r.sweep.iter().flat_map(|p| p.values.iter().map(|v| v.0.clone()))).fold(Vec::new(), |mut k, x| {
                if !k.contains(&x) {
                    k.push(x);
                }
                k
            });
            let mut b = tabled::builder::Builder::default();
            b.push_record(keys.iter().cloned().chain(["n", "k-NN top-1", "linear top-1", "Δ k-NN vs floor", "Δ linear vs floor", "wall time", "status"].map(String::from)));
            for r in &points {
                let value = |k: &String| r.sweep.as_ref().and_then(|p| p.values.iter().find(|v| &v.0 == k)).map_or("–".to_owned(), |v| v.1.clone());
                let n = r.knn_top1.as_ref().or(r.linear_top1.as_ref()).map_or(0, |s| s.n);
                b.push_record(keys.iter().map(value).chain([
                    format!("{n}/{}", r.seeds.len()),
                    summary(&r.knn_top1),
                    summary(&r.linear_top1),
                    signed(r.knn_gain),
                    signed(r.linear_gain),
                    duration(r.wall_s),
                    r.status.clone(),
                ]));
            }
            let mut table = b.build();
            let table = if md { table.with(Style::markdown()) } else { table.with(Style::rounded()) }.to_string();
            let what = &points[0];
            let title = format!("sweep {of}: {} points of {} on {} ({}, {} epochs)", points.len(), what.method, what.dataset, what.backbone, what.epochs);
            if md {
                format!("**{title}**\n\n{table}\n")
            } else {
                format!("{title}\n{table}\n")
            }
        })
        .collect()
}

/// Footnotes: the protocols of the numeric columns and the sources of the paper numbers.
fn legend(rows: &[Row], notes: &[String], build: &BuildInfo) -> String {
    let mut out = String::from("mean ± sample std over n seeds (finished/asked); verdict: mean [95% Student-t interval] against paper ± tolerance (README \"Verdicts\")\n");
    let columns = [
        ("k-NN top-1", rows.iter().map(|r| (&r.knn_metric, r.target.as_str())).collect::<Vec<_>>()),
        ("linear top-1", rows.iter().map(|r| (&r.linear_metric, r.target.as_str())).collect()),
    ];
    for (label, metrics) in columns {
        let mut names: Vec<(&String, Vec<&str>)> = Vec::new();
        for (metric, target) in metrics {
            match names.iter_mut().find(|(m, _)| *m == metric) {
                Some((_, ids)) => ids.push(target),
                None => names.push((metric, vec![target])),
            }
        }
        for (metric, ids) in &names {
            let whose = if names.len() > 1 { format!(" ({})", ids.join(", ")) } else { String::new() };
            out += &format!("{label}{whose}: {metric}\n");
        }
    }
    for r in rows {
        for (metric, v) in &r.extra_linear {
            out += &format!("{}: {} {metric}\n", r.target, summary(v));
        }
    }
    for (i, n) in notes.iter().enumerate() {
        out += &format!("[{}] {n}\n", i + 1);
    }
    if rows.iter().any(|r| r.stale) {
        let this = build.label();
        out += &format!("* made by another build than this one ({this}); `repro run --rerun-stale` runs them again\n");
    }
    out
}

/// One line of the CSV/JSON run listing: a run's metric (or its status when it has none).
#[derive(Debug, Clone, Serialize)]
struct RunLine {
    suite: String,
    target: String,
    seed: u64,
    method: String,
    dataset: String,
    backbone: String,
    epochs: usize,
    status: String,
    metric: String,
    kind: String,
    value: Option<f64>,
    unit: String,
    higher_is_better: Option<bool>,
    commit: String,
    stale: bool,
    run_key: String,
    config_key: String,
    /// The sweep the target is a point of, and the point (`batch_size=64,momentum=0.9`).
    sweep: String,
    sweep_point: String,
}

fn run_lines(runs: &[StoredRun], build: &BuildInfo) -> Vec<RunLine> {
    let mut out = Vec::new();
    for r in runs {
        let (c, t) = (&r.config, &r.config.target);
        let status = match (&r.metrics, &r.failure) {
            (Some(_), _) => "ok".to_owned(),
            (None, Some(f)) => f.summary(),
            (None, None) => "incomplete".to_owned(),
        };
        let line = |metric: &str, m: Option<&results::Metric>| RunLine {
            suite: c.suite.clone(),
            target: t.id.clone(),
            seed: c.seed,
            method: t.method.name().to_owned(),
            dataset: t.dataset.clone(),
            backbone: t.backbone.label(),
            epochs: if t.method.trains() { t.train.epochs } else { 0 },
            status: status.clone(),
            metric: metric.to_owned(),
            kind: m.map(|m| kind_word(m.kind).to_owned()).unwrap_or_default(),
            value: m.map(|m| m.value),
            unit: m.map(|m| m.unit.clone()).unwrap_or_default(),
            higher_is_better: m.map(|m| m.higher_is_better),
            commit: r.env.as_ref().map(|e| e.commit_label()).unwrap_or_default(),
            stale: r.env.as_ref().is_some_and(|e| e.is_stale(build)),
            run_key: c.keys.run.clone(),
            config_key: c.keys.config.clone(),
            sweep: t.sweep.as_ref().map(|p| p.of.clone()).unwrap_or_default(),
            sweep_point: t.sweep.as_ref().map(|p| p.values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")).unwrap_or_default(),
        };
        match &r.metrics {
            Some(m) => out.extend(m.metrics.iter().map(|(name, v)| line(name, Some(v)))),
            None => out.push(line("", None)),
        }
    }
    out
}

fn kind_word(k: MetricKind) -> &'static str {
    match k {
        MetricKind::Eval => "eval",
        MetricKind::Monitor => "monitor",
        MetricKind::Speed => "speed",
        MetricKind::Parity => "parity",
    }
}

/// `report DIR...`: the tables (and, with `--out`, the plots) of one or several results folders,
/// rendered from their stored JSON.
pub fn command(a: &crate::cli::ReportArgs) -> Result<crate::Outcome> {
    let suites = results::load_results(&a.dirs)?;
    for (_, records) in &suites {
        for p in &records.problems {
            eprintln!("warning: {p}");
        }
    }
    let build = BuildInfo::current();
    let runs: Vec<(String, Vec<StoredRun>)> = suites.into_iter().map(|(s, r)| (s, r.runs)).collect();
    let mut text = report(&runs, &build, a)?;
    if let Some(file) = &a.out {
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let plots = plot::write_all(&runs, &build, &dir.join("plots"))?;
        if a.format == Format::Md {
            text += &plot::links(&plots, "plots/");
        }
        crate::util::write_atomic(file, text.as_bytes())?;
        eprintln!("report written to {} and {} plot(s) to {}/plots/ (SVG and PNG)", file.display(), plots.len(), dir.display());
    } else {
        println!("{text}");
    }
    Ok(crate::Outcome::Success)
}

/// The report of several suites' runs under the arguments' layout and format.
pub fn report(suites: &[(String, Vec<StoredRun>)], build: &BuildInfo, a: &crate::cli::ReportArgs) -> Result<String> {
    let rows: Vec<(&str, Vec<Row>)> = suites.iter().map(|(s, runs)| (s.as_str(), rows(runs, build))).collect();
    let entries: Vec<grid::Entry> = rows.iter().flat_map(|(s, rs)| rs.iter().map(move |r| grid::Entry { suite: s, row: r })).collect();
    let use_grid = match a.layout {
        Layout::Grid => true,
        Layout::Targets => a.format == Format::Latex,
        Layout::Auto => a.format == Format::Latex || (!entries.is_empty() && grid::spans_datasets(&entries)),
    };
    if use_grid {
        let g = grid::build(&entries, a.columns, a.rows, a.metric);
        return Ok(match a.format {
            Format::Terminal => g.text(false),
            Format::Md => g.text(true),
            Format::Csv => g.csv()?,
            Format::Json => serde_json::to_string_pretty(&g)?,
            Format::Latex => g.latex(),
        });
    }
    let mut parts = Vec::new();
    for (i, (suite, runs)) in suites.iter().enumerate() {
        let mut one = render(runs, &[], build, a.format)?;
        match a.format {
            Format::Csv if i > 0 => one = one.split_once('\n').map(|x| x.1.to_owned()).unwrap_or_default(),
            Format::Terminal if suites.len() > 1 => one = format!("suite {suite}\n{one}"),
            Format::Md if suites.len() > 1 => one = format!("## {suite}\n\n{one}"),
            _ => {}
        }
        parts.push(one);
    }
    Ok(match a.format {
        Format::Json if parts.len() > 1 => format!("[{}]", parts.join(",\n")),
        Format::Csv => parts.concat(),
        _ => parts.join("\n"),
    })
}

/// Renders the runs in one format; `problems` (folders not read) go into the JSON too.
pub fn render(runs: &[StoredRun], problems: &[RecordProblem], build: &BuildInfo, format: Format) -> Result<String> {
    let rows = rows(runs, build);
    Ok(match format {
        Format::Terminal | Format::Md => {
            let md = format == Format::Md;
            // Sweep points go into their sweep's table; the main table holds the other targets.
            let single: Vec<Row> = rows.iter().filter(|r| r.sweep.is_none()).cloned().collect();
            let (cells, notes) = cells(&single, if md { "; " } else { "\n" });
            let mut table = Table::new(cells);
            let mut out = if single.is_empty() && rows.iter().any(|r| r.sweep.is_some()) {
                String::new()
            } else {
                let t = if md { table.with(Style::markdown()) } else { table.with(Style::rounded()) }.to_string();
                format!("{t}\n{}", if md { "\n" } else { "" })
            };
            for t in sweep_tables(&rows, md) {
                out += &t;
                if md {
                    out += "\n";
                }
            }
            let legend = legend(&rows, &notes, build);
            if md {
                let notes: Vec<String> = legend.lines().map(|l| format!("- {l}")).collect();
                format!("{out}{}\n", notes.join("\n"))
            } else {
                format!("{out}{legend}")
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for l in run_lines(runs, build) {
                w.serialize(l)?;
            }
            String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?)?
        }
        Format::Json => serde_json::to_string_pretty(&serde_json::json!({ "rows": rows, "runs": run_lines(runs, build), "problems": problems }))?,
        Format::Latex => {
            let entries: Vec<grid::Entry> = rows.iter().map(|r| grid::Entry { suite: "", row: r }).collect();
            grid::build(&entries, grid::Columns::Auto, grid::Rows::Method, grid::MetricChoice::Paper).latex()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::testing::{self, floor_and_method};

    #[test]
    fn rows_group_seeds_and_pair_gains_by_seed() {
        let runs = floor_and_method(&[(0, 60.0, 70.0), (1, 50.0, 64.0), (2, 55.0, 66.0)]);
        let build = testing::build();
        let rows = rows(&runs, &build);
        let m = rows.iter().find(|r| r.target == "m").unwrap();
        let knn = m.knn_top1.as_ref().unwrap();
        assert_eq!((knn.n, knn.mean), (3, (70.0 + 64.0 + 66.0) / 3.0));
        // Paired: (10 + 14 + 11) / 3.
        assert!((m.knn_gain.unwrap() - 35.0 / 3.0).abs() < 1e-3, "{:?}", m.knn_gain);
        assert_eq!(m.status, "ok");
        let table = render(&runs, &[], &build, Format::Terminal).unwrap();
        assert!(table.contains("66.67 ± 3.06") && table.contains("3/3") && table.contains("+11.67"), "{table}");
        assert!(table.contains("k-NN top-1: knn_top1@k20_t0.07_cosine_bankall"), "{table}");
        // Every seed's value stays in the CSV.
        let csv = render(&runs, &[], &build, Format::Csv).unwrap();
        assert!(csv.starts_with("suite,target,seed,method,"), "{csv}");
        for v in ["70.0", "64.0", "66.0", "60.0", "50.0", "55.0"] {
            assert!(csv.contains(&format!(",{v},")), "{v} missing:\n{csv}");
        }
        let json: serde_json::Value = serde_json::from_str(&render(&runs, &[], &build, Format::Json).unwrap()).unwrap();
        assert_eq!(json["rows"][1]["knn_top1"]["values"][1], serde_json::json!([1, 64.0]));
    }

    /// A sweep's points form one table with the swept values as columns; the main table keeps the
    /// other targets; CSV names each run's sweep and point.
    #[test]
    fn sweeps_are_one_table_with_their_values_as_columns() {
        let mut t = testing::targets(&[0], "");
        let mut points = Vec::new();
        for (b, m) in [(64, "0.9"), (64, "0.99"), (128, "0.9"), (128, "0.99")] {
            let mut p = t[1].clone();
            p.id = format!("m@batch_size={b},momentum={m}");
            p.train.batch_size = b;
            p.sweep = Some(SweepPoint { of: "m".into(), values: vec![("train.batch_size".into(), b.to_string()), ("method_params.momentum".into(), m.into())] });
            points.push(p);
        }
        t.truncate(1);
        let mut runs = vec![testing::run(&t[0], 0, 0, 50.0, 45.0)];
        runs.extend(points.iter().enumerate().map(|(i, p)| testing::run(p, i + 1, 0, 60.0 + i as f64, 55.0)));
        let build = testing::build();
        let table = render(&runs, &[], &build, Format::Terminal).unwrap();
        assert!(table.contains("sweep m: 4 points of simclr"), "{table}");
        let header = table.lines().find(|l| l.contains("train.batch_size")).unwrap_or_else(|| panic!("{table}"));
        assert!(header.contains("method_params.momentum") && header.contains("k-NN top-1"), "{header}");
        let row = table.lines().find(|l| l.contains("128") && l.contains("0.99")).unwrap_or_else(|| panic!("{table}"));
        assert!(row.contains("63.00") && row.contains("+13.00"), "{row}");
        assert!(!table.contains("m@batch_size"), "the points are not in the main table:\n{table}");
        let md = render(&runs, &[], &build, Format::Md).unwrap();
        assert!(md.contains("**sweep m: 4 points") && md.contains("| train.batch_size |"), "{md}");
        let csv = render(&runs, &[], &build, Format::Csv).unwrap();
        assert!(csv.lines().next().unwrap().ends_with(",sweep,sweep_point") && csv.contains(",m,\"train.batch_size=128,method_params.momentum=0.99\""), "{csv}");
    }

    #[test]
    fn stale_rows_are_marked() {
        let mut runs = floor_and_method(&[(0, 60.0, 70.0)]);
        runs[1].env.as_mut().unwrap().machine.git_commit = Some("0123456789abcdef".into());
        let build = testing::build();
        let rows = rows(&runs, &build);
        assert!(rows[1].stale && !rows[0].stale);
        let table = render(&runs, &[], &build, Format::Md).unwrap();
        assert!(table.contains("0123456*") && table.contains("made by another build than this one (feedfac)"), "{table}");
    }
}
