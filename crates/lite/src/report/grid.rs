//! Tables as papers print them: methods as rows, datasets (or metrics) as columns, over one or
//! several suites' results. Each cell is our mean ± std over seeds, with the paper's number the
//! suite cites for that metric, Δ (ours − paper) and the verdict's mark beside it. Formats:
//! terminal, Markdown, CSV (one line per cell), JSON and LaTeX (booktabs, best per column in bold,
//! a caption naming the protocol, the commits and the seeds).

use serde::Serialize;
use tabled::settings::Style;

use super::Row;
use crate::plan::Provenance;
use crate::verdict::{PaperVerdict, Summary};

/// What the columns are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Columns {
    /// Datasets when the results span several, else metrics.
    Auto,
    /// One column per dataset (the metric chosen by `--metric`).
    Dataset,
    /// One column per metric: k-NN, linear probe, and the paper's own protocol where one gates.
    Metric,
}

/// What a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rows {
    /// One row per method (with its backbone when a method runs on several); targets that still
    /// collide in a column get rows of their own, named by target id.
    Method,
    /// One row per target id.
    Target,
}

/// Which number a dataset column shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricChoice {
    /// The metric of the target's first paper number (its paper's own protocol), else the
    /// standard linear probe.
    Paper,
    /// The standard linear probe (`eval.linear`).
    Linear,
    /// The standard weighted k-NN (`eval.knn`).
    Knn,
}

/// One row of the results (a target of a suite), as the grid reads it.
pub struct Entry<'a> {
    pub suite: &'a str,
    pub row: &'a Row,
}

