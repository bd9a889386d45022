//! Plots, drawn as SVG (plotters) and rasterised to PNG (resvg):
//! - per sweep over one numeric key: k-NN and linear top-1 (mean over seeds, ± one sample standard
//!   deviation as error bars) against the swept value; the x axis is logarithmic (base 2) when the
//!   values span 8× or more (batch sizes), linear otherwise (EMA coefficients);
//! - per suite: each target's k-NN and linear top-1 as bars with seed error bars, the paper's
//!   number marked on the bar of its metric;
//! - per trained target: its loss terms and its monitor k-NN over epochs, one line per seed.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

use super::Row;
use crate::results::{BuildInfo, EpochLog, StoredRun};
use crate::verdict::Summary;

/// The file a sweep's plot is written to, next to `results.md`.
pub fn file_name(sweep: &str) -> String {
    format!("sweep_{}.svg", safe(sweep))
}

/// A sweep's points as (x, k-NN, linear), when it has exactly one key and every value is a
/// number; sorted by x.
fn one_axis<'a>(points: &[&'a Row]) -> Option<(String, Vec<(f64, &'a Row)>)> {
    let key = points.first()?.sweep.as_ref()?.values.first()?.0.clone();
    let mut xs = Vec::new();
    for r in points {
        let p = r.sweep.as_ref()?;
        if p.values.len() != 1 || p.values[0].0 != key {
            return None;
        }
        xs.push((p.values[0].1.parse::<f64>().ok().filter(|x| x.is_finite())?, *r));
    }
    xs.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some((key, xs))
}

/// A plot: the file it goes to (`.svg`; the PNG has the same stem), its title, the SVG.
pub struct Plot {
    pub file: String,
    pub title: String,
    pub svg: String,
}

/// The plot of every one-axis numeric sweep among `rows` with at least one finished point.
pub fn sweep_plots(rows: &[Row]) -> Result<Vec<Plot>> {
    let mut out = Vec::new();
    for (of, points) in super::sweep_groups(rows) {
        let Some((key, xs)) = one_axis(&points) else { continue };
        if xs.iter().all(|(_, r)| r.knn_top1.is_none() && r.linear_top1.is_none()) {
            continue;
        }
        let r = xs[0].1;
        let title = format!("sweep {of}: {} points of {} on {} ({}, {} epochs)", xs.len(), r.method, r.dataset, r.backbone, r.epochs);
        out.push(Plot { file: file_name(of), title, svg: svg(of, &key, &xs)? });
    }
    Ok(out)
}

/// A plotted metric: its legend, where a row holds it, its colour.
type Series = (&'static str, fn(&Row) -> &Option<Summary>, RGBColor);

fn svg(of: &str, key: &str, xs: &[(f64, &Row)]) -> Result<String> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plot of sweep {of}: {e}");
    let (lo, hi) = (xs[0].0, xs[xs.len() - 1].0);
    let log = lo > 0.0 && hi / lo >= 8.0;
    let t = |x: f64| if log { x.log2() } else { x };
    let pad = ((t(hi) - t(lo)) * 0.08).max(if log { 0.25 } else { 1e-3 * hi.abs().max(1e-3) });
    let series: [Series; 2] = [("k-NN top-1", |r| &r.knn_top1, RGBColor(31, 119, 180)), ("linear top-1", |r| &r.linear_top1, RGBColor(214, 39, 40))];
    let all: Vec<f64> = xs.iter().flat_map(|(_, r)| series.iter().filter_map(move |s| s.1(r).as_ref()).flat_map(|s| [s.mean - s.std, s.mean + s.std])).collect();
    let (ylo, yhi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let ypad = ((yhi - ylo) * 0.15).max(1.0);
    let first = xs[0].1;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (720, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let caption = format!("sweep {of}: {} on {} ({}, {} epochs)", first.method, first.dataset, first.backbone, first.epochs);
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d((t(lo) - pad)..(t(hi) + pad), (ylo - ypad).max(0.0)..(yhi + ypad).min(100.0))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(if log { format!("{key} (log scale)") } else { key.to_owned() })
            .y_desc("top-1 (%), mean ± std over seeds")
            .max_light_lines(1)
            .x_labels(0)
            .disable_x_mesh()
            .draw()
            .map_err(|e| err(&e))?;
        // Ticks at the swept values only, labelled in their own units.
        let y0 = (ylo - ypad).max(0.0);
        let tick = ("sans-serif", 12)
            .into_font()
            .color(&BLACK)
            .pos(plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Center, plotters::style::text_anchor::VPos::Top));
        chart
            .draw_series(xs.iter().map(|(x, _)| EmptyElement::at((t(*x), y0)) + PathElement::new([(0, 0), (0, 5)], BLACK) + Text::new(format!("{x}"), (0, 8), tick.clone())))
            .map_err(|e| err(&e))?;
        for (name, get, color) in series {
            let pts: Vec<(f64, f64, f64)> = xs.iter().filter_map(|(x, r)| get(r).as_ref().map(|s| (t(*x), s.mean, s.std))).collect();
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 4, color.filled()))).map_err(|e| err(&e))?;
            chart.draw_series(pts.iter().filter(|p| p.2 > 0.0).map(|p| ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, color, 8))).map_err(|e| err(&e))?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(text)
}

