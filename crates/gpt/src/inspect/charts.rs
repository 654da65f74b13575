//! Charts built from data as [`Figure`]s: heatmaps (attention patterns, the logit lens), a grid
//! of heatmaps (every head of a layer), signed horizontal bars (a 1-D projection of words onto a
//! direction) and grouped bars (next-token probabilities at several temperatures).
//!
//! Every value is one rectangle of role [`Role::Cell`] (heatmaps) or [`Role::Bar`] (bar charts), so
//! a test can count them in the figure, in the SVG (`class="cell"`) and in the PNG.

use super::render::{text_width, Anchor, Figure, Rgb, Role};

/// Text sizes in pixels: titles, labels, small print.
const TITLE: f32 = 16.0;
const LABEL: f32 = 11.0;
const SMALL: f32 = 9.0;
const MARGIN: f32 = 12.0;
/// Gap between heatmap cells when cells are large enough to show one.
const GAP: f32 = 1.0;

/// Sequential blues: 0 -> near white, 1 -> dark blue (ColorBrewer "Blues" end points).
pub fn blues(t: f32) -> Rgb {
    let (lo, mid, hi) = (Rgb(247, 251, 255), Rgb(107, 174, 214), Rgb(8, 48, 107));
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    if t < 0.5 {
        lo.mix(mid, t * 2.0)
    } else {
        mid.mix(hi, t * 2.0 - 1.0)
    }
}

/// Colours for the series of a grouped bar chart, cycled.
pub const SERIES: [Rgb; 6] = [
    Rgb(31, 119, 180),
    Rgb(255, 127, 14),
    Rgb(44, 160, 44),
    Rgb(214, 39, 40),
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
];
const POSITIVE: Rgb = Rgb(31, 119, 180);
const NEGATIVE: Rgb = Rgb(230, 120, 30);

/// A token's text as a label: spaces shown as '␣', newlines, tabs and returns escaped, and
/// bytes that are not whole UTF-8 characters (a byte-level token holding part of a Hangul
/// syllable, say) as `\xNN`: tokens are not characters.
pub fn token_label(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                ' ' => out.push('␣'),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// A value as at most three characters for a heatmap cell: "1", ".45", "0".
fn short(v: f32) -> String {
    if v >= 0.995 {
        "1".into()
    } else if v < 0.005 {
        "0".into()
    } else {
        format!("{v:.2}").trim_start_matches('0').to_string()
    }
}

fn max_width(labels: &[String], size: f32) -> f32 {
    labels
        .iter()
        .map(|l| text_width(l, size))
        .fold(0.0, f32::max)
}

/// Line height of small print.
const LINE: f32 = 13.0;

/// Captions are written one clause ("; "-separated) per line.
fn caption_lines(c: &str) -> impl Iterator<Item = &str> {
    c.split("; ").filter(|l| !l.is_empty())
}

fn caption_width(c: &str) -> f32 {
    caption_lines(c)
        .map(|l| text_width(l, SMALL))
        .fold(0.0, f32::max)
}

fn caption_height(c: &str) -> f32 {
    caption_lines(c).count() as f32 * LINE
}

/// Writes a caption's lines from (x, y) down.
fn caption(f: &mut Figure, x: f32, y: f32, c: &str) {
    for (i, l) in caption_lines(c).enumerate() {
        f.text(x, y + (i as f32 + 0.5) * LINE, l, SMALL, Anchor::Start);
    }
}

/// A heatmap: `values` (R, K) coloured from 0 (white) to `max` (dark blue).
#[derive(Debug, Clone)]
pub struct Heatmap<'a> {
    pub title: &'a str,
    /// (R)
    pub row_labels: &'a [String],
    /// (K), written vertically above the columns.
    pub col_labels: &'a [String],
    /// (R) optional notes written right of each row (e.g. the top token of a layer).
    pub row_notes: Option<&'a [String]>,
    /// (R, K)
    pub values: &'a [Vec<f32>],
    pub max: f32,
    /// A caption under the picture naming the axes.
    pub caption: &'a str,
}

/// Draws the cells of `values` (R, K) with their top-left corner at (x0, y0).
fn cells(
    f: &mut Figure,
    x0: f32,
    y0: f32,
    cell: f32,
    values: &[Vec<f32>],
    max: f32,
    annotate: bool,
) {
    let gap = if cell >= 6.0 { GAP } else { 0.0 };
    for (i, row) in values.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let t = if max > 0.0 { v / max } else { 0.0 };
            let fill = blues(t);
            let (x, y) = (x0 + j as f32 * cell, y0 + i as f32 * cell);
            f.rect_tip(
                (x, y, cell - gap, cell - gap),
                fill,
                Role::Cell,
                format!("({i}, {j}): {v:.5}"),
            );
            if annotate {
                let c = cell - gap;
                f.text_styled(
                    x + c / 2.0,
                    y + c / 2.0,
                    &short(v),
                    SMALL,
                    Anchor::Middle,
                    fill.text_on(),
                    false,
                );
            }
        }
    }
}

