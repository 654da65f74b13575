//! The loss curve of a run as an SVG picture: training loss per step and validation loss.

use super::checkpoint::TrainState;
use crate::{Error, Result};
use std::fmt::Write;
use std::path::Path;

const W: f32 = 720.0;
const H: f32 = 400.0;
const PAD: f32 = 50.0;

/// Draws the curves of `state` into an SVG document.
pub fn svg(state: &TrainState) -> String {
    let all = state.train_losses.iter().chain(&state.val_losses);
    let max_step = all.clone().map(|p| p.0).max().unwrap_or(1).max(1) as f32;
    let (lo, hi) = all.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let x = |s: usize| PAD + (s as f32 / max_step) * (W - 2.0 * PAD);
    let y = |l: f32| H - PAD - (l - lo) / (hi - lo) * (H - 2.0 * PAD);
    let path = |pts: &[(usize, f32)]| -> String {
        pts.iter()
            .enumerate()
            .map(|(i, &(s, l))| {
                format!("{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x(s), y(l))
            })
            .collect()
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<line x1="{PAD}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{}" stroke="black"/>"#,
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD
    );
    for i in 0..=4 {
        let l = lo + (hi - lo) * i as f32 / 4.0;
        let _ = write!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{l:.2}</text>"#,
            PAD - 4.0,
            y(l) + 4.0
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">step (last {})</text>"#,
        W / 2.0,
        H - 15.0,
        max_step
    );
    let _ = write!(
        out,
        r##"<path d="{}" fill="none" stroke="#1f77b4" stroke-width="1"/>"##,
        path(&state.train_losses)
    );
    let _ = write!(
        out,
        r##"<path d="{}" fill="none" stroke="#d62728" stroke-width="2"/>"##,
        path(&state.val_losses)
    );
    let _ = write!(
        out,
        r##"<text x="{}" y="20" fill="#1f77b4">train loss</text><text x="{}" y="36" fill="#d62728">validation loss</text>"##,
        W - 150.0,
        W - 150.0
    );
    out.push_str("</svg>\n");
    out
}

/// Writes the curve atomically.
pub fn write(path: &Path, state: &TrainState) -> Result<()> {
    let tmp = path.with_extension("svg.tmp");
    std::fs::write(&tmp, svg(state)).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
