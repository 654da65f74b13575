//! `gpt inspect ...` end to end: the attention JSON contract against Hugging Face (data-driven
//! over every attention case of the smollm2 reference files), pictures written and decoded,
//! parameter presets, and clear errors for out-of-range input.

mod common;

use common::{gpt, model_path, references, stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Attention probabilities within this of Hugging Face's (they are rounded to 5 significant digits).
const ATTENTION_TOL: f64 = 1e-3;
/// Rows sum to 1 up to f32 rounding (and JSON's shortest round-trip printing).
const ROW_SUM_TOL: f64 = 1e-5;

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&stdout(&gpt(args))).unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gpt-inspect-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let mut r = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn distinct_colours(px: &[u8]) -> usize {
    px.chunks_exact(3)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

#[test]
fn attention_json_matches_reference_for_every_attention_case() {
    let mut checked = 0;
    for r in references() {
        let model = model_path(&r);
        for p in r["prompts"].as_array().unwrap() {
            let Some(want) = p.get("attention_layer0_head0").and_then(Value::as_array) else {
                continue;
            };
            let v = json(&[
                "inspect",
                "attention",
                p["text"].as_str().unwrap(),
                "--model",
                &model,
                "--layer",
                "0",
                "--head",
                "0",
                "--precision",
                "f32",
                "--json",
            ]);
            assert_eq!(
                (v["layer"].as_u64(), v["head"].as_u64()),
                (Some(0), Some(0))
            );
            assert_eq!(v["tokens"], p["tokens"]);
            let got = v["pattern"].as_array().unwrap();
            assert_eq!(got.len(), want.len());
            let mut max_diff = 0f64;
            for (i, (row, wrow)) in got.iter().zip(want).enumerate() {
                let row: Vec<f64> = row
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                let sum: f64 = row.iter().sum();
                assert!((sum - 1.0).abs() < ROW_SUM_TOL, "row {i} sums to {sum}");
                for (j, (g, w)) in row.iter().zip(wrow.as_array().unwrap()).enumerate() {
                    if j > i {
                        assert_eq!(*g, 0.0, "future position ({i}, {j}) has weight {g}");
                    }
                    max_diff = max_diff.max((g - w.as_f64().unwrap()).abs());
                }
            }
            assert!(
                max_diff < ATTENTION_TOL,
                "{:?}: attention differs by {max_diff}",
                p["text"]
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no attention case in the reference files");
}

#[test]
fn attention_pictures_are_written_as_png_svg_and_json() {
    let model = model_path(&Value::Null);
    let dir = temp_dir("attention");
    let prompt = "The fluffy blue creature";
    let tokens = json(&["tokenize", prompt, "--model", &model, "--json"]);
    let t = tokens["ids"].as_array().unwrap().len();
    for name in ["a.png", "a.svg", "a.json", "grid.png", "grid.svg"] {
        let path = dir.join(name);
        let mut args = vec![
            "inspect",
            "attention",
            prompt,
            "--model",
            &model,
            "--layer",
            "2",
            "--head",
            "1",
            "--out",
            path.to_str().unwrap(),
        ];
        if name.starts_with("grid") {
            args.push("--all-heads");
        }
        stdout(&gpt(&args));
        let cells = if name.starts_with("grid") {
            9 * t * t
        } else {
            t * t
        };
        match path.extension().unwrap().to_str().unwrap() {
            "png" => {
                let (w, h, px) = decode_png(&path);
                assert!(w > 100 && h > 100, "{name}: {w} x {h}");
                assert!(distinct_colours(&px) > 2, "{name} is blank");
            }
            "svg" => {
                let svg = std::fs::read_to_string(&path).unwrap();
                assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
                assert_eq!(svg.matches("class=\"cell\"").count(), cells, "{name}");
            }
            _ => {
                let v: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                assert_eq!(v["head"], 1);
                assert_eq!(v["pattern"].as_array().unwrap().len(), t);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn out_of_range_and_bad_input_are_clear_errors() {
    let model = model_path(&Value::Null);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["attention", "Hi", "--layer", "30"], "0..=29"),
        (vec!["attention", "Hi", "--head", "9"], "0..=8"),
        (
            vec!["attention", "Hi", "--out", "x.txt"],
            ".png, .svg or .json",
        ),
        (vec!["attention", ""], "empty"),
        (vec!["params", "--preset", "gpt5"], "gpt3-175b"),
        (
            vec!["embed", "similarity", "cat", "#99999999"],
            "outside the vocabulary",
        ),
        (vec!["embed", "analogy", "king man"], "expected + or -"),
        (
            vec!["temperature", "Hi", "--temperatures", "-1"],
            "temperature -1",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["inspect"];
        all.extend(&args);
        all.extend(["--model", &model]);
        let o = gpt(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn params_presets_and_the_loaded_model_total_as_documented() {
    let v = json(&["inspect", "params", "--preset", "gpt3-175b", "--json"]);
    let seed = &v["tables"][0];
    assert_eq!(seed["total"], 175_181_291_520u64);
    let share = seed["attention_share"].as_f64().unwrap();
    assert!((share - 1.0 / 3.0).abs() < 0.01, "{share}");
    let parts: Vec<&str> = seed["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["part"].as_str().unwrap())
        .collect();
    assert!(parts.contains(&"value-down") && parts.contains(&"value-up"));
    assert!(v["tables"][1]["total"].as_u64().unwrap() > 175_181_291_520);
    let v = json(&["inspect", "params", "--preset", "gpt2-124m", "--json"]);
    assert_eq!(v["tables"][1]["total"], 124_439_808u64);
    let model = model_path(&Value::Null);
    let v = json(&["inspect", "params", "--model", &model, "--json"]);
    assert_eq!(v["tables"][0]["total"], 134_515_008u64);
    let table = stdout(&gpt(&["inspect", "params", "--preset", "gpt3-175b"]));
    assert!(table.contains("175,181,291,520"), "{table}");
}

#[test]
fn temperature_lens_and_embed_write_json_and_pictures() {
    let model = model_path(&Value::Null);
    let dir = temp_dir("others");
    let v = json(&[
        "inspect",
        "temperature",
        "The cat sat on the",
        "--model",
        &model,
        "--top",
        "4",
        "--json",
    ]);
    assert_eq!(v["temperatures"], serde_json::json!([0.0, 0.5, 1.0, 2.0]));
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 4);
    assert_eq!(tokens[0]["probs"][0], 1.0);
    let v = json(&[
        "inspect",
        "lens",
        "The capital of France is",
        "--model",
        &model,
        "--json",
    ]);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 30);
    assert_eq!(layers[29]["top"][0]["token"], "ĠParis");
    let v = json(&[
        "inspect",
        "embed",
        "analogy",
        "king - man + woman",
        "--model",
        &model,
        "--top",
        "3",
        "--json",
    ]);
    assert_eq!(v["neighbours"][0]["token"], "Ġqueen");
    let v = json(&[
        "inspect",
        "embed",
        "project",
        "--direction",
        "woman - man",
        "king",
        "queen",
        "unbelievable",
        "--model",
        &model,
        "--json",
    ]);
    let words = v["words"].as_array().unwrap();
    assert_eq!(words[2]["multi_token"], true);
    assert!(words[1]["projection"].as_f64().unwrap() > words[0]["projection"].as_f64().unwrap());
    for (args, name) in [
        (vec!["temperature", "The cat sat on the"], "t.png"),
        (vec!["lens", "The capital of France is"], "l.png"),
        (
            vec![
                "embed",
                "project",
                "--direction",
                "cats - cat",
                "dog",
                "dogs",
            ],
            "p.png",
        ),
    ] {
        let path = dir.join(name);
        let mut all = vec!["inspect"];
        all.extend(&args);
        all.extend(["--model", &model, "--out", path.to_str().unwrap()]);
        stdout(&gpt(&all));
        let (w, h, px) = decode_png(&path);
        assert!(w > 100 && h > 100, "{name}: {w} x {h}");
        assert!(distinct_colours(&px) > 2, "{name} is blank");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