/// A colour scale from 0 to `max`, `h` pixels tall, at (x, y).
fn legend(f: &mut Figure, x: f32, y: f32, h: f32, max: f32) {
    const STEPS: usize = 10;
    let step = h / STEPS as f32;
    for s in 0..STEPS {
        let t = 1.0 - (s as f32 + 0.5) / STEPS as f32;
        f.rect(
            x,
            y + s as f32 * step,
            12.0,
            step,
            blues(t),
            Role::Decoration,
        );
    }
    f.text(
        x + 16.0,
        y + 4.0,
        &format!("{max:.2}"),
        SMALL,
        Anchor::Start,
    );
    f.text(x + 16.0, y + h - 4.0, "0", SMALL, Anchor::Start);
}

pub fn heatmap(h: &Heatmap) -> Figure {
    let (r, k) = (h.values.len(), h.values.first().map_or(0, Vec::len));
    let cell = (560.0 / r.max(k).max(1) as f32).clamp(8.0, 40.0).floor();
    let left = MARGIN + max_width(h.row_labels, LABEL) + 8.0;
    let top = MARGIN + TITLE + 8.0 + max_width(h.col_labels, LABEL) + 8.0;
    let notes_w = h.row_notes.map_or(0.0, |n| max_width(n, LABEL) + 12.0);
    let grid_w = k as f32 * cell;
    let grid_h = r as f32 * cell;
    let width = (left + grid_w + notes_w + 60.0 + MARGIN)
        .max(text_width(h.title, TITLE) + 2.0 * MARGIN)
        .max(left + caption_width(h.caption) + MARGIN);
    let height = top + grid_h + 12.0 + caption_height(h.caption) + MARGIN;
    let mut f = Figure::new(width.ceil() as u32, height.ceil() as u32);
    f.text(MARGIN, MARGIN + TITLE / 2.0, h.title, TITLE, Anchor::Start);
    for (i, l) in h.row_labels.iter().enumerate() {
        f.text(
            left - 6.0,
            top + (i as f32 + 0.5) * cell,
            l,
            LABEL,
            Anchor::End,
        );
    }
    for (j, l) in h.col_labels.iter().enumerate() {
        f.text_styled(
            left + (j as f32 + 0.5) * cell,
            top - 6.0,
            l,
            LABEL,
            Anchor::Start,
            Rgb::BLACK,
            true,
        );
    }
    cells(&mut f, left, top, cell, h.values, h.max, cell >= 26.0);
    if let Some(notes) = h.row_notes {
        for (i, n) in notes.iter().enumerate() {
            f.text(
                left + grid_w + 8.0,
                top + (i as f32 + 0.5) * cell,
                n,
                LABEL,
                Anchor::Start,
            );
        }
    }
    legend(
        &mut f,
        left + grid_w + notes_w + 10.0,
        top,
        grid_h.clamp(40.0, 200.0),
        h.max,
    );
    caption(&mut f, left, top + grid_h + 12.0, h.caption);
    f
}

/// Several heatmaps of the same labels side by side (e.g. every head of one layer).
#[derive(Debug, Clone)]
pub struct HeatmapGrid<'a> {
    pub title: &'a str,
    /// (R) labels of the first panel column's rows.
    pub row_labels: &'a [String],
    /// (K) labels of the first panel row's columns.
    pub col_labels: &'a [String],
    /// (panel title, values (R, K))
    pub panels: &'a [(String, Vec<Vec<f32>>)],
    pub max: f32,
    pub caption: &'a str,
}

