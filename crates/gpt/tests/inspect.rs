//! Looking inside models: parameter counts against the files, embedding probes on a matrix built
//! by hand, the logit lens against the forward pass, temperatures against the softmax, attention
//! patterns against Hugging Face, and every picture decoded.
//!
//! Tests that need the default model fetch it through `gpt::hub` (the code path of `gpt pull`);
//! the others use the gpt2-tiny fixture or tables built here.

use gpt::formats::gguf::GgufFile;
use gpt::inspect::attention_patterns::LayerAttention;
use gpt::inspect::charts::blues;
use gpt::inspect::logit_lens::{layer_logits, LogitLens};
use gpt::inspect::params_table::{Accounting, Hyperparameters, ParamTable};
use gpt::inspect::probes;
use gpt::inspect::render::{Figure, Rgb, Role};
use gpt::inspect::temperature::TemperatureTable;
use gpt::kernels::Precision;
use gpt::model::config::Arch;
use gpt::model::{Logits, Transformer};
use gpt::tensor::Matrix;
use gpt::LoadedModel;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Attention probabilities within this of Hugging Face's (they are rounded to 5 significant digits).
const ATTENTION_TOL: f32 = 1e-3;
/// Each row of probabilities sums to 1 up to f32 rounding over at most a few dozen terms.
const ROW_SUM_TOL: f32 = 1e-5;

fn default_model_path() -> PathBuf {
    gpt::hub::resolve(gpt::hub::DEFAULT_MODEL, &mut |_, _, _| {}).expect("fetching the model")
}

fn default_model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| LoadedModel::open(&default_model_path()).expect("loading"))
}

fn tiny_gpt2() -> Transformer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny");
    Transformer::from_hf_dir(&dir).expect("gpt2-tiny")
}

// ---------------------------------------------------------------- parameter counts

#[test]
fn loaded_model_count_equals_the_sum_of_its_gguf_tensors() {
    let g = GgufFile::open(&default_model_path()).unwrap();
    let in_file: u64 = g.tensors.iter().map(|t| t.n_elements()).sum();
    let table = ParamTable::from_model(&default_model().transformer, "default");
    assert_eq!(table.total(), in_file);
    assert_eq!(in_file, 134_515_008);
    // SmolLM2 ties its unembedding to the token embedding: counted once, marked on both.
    let unemb = table.parts.last().unwrap();
    assert!(unemb.tied && unemb.total == 0);
    assert!(table.parts[0].tied);
}

#[test]
fn counting_a_model_agrees_with_computing_from_its_hyperparameters() {
    // gpt2-tiny's README: 62784 parameters, the tied matrix counted once.
    let t = tiny_gpt2();
    let counted = ParamTable::from_model(&t, "gpt2-tiny");
    let h = Hyperparameters {
        name: "gpt2-tiny",
        description: "the test fixture",
        arch: Arch::Gpt2,
        n_layer: 2,
        d_model: 48,
        n_head: 4,
        n_kv_head: 4,
        d_ff: 192,
        vocab_size: 96,
        context_length: 32,
        tied_embeddings: true,
    };
    let computed = h.table(Accounting::Full);
    assert_eq!(counted.total(), 62_784);
    assert_eq!(computed.total(), 62_784);
    for (a, b) in counted.parts.iter().zip(&computed.parts) {
        assert_eq!(
            (a.part, a.total, a.per_layer),
            (b.part, b.total, b.per_layer)
        );
    }
    let default = ParamTable::from_model(&default_model().transformer, "default");
    let preset = gpt::inspect::params_table::preset("smollm2-135m")
        .unwrap()
        .table(Accounting::Full);
    assert_eq!(default.total(), preset.total());
}

// ---------------------------------------------------------------- embedding probes

/// Rows: 0 man (1,0,0), 1 woman (0,1,0), 2 king (1,0,1), 3 queen (0,1,1), 4 apple (0,0,-1),
/// 5 (1,1,0). By construction king - man + woman = queen exactly.
fn toy_table() -> Matrix {
    #[rustfmt::skip]
    let v = [
        1.0, 0.0, 0.0,
        0.0, 1.0, 0.0,
        1.0, 0.0, 1.0,
        0.0, 1.0, 1.0,
        0.0, 0.0, -1.0,
        1.0, 1.0, 0.0,
    ];
    Matrix::from_f32("toy", 6, 3, &v).unwrap()
}

