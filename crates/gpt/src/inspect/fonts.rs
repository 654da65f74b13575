//! The fonts pictures are drawn with: every font the machine has (found by fontdb in the
//! system's font folders), and a bundled DejaVu Sans Mono so that labels stay readable on a
//! machine with no fonts at all. A character no font covers is reported once per process (a
//! warning naming the characters and a font package that covers them), never drawn as `?`.

use resvg::usvg::fontdb::{Database, ID};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

/// DejaVu Sans Mono 2.37 (Bitstream Vera licence: assets/fonts/LICENSE-DejaVu.txt).
const BUNDLED: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
/// The family the SVG asks for first; the bundled font has it.
pub const FAMILY: &str = "DejaVu Sans Mono";

/// The machine's fonts and the bundled one, loaded once (scanning the font folders takes tens
/// of milliseconds).
pub fn system() -> Arc<Database> {
    static DB: OnceLock<Arc<Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = bundled_database();
        db.load_system_fonts();
        Arc::new(db)
    })
    .clone()
}

/// Only the bundled Latin font: what a machine with no fonts draws with.
pub fn bundled_only() -> Arc<Database> {
    Arc::new(bundled_database())
}

fn bundled_database() -> Database {
    let mut db = Database::new();
    db.load_font_data(BUNDLED.to_vec());
    db.set_monospace_family(FAMILY);
    db.set_sans_serif_family(FAMILY);
    db.set_serif_family(FAMILY);
    db
}

/// The characters of `texts` that no font of `db` has a glyph for (whitespace and control
/// characters aside; ASCII too, which the bundled font has), in order.
pub fn missing<'a>(db: &Database, texts: impl IntoIterator<Item = &'a str>) -> Vec<char> {
    let chars: BTreeSet<char> = texts
        .into_iter()
        .flat_map(str::chars)
        // ASCII is the bundled font's, in every database made here: only the rest is looked up.
        .filter(|c| !c.is_ascii() && !c.is_whitespace() && !c.is_control())
        .collect();
    chars
        .into_iter()
        .filter(|&c| !db.faces().any(|f| has_char(db, f.id, c)))
        .collect()
}

fn has_char(db: &Database, id: ID, c: char) -> bool {
    db.with_face_data(id, |data, index| {
        let font = skrifa::FontRef::from_index(data, index).ok()?;
        skrifa::charmap::Charmap::new(&font).map(c)
    })
    .flatten()
    .is_some()
}

/// Logs a warning for the characters of `chars` not reported before in this process; returns
/// them.
pub fn report_missing(chars: &[char]) -> Vec<char> {
    static SEEN: Mutex<BTreeSet<char>> = Mutex::new(BTreeSet::new());
    let new: Vec<char> = {
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        chars.iter().copied().filter(|&c| seen.insert(c)).collect()
    };
    if new.is_empty() {
        return new;
    }
    let list: Vec<String> = new
        .iter()
        .take(12)
        .map(|c| format!("'{c}' (U+{:04X})", *c as u32))
        .collect();
    let more = if new.len() > 12 {
        format!(" and {} more", new.len() - 12)
    } else {
        String::new()
    };
    tracing::warn!(
        "no font on this machine has a glyph for {}{more}: pictures leave them blank; install a font that covers them (Hangul: Debian's fonts-nanum; CJK: fonts-noto-cjk)",
        list.join(", ")
    );
    new
}

/// Rough advance of a character in the monospace font, in units of the font size: East Asian
/// wide characters (Hangul, CJK, fullwidth forms, emoji) take a full em, others 0.6 em (DejaVu
/// Sans Mono's advance is 0.602 em). Layouts use it to size labels; nothing is drawn from it.
pub fn advance(c: char) -> f32 {
    let u = c as u32;
    let wide = matches!(u,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xA960..=0xA97F | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6 | 0x1F300..=0x1F64F | 0x1F900..=0x1F9FF | 0x20000..=0x3FFFD);
    if wide {
        1.0
    } else {
        0.6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_font_covers_latin_and_not_hangul() {
        let db = bundled_only();
        assert!(missing(&db, ["The cat sat, ½ € ±"]).is_empty());
        assert_eq!(missing(&db, ["a 한글 b"]), vec!['글', '한']);
    }

    #[test]
    fn a_missing_glyph_is_reported_once() {
        // Private-use characters: no font has them.
        assert_eq!(
            report_missing(&['\u{E123}', '\u{E124}']),
            ['\u{E123}', '\u{E124}']
        );
        assert_eq!(report_missing(&['\u{E124}', '\u{E125}']), ['\u{E125}']);
        assert!(report_missing(&['\u{E123}']).is_empty());
    }

    #[test]
    fn wide_characters_take_an_em() {
        assert_eq!(advance('한'), 1.0);
        assert_eq!(advance('猫'), 1.0);
        assert_eq!(advance('a'), 0.6);
    }
}