pub fn heatmap_grid(g: &HeatmapGrid) -> Figure {
    let n = g.panels.len().max(1);
    let per_row = (n as f32).sqrt().ceil() as usize;
    let rows = n.div_ceil(per_row);
    let (r, k) = g
        .panels
        .first()
        .map_or((0, 0), |p| (p.1.len(), p.1.first().map_or(0, Vec::len)));
    let cell = (200.0 / r.max(k).max(1) as f32).clamp(3.0, 24.0).floor();
    let labels = cell >= 8.0;
    let left = MARGIN
        + if labels {
            max_width(g.row_labels, LABEL) + 8.0
        } else {
            0.0
        };
    let top = MARGIN
        + TITLE
        + 8.0
        + if labels {
            max_width(g.col_labels, LABEL) + 8.0
        } else {
            0.0
        };
    let (pw, ph) = (k as f32 * cell, r as f32 * cell);
    let (sx, sy) = (pw + 16.0, ph + LABEL + 14.0);
    let width = (left + per_row as f32 * sx + 60.0 + MARGIN)
        .max(text_width(g.title, TITLE) + 2.0 * MARGIN)
        .max(left + caption_width(g.caption) + MARGIN);
    let height = top + rows as f32 * sy + caption_height(g.caption) + MARGIN;
    let mut f = Figure::new(width.ceil() as u32, height.ceil() as u32);
    f.text(MARGIN, MARGIN + TITLE / 2.0, g.title, TITLE, Anchor::Start);
    for (p, (name, values)) in g.panels.iter().enumerate() {
        let (pr, pc) = (p / per_row, p % per_row);
        let x0 = left + pc as f32 * sx;
        let y0 = top + pr as f32 * sy + LABEL + 6.0;
        f.text(x0, y0 - LABEL / 2.0 - 3.0, name, LABEL, Anchor::Start);
        if labels && pc == 0 {
            for (i, l) in g.row_labels.iter().enumerate() {
                f.text(
                    x0 - 6.0,
                    y0 + (i as f32 + 0.5) * cell,
                    l,
                    LABEL,
                    Anchor::End,
                );
            }
        }
        if labels && pr == 0 {
            for (j, l) in g.col_labels.iter().enumerate() {
                f.text_styled(
                    x0 + (j as f32 + 0.5) * cell,
                    top - 6.0,
                    l,
                    LABEL,
                    Anchor::Start,
                    Rgb::BLACK,
                    true,
                );
            }
        }
        cells(&mut f, x0, y0, cell, values, g.max, false);
    }
    legend(
        &mut f,
        left + per_row as f32 * sx + 4.0,
        top + LABEL + 6.0,
        120.0,
        g.max,
    );
    caption(
        &mut f,
        left,
        height - MARGIN - caption_height(g.caption),
        g.caption,
    );
    f
}

/// Horizontal bars of signed values, one row per label (a 1-D projection: each word's position
/// along a direction). Positive values go right in blue, negative left in orange.
#[derive(Debug, Clone)]
pub struct SignedBars<'a> {
    pub title: &'a str,
    /// (N)
    pub labels: &'a [String],
    /// (N)
    pub values: &'a [f32],
    pub caption: &'a str,
}

pub fn signed_bars(b: &SignedBars) -> Figure {
    const HALF: f32 = 220.0;
    const ROW: f32 = 22.0;
    // room for a value's text beyond the longest bar
    const PAD: f32 = 56.0;
    let left = MARGIN + max_width(b.labels, LABEL) + 10.0;
    let top = MARGIN + TITLE + 14.0;
    let n = b.values.len();
    let width = (left + 2.0 * HALF + 2.0 * PAD + MARGIN)
        .max(text_width(b.title, TITLE) + 2.0 * MARGIN)
        .max(caption_width(b.caption) + 2.0 * MARGIN);
    let height = top + n as f32 * ROW + 24.0 + caption_height(b.caption) + MARGIN;
    let mut f = Figure::new(width.ceil() as u32, height.ceil() as u32);
    f.text(MARGIN, MARGIN + TITLE / 2.0, b.title, TITLE, Anchor::Start);
    let scale = b
        .values
        .iter()
        .map(|v| v.abs())
        .filter(|v| v.is_finite())
        .fold(0.0, f32::max);
    let zero = left + PAD + HALF;
    for (i, (l, &v)) in b.labels.iter().zip(b.values).enumerate() {
        let y = top + i as f32 * ROW;
        let len = if scale > 0.0 && v.is_finite() {
            v.abs() / scale * HALF
        } else {
            0.0
        };
        let (x, color) = if v >= 0.0 {
            (zero, POSITIVE)
        } else {
            (zero - len, NEGATIVE)
        };
        f.rect_tip(
            (x, y + 3.0, len.max(1.0), ROW - 6.0),
            color,
            Role::Bar,
            format!("{l}: {v:.4}"),
        );
        f.text(left - 4.0, y + ROW / 2.0, l, LABEL, Anchor::End);
        let (tx, anchor) = if v >= 0.0 {
            (x + len + 4.0, Anchor::Start)
        } else {
            (x - 4.0, Anchor::End)
        };
        f.text(tx, y + ROW / 2.0, &format!("{v:.3}"), SMALL, anchor);
    }
    f.rect(
        zero,
        top - 4.0,
        1.0,
        n as f32 * ROW + 8.0,
        Rgb::GREY,
        Role::Decoration,
    );
    f.text(
        zero,
        top + n as f32 * ROW + 14.0,
        "0",
        SMALL,
        Anchor::Middle,
    );
    caption(
        &mut f,
        MARGIN,
        height - MARGIN - caption_height(b.caption),
        b.caption,
    );
    f
}