#[test]
fn dot_and_cosine_by_hand() {
    let t = toy_table();
    let (man, pair) = (probes::row(&t, 0).unwrap(), probes::row(&t, 5).unwrap());
    assert_eq!(probes::dot(&man, &pair), 1.0);
    assert!((probes::cosine(&man, &pair) - 1.0 / 2f32.sqrt()).abs() < 1e-6);
    let (king, apple) = (probes::row(&t, 2).unwrap(), probes::row(&t, 4).unwrap());
    assert!((probes::cosine(&king, &apple) + 1.0 / 2f32.sqrt()).abs() < 1e-6);
    assert!(probes::row(&t, 6)
        .unwrap_err()
        .to_string()
        .contains("0..=5"));
}

#[test]
fn analogy_finds_the_row_built_to_be_the_answer() {
    let t = toy_table();
    let r = |i| probes::row(&t, i).unwrap();
    let (king, man, woman) = (r(2), r(0), r(1));
    let v = probes::combine(&[(1.0, &king), (-1.0, &man), (1.0, &woman)]);
    assert_eq!(v, vec![0.0, 1.0, 1.0]);
    let n = probes::nearest(&t, &v, 2, &[2, 0, 1]).unwrap();
    assert_eq!(n[0].id, 3); // queen, at cosine 1 (up to rounding in the norms)
    assert!((n[0].cosine - 1.0).abs() < 1e-6);
    // next best: (1,1,0) at cosine 1/2 (apple is -1/sqrt 2)
    assert_eq!(n[1].id, 5);
    assert!((n[1].cosine - 0.5).abs() < 1e-6);
    // without exclusions the query's nearest is itself when it is a row
    assert_eq!(probes::nearest(&t, &king, 1, &[]).unwrap()[0].id, 2);
}

#[test]
fn projection_onto_a_difference_and_the_mean_of_several_tokens() {
    let t = toy_table();
    let r = |i| probes::row(&t, i).unwrap();
    let d = probes::combine(&[(1.0, &r(1)), (-1.0, &r(0))]); // woman - man = (-1, 1, 0)
    let s = 1.0 / 2f32.sqrt();
    assert!((probes::projection(&r(3), &d) - s).abs() < 1e-6); // queen: +1/sqrt 2
    assert!((probes::projection(&r(2), &d) + s).abs() < 1e-6); // king: -1/sqrt 2
    assert_eq!(probes::projection(&r(4), &d), 0.0); // apple: perpendicular
                                                    // a "word" of tokens man and woman is their mean (0.5, 0.5, 0)
    assert_eq!(
        probes::mean_of_rows(&t, &[0, 1]).unwrap(),
        vec![0.5, 0.5, 0.0]
    );
}

#[test]
fn real_model_words_resolve_and_king_minus_man_plus_woman_is_queen() {
    let m = default_model();
    let table = &m.transformer.token_embedding.table;
    let w = probes::word_vector(table, &m.tokenizer, "king", Default::default()).unwrap();
    assert_eq!(w.ids.len(), 1);
    assert_eq!(m.tokenizer.token_str(w.ids[0]), Some("Ġking"));
    let as_is = probes::word_vector(table, &m.tokenizer, "king", probes::SpaceRule::AsIs).unwrap();
    assert_eq!(m.tokenizer.token_str(as_is.ids[0]), Some("king"));
    let by_id = probes::word_vector(
        table,
        &m.tokenizer,
        &format!("#{}", w.ids[0]),
        Default::default(),
    )
    .unwrap();
    assert_eq!(by_id.vector, w.vector);
    assert!(probes::word_vector(table, &m.tokenizer, "#999999", Default::default()).is_err());
    assert!(probes::word_vector(table, &m.tokenizer, "", Default::default()).is_err());
    let long =
        probes::word_vector(table, &m.tokenizer, "unbelievable", Default::default()).unwrap();
    assert!(long.multi_token());
    let e = probes::expression_vector(
        table,
        &m.tokenizer,
        "king - man + woman",
        Default::default(),
    )
    .unwrap();
    let n = probes::nearest(table, &e.vector, 1, &e.ids()).unwrap();
    assert_eq!(m.tokenizer.token_str(n[0].id), Some("Ġqueen"));
}

// ---------------------------------------------------------------- logit lens and temperature