/// Every plot of the suites' runs (sweeps, accuracy bars, training curves), written to `dir` as
/// SVG and PNG; returned in the order a report links them.
pub fn write_all(suites: &[(String, Vec<StoredRun>)], build: &BuildInfo, dir: &Path) -> Result<Vec<Plot>> {
    let mut plots = Vec::new();
    for (suite, runs) in suites {
        let rows = super::rows(runs, build);
        plots.extend(accuracy_bars(suite, &rows)?);
        plots.extend(sweep_plots(&rows)?);
        plots.extend(training_curves(suite, runs)?);
    }
    write(&plots, dir)?;
    Ok(plots)
}

/// Writes each plot as `<file>.svg` and `<file>.png` under `dir` (atomically).
pub fn write(plots: &[Plot], dir: &Path) -> Result<()> {
    if plots.is_empty() {
        return Ok(());
    }
    let fonts = fonts();
    for p in plots {
        crate::util::write_atomic(&dir.join(&p.file), p.svg.as_bytes())?;
        let png = png(&p.svg, &fonts).with_context(|| format!("cannot rasterise plot {}", p.file))?;
        crate::util::write_atomic(&dir.join(png_name(&p.file)), &png)?;
    }
    Ok(())
}

/// `x.svg` → `x.png`.
pub fn png_name(svg: &str) -> String {
    format!("{}.png", svg.strip_suffix(".svg").unwrap_or(svg))
}

/// Markdown image links to the plots (the SVGs; the PNG lies beside each), under `prefix`.
pub fn links(plots: &[Plot], prefix: &str) -> String {
    plots.iter().map(|p| format!("\n![{}]({prefix}{})\n", p.title, p.file)).collect()
}

/// The system's fonts, with the generic `sans-serif` (what plotters writes) mapped to the first
/// common sans family present (DejaVu Sans on Debian: `fonts-dejavu-core`).
fn fonts() -> std::sync::Arc<resvg::usvg::fontdb::Database> {
    let mut db = resvg::usvg::fontdb::Database::new();
    db.load_system_fonts();
    let families: Vec<String> = db.faces().flat_map(|f| f.families.iter().map(|(n, _)| n.clone())).collect();
    let pick = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans", "Arial"]
        .into_iter()
        .find(|f| families.iter().any(|x| x == f))
        .map(str::to_owned)
        .or_else(|| families.first().cloned());
    match pick {
        Some(f) => db.set_sans_serif_family(f),
        None => eprintln!("warning: no fonts found (install fonts-dejavu-core); PNG plots will have no text, the SVGs are complete"),
    }
    std::sync::Arc::new(db)
}

/// Rasterises an SVG at twice its size.
fn png(svg: &str, fonts: &std::sync::Arc<resvg::usvg::fontdb::Database>) -> Result<Vec<u8>> {
    let opt = resvg::usvg::Options { fontdb: fonts.clone(), ..Default::default() };
    let tree = resvg::usvg::Tree::from_str(svg, &opt).map_err(|e| anyhow!("invalid SVG: {e}"))?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width() * 2, size.height() * 2).ok_or_else(|| anyhow!("empty plot"))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(&tree, resvg::tiny_skia::Transform::from_scale(2.0, 2.0), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| anyhow!("PNG encoding: {e}"))
}

fn safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const PALETTE: [RGBColor; 8] = [BLUE, RGBColor(255, 127, 14), GREEN, RED, RGBColor(148, 103, 189), RGBColor(140, 86, 75), RGBColor(227, 119, 194), RGBColor(127, 127, 127)];

