//! Sweep plots: for a sweep over one numeric key, k-NN and linear top-1 (mean over seeds, with
//! ± one sample standard deviation as error bars) against the swept value, as SVG (plotters).
//! The x axis is logarithmic (base 2) when the values span 8× or more (batch sizes), linear
//! otherwise (EMA coefficients).

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::Row;
use crate::verdict::Summary;

/// The file a sweep's plot is written to, next to `results.md`.
pub fn file_name(sweep: &str) -> String {
    let safe: String = sweep.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("sweep_{safe}.svg")
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

/// A sweep's plot: the file it goes to, its title (the sweep table's), the SVG.
pub struct Plot {
    pub file: String,
    pub title: String,
    pub svg: String,
}

/// The plot of every one-axis numeric sweep among `rows` with at least one finished point.
pub fn sweep_plots(rows: &[Row]) -> Result<Vec<Plot>> {
    let mut sweeps: Vec<(&str, Vec<&Row>)> = Vec::new();
    for r in rows {
        if let Some(p) = &r.sweep {
            match sweeps.iter_mut().find(|(of, _)| *of == p.of) {
                Some((_, points)) => points.push(r),
                None => sweeps.push((&p.of, vec![r])),
            }
        }
    }
    let mut out = Vec::new();
    for (of, points) in sweeps {
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
}
