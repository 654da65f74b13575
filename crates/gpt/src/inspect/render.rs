//! Pictures: a [`Figure`] is a list of rectangles and text labels in pixel coordinates, drawn
//! once, as SVG. PNG is that SVG rasterized by resvg, its text shaped with the machine's fonts
//! ([`super::fonts`]), so labels in any script a font covers (Hangul, CJK, ...) are drawn.
//! [`super::charts`] builds figures from data; this file only writes them.

use super::fonts;
use crate::{Error, Result};
use resvg::tiny_skia;
use resvg::usvg::{self, fontdb::Database};
use std::path::Path;
use std::sync::Arc;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    pub const WHITE: Rgb = Rgb(255, 255, 255);
    pub const BLACK: Rgb = Rgb(0, 0, 0);
    pub const GREY: Rgb = Rgb(140, 140, 140);
    pub const LIGHT_GREY: Rgb = Rgb(225, 225, 225);

    fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// The colour a fraction `t` (clamped to 0..=1) of the way from `self` to `other`.
    pub fn mix(self, other: Rgb, t: f32) -> Rgb {
        let t = t.clamp(0.0, 1.0);
        let m = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * t).round() as u8;
        Rgb(m(self.0, other.0), m(self.1, other.1), m(self.2, other.2))
    }

    /// Black or white, whichever reads better on this colour.
    pub fn text_on(self) -> Rgb {
        let luma = 0.299 * self.0 as f32 + 0.587 * self.1 as f32 + 0.114 * self.2 as f32;
        if luma > 140.0 {
            Rgb::BLACK
        } else {
            Rgb::WHITE
        }
    }
}

/// Where a text's anchor point sits along its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// What a rectangle stands for; tests count the cells and bars of a picture by their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// One value of a heatmap.
    Cell,
    /// One value of a bar chart.
    Bar,
    /// Background, axes, legend swatches.
    Decoration,
}

impl Role {
    fn class(self) -> &'static str {
        match self {
            Role::Cell => "cell",
            Role::Bar => "bar",
            Role::Decoration => "deco",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A filled rectangle; `tip` is shown on hover in SVG.
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Rgb,
        role: Role,
        tip: Option<String>,
    },
    /// One line of text, vertically centred on `y`. `size` is the text height in pixels; with
    /// `vertical` the text reads bottom to top, its line starting at (x, y) and going up.
    Text {
        x: f32,
        y: f32,
        text: String,
        size: f32,
        anchor: Anchor,
        color: Rgb,
        vertical: bool,
    },
}

/// A picture of `width` x `height` pixels on a white background.
#[derive(Debug, Clone, Default)]
pub struct Figure {
    pub width: u32,
    pub height: u32,
    pub items: Vec<Item>,
}

/// Pictures larger than this are refused: they would be unreadable and slow to draw.
pub const MAX_SIDE: u32 = 16_384;

/// The image formats a figure is written in, chosen by a file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Svg,
}

impl ImageFormat {
    /// `.png` or `.svg` (any case); `None` for anything else.
    pub fn from_path(path: &Path) -> Option<ImageFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "png" => Some(ImageFormat::Png),
            "svg" => Some(ImageFormat::Svg),
            _ => None,
        }
    }
}