/// A suite's accuracy bars: per target (not sweep points) with a finished run, k-NN and linear
/// top-1 (and the paper protocol's probe where a paper number uses one), mean with ± std error
/// bars; a black diamond marks each paper number on the bar of its metric.
pub fn accuracy_bars(suite: &str, rows: &[Row]) -> Result<Option<Plot>> {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.sweep.is_none() && (r.knn_top1.is_some() || r.linear_top1.is_some())).collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let err = |e: &dyn std::fmt::Display| anyhow!("accuracy plot of suite {suite}: {e}");
    // (legend, colour, per row: (summary, paper value)).
    type Bars<'a> = (&'static str, RGBColor, Vec<(Option<&'a Summary>, Option<f64>)>);
    let paper_for = |r: &Row, metric: &str| r.checks.iter().find(|c| c.expected.metric == metric).map(|c| c.expected.value);
    let mut series: Vec<Bars> = vec![
        ("k-NN top-1", BLUE, rows.iter().map(|r| (r.knn_top1.as_ref(), paper_for(r, &r.knn_metric))).collect()),
        ("linear top-1", RED, rows.iter().map(|r| (r.linear_top1.as_ref(), paper_for(r, &r.linear_metric))).collect()),
    ];
    let own: Vec<(Option<&Summary>, Option<f64>)> = rows
        .iter()
        .map(|r| match r.checks.iter().find(|c| c.expected.metric != r.knn_metric && c.expected.metric != r.linear_metric) {
            Some(c) => (c.summary.as_ref(), Some(c.expected.value)),
            None => (None, None),
        })
        .collect();
    if own.iter().any(|o| o.1.is_some()) {
        series.push(("paper's protocol", GREEN, own));
    }
    let k = series.len() as f64;
    let band = 0.8 / k;
    let height = 90 + 34 * rows.len() as u32 * series.len() as u32 / 2 + 20 * rows.len() as u32;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (760, height.max(260))).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let labels: Vec<String> = rows.iter().map(|r| r.target.clone()).collect();
        let n = rows.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{suite}: top-1 by target (mean ± std over seeds; ◆ paper)"), ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(150)
            .build_cartesian_2d(0.0..100.0, -0.5..(n as f64 - 0.5))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("top-1 (%)")
            .x_label_formatter(&|x: &f64| format!("{x:.0}"))
            .y_labels(n)
            .y_label_formatter(&|y: &f64| {
                let i = y.round();
                if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                    labels[n - 1 - i as usize].clone()
                } else {
                    String::new()
                }
            })
            .disable_y_mesh()
            .max_light_lines(1)
            .draw()
            .map_err(|e| err(&e))?;
        for (si, (name, color, bars)) in series.iter().enumerate() {
            let color = *color;
            // Row i is drawn top to bottom; bar si sits in its band.
            let y = |i: usize| (n - 1 - i) as f64 + 0.4 - band * (si as f64 + 0.5);
            let rects: Vec<_> = bars
                .iter()
                .enumerate()
                .filter_map(|(i, (s, _))| s.map(|s| Rectangle::new([(0.0, y(i) - band * 0.42), (s.mean, y(i) + band * 0.42)], color.mix(0.8).filled())))
                .collect();
            chart.draw_series(rects).map_err(|e| err(&e))?.label(*name).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.mix(0.8).filled()));
            chart
                .draw_series(
                    bars.iter()
                        .enumerate()
                        .filter_map(|(i, (s, _))| s.filter(|s| s.std > 0.0).map(|s| ErrorBar::new_horizontal(y(i), s.mean - s.std, s.mean, s.mean + s.std, BLACK, 6))),
                )
                .map_err(|e| err(&e))?;
            chart
                .draw_series(
                    bars.iter().enumerate().filter_map(|(i, (_, p))| p.map(|p| EmptyElement::at((p, y(i))) + Polygon::new(vec![(0, -6), (6, 0), (0, 6), (-6, 0)], BLACK.filled()))),
                )
                .map_err(|e| err(&e))?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.9)).border_style(BLACK).draw().map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(Some(Plot { file: format!("accuracy_{}.svg", safe(suite)), title: format!("{suite}: top-1 by target"), svg: text }))
}