/// A published number beside a cell.
#[derive(Debug, Clone, Serialize)]
pub struct PaperRef {
    pub value: f64,
    pub tolerance: f64,
    pub status: Provenance,
    pub source: String,
    pub verdict: PaperVerdict,
    /// ours mean − paper.
    pub delta: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub suite: String,
    pub target: String,
    pub dataset: String,
    pub metric: String,
    pub ours: Option<Summary>,
    /// Seeds the suite asked for.
    pub seeds: usize,
    pub paper: Option<PaperRef>,
    /// Highest mean of its column.
    pub best: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GridRow {
    pub label: String,
    pub cells: Vec<Option<Cell>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Grid {
    pub columns_are: Columns,
    pub rows_are: Rows,
    pub columns: Vec<String>,
    pub rows: Vec<GridRow>,
    /// Every metric a cell shows, in order of first use (the protocol footnotes).
    pub metrics: Vec<String>,
    /// Every paper number's source, in order of first use.
    pub sources: Vec<String>,
    /// The commits that made the numbers.
    pub commits: Vec<String>,
    /// The seeds of the runs.
    pub seeds: Vec<u64>,
}

/// Whether the entries span more than one dataset (the `auto` layouts switch on it).
pub fn spans_datasets(entries: &[Entry]) -> bool {
    entries.iter().any(|e| e.row.dataset != entries[0].row.dataset)
}

/// The metric (name, our summary) a row shows under `choice`, with the paper number for it.
fn pick(r: &Row, choice: MetricChoice) -> (String, Option<Summary>) {
    match choice {
        MetricChoice::Knn => (r.knn_metric.clone(), r.knn_top1.clone()),
        MetricChoice::Linear => (r.linear_metric.clone(), r.linear_top1.clone()),
        MetricChoice::Paper => {
            let first = r.checks.iter().find(|c| c.expected.status == Provenance::Verified).or(r.checks.first());
            match first {
                Some(c) => (c.expected.metric.clone(), c.summary.clone()),
                None => (r.linear_metric.clone(), r.linear_top1.clone()),
            }
        }
    }
}

fn cell(e: &Entry, metric: String, ours: Option<Summary>) -> Cell {
    let r = e.row;
    let paper = r.checks.iter().find(|c| c.expected.metric == metric).map(|c| PaperRef {
        value: c.expected.value,
        tolerance: c.expected.tolerance,
        status: c.expected.status,
        source: c.expected.source.clone(),
        verdict: c.verdict,
        delta: ours.as_ref().map(|s| ((s.mean - c.expected.value) * 100.0).round() / 100.0),
    });
    Cell { suite: e.suite.to_owned(), target: r.target.clone(), dataset: r.dataset.clone(), metric, ours, seeds: r.seeds.len(), paper, best: false }
}

/// Builds the grid. Sweep points are left out (each sweep has its own table and plot).
pub fn build(entries: &[Entry], columns: Columns, rows_by: Rows, choice: MetricChoice) -> Grid {
    let entries: Vec<&Entry> = entries.iter().filter(|e| e.row.sweep.is_none()).collect();
    let columns_are = match columns {
        Columns::Auto if entries.iter().any(|e| e.row.dataset != entries[0].row.dataset) => Columns::Dataset,
        Columns::Auto => Columns::Metric,
        c => c,
    };
    // (column, cell) pairs per entry.
    let placed: Vec<Vec<(String, Cell)>> = entries
        .iter()
        .map(|e| match columns_are {
            Columns::Metric => {
                let r = e.row;
                let mut v = vec![
                    ("k-NN top-1".to_owned(), cell(e, r.knn_metric.clone(), r.knn_top1.clone())),
                    ("linear top-1".to_owned(), cell(e, r.linear_metric.clone(), r.linear_top1.clone())),
                ];
                let (m, s) = pick(r, MetricChoice::Paper);
                if m != r.knn_metric && m != r.linear_metric {
                    v.push(("paper protocol".to_owned(), cell(e, m, s)));
                }
                v
            }
            _ => {
                let (m, s) = pick(e.row, choice);
                vec![(e.row.dataset.clone(), cell(e, m, s))]
            }
        })
        .collect();
    let mut cols: Vec<String> = Vec::new();
    for (c, _) in placed.iter().flatten() {
        if !cols.contains(c) {
            cols.push(c.clone());
        }
    }
    let labels = labels(&entries, &placed, rows_by);
    let mut rows: Vec<GridRow> = Vec::new();
    for (label, cells) in labels.into_iter().zip(placed) {
        let i = match rows.iter().position(|r| r.label == label) {
            Some(i) => i,
            None => {
                rows.push(GridRow { label, cells: vec![None; cols.len()] });
                rows.len() - 1
            }
        };
        for (c, cell) in cells {
            let j = cols.iter().position(|x| *x == c).unwrap_or_default();
            rows[i].cells[j] = Some(cell);
        }
    }
    for j in 0..cols.len() {
        let best = rows.iter().filter_map(|r| r.cells[j].as_ref()?.ours.as_ref().map(|s| s.mean)).fold(f64::NEG_INFINITY, f64::max);
        for r in &mut rows {
            if let Some(c) = r.cells[j].as_mut() {
                c.best = best.is_finite() && c.ours.as_ref().is_some_and(|s| s.mean == best);
            }
        }
    }
    let mut metrics = Vec::new();
    let mut sources = Vec::new();
    let mut seeds = Vec::new();
    for c in rows.iter().flat_map(|r| r.cells.iter().flatten()) {
        push_new(&mut metrics, &c.metric);
        if let Some(p) = &c.paper {
            push_new(&mut sources, &p.source);
        }
        for (s, _) in c.ours.iter().flat_map(|s| &s.values) {
            if !seeds.contains(s) {
                seeds.push(*s);
            }
        }
    }
    seeds.sort_unstable();
    let mut commits = Vec::new();
    for e in &entries {
        for c in &e.row.commits {
            push_new(&mut commits, c);
        }
    }
    Grid { columns_are, rows_are: rows_by, columns: cols, rows, metrics, sources, commits, seeds }
}

fn push_new(v: &mut Vec<String>, x: &str) {
    if !v.iter().any(|y| y == x) {
        v.push(x.to_owned());
    }
}

/// Row labels: the method (with its backbone where the method runs on several), or the target id
/// for targets that would share a cell with another.
fn labels(entries: &[&Entry], placed: &[Vec<(String, Cell)>], rows_by: Rows) -> Vec<String> {
    if rows_by == Rows::Target {
        return entries.iter().map(|e| e.row.target.clone()).collect();
    }
    let method = |e: &Entry| if e.row.method == "random_init" { "random init".to_owned() } else { e.row.method.clone() };
    let mut labels: Vec<String> = entries
        .iter()
        .map(|e| {
            let several = entries.iter().any(|o| o.row.method == e.row.method && o.row.backbone != e.row.backbone);
            if several {
                format!("{} ({})", method(e), e.row.backbone)
            } else {
                method(e)
            }
        })
        .collect();
    // Two entries with one label and a shared column: both get their target ids.
    let clash: Vec<bool> =
        (0..entries.len()).map(|i| (0..entries.len()).any(|j| j != i && labels[i] == labels[j] && placed[i].iter().any(|(c, _)| placed[j].iter().any(|(d, _)| c == d)))).collect();
    for (i, l) in labels.iter_mut().enumerate() {
        if clash[i] {
            *l = entries[i].row.target.clone();
        }
    }
    labels
}

/// The mark of a verdict: ✓ reproduced, ✗ below, ↑ above, ? inconclusive, – missing; a number
/// that is not verified (so never gated) gets a dagger.
fn mark(p: &PaperRef, latex: bool) -> String {
    let m = match (p.verdict, latex) {
        (PaperVerdict::Reproduced, false) => "✓",
        (PaperVerdict::Below, false) => "✗",
        (PaperVerdict::Above, false) => "↑",
        (PaperVerdict::Inconclusive, _) => "?",
        (PaperVerdict::Missing, false) => "–",
        (PaperVerdict::Reproduced, true) => r"\checkmark",
        (PaperVerdict::Below, true) => r"$\times$",
        (PaperVerdict::Above, true) => r"$\uparrow$",
        (PaperVerdict::Missing, true) => "--",
    };
    let dagger = if p.status == Provenance::Verified {
        ""
    } else if latex {
        r"$^\dagger$"
    } else {
        "†"
    };
    format!("{m}{dagger}")
}

impl Grid {
    fn row_header(&self) -> &'static str {
        match self.rows_are {
            Rows::Method => "method",
            Rows::Target => "target",
        }
    }

    /// Footnote number (1-based) of a cell's metric, when the grid shows more than one metric.
    fn metric_note(&self, c: &Cell) -> Option<usize> {
        (self.metrics.len() > 1).then(|| self.metrics.iter().position(|m| *m == c.metric).map_or(0, |i| i + 1))
    }

    fn text_cell(&self, c: &Cell, md: bool) -> String {
        let ours = c.ours.as_ref().map_or_else(|| "–".to_owned(), Summary::label);
        let ours = if md && c.best { format!("**{ours}**") } else { ours };
        let n = c.ours.as_ref().map_or(0, |s| s.n);
        let note = self.metric_note(c).map(|i| format!(" [{i}]")).unwrap_or_default();
        let seeds = if n != c.seeds { format!(" ({n}/{} seeds)", c.seeds) } else { String::new() };
        match &c.paper {
            Some(p) => {
                let delta = p.delta.map(|d| format!(", Δ {d:+.2}")).unwrap_or_default();
                format!("{ours}{note}{seeds} · paper {}{delta} {}", p.value, mark(p, false))
            }
            None => format!("{ours}{note}{seeds}"),
        }
    }

    /// The caption: what the cells are, the protocols, the marks, the seeds and the commits.
    pub fn caption(&self) -> String {
        let seeds = self.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        format!(
            "Top-1 accuracy (%), mean ± sample std over seeds {{{seeds}}}; beside it the paper's number, Δ = ours − paper, and the verdict (✓ reproduced, ✗ below, ↑ above, ? inconclusive, – missing; † not verified, never gated). Commit{} {}.",
            if self.commits.len() > 1 { "s" } else { "" },
            if self.commits.is_empty() { "unknown".to_owned() } else { self.commits.join(", ") }
        )
    }

    fn footnotes(&self) -> Vec<String> {
        let mut out: Vec<String> = match self.metrics.as_slice() {
            [one] => vec![format!("protocol: {one}")],
            many => many.iter().enumerate().map(|(i, m)| format!("[{}] {m}", i + 1)).collect(),
        };
        out.extend(self.sources.iter().map(|s| format!("source: {s}")));
        out
    }

    /// Terminal (rounded box) or Markdown table, with the caption and the footnotes.
    pub fn text(&self, md: bool) -> String {
        let mut b = tabled::builder::Builder::default();
        b.push_record(std::iter::once(self.row_header().to_owned()).chain(self.columns.iter().cloned()));
        for r in &self.rows {
            b.push_record(std::iter::once(r.label.clone()).chain(r.cells.iter().map(|c| c.as_ref().map_or_else(|| "–".to_owned(), |c| self.text_cell(c, md)))));
        }
        let mut t = b.build();
        let table = if md { t.with(Style::markdown()) } else { t.with(Style::rounded()) }.to_string();
        if md {
            let notes: Vec<String> = self.footnotes().into_iter().map(|n| format!("- {n}")).collect();
            format!("{table}\n\n{}\n\n{}\n", self.caption(), notes.join("\n"))
        } else {
            format!("{table}\n{}\n{}\n", self.caption(), self.footnotes().join("\n"))
        }
    }

    /// One CSV line per cell.
    pub fn csv(&self) -> anyhow::Result<String> {
        #[derive(Serialize)]
        struct Line<'a> {
            row: &'a str,
            column: &'a str,
            suite: &'a str,
            target: &'a str,
            dataset: &'a str,
            metric: &'a str,
            n: usize,
            seeds: usize,
            mean: Option<f64>,
            std: Option<f64>,
            paper: Option<f64>,
            tolerance: Option<f64>,
            status: Option<&'static str>,
            delta: Option<f64>,
            verdict: Option<&'static str>,
            best: bool,
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in &self.rows {
            for (j, c) in r.cells.iter().enumerate() {
                let Some(c) = c else { continue };
                w.serialize(Line {
                    row: &r.label,
                    column: &self.columns[j],
                    suite: &c.suite,
                    target: &c.target,
                    dataset: &c.dataset,
                    metric: &c.metric,
                    n: c.ours.as_ref().map_or(0, |s| s.n),
                    seeds: c.seeds,
                    mean: c.ours.as_ref().map(|s| s.mean),
                    std: c.ours.as_ref().map(|s| s.std),
                    paper: c.paper.as_ref().map(|p| p.value),
                    tolerance: c.paper.as_ref().map(|p| p.tolerance),
                    status: c.paper.as_ref().map(|p| p.status.word()),
                    delta: c.paper.as_ref().and_then(|p| p.delta),
                    verdict: c.paper.as_ref().map(|p| p.verdict.word()),
                    best: c.best,
                })?;
            }
        }
        Ok(String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?)?)
    }

