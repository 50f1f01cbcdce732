//! ROC curves: TMR against FMR on a log axis, drawn with plotters.

use std::path::Path;

use plotters::prelude::*;

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
    let root = canvas(path)?;
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

/// DET points (FMR, FNMR) at 20 rates per decade, from impostor scores
/// sorted highest first. A FNMR of zero is drawn at half of one genuine pair,
/// since a log axis has no zero.
pub fn det_points(impostors_desc: &[f32], genuine: &[f32]) -> Vec<(f64, f64)> {
    let n = impostors_desc.len();
    let g = genuine.len().max(1) as f64;
    let mut points = Vec::new();
    let mut k = 0f64;
    while k < (n as f64).log10() * 20.0 {
        let rank = (10f64.powf(k / 20.0) as usize).min(n) - 1;
        let t = impostors_desc[rank];
        let misses = genuine.iter().filter(|&&s| s < t).count() as f64;
        points.push(((rank + 1) as f64 / n as f64, (misses / g).max(0.5 / g)));
        k += 1.0;
    }
    points
}

/// Writes a DET curve (FNMR against FMR, both on log axes) with a marker at
/// each level's threshold.
pub fn write_det_png(
    path: &Path,
    title: &str,
    points: &[(f64, f64)],
    levels: &[(String, f64, f64)],
) -> Result<(), EvalError> {
    let root = canvas(path)?;
    // The smallest positive rate on each axis, curve and markers alike.
    let smallest = |axis: fn(&(f64, f64)) -> f64, marker: fn(&(String, f64, f64)) -> f64| {
        points
            .iter()
            .map(axis)
            .chain(levels.iter().map(marker))
            .filter(|f| *f > 0.0)
            .fold(1.0, f64::min)
    };
    let min_fmr = smallest(|p| p.0, |l| l.1);
    let min_fnmr = smallest(|p| p.1, |l| l.2);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((min_fmr * 0.5..1.0).log_scale(), (min_fnmr * 0.5..1.0).log_scale())
        .map_err(|e| plot(&e))?;
    chart
        .configure_mesh()
        .x_desc("false match rate")
        .y_desc("false non-match rate")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(|e| plot(&e))?;
    chart
        .draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))
        .map_err(|e| plot(&e))?;
    for (name, fmr, fnmr) in levels {
        let at = (fmr.max(min_fmr * 0.5), fnmr.max(min_fnmr * 0.5));
        chart
            .draw_series([Circle::new(at, 5, RED.filled())])
            .map_err(|e| plot(&e))?;
        chart
            .draw_series([Text::new(name.clone(), at, ("sans-serif", 16))])
            .map_err(|e| plot(&e))?;
    }
    root.present().map_err(|e| plot(&e))
}

use crate::plot::plot;

/// A white 900×640 PNG canvas, with the font registered.
fn canvas(path: &Path) -> Result<DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>, EvalError> {
    crate::plot::canvas(path, (900, 640))
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
