//! Hostile input files (tests/fixtures/hostile, made by scripts/make_hostile_files.py): each case
//! of cases.json must load to one clear error that names the file and the field, never a panic,
//! an abort or an allocation sized by the hostile value. New cases need no code here.

use gpt::formats::hf_config::HfConfig;
use gpt::tokenizer::Tokenizer;
use std::path::Path;

#[test]
fn every_hostile_file_is_a_clear_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let path = dir.join(c["path"].as_str().unwrap());
        let err = match c["load"].as_str().unwrap() {
            "tokenizer.json" => Tokenizer::from_tokenizer_json(&path)
                .err()
                .map(|e| e.to_string()),
            "gpt2-files" => {
                Tokenizer::from_gpt2_files(&path.join("encoder.json"), &path.join("vocab.bpe"))
                    .err()
                    .map(|e| e.to_string())
            }
            "config.json" => HfConfig::from_file(&path).err().map(|e| e.to_string()),
            "train.toml" => gpt::train::trainer::TrainConfig::from_file(&path)
                .err()
                .map(|e| e.to_string()),
            "gguf-model" => gpt::formats::gguf::GgufFile::open(&path)
                .and_then(|g| gpt::model::Transformer::from_gguf(&g))
                .err()
                .map(|e| e.to_string()),
            "chat-template" => {
                let source = std::fs::read_to_string(&path).unwrap();
                let t = gpt::infer::chat_template::ChatTemplate::new(&source, "<s>", "</s>");
                let m = [gpt::infer::chat_template::Message::new("user", "Hi")];
                t.render(&m, true).err().map(|e| e.to_string())
            }
            other => panic!("unknown load kind {other}"),
        };
        let err = err.unwrap_or_else(|| panic!("{}: {} loaded", c["path"], c["why"]));
        for want in c["error"].as_array().unwrap() {
            let want = want.as_str().unwrap();
            assert!(
                err.contains(want),
                "{}: {err:?} does not name {want:?}",
                c["path"]
            );
        }
        assert!(
            !err.contains('\n'),
            "{}: a one-line error: {err:?}",
            c["path"]
        );
    }
}