#[test]
fn lens_after_the_last_layer_is_the_models_output() {
    for (name, t, ids) in [
        ("gpt2-tiny", tiny_gpt2(), vec![1u32, 2, 3, 4]),
        (
            "default",
            default_model().transformer.clone(),
            default_model().encode_prompt("The capital of France is", false),
        ),
    ] {
        let mut cache = t.new_cache();
        let logits = t.forward(&ids, &mut cache, Logits::Last, None).unwrap();
        let lens = LogitLens::new(&t, &ids, 5).unwrap();
        assert_eq!(lens.top.len(), t.config.n_layer, "{name}");
        let last = &lens.top[t.config.n_layer - 1];
        let want = gpt::infer::sampling::top_k(&logits, 5);
        let got: Vec<u32> = last.iter().map(|c| c.id).collect();
        assert_eq!(got, want.iter().map(|c| c.id).collect::<Vec<_>>(), "{name}");
        for (g, w) in last.iter().zip(&want) {
            assert_eq!(
                g.logit, w.score,
                "{name}: the same functions on the same residual"
            );
        }
        for row in &lens.tracked_probs {
            assert!(row.iter().all(|p| (0.0..=1.0).contains(p)));
        }
        assert!(lens.tracked.len() <= gpt::inspect::logit_lens::MAX_TRACKED);
    }
}

#[test]
fn lens_reads_the_residual_through_the_models_final_norm_and_unembedding() {
    let t = tiny_gpt2();
    let r = vec![0.5f32; t.config.d_model];
    let got = layer_logits(&t, &r);
    let h = t.final_norm.forward(&r);
    assert_eq!(got, t.unembedding.forward(&h, 1, t.precision));
    assert_eq!(got.len(), t.config.vocab_size);
}

#[test]
fn temperature_one_is_the_softmax_of_the_real_logits() {
    let m = default_model();
    let ids = m.encode_prompt("The cat sat on the", false);
    let mut cache = m.transformer.new_cache();
    let logits = m
        .transformer
        .forward(&ids, &mut cache, Logits::Last, None)
        .unwrap();
    let t = TemperatureTable::new(&logits, &[0.0, 0.5, 1.0, 2.0], 5).unwrap();
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln();
    for (i, &id) in t.ids.iter().enumerate() {
        let want = (logits[id as usize] as f64 - lse).exp() as f32;
        assert!(
            (t.probs[2][i] - want).abs() < 1e-5,
            "{id}: {} vs {want}",
            t.probs[2][i]
        );
    }
    assert_eq!(t.ids[0], gpt::infer::sampling::argmax(&logits));
    assert_eq!(t.probs[0][0], 1.0);
    assert!(t.probs[1][0] > t.probs[2][0] && t.probs[2][0] > t.probs[3][0]);
}

// ---------------------------------------------------------------- attention patterns

fn reference() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn layer_attention_matches_reference_for_every_attention_case() {
    let r = reference();
    let mut t = default_model().transformer.clone();
    t.precision = Precision::F32;
    let mut checked = 0;
    for p in r["prompts"].as_array().unwrap() {
        let Some(want) = p.get("attention_layer0_head0").and_then(Value::as_array) else {
            continue;
        };
        let ids: Vec<u32> = p["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let att = LayerAttention::record(&t, &ids, 0).unwrap();
        let got = att.head(0).unwrap();
        let mut max_diff = 0f32;
        for (i, (row, wrow)) in got.iter().zip(want).enumerate() {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < ROW_SUM_TOL, "row {i} sums to {sum}");
            for (j, (&g, w)) in row.iter().zip(wrow.as_array().unwrap()).enumerate() {
                if j > i {
                    assert_eq!(g, 0.0, "future position ({i}, {j})");
                }
                max_diff = max_diff.max((g - w.as_f64().unwrap() as f32).abs());
            }
        }
        println!("{:?}: max attention difference {max_diff:.2e}", p["text"]);
        assert!(max_diff < ATTENTION_TOL, "first row ours {:?}", &got[1]);
        checked += 1;
    }
    assert!(checked > 0, "no attention case in the reference file");
}

#[test]
fn layer_and_head_out_of_range_are_clear_errors() {
    let t = &default_model().transformer;
    let e = LayerAttention::record(t, &[1, 2], 30)
        .unwrap_err()
        .to_string();
    assert!(e.contains("0..=29"), "{e}");
    let att = LayerAttention::record(t, &[1, 2], 0).unwrap();
    let e = att.head(9).unwrap_err().to_string();
    assert!(e.contains("0..=8"), "{e}");
    assert!(LayerAttention::record(t, &[], 0).is_err());
}

// ---------------------------------------------------------------- pictures

/// Decodes a PNG: (width, height, RGB pixels).
fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut r = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn pixel(px: &[u8], w: u32, x: f32, y: f32) -> Rgb {
    let i = ((y as usize) * w as usize + x as usize) * 3;
    Rgb(px[i], px[i + 1], px[i + 2])
}

