//! Paper-style tables from stored run records alone (no libtorch, no ONNX Runtime): one row per
//! target with k-NN and linear top-1, the gain over the suite's random-init floor, the paper's
//! number where the suite cites one, and wall time. Exporters: terminal, Markdown, CSV, JSON.

use anyhow::Result;
use serde::Serialize;
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::plan::Method;
use crate::results::StoredRun;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Terminal,
    Md,
    Csv,
    Json,
}

/// One table row, as numbers (None = not available).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: String,
    pub method: String,
    pub backbone: String,
    pub epochs: usize,
    pub knn_top1: Option<f64>,
    pub linear_top1: Option<f64>,
    pub knn_gain: Option<f64>,
    pub linear_gain: Option<f64>,
    /// `metric value (status)` of the suite's `expected:` entries.
    pub paper: String,
    pub wall_s: Option<f64>,
    pub status: String,
}

/// Builds rows; gains are against the first `random_init` target on the same dataset.
pub fn rows(runs: &[StoredRun]) -> Vec<Row> {
    let value = |r: &StoredRun, name: &str| r.metrics.as_ref().and_then(|m| m.metrics.get(name)).map(|m| m.value);
    let knn = |r: &StoredRun| value(r, &r.config.target.eval.knn.metric_name());
    let lin = |r: &StoredRun| value(r, &r.config.target.eval.linear.metric_name());
    let floor = |r: &StoredRun| {
        runs.iter().find(|f| matches!(f.config.target.method, Method::RandomInit) && f.config.target.dataset == r.config.target.dataset && f.metrics.is_some())
    };
    runs.iter()
        .map(|r| {
            let t = &r.config.target;
            let fl = floor(r).filter(|f| f.config.target.id != t.id);
            let gain = |mine: Option<f64>, theirs: Option<f64>| mine.zip(theirs).map(|(a, b)| ((a - b) * 1e4).round() / 1e4);
            let status = match (&r.metrics, &r.failure) {
                (Some(_), _) => "ok".to_owned(),
                (None, Some(f)) => format!("failed: {}", f.error.lines().next().unwrap_or("")),
                (None, None) => "incomplete".to_owned(),
            };
            Row {
                target: t.id.clone(),
                method: t.method.name().to_owned(),
                backbone: t.backbone.label(),
                epochs: if t.method.trains() { t.train.epochs } else { 0 },
                knn_top1: knn(r),
                linear_top1: lin(r),
                knn_gain: fl.and_then(|f| gain(knn(r), knn(f))),
                linear_gain: fl.and_then(|f| gain(lin(r), lin(f))),
                paper: t.expected.iter().map(|e| format!("{} {} ({:?})", e.metric, e.value, e.status).to_lowercase()).collect::<Vec<_>>().join("; "),
                wall_s: r.env.as_ref().map(|e| e.wall_s),
                status,
            }
        })
        .collect()
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
    #[tabled(rename = "wall time")]
    wall: String,
    #[tabled(rename = "status")]
    status: String,
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
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

fn cells(rows: &[Row]) -> Vec<Cells> {
    rows.iter()
        .map(|r| Cells {
            target: r.target.clone(),
            method: r.method.clone(),
            backbone: r.backbone.clone(),
            epochs: r.epochs.to_string(),
            knn: pct(r.knn_top1),
            linear: pct(r.linear_top1),
            knn_gain: signed(r.knn_gain),
            linear_gain: signed(r.linear_gain),
            paper: if r.paper.is_empty() { "–".into() } else { r.paper.clone() },
            wall: duration(r.wall_s),
            status: r.status.clone(),
        })
        .collect()
}

/// Renders the rows in one format.
pub fn render(rows: &[Row], format: Format) -> Result<String> {
    Ok(match format {
        Format::Terminal => Table::new(cells(rows)).with(Style::rounded()).to_string(),
        Format::Md => Table::new(cells(rows)).with(Style::markdown()).to_string(),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in rows {
                w.serialize(r)?;
            }
            String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?)?
        }
        Format::Json => serde_json::to_string_pretty(rows)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, knn: Option<f64>) -> Row {
        Row {
            target: target.into(),
            method: "corinfomax".into(),
            backbone: "resnet18 w8".into(),
            epochs: 3,
            knn_top1: knn,
            linear_top1: Some(80.0),
            knn_gain: Some(1.25),
            linear_gain: None,
            paper: String::new(),
            wall_s: Some(75.0),
            status: "ok".into(),
        }
    }

    #[test]
    fn formats_render_every_row() {
        let rows = vec![row("a", Some(77.5)), row("b", None)];
        let md = render(&rows, Format::Md).unwrap();
        assert!(md.contains("| a ") && md.contains("77.50") && md.contains("+1.25") && md.contains("1m15s"), "{md}");
        let csv = render(&rows, Format::Csv).unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(csv.starts_with("target,method,backbone,epochs,knn_top1,linear_top1"), "{csv}");
        let json: serde_json::Value = serde_json::from_str(&render(&rows, Format::Json).unwrap()).unwrap();
        assert_eq!(json[1]["knn_top1"], serde_json::Value::Null);
    }
}