    /// A LaTeX `table` (booktabs; needs `\usepackage{booktabs,amssymb}`), best mean per column in
    /// bold, our std and the paper's number in small type.
    pub fn latex(&self) -> String {
        let mut out = String::from("% repro report --format latex: needs \\usepackage{booktabs} and \\usepackage{amssymb}\n");
        out += "\\begin{table}[t]\n\\centering\n\\small\n";
        out += &format!("\\begin{{tabular}}{{l{}}}\n\\toprule\n", "c".repeat(self.columns.len()));
        out += &format!("{} & {} \\\\\n\\midrule\n", tex(&capitalised(self.row_header())), self.columns.iter().map(|c| tex(c)).collect::<Vec<_>>().join(" & "));
        for r in &self.rows {
            let cells: Vec<String> = r
                .cells
                .iter()
                .map(|c| {
                    let Some(c) = c else { return "--".to_owned() };
                    let mean = match &c.ours {
                        Some(s) if c.best => format!("\\textbf{{{:.2}}}", s.mean),
                        Some(s) => format!("{:.2}", s.mean),
                        None => "--".to_owned(),
                    };
                    let std = c.ours.as_ref().filter(|s| s.n >= 2).map(|s| format!("{{\\scriptsize$\\pm${:.2}}}", s.std)).unwrap_or_default();
                    let note = self.metric_note(c).map(|i| format!("$^{{{i}}}$")).unwrap_or_default();
                    let paper = c
                        .paper
                        .as_ref()
                        .map(|p| {
                            let delta = p.delta.map(|d| format!(", ${d:+.2}$")).unwrap_or_default();
                            format!(" {{\\scriptsize({}{delta}) {}}}", p.value, mark(p, true))
                        })
                        .unwrap_or_default();
                    format!("{mean}{std}{note}{paper}")
                })
                .collect();
            out += &format!("{} & {} \\\\\n", tex(&r.label), cells.join(" & "));
        }
        out += "\\bottomrule\n\\end{tabular}\n";
        let seeds = self.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        let protocols: Vec<String> = self
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| if self.metrics.len() > 1 { format!("$^{{{}}}$\\,\\texttt{{{}}}", i + 1, tex_breakable(m)) } else { format!("\\texttt{{{}}}", tex_breakable(m)) })
            .collect();
        let commits = if self.commits.is_empty() { "unknown".to_owned() } else { self.commits.iter().map(|c| format!("\\texttt{{{}}}", tex(c))).collect::<Vec<_>>().join(", ") };
        out += &format!(
            "\\caption{{Top-1 accuracy (\\%), mean {{\\scriptsize$\\pm$ sample std}} over seeds \\{{{seeds}\\}}, best per column in bold; in parentheses the paper's number and ours $-$ paper, with the verdict (\\checkmark{{}} reproduced, $\\times$ below, $\\uparrow$ above, ? inconclusive; $^\\dagger$ not verified, never gated). Protocol{}: {}. Commit{} {commits}.}}\n",
            if protocols.len() > 1 { "s" } else { "" },
            protocols.join("; "),
            if self.commits.len() > 1 { "s" } else { "" }
        );
        out += "\\label{tab:repro}\n\\end{table}\n";
        for s in &self.sources {
            out += &format!("% source: {s}\n");
        }
        out
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// LaTeX-escapes text (and replaces the few non-ASCII characters repro writes).
pub fn tex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out += r"\textbackslash{}",
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out += r"\textasciitilde{}",
            '^' => out += r"\textasciicircum{}",
            '±' => out += r"$\pm$",
            'Δ' => out += r"$\Delta$",
            '×' => out += r"$\times$",
            '–' => out += "--",
            '·' => out += r"$\cdot$",
            c if c.is_ascii() => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// Escaped like [`tex`], with break points after `_`, `@` and `-` so a long metric name wraps.
fn tex_breakable(s: &str) -> String {
    tex(s).replace(r"\_", r"\_\allowbreak{}").replace('@', r"@\allowbreak{}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::rows;
    use crate::results::testing::{self, run, targets};

    /// Two suites (datasets d and e) of a floor and SimCLR over two seeds; SimCLR on d cites a
    /// verified linear number, on e an unverified one.
    fn two_suites() -> Vec<(String, Vec<Row>)> {
        let linear = targets(&[0, 1], "")[1].eval.linear.metric_name();
        let build = testing::build();
        let mut out = Vec::new();
        for (suite, dataset, paper, status, base) in [("s_d", "d", 66.0, "verified", 60.0), ("s_e", "e", 50.0, "unverified", 40.0)] {
            let mut t = targets(&[0, 1], &format!("{{metric: \"{linear}\", value: {paper}, tolerance: 1.0, source: \"Paper (2099), Table 1\", status: {status}}}"));
            for x in &mut t {
                x.dataset = dataset.into();
            }
            let runs =
                vec![run(&t[0], 0, 0, base, base - 5.0), run(&t[0], 0, 1, base, base - 5.0), run(&t[1], 1, 0, base + 10.0, base + 5.0), run(&t[1], 1, 1, base + 12.0, base + 7.0)];
            out.push((suite.to_owned(), rows(&runs, &build)));
        }
        out
    }

    fn grid(suites: &[(String, Vec<Row>)], columns: Columns, choice: MetricChoice) -> Grid {
        let entries: Vec<Entry> = suites.iter().flat_map(|(s, rs)| rs.iter().map(move |r| Entry { suite: s, row: r })).collect();
        build(&entries, columns, Rows::Method, choice)
    }

    #[test]
    fn methods_by_datasets_with_the_paper_beside() {
        let suites = two_suites();
        let g = grid(&suites, Columns::Auto, MetricChoice::Paper);
        assert_eq!(g.columns_are, Columns::Dataset);
        assert_eq!(g.columns, ["d", "e"]);
        assert_eq!(g.rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["random init", "simclr"]);
        let c = g.rows[1].cells[0].as_ref().unwrap();
        // SimCLR on d: linear 65 and 67 → 66 ± 1.41; paper 66 → Δ 0, reproduced, best of its column.
        let s = c.ours.as_ref().unwrap();
        assert_eq!((s.n, s.mean), (2, 66.0));
        let p = c.paper.as_ref().unwrap();
        assert_eq!((p.value, p.delta, p.verdict), (66.0, Some(0.0), PaperVerdict::Inconclusive));
        assert!(c.best && !g.rows[0].cells[0].as_ref().unwrap().best);
        assert_eq!(g.seeds, [0, 1]);
        assert_eq!(g.commits, ["feedfac"]);
        let text = g.text(false);
        assert!(text.contains("66.00 ± 1.41 · paper 66, Δ +0.00 ?") && text.contains("paper 50, Δ -4.00 ?†") && text.contains("protocol: linear_top1@"), "{text}");
        let md = g.text(true);
        assert!(md.contains("| method ") && md.contains("**66.00 ± 1.41**") && md.contains("source: Paper (2099), Table 1"), "{md}");
        let csv = g.csv().unwrap();
        assert_eq!(csv.lines().count(), 5, "{csv}");
        assert!(csv.starts_with("row,column,suite,target,dataset,metric,n,seeds,mean,std,paper,") && csv.contains("simclr,d,s_d,m,d,"), "{csv}");
        let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(json["rows"][1]["cells"][1]["paper"]["status"], "unverified");
    }

    #[test]
    fn one_dataset_puts_metrics_in_the_columns() {
        let suites = two_suites();
        let g = grid(&suites[..1], Columns::Auto, MetricChoice::Paper);
        assert_eq!(g.columns_are, Columns::Metric);
        assert_eq!(g.columns, ["k-NN top-1", "linear top-1"]);
        // The paper number sits in the column of its metric only.
        assert!(g.rows[1].cells[0].as_ref().unwrap().paper.is_none() && g.rows[1].cells[1].as_ref().unwrap().paper.is_some());
        // A label shared within a column falls back to target ids.
        let mut twice = suites[0].1.clone();
        let mut again = twice[1].clone();
        again.target = "m2".into();
        twice.push(again);
        let g = grid(&[("s".into(), twice)], Columns::Metric, MetricChoice::Linear);
        assert_eq!(g.rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["random init", "m", "m2"]);
    }

    #[test]
    fn latex_compiles_with_pdflatex() {
        let g = grid(&two_suites(), Columns::Auto, MetricChoice::Paper);
        let tex = g.latex();
        assert!(tex.contains("\\toprule") && tex.contains("\\textbf{66.00}") && tex.contains("(66, $+0.00$) ?") && tex.contains("$^\\dagger$"), "{tex}");
        assert!(tex.contains("linear\\_\\allowbreak{}top1@\\allowbreak{}"), "{tex}");
        let d = tempfile::tempdir().unwrap();
        let doc = format!("\\documentclass{{article}}\n\\usepackage{{booktabs}}\n\\usepackage{{amssymb}}\n\\begin{{document}}\n{tex}\n\\end{{document}}\n");
        std::fs::write(d.path().join("t.tex"), doc).unwrap();
        let o = std::process::Command::new("pdflatex")
            .args(["-interaction=nonstopmode", "-halt-on-error", "t.tex"])
            .current_dir(d.path())
            .output()
            .unwrap_or_else(|e| panic!("pdflatex: {e}: install texlive-latex-base and texlive-latex-recommended (scripts/test does)"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        assert!(d.path().join("t.pdf").metadata().unwrap().len() > 1000);
        if let Some(dir) = std::env::var_os("REPRO_PLOT_DUMP") {
            std::fs::copy(d.path().join("t.pdf"), std::path::Path::new(&dir).join("grid.pdf")).unwrap();
        }
    }

    #[test]
    fn latex_escapes() {
        assert_eq!(tex("a_b & 50% #1 ±"), "a\\_b \\& 50\\% \\#1 $\\pm$");
    }
}