/// Decodes the figure's PNG and checks its size, that it is not blank, that each rectangle of
/// `role` shows its colour near its corner, and how many there are; counts the SVG's too.
fn check_picture(f: &Figure, role: Role, expected: usize) {
    let (w, h, px) = decode(&f.to_png().unwrap());
    assert_eq!((w, h), (f.width, f.height));
    let colours: std::collections::HashSet<&[u8]> = px.chunks_exact(3).collect();
    assert!(colours.len() > 2, "blank picture");
    let rects: Vec<_> = f.rects(role).collect();
    assert_eq!(rects.len(), expected);
    for (x, y, rw, rh, fill) in &rects {
        if *rw >= 3.0 && *rh >= 3.0 {
            assert_eq!(pixel(&px, w, x + 1.0, y + 1.0), *fill, "rect at ({x}, {y})");
        }
    }
    let class = match role {
        Role::Cell => "class=\"cell\"",
        Role::Bar => "class=\"bar\"",
        Role::Decoration => "class=\"deco\"",
    };
    assert_eq!(f.to_svg().matches(class).count(), expected);
}

/// Counts runs of cell pixels along the horizontal line y, between x0 and x1: one per cell
/// when cells are separated by background gaps.
fn runs(px: &[u8], w: u32, y: f32, x0: f32, x1: f32) -> usize {
    let mut n = 0;
    let mut inside = false;
    for x in x0 as u32..x1 as u32 {
        let on = pixel(px, w, x as f32, y) != Rgb::WHITE;
        if on && !inside {
            n += 1;
        }
        inside = on;
    }
    n
}

#[test]
fn attention_heatmap_png_has_one_cell_per_pair_of_tokens() {
    let m = default_model();
    let ids = m.encode_prompt("The fluffy blue creature roamed the verdant forest", false);
    let t = ids.len();
    let att = LayerAttention::record(&m.transformer, &ids, 3).unwrap();
    let labels: Vec<String> = ids
        .iter()
        .map(|&i| gpt::inspect::charts::token_label(m.tokenizer.token_bytes(i).unwrap()))
        .collect();
    let f = att.head_figure(2, &labels).unwrap();
    check_picture(&f, Role::Cell, t * t);
    // Along the top edge of each row of cells: T separate cells.
    let (w, _, px) = decode(&f.to_png().unwrap());
    let cells: Vec<_> = f.rects(Role::Cell).collect();
    let (x0, x1) = (cells[0].0, cells[t - 1].0 + cells[t - 1].2);
    for i in 0..t {
        let y = cells[i * t].1 + 1.0;
        assert_eq!(runs(&px, w, y, x0, x1 + 1.0), t, "row {i}");
    }
    // The first row attends only to itself: dark first cell, the rest at 0.
    assert_eq!(cells[0].4, blues(1.0));
    assert!(cells[1..t].iter().all(|c| c.4 == blues(0.0)));

    let grid = att.grid_figure(&labels).unwrap();
    check_picture(&grid, Role::Cell, att.n_head * t * t);
}

