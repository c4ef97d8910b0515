//! `kiln-monitor report`: the summary of a log, and a memory-over-time chart
//! with the warn and limit lines and the kill markers.

use std::path::Path;

use plotters::prelude::*;

use crate::error::MonitorError;
use crate::record::Record;
use crate::summary::Summary;

const MIB: f64 = 1024.0 * 1024.0;

pub fn chart(records: &[Record], path: &Path) -> Result<(), MonitorError> {
    let fail = |message: String| MonitorError::Chart {
        path: path.to_path_buf(),
        message,
    };
    let name = path
        .file_name()
        .map_or("chart.png".into(), |n| n.to_string_lossy().into_owned());
    // Drawn to a temp file in the same directory, then renamed: a reader
    // never sees half a PNG.
    let tmp = path.with_file_name(format!(".{name}.tmp.png"));
    draw(records, &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e.to_string())
    })?;
    std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string()))
}

fn draw(records: &[Record], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let summary = Summary::from_records(records);
    let mut tree = Vec::new();
    let mut available = Vec::new();
    let mut kills = Vec::new();
    for r in records {
        match r {
            Record::Sample {
                t,
                tree_rss,
                system_available,
                ..
            } => {
                tree.push((*t, *tree_rss as f64 / MIB));
                available.push((*t, *system_available as f64 / MIB));
            }
            Record::Kill {
                t,
                tree_rss,
                signal,
                ..
            } => kills.push((*t, *tree_rss as f64 / MIB, signal.clone())),
            _ => {}
        }
    }
    let show_available = summary.min_available_bytes.is_some();
    let lines = [
        summary.warn_bytes,
        summary.limit_bytes,
        summary.hard_limit_bytes,
    ];
    let mut top = tree.iter().map(|p| p.1).fold(1.0_f64, f64::max);
    for l in lines.iter().flatten() {
        top = top.max(*l as f64 / MIB);
    }
    if show_available {
        top = available.iter().map(|p| p.1).fold(top, f64::max);
    }
    let end = summary.duration_s.max(0.1);

    let root = BitMapBackend::new(path, (1000, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "kiln-monitor: {} (peak {:.0} MiB)",
        crate::summary::shell_words(&summary.command)
            .chars()
            .take(60)
            .collect::<String>(),
        summary.peak_tree_rss_bytes as f64 / MIB
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end * 1.04, 0.0..top * 1.12)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("MiB")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .draw_series(LineSeries::new(tree.iter().copied(), BLUE.stroke_width(2)))?
        .label("tree RSS")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    if show_available {
        let green = RGBColor(30, 140, 60);
        chart
            .draw_series(LineSeries::new(available.iter().copied(), green))?
            .label("system available")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], green));
    }
    let styles = [
        ("warn", RGBColor(230, 140, 0)),
        ("limit", RGBColor(200, 0, 0)),
        ("hard limit", RGBColor(120, 0, 120)),
    ];
    for (value, (label, color)) in lines.iter().zip(styles) {
        if let Some(v) = value {
            let y = *v as f64 / MIB;
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, y), (end, y)],
                    8,
                    5,
                    color.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
    }
    if let Some(min) = summary.min_available_bytes {
        let y = min as f64 / MIB;
        let color = RGBColor(30, 140, 60);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, y), (end, y)],
                3,
                4,
                color.stroke_width(2),
            ))?
            .label("min available")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    if !kills.is_empty() {
        let label_style = ("sans-serif", 14).into_font().color(&RED);
        chart
            .draw_series(kills.iter().map(|(t, mib, signal)| {
                EmptyElement::at((*t, *mib))
                    + Cross::new((0, 0), 9, RED.stroke_width(3))
                    + Text::new(signal.clone(), (-30, -28), label_style.clone())
            }))?
            .label("watchdog signal")
            .legend(|(x, y)| Cross::new((x + 9, y), 6, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
