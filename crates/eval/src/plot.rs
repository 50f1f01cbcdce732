//! PNG canvases and the time-series chart of the soak test.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::EvalError;

/// A plotting error in the report's shape.
pub(crate) fn plot(e: &dyn std::fmt::Display) -> EvalError {
    EvalError::Plot(e.to_string())
}

/// A white PNG canvas of `size`, with the font registered.
pub fn canvas(
    path: &Path,
    size: (u32, u32),
) -> Result<DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>, EvalError> {
    register_dejavu();
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot(&e))?;
    Ok(root)
}

/// plotters draws text only with a registered font; DejaVu ships in a crate,
/// so the PNG needs no system fonts.
fn register_dejavu() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// One panel of a time series: its label and (minutes, value) points.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// Writes the panels one above the other, sharing the time axis, each
/// from zero to a little above its largest value (so drift shows as slope).
pub fn write_timeline_png(path: &Path, title: &str, panels: &[Series<'_>]) -> Result<(), EvalError> {
    let height = 40 + 260 * panels.len() as u32;
    let root = canvas(path, (1000, height))?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(|e| plot(&e))?;
    let end = panels
        .iter()
        .flat_map(|p| p.points.iter().map(|q| q.0))
        .fold(1.0, f64::max);
    for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
        let top = panel.points.iter().map(|q| q.1).fold(0.0, f64::max).max(1e-9) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..end, 0.0..top)
            .map_err(|e| plot(&e))?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_desc(panel.label)
            .draw()
            .map_err(|e| plot(&e))?;
        chart
            .draw_series(LineSeries::new(panel.points.iter().copied(), BLUE.stroke_width(2)))
            .map_err(|e| plot(&e))?;
    }
    root.present().map_err(|e| plot(&e))
}