#[test]
fn bar_chart_pngs_have_one_bar_per_value() {
    let m = default_model();
    let ids = m.encode_prompt("The cat sat on the", false);
    let mut cache = m.transformer.new_cache();
    let logits = m
        .transformer
        .forward(&ids, &mut cache, Logits::Last, None)
        .unwrap();
    let t = TemperatureTable::new(&logits, &[0.0, 0.5, 1.0, 2.0], 6).unwrap();
    let labels: Vec<String> = t
        .ids
        .iter()
        .map(|&i| gpt::inspect::charts::token_label(m.tokenizer.token_bytes(i).unwrap()))
        .collect();
    check_picture(&t.figure("temperature", &labels), Role::Bar, 4 * 6);

    let words: Vec<String> = ["king", "queen", "man"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let f = gpt::inspect::charts::signed_bars(&gpt::inspect::charts::SignedBars {
        title: "projection",
        labels: &words,
        values: &[0.5, 1.0, -1.5],
        caption: "",
    });
    check_picture(&f, Role::Bar, 3);
    let bars: Vec<_> = f.rects(Role::Bar).collect();
    assert!(
        bars[2].0 < bars[0].0,
        "a negative value's bar lies left of zero"
    );
    assert!(
        (bars[2].2 - 1.5 * bars[1].2 / 1.0).abs() < 1.0,
        "bars scale with |value|"
    );
}

#[test]
fn lens_heatmap_png_has_layers_times_tracked_cells() {
    let t = tiny_gpt2();
    let lens = LogitLens::new(&t, &[5, 6, 7], 3).unwrap();
    let labels: Vec<String> = lens.tracked.iter().map(|i| format!("#{i}")).collect();
    let notes: Vec<String> = lens.top.iter().map(|r| format!("#{}", r[0].id)).collect();
    let f = lens.figure("lens", &labels, &notes);
    check_picture(&f, Role::Cell, t.config.n_layer * lens.tracked.len());
}

/// Dark pixels (any channel below 128) in the box (x0, y0)..(x1, y1).
fn ink(px: &[u8], w: u32, (x0, y0, x1, y1): (f32, f32, f32, f32)) -> usize {
    let mut n = 0;
    for y in y0 as u32..y1 as u32 {
        for x in x0 as u32..x1 as u32 {
            let p = pixel(px, w, x as f32, y as f32);
            n += usize::from(p.0.min(p.1).min(p.2) < 128);
        }
    }
    n
}

#[test]
fn a_korean_prompt_is_drawn_in_its_own_glyphs() {
    use gpt::inspect::fonts;
    let prompt = "귀여운 파란 생물이 숲을 돌아다녔다";
    let m = default_model();
    let ids = m.encode_prompt(prompt, false);
    let lens = LogitLens::new(&m.transformer, &ids, 1).unwrap();
    let names: Vec<String> = lens
        .tracked
        .iter()
        .map(|&i| gpt::inspect::charts::token_label(m.tokenizer.token_bytes(i).unwrap()))
        .collect();
    let notes: Vec<String> = lens.top.iter().map(|_| "·".to_string()).collect();
    let f = lens.figure(&format!("Logit lens: \"{prompt}\""), &names, &notes);
    let system = fonts::system();
    let missing = fonts::missing(&system, [prompt]);
    if !missing.is_empty() && std::env::var_os("CI").is_none() {
        // A machine without a Hangul font can only check that the gap is known (CI installs
        // Debian's fonts-nanum and checks the drawing).
        eprintln!("no Hangul font here (install fonts-nanum): only the missing glyphs are checked");
        assert_eq!(missing.len(), 14);
        return;
    }
    assert!(
        missing.is_empty(),
        "no font on this machine covers Hangul (CI installs Debian's fonts-nanum): {missing:?}"
    );
    // The title line, where the prompt is written.
    let title = f
        .items
        .iter()
        .find_map(|it| match it {
            gpt::inspect::render::Item::Text {
                x, y, text, size, ..
            } if text.contains(prompt) => Some((*x, *y - size, *x + f.width as f32, *y + size)),
            _ => None,
        })
        .expect("the title holds the prompt");
    let (w, h, drawn) = decode(&f.to_png().unwrap());
    assert_eq!((w, h), (f.width, f.height));
    // The same picture where no font has Hangul: the glyphs there are the missing-glyph box
    // (or nothing); where a font has them, other pixels, and more ink than the Latin text alone.
    let (_, _, boxes) = decode(&f.to_png_with(&fonts::bundled_only()).unwrap());
    assert_eq!(fonts::missing(&fonts::bundled_only(), [prompt]).len(), 14);
    let region = |px: &[u8]| -> Vec<u8> {
        let mut out = Vec::new();
        for y in title.1.max(0.0) as u32..title.3 as u32 {
            for x in title.0.max(0.0) as u32..(title.2 as u32).min(w) {
                out.extend_from_slice(&px[(y * w + x) as usize * 3..][..3]);
            }
        }
        out
    };
    let differing = region(&drawn)
        .chunks(3)
        .zip(region(&boxes).chunks(3))
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differing > 200,
        "only {differing} pixels differ from the missing-glyph rendering"
    );
    let latin = Figure {
        items: vec![gpt::inspect::render::Item::Text {
            x: title.0,
            y: (title.1 + title.3) / 2.0,
            text: "Logit lens: \"\"".into(),
            size: title.3 - (title.1 + title.3) / 2.0,
            anchor: gpt::inspect::render::Anchor::Start,
            color: Rgb::BLACK,
            vertical: false,
        }],
        ..f.clone()
    };
    let (_, _, latin_px) = decode(&latin.to_png().unwrap());
    let (ink_all, ink_latin) = (ink(&drawn, w, title), ink(&latin_px, w, title));
    assert!(
        ink_all > ink_latin + 14 * 10,
        "the Hangul added {} dark pixels",
        ink_all as i64 - ink_latin as i64
    );
}
