//! Throughput vs concurrency per scenario, as a PNG (plotters' bitmap backend). Text is drawn
//! with DejaVu Sans Mono embedded in the binary (assets/, free licence beside it), so no
//! system font is needed.

use crate::Report;
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

const SERIES: &[(&str, RGBColor)] = &[
    ("ceiling-get", RGBColor(150, 150, 150)),
    ("ceiling-post", RGBColor(90, 90, 90)),
    ("whoami", RGBColor(31, 119, 180)),
    ("introspect", RGBColor(255, 127, 14)),
    (crate::PEER_SCENARIO, RGBColor(23, 190, 207)),
    ("mix", RGBColor(44, 160, 44)),
    ("refresh", RGBColor(214, 39, 40)),
    ("logout", RGBColor(148, 103, 189)),
    ("login", RGBColor(140, 86, 75)),
];

pub fn draw(report: &Report, path: &Path) -> Result<()> {
    // Registering twice (several plots in one process) is harmless.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let e = |err: &dyn std::fmt::Display| anyhow!("plot: {err}");
    let cs: Vec<usize> = report.options.concurrencies.clone();
    let (xmin, xmax) = (
        cs.iter().copied().min().unwrap_or(1) as f64,
        cs.iter().copied().max().unwrap_or(1) as f64,
    );
    let ymax = report
        .rows
        .iter()
        .map(|r| r.rps)
        .chain(report.baselines.iter().map(|b| b.per_sec))
        .fold(1.0_f64, f64::max)
        * 2.0;
    let ymin = report
        .rows
        .iter()
        .map(|r| r.rps)
        .chain(report.baselines.iter().map(|b| b.per_sec))
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min)
        .min(ymax / 10.0)
        / 2.0;

    let root = BitMapBackend::new(path, (1200, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "sessiond: throughput vs concurrency (log-log), baselines dashed",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (xmin.max(1.0) * 0.8..xmax * 1.25).log_scale(),
            (ymin.max(0.1)..ymax).log_scale(),
        )
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("concurrent keep-alive clients")
        .y_desc("requests / s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(|x| e(&x))?;
    for (name, color) in SERIES {
        let points: Vec<(f64, f64)> = cs
            .iter()
            .filter_map(|&c| report.row(name, c).map(|r| (c as f64, r.rps.max(ymin))))
            .collect();
        if points.is_empty() {
            continue;
        }
        let style = ShapeStyle::from(color).stroke_width(3);
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(|x| e(&x))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new(*p, 5, ShapeStyle::from(color).filled())),
            )
            .map_err(|x| e(&x))?;
    }
    let base_colors = [RGBColor(140, 86, 75), RGBColor(214, 39, 40)];
    for (b, color) in report.baselines.iter().zip(base_colors) {
        let y = b.per_sec.max(ymin);
        let style = ShapeStyle::from(color).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(xmin.max(1.0) * 0.8, y), (xmax * 1.25, y)],
                10,
                8,
                style,
            ))
            .map_err(|x| e(&x))?
            .label(format!("baseline: {}", b.name))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
