//! ROC curves: TMR against FMR on a log axis, drawn with plotters.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::EvalError;
use crate::protocol::Scored;

/// (FMR, TMR) points, one per distinct impostor score, FMR descending.
pub fn roc_points(pairs: &[Scored]) -> Vec<(f64, f64)> {
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let impostors = sorted.iter().filter(|p| !p.1).count().max(1) as f64;
    let genuine = sorted.iter().filter(|p| p.1).count().max(1) as f64;
    let (mut tm, mut fm) = (0f64, 0f64);
    let mut points = Vec::new();
    for (_, same) in sorted {
        if same {
            tm += 1.0;
        } else {
            fm += 1.0;
            points.push((fm / impostors, tm / genuine));
        }
    }
    points.reverse();
    points
}

/// Writes a PNG of one or more named curves.
pub fn write_png(path: &Path, title: &str, curves: &[(&str, Vec<(f64, f64)>)]) -> Result<(), EvalError> {
    register_dejavu();
    let plot = |e: &dyn std::fmt::Display| EvalError::Plot(e.to_string());
    let root = BitMapBackend::new(path, (900, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot(&e))?;
    let min_fmr = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .filter(|f| *f > 0.0)
        .fold(1.0, f64::min);
    let min_tmr = curves
        .iter()
        .flat_map(|(_, c)| c.iter().filter(|p| p.0 >= min_fmr).map(|p| p.1))
        .fold(1.0, f64::min);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((min_fmr..1.0).log_scale(), (min_tmr.min(0.98) - 0.002)..1.0005)
        .map_err(|e| plot(&e))?;
    chart
        .configure_mesh()
        .x_desc("false match rate")
        .y_desc("true match rate")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(|e| plot(&e))?;
    for (i, (name, points)) in curves.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| plot(&e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| plot(&e))?;
    root.present().map_err(|e| plot(&e))
}

/// plotters draws text only with a registered font; DejaVu ships in a crate,
/// so the PNG needs no system fonts.
fn register_dejavu() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_points_run_from_high_to_low_fmr() {
        let pairs = [(0.9, true), (0.8, false), (0.7, true), (0.1, false)];
        assert_eq!(roc_points(&pairs), vec![(1.0, 1.0), (0.5, 0.5)]);
    }
}