impl Figure {
    pub fn new(width: u32, height: u32) -> Figure {
        Figure {
            width,
            height,
            items: Vec::new(),
        }
    }

    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: Rgb, role: Role) {
        self.items.push(Item::Rect {
            x,
            y,
            w,
            h,
            fill,
            role,
            tip: None,
        });
    }

    /// A rectangle (x, y, w, h) with a hover text.
    pub fn rect_tip(
        &mut self,
        (x, y, w, h): (f32, f32, f32, f32),
        fill: Rgb,
        role: Role,
        tip: String,
    ) {
        self.items.push(Item::Rect {
            x,
            y,
            w,
            h,
            fill,
            role,
            tip: Some(tip),
        });
    }

    pub fn text(&mut self, x: f32, y: f32, text: &str, size: f32, anchor: Anchor) {
        self.text_styled(x, y, text, size, anchor, Rgb::BLACK, false);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn text_styled(
        &mut self,
        x: f32,
        y: f32,
        text: &str,
        size: f32,
        anchor: Anchor,
        color: Rgb,
        vertical: bool,
    ) {
        self.items.push(Item::Text {
            x,
            y,
            text: text.to_string(),
            size,
            anchor,
            color,
            vertical,
        });
    }

    /// The rectangles of one role, in drawing order.
    pub fn rects(&self, role: Role) -> impl Iterator<Item = (f32, f32, f32, f32, Rgb)> + '_ {
        self.items.iter().filter_map(move |it| match it {
            Item::Rect {
                x,
                y,
                w,
                h,
                fill,
                role: r,
                ..
            } if *r == role => Some((*x, *y, *w, *h, *fill)),
            _ => None,
        })
    }

    /// Writes the figure as PNG or SVG, by the file's extension.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = match ImageFormat::from_path(path) {
            Some(ImageFormat::Png) => self.to_png()?,
            Some(ImageFormat::Svg) => self.to_svg().into_bytes(),
            None => {
                return Err(Error::Invalid(format!(
                    "{}: pictures are written as .png or .svg",
                    path.display()
                )))
            }
        };
        std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
    }

    /// The figure as an SVG document. Rectangles carry `class="cell"`, `"bar"` or `"deco"`.
    pub fn to_svg(&self) -> String {
        let (w, h) = (self.width, self.height);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" shape-rendering=\"crispEdges\">\n<rect class=\"deco\" x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n"
        );
        for it in &self.items {
            match it {
                Item::Rect {
                    x,
                    y,
                    w,
                    h,
                    fill,
                    role,
                    tip,
                } => {
                    let attrs = format!(
                        "class=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"",
                        role.class(),
                        fill.hex()
                    );
                    match tip {
                        Some(t) => {
                            s += &format!("<rect {attrs}><title>{}</title></rect>\n", xml_escape(t))
                        }
                        None => s += &format!("<rect {attrs}/>\n"),
                    }
                }
                Item::Text {
                    x,
                    y,
                    text,
                    size,
                    anchor,
                    color,
                    vertical,
                } => {
                    let anchor = match anchor {
                        Anchor::Start => "start",
                        Anchor::Middle => "middle",
                        Anchor::End => "end",
                    };
                    let rotate = if *vertical {
                        format!(" transform=\"rotate(-90 {x:.1} {y:.1})\"")
                    } else {
                        String::new()
                    };
                    // Centred on y by a fixed shift of the alphabetic baseline, not by
                    // dominant-baseline="central": that is computed per font, so a label mixing
                    // scripts (a Latin '␣' before a Hangul syllable) would not share a line.
                    let base = y + 0.35 * size;
                    s += &format!(
                        "<text x=\"{x:.1}\" y=\"{base:.1}\" font-size=\"{size:.1}\" text-anchor=\"{anchor}\" fill=\"{}\"{rotate}>{}</text>\n",
                        color.hex(),
                        xml_escape(text)
                    );
                }
            }
        }
        s += "</svg>\n";
        s
    }

    /// The figure rasterized with the machine's fonts: (height, width) RGB pixels, row-major.
    pub fn to_pixels(&self) -> Result<Vec<u8>> {
        self.to_pixels_with(&fonts::system())
    }

    /// The figure rasterized with the fonts of `db`. Characters no font has are reported once
    /// (see [`fonts::report_missing`]) and left blank.
    pub fn to_pixels_with(&self, db: &Arc<Database>) -> Result<Vec<u8>> {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
            return Err(Error::Invalid(format!(
                "a picture of {w} x {h} pixels is outside 1..={MAX_SIDE} on a side"
            )));
        }
        fonts::report_missing(&fonts::missing(db, self.texts()));
        let options = usvg::Options {
            fontdb: db.clone(),
            font_family: fonts::FAMILY.to_string(),
            ..usvg::Options::default()
        };
        let tree = usvg::Tree::from_str(&self.to_svg(), &options)
            .map_err(|e| Error::Invalid(format!("drawing the picture: {e}")))?;
        let mut pixmap = tiny_skia::Pixmap::new(w, h)
            .ok_or_else(|| Error::Invalid(format!("a picture of {w} x {h} pixels")))?;
        resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
        // The SVG's first rectangle is an opaque white background: every pixel has alpha 255,
        // so the premultiplied channels are the colour.
        Ok(pixmap
            .data()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect())
    }

    /// The texts of the figure's labels.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.items.iter().filter_map(|it| match it {
            Item::Text { text, .. } => Some(text.as_str()),
            Item::Rect { .. } => None,
        })
    }

    /// The figure as a PNG file's bytes (8-bit RGB), drawn with the machine's fonts.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        self.to_png_with(&fonts::system())
    }

    /// The figure as PNG bytes, drawn with the fonts of `db`.
    pub fn to_png_with(&self, db: &Arc<Database>) -> Result<Vec<u8>> {
        let px = self.to_pixels_with(db)?;
        let mut out = Vec::new();
        let err = |e: png::EncodingError| Error::Invalid(format!("writing PNG: {e}"));
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().map_err(err)?;
            writer.write_image_data(&px).map_err(err)?;
        }
        Ok(out)
    }
}

/// Escapes text for XML, dropping control characters XML 1.0 does not allow.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Width in pixels of `text` written `size` pixels high in the monospace font (an estimate
/// for layout: wide characters count as a full em).
pub fn text_width(text: &str, size: f32) -> f32 {
    text.chars().map(fonts::advance).sum::<f32>() * size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips_size_and_colours() {
        let mut f = Figure::new(20, 10);
        f.rect(0.0, 0.0, 10.0, 10.0, Rgb(255, 0, 0), Role::Cell);
        let png = f.to_png().unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (20, 10));
        assert_eq!(&buf[..3], &[255, 0, 0]); // (0, 0) is in the red cell
        assert_eq!(&buf[(5 * 20 + 15) * 3..][..3], &[255, 255, 255]); // (15, 5) is background
    }

    #[test]
    fn text_draws_ink_in_png_and_escapes_in_svg() {
        let mut f = Figure::new(60, 20);
        f.text(2.0, 10.0, "a<b", 9.0, Anchor::Start);
        let px = f.to_pixels().unwrap();
        assert!(px.iter().any(|&v| v < 100), "no dark pixel");
        assert!(f.to_svg().contains(">a&lt;b</text>"));
    }

    #[test]
    fn empty_or_huge_pictures_are_errors() {
        assert!(Figure::new(0, 5).to_png().is_err());
        assert!(Figure::new(MAX_SIDE + 1, 5).to_png().is_err());
    }
}