/// One trained target's curves (all its seeds): loss terms per epoch on the left, the monitor
/// k-NN on the right. None when no run has a training log.
fn training_curve(suite: &str, id: &str, logs: &[(u64, Vec<EpochLog>)]) -> Result<Option<Plot>> {
    let logs: Vec<&(u64, Vec<EpochLog>)> = logs.iter().filter(|(_, l)| !l.is_empty()).collect();
    if logs.is_empty() {
        return Ok(None);
    }
    let err = |e: &dyn std::fmt::Display| anyhow!("training plot of {suite}/{id}: {e}");
    let mut terms: Vec<String> = vec!["loss".into()];
    for (_, l) in &logs {
        for e in l {
            for t in e.terms.keys() {
                if !terms.contains(t) {
                    terms.push(t.clone());
                }
            }
        }
    }
    let value = |e: &EpochLog, t: &str| if t == "loss" { Some(e.loss) } else { e.terms.get(t).copied() };
    let epochs = logs.iter().flat_map(|(_, l)| l.iter().map(|e| e.epoch)).max().unwrap_or(1).max(1) as f64;
    let all: Vec<f64> = logs.iter().flat_map(|(_, l)| l.iter().flat_map(|e| terms.iter().filter_map(|t| value(e, t)))).filter(|v| v.is_finite()).collect();
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.08).max(1e-3 + 0.05 * hi.abs());
    let knn: Vec<(u64, Vec<(f64, f64)>)> = logs.iter().map(|(s, l)| (*s, l.iter().filter_map(|e| e.monitor_knn_top1.map(|k| (e.epoch as f64, k))).collect::<Vec<_>>())).collect();
    let has_knn = knn.iter().any(|(_, v)| !v.is_empty());
    // Ticks at whole epochs only.
    let x_ticks = (epochs as usize).clamp(1, 10) + 1;
    let whole = |x: &f64| if (x - x.round()).abs() < 1e-6 { format!("{}", x.round()) } else { String::new() };
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (if has_knn { 980 } else { 560 }, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let root = root.titled(&format!("{suite} / {id}: training ({} seed{})", logs.len(), if logs.len() > 1 { "s" } else { "" }), ("sans-serif", 17)).map_err(|e| err(&e))?;
        let (left, right) = if has_knn { root.split_horizontally(540) } else { (root.clone(), root.clone()) };
        let mut chart = ChartBuilder::on(&left)
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.5..epochs + 0.5, (lo - pad)..(hi + pad + (hi - lo).max(1e-3) * 0.45))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(x_ticks)
            .x_label_formatter(&whole)
            .y_desc("loss and its terms (mean over the epoch)")
            .max_light_lines(1)
            .draw()
            .map_err(|e| err(&e))?;
        for (ti, t) in terms.iter().enumerate() {
            let color = PALETTE[ti % PALETTE.len()];
            for (k, (_, l)) in logs.iter().enumerate() {
                let pts: Vec<(f64, f64)> = l.iter().filter_map(|e| value(e, t).filter(|v| v.is_finite()).map(|v| (e.epoch as f64, v))).collect();
                let width = if t == "loss" { 3 } else { 2 };
                let s = chart.draw_series(LineSeries::new(pts, color.stroke_width(width)).point_size(3)).map_err(|e| err(&e))?;
                if k == 0 {
                    s.label(t.clone()).legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(width)));
                }
            }
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(|e| err(&e))?;
        if has_knn {
            let vals: Vec<f64> = knn.iter().flat_map(|(_, v)| v.iter().map(|p| p.1)).collect();
            let (klo, khi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            let kpad = ((khi - klo) * 0.1).max(1.0);
            let mut chart = ChartBuilder::on(&right)
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(50)
                .build_cartesian_2d(0.5..epochs + 0.5, (klo - kpad).max(0.0)..(khi + kpad).min(100.0))
                .map_err(|e| err(&e))?;
            chart.configure_mesh().x_desc("epoch").x_labels(x_ticks).x_label_formatter(&whole).y_desc("monitor k-NN top-1 (%)").max_light_lines(1).draw().map_err(|e| err(&e))?;
            for (k, (seed, pts)) in knn.iter().enumerate() {
                let color = PALETTE[k % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)).point_size(3))
                    .map_err(|e| err(&e))?
                    .label(format!("seed {seed}"))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
            }
            chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(Some(Plot { file: format!("train_{}_{}.svg", safe(suite), safe(id)), title: format!("{suite} / {id}: loss terms and monitor k-NN over epochs"), svg: text }))
}

/// The training curves of every target of a suite whose runs have a training log (in suite order).
pub fn training_curves(suite: &str, runs: &[StoredRun]) -> Result<Vec<Plot>> {
    let mut ids: Vec<&str> = Vec::new();
    for r in runs {
        if !ids.contains(&r.config.target.id.as_str()) {
            ids.push(&r.config.target.id);
        }
    }
    let mut out = Vec::new();
    for id in ids {
        let logs: Vec<(u64, Vec<EpochLog>)> =
            runs.iter().filter(|r| r.config.target.id == id).map(|r| Ok((r.config.seed, read_log(&r.dir.join("train_log.jsonl"))?))).collect::<Result<_>>()?;
        out.extend(training_curve(suite, id, &logs)?);
    }
    Ok(out)
}