/// Vertical bars in groups: for each group (e.g. a token), one bar per series (e.g. a
/// temperature), values from 0 to 1.
#[derive(Debug, Clone)]
pub struct GroupedBars<'a> {
    pub title: &'a str,
    /// (G)
    pub groups: &'a [String],
    /// (name, values (G)) per series
    pub series: &'a [(String, Vec<f32>)],
    pub y_label: &'a str,
}

pub fn grouped_bars(g: &GroupedBars) -> Figure {
    const PLOT_H: f32 = 260.0;
    let s = g.series.len().max(1);
    let bar = (60.0 / s as f32).clamp(4.0, 16.0).floor();
    let group_w = bar * s as f32 + 14.0;
    let left = MARGIN + 46.0;
    let top = MARGIN + TITLE + 30.0;
    let label_h = max_width(g.groups, LABEL) + 10.0;
    let plot_w = group_w * g.groups.len().max(1) as f32;
    let width = (left + plot_w + MARGIN)
        .max(text_width(g.title, TITLE) + 2.0 * MARGIN)
        .max(360.0);
    let height = top + PLOT_H + label_h + MARGIN;
    let mut f = Figure::new(width.ceil() as u32, height.ceil() as u32);
    f.text(MARGIN, MARGIN + TITLE / 2.0, g.title, TITLE, Anchor::Start);
    // legend: one swatch per series
    let mut lx = left;
    for (i, (name, _)) in g.series.iter().enumerate() {
        f.rect(
            lx,
            MARGIN + TITLE + 10.0,
            10.0,
            10.0,
            SERIES[i % SERIES.len()],
            Role::Decoration,
        );
        f.text(lx + 14.0, MARGIN + TITLE + 15.0, name, LABEL, Anchor::Start);
        lx += 20.0 + text_width(name, LABEL) + 12.0;
    }
    let base = top + PLOT_H;
    for q in 0..=4 {
        let v = q as f32 / 4.0;
        let y = base - v * PLOT_H;
        f.rect(left, y, plot_w, 1.0, Rgb::LIGHT_GREY, Role::Decoration);
        f.text(left - 6.0, y, &format!("{v:.2}"), SMALL, Anchor::End);
    }
    f.text_styled(
        MARGIN + 4.0,
        top + PLOT_H / 2.0 + text_width(g.y_label, SMALL) / 2.0,
        g.y_label,
        SMALL,
        Anchor::Start,
        Rgb::BLACK,
        true,
    );
    for (gi, name) in g.groups.iter().enumerate() {
        let x0 = left + gi as f32 * group_w + 7.0;
        for (si, (sname, values)) in g.series.iter().enumerate() {
            let v = values.get(gi).copied().unwrap_or(0.0);
            let v = if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            };
            let h = v * PLOT_H;
            f.rect_tip(
                (x0 + si as f32 * bar, base - h, bar - 1.0, h.max(1.0)),
                SERIES[si % SERIES.len()],
                Role::Bar,
                format!("{name} at {sname}: {v:.4}"),
            );
        }
        f.text_styled(
            x0 + (bar * s as f32) / 2.0,
            base + 6.0,
            name,
            LABEL,
            Anchor::End,
            Rgb::BLACK,
            true,
        );
    }
    f.rect(left, base, plot_w, 1.0, Rgb::BLACK, Role::Decoration);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn heatmap_has_one_cell_per_value_and_colours_by_value() {
        let v = vec![vec![1.0, 0.0], vec![0.25, 0.75]];
        let l = labels(2);
        let f = heatmap(&Heatmap {
            title: "t",
            row_labels: &l,
            col_labels: &l,
            row_notes: None,
            values: &v,
            max: 1.0,
            caption: "",
        });
        let cells: Vec<_> = f.rects(Role::Cell).collect();
        assert_eq!(cells.len(), 4);
        assert_eq!(cells[0].4, blues(1.0));
        assert_eq!(cells[1].4, blues(0.0));
        assert_eq!(f.to_svg().matches("class=\"cell\"").count(), 4);
    }

    #[test]
    fn bar_charts_have_one_bar_per_value() {
        let l = labels(3);
        let f = signed_bars(&SignedBars {
            title: "p",
            labels: &l,
            values: &[1.0, -0.5, 0.0],
            caption: "",
        });
        assert_eq!(f.rects(Role::Bar).count(), 3);
        let series = vec![
            ("a".to_string(), vec![0.5, 0.2, 0.1]),
            ("b".to_string(), vec![1.0, 0.0, 0.0]),
        ];
        let f = grouped_bars(&GroupedBars {
            title: "g",
            groups: &l,
            series: &series,
            y_label: "p",
        });
        assert_eq!(f.rects(Role::Bar).count(), 6);
    }

    #[test]
    fn short_values_fit_a_cell() {
        assert_eq!(short(1.0), "1");
        assert_eq!(short(0.456), ".46");
        assert_eq!(short(0.001), "0");
    }
}
