//! Constrained decoding against independent validators.
//!
//! Data-driven: every grammar of `tests/fixtures/constraints/cases.json` is run on every tiny
//! random model of `tests/fixtures/arch/` whose vocabulary can spell any byte (the byte-level BPE
//! ones; the tiny SentencePiece vocabularies have no byte fallback; random weights make the
//! model want anything, so the mask does all the work) at temperature 1.5 with several seeds, and
//! on the known models (SmolLM2: byte-level BPE; Gemma 3:
//! SentencePiece with byte fallback), greedy and sampled.
//! Every generation that ends must be accepted by a validator that is not llguidance: the
//! `jsonschema` crate for schemas, serde_json for JSON objects, the `regex` crate for regular
//! expressions (and for Lark grammars, the regex of the same language the case gives). A
//! grammar whose language is finite must end within the budget, and no generated token is ever
//! a control token.

use gpt::infer::{FinishReason, GenerateOptions, Generator, Grammar, SamplingParams};
use gpt::LoadedModel;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases() -> (Vec<Value>, usize) {
    let text = std::fs::read_to_string(fixtures().join("constraints/cases.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let max = v["max_tokens"].as_u64().unwrap() as usize;
    (v["cases"].as_array().unwrap().clone(), max)
}

fn grammar(case: &Value) -> Grammar {
    if let Some(s) = case.get("json_schema") {
        Grammar::JsonSchema(s.clone())
    } else if case.get("json_object").is_some() {
        Grammar::JsonObject
    } else if let Some(r) = case["regex"].as_str() {
        Grammar::Regex(r.into())
    } else if let Some(g) = case["lark"].as_str() {
        Grammar::Lark(g.into())
    } else {
        panic!("{}: no grammar", case["name"])
    }
}

/// The independent verdict on a finished text: None when it is valid, else why not.
fn invalid(case: &Value, text: &str) -> Option<String> {
    let whole = |re: &str| regex::Regex::new(&format!("^(?:{re})$")).unwrap();
    if let Some(schema) = case.get("json_schema") {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Some(format!("not JSON: {e}")),
        };
        let validator = jsonschema::validator_for(schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    } else if case.get("json_object").is_some() {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(_)) => None,
            Ok(v) => Some(format!("JSON but not an object: {v}")),
            Err(e) => Some(format!("not JSON: {e}")),
        }
    } else {
        let re = case["regex"]
            .as_str()
            .or(case["check_regex"].as_str())
            .unwrap();
        (!whole(re).is_match(text)).then(|| format!("does not match {re}"))
    }
}

/// Pure sampling (no top-k, top-p or min-p) under a constraint. The tiny models' window is 128
/// tokens: long generations slide it.
fn options(
    m: &LoadedModel,
    max_tokens: usize,
    temperature: f32,
    seed: u64,
    constraint: &gpt::infer::Constraint,
) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingParams {
            temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..Default::default()
        },
        stop_ids: m.stop_ids.clone(),
        constraint: Some(constraint.clone()),
        slide: true,
        ..Default::default()
    }
}

/// Runs every case on one model; returns the failures.
fn run_model(label: &str, m: &LoadedModel, runs: &[(f32, u64)]) -> Vec<String> {
    let (cases, max_tokens) = cases();
    let factory = m.constraint_factory().unwrap();
    let prompt = m.encode_prompt("Answer: ", false);
    let mut g = Generator::new(&m.transformer, &m.tokenizer);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let bounded = case["bounded"].as_bool().unwrap();
        let max_tokens = case["max_tokens"]
            .as_u64()
            .map_or(max_tokens, |n| n as usize);
        let constraint = factory
            .constraint(&grammar(case))
            .unwrap_or_else(|e| panic!("{label} {name}: {e}"));
        for &(temperature, seed) in runs {
            let opts = options(m, max_tokens, temperature, seed, &constraint);
            let r = g.generate(&prompt, &opts, &mut |_| true).unwrap();
            let what = format!("{label} {name} T={temperature} seed={seed}: {:?}", r.text);
            let body = match r.ids.split_last() {
                Some((last, rest)) if m.stop_ids.contains(last) => rest,
                _ => &r.ids[..],
            };
            if let Some(&id) = body.iter().find(|&&id| m.tokenizer.is_special(id)) {
                failures.push(format!("{what}: control token {id} generated"));
            }
            match r.finish_reason {
                FinishReason::Stop => {
                    if let Some(why) = invalid(case, &r.text) {
                        failures.push(format!("{what}: {why}"));
                    }
                }
                _ if bounded => failures.push(format!(
                    "{what}: a finite language, but no end after {max_tokens} tokens"
                )),
                _ => {}
            }
            println!("{what} ({:?}, {} tokens)", r.finish_reason, r.ids.len());
        }
    }
    failures
}