/// The epochs of a `train_log.jsonl` (none when the file is absent). A line that does not parse
/// (a write cut off by a kill) ends the log there.
fn read_log(path: &Path) -> Result<Vec<EpochLog>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(text.lines().map_while(|l| serde_json::from_str::<EpochLog>(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::SweepPoint;

    fn row(of: &str, values: &[(&str, &str)], knn: Option<f64>) -> Row {
        let s = knn.map(|m| Summary { n: 2, mean: m, std: 1.5, values: vec![(0, m - 1.0), (1, m + 1.0)] });
        Row {
            target: format!("{of}@x"),
            method: "er".into(),
            dataset: "fashion_mnist".into(),
            backbone: "resnet18 w2".into(),
            epochs: 1,
            seeds: vec![0, 1],
            knn_metric: String::new(),
            linear_metric: String::new(),
            knn_top1: s.clone(),
            linear_top1: s.map(|s| Summary { mean: s.mean + 3.0, ..s }),
            knn_gain: None,
            linear_gain: None,
            extra_linear: Vec::new(),
            checks: Vec::new(),
            wall_s: None,
            commits: Vec::new(),
            stale: false,
            status: "done".into(),
            sweep: Some(SweepPoint { of: of.into(), values: values.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect() }),
        }
    }

    #[test]
    fn one_numeric_axis_is_plotted_and_grids_are_not() {
        let rows = vec![
            row("bs", &[("train.batch_size", "512")], Some(71.0)),
            row("bs", &[("train.batch_size", "64")], Some(62.5)),
            row("bs", &[("train.batch_size", "128")], None),
            row("grid", &[("train.batch_size", "64"), ("method_params.head.momentum", "0.9")], Some(50.0)),
            row("words", &[("method_params.head.name", "simclr")], Some(50.0)),
        ];
        let plots = sweep_plots(&rows).unwrap();
        assert_eq!(plots.iter().map(|p| p.file.as_str()).collect::<Vec<_>>(), ["sweep_bs.svg"]);
        assert_eq!(plots[0].title, "sweep bs: 3 points of er on fashion_mnist (resnet18 w2, 1 epochs)");
        let svg = plots[0].svg.replace('\n', "");
        if let Some(dir) = std::env::var_os("REPRO_PLOT_DUMP") {
            std::fs::write(std::path::Path::new(&dir).join(&plots[0].file), &plots[0].svg).unwrap();
            // to look at it
        }
        assert!(svg.starts_with("<svg") && svg.contains("train.batch_size (log scale)") && svg.contains("k-NN top-1") && svg.contains("linear top-1"), "{svg}");
        // Tick labels only at the swept values, in order of the axis.
        let (a, b) = (svg.find(">64<").unwrap(), svg.find(">512<").unwrap());
        assert!(a < b && svg.contains(">128<"));
        assert_eq!(file_name("er_byol@x"), "sweep_er_byol_x.svg");
    }

    /// The suite's bars: one pair per target, the paper's number as a diamond on its metric's bar;
    /// rasterised to a PNG of twice the SVG's size.
    #[test]
    fn accuracy_bars_mark_the_paper() {
        use crate::results::testing::{self, run, targets};
        let linear = targets(&[0], "")[1].eval.linear.metric_name();
        let t = targets(&[0, 1], &format!("{{metric: \"{linear}\", value: 66.0, tolerance: 1.0, source: paper, status: verified}}"));
        let runs = vec![run(&t[0], 0, 0, 50.0, 45.0), run(&t[0], 0, 1, 52.0, 47.0), run(&t[1], 1, 0, 70.0, 65.0), run(&t[1], 1, 1, 72.0, 67.0)];
        let rows = super::super::rows(&runs, &testing::build());
        let plot = accuracy_bars("s", &rows).unwrap().unwrap();
        assert_eq!(plot.file, "accuracy_s.svg");
        let svg = plot.svg.replace('\n', "");
        assert!(svg.contains(">floor<") && svg.contains(">m<") && svg.contains("k-NN top-1") && svg.contains("linear top-1"), "{svg}");
        // Four bars (and two legend swatches); one diamond: a filled black polygon.
        assert_eq!(svg.matches("<polygon").count(), 1, "{svg}");
        let png = png(&plot.svg, &fonts()).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
        assert_eq!(width, 2 * 760);
        if let Some(dir) = std::env::var_os("REPRO_PLOT_DUMP") {
            std::fs::write(std::path::Path::new(&dir).join("accuracy_s.png"), &png).unwrap();
        }
    }
}
