//! `loss.png`: train and validation loss per epoch, the best epoch marked.

use std::path::Path;

use plotters::prelude::*;

use crate::training::EpochMetrics;

pub fn loss_chart(path: &Path, history: &[EpochMetrics]) -> Result<(), String> {
    if history.is_empty() {
        return Ok(());
    }
    // Draw to a temp file, then rename: a reader never sees half a PNG.
    let name = path
        .file_name()
        .map_or("loss.png".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp.png"));
    draw(&tmp, history).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

fn draw(path: &Path, history: &[EpochMetrics]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let last = history.last().map_or(1, |m| m.epoch) as f64;
    let first = history.first().map_or(1, |m| m.epoch) as f64;
    let values = history
        .iter()
        .flat_map(|m| [m.train_loss, m.val_loss])
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let pad = ((hi - lo) * 0.08).max(1e-6);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "kiln-train: loss per epoch (scaled units)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((first - 0.5)..(last + 0.5), (lo - pad).max(0.0)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("masked MSE")
        .draw()?;
    let train = history.iter().map(|m| (m.epoch as f64, m.train_loss));
    chart
        .draw_series(LineSeries::new(train.clone(), BLUE.stroke_width(2)))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart.draw_series(train.map(|p| Circle::new(p, 3, BLUE.filled())))?;
    let val = history.iter().map(|m| (m.epoch as f64, m.val_loss));
    chart
        .draw_series(LineSeries::new(val.clone(), RED.stroke_width(2)))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart.draw_series(val.map(|p| Circle::new(p, 3, RED.filled())))?;
    if let Some(best) = history
        .iter()
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
    {
        chart
            .draw_series(std::iter::once(Circle::new(
                (best.epoch as f64, best.val_loss),
                7,
                BLACK.stroke_width(2),
            )))?
            .label(format!("best (epoch {})", best.epoch))
            .legend(|(x, y)| Circle::new((x + 10, y), 5, BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}