#[test]
fn constrained_output_passes_independent_validators_on_every_tiny_model() {
    let mut failures = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join("arch"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model-f16.gguf").exists())
        .collect();
    dirs.sort();
    let mut ran = 0;
    for dir in dirs {
        let m = LoadedModel::open(&dir.join("model-f16.gguf")).unwrap();
        let label = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !spells_every_byte(&m) {
            println!("{label}: skipped, its vocabulary cannot spell every byte");
            continue;
        }
        failures.extend(run_model(&label, &m, &[(1.5, 1), (1.5, 2), (1.5, 3)]));
        ran += 1;
    }
    assert!(
        ran >= 4,
        "expected the byte-level tiny models of tests/fixtures/arch"
    );
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

/// Every byte is some token's whole text: any UTF-8 text can be generated.
fn spells_every_byte(m: &LoadedModel) -> bool {
    let mut seen = [false; 256];
    for id in 0..m.tokenizer.vocab_size() as u32 {
        match m.tokenizer.token_bytes(id) {
            Some(&[b]) if !m.tokenizer.is_special(id) => seen[b as usize] = true,
            _ => {}
        }
    }
    seen.iter().all(|&s| s)
}

/// The known models (fetched on first use, as tests/hf_reference.rs does; CI pulls both first).
#[test]
fn constrained_output_passes_independent_validators_on_the_known_models() {
    let mut failures = Vec::new();
    for name in ["smollm2-135m-instruct", "gemma3-270m"] {
        let path = gpt::hub::resolve(name, &mut |_, _, _| {}).expect("fetching the model");
        let m = LoadedModel::open(&path).unwrap();
        failures.extend(run_model(name, &m, &[(0.0, 0), (0.8, 7)]));
    }
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

#[test]
fn a_grammar_that_does_not_compile_is_an_error_naming_it() {
    let m = LoadedModel::open(&fixtures().join("arch/llama/model-f16.gguf")).unwrap();
    let f = m.constraint_factory().unwrap();
    for (g, what) in [
        (Grammar::Regex("(unclosed".into()), "grammar"),
        (
            Grammar::Lark("start: undefined_rule\n".into()),
            "undefined_rule",
        ),
        (
            Grammar::JsonSchema(serde_json::json!({"type": "no-such-type"})),
            "no-such-type",
        ),
    ] {
        let e = f.constraint(&g).expect_err("an error").to_string();
        assert!(e.contains(what), "{g:?}: {e}");
    }
}

/// A required tool call from a random model: the grammar of `tools::grammar` makes even random
/// weights write one `<tool_call>` block that `tools::parse` reads back, naming an allowed tool,
/// with arguments valid under that tool's parameters (checked by the jsonschema crate).
#[test]
fn random_models_make_valid_required_and_named_tool_calls() {
    use gpt::infer::tools::{self, Tool, ToolChoice};
    let tools_list = vec![
        Tool {
            name: "get_weather".into(),
            description: Some("Current weather in a city".into()),
            parameters: serde_json::json!({"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"],
                "additionalProperties": false}),
        },
        Tool {
            name: "add".into(),
            description: None,
            parameters: serde_json::json!({"type": "object", "properties": {
                "a": {"type": "integer", "minimum": -50, "maximum": 50},
                "b": {"type": "integer", "minimum": -50, "maximum": 50}}, "required": ["a", "b"],
                "additionalProperties": false}),
        },
    ];
    let m = LoadedModel::open(&fixtures().join("arch/qwen2/model-f16.gguf")).unwrap();
    let factory = m.constraint_factory().unwrap();
    let prompt = m.encode_prompt("Call a tool: ", false);
    let mut g = Generator::new(&m.transformer, &m.tokenizer);
    for choice in [ToolChoice::Required, ToolChoice::Named("add".into())] {
        let grammar = tools::grammar(&tools_list, &choice).unwrap();
        let constraint = factory.constraint(&grammar).unwrap();
        for seed in 1..=4 {
            let opts = options(&m, 400, 1.5, seed, &constraint);
            let r = g.generate(&prompt, &opts, &mut |_| true).unwrap();
            assert_eq!(
                r.finish_reason,
                FinishReason::Stop,
                "{choice:?} {seed}: {:?}",
                r.text
            );
            let (rest, calls) = tools::parse(&r.text);
            assert!(rest.is_empty() && calls.len() == 1, "{:?}", r.text);
            let tool = tools_list.iter().find(|t| t.name == calls[0].name).unwrap();
            if let ToolChoice::Named(n) = &choice {
                assert_eq!(&tool.name, n);
            }
            let v = jsonschema::validator_for(&tool.parameters).unwrap();
            assert!(v.is_valid(&calls[0].arguments), "{:?}", r.text);
        }
    }
}
