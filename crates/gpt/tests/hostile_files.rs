//! Hostile input files (tests/fixtures/hostile, made by scripts/make_hostile_files.py): each case
//! of cases.json must load to one clear error that names the file and the field, never a panic,
//! an abort or an allocation sized by the hostile value. New cases need no code here.
//!
//! The cases run under a memory cap: this test binary's allocator refuses to hold more than
//! [`CAP`] bytes at once, so a loader that sizes an allocation by a hostile count aborts the
//! test ("memory allocation of N bytes failed") instead of passing on a big machine.

use gpt::formats::hf_config::HfConfig;
use gpt::tokenizer::Tokenizer;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live heap bytes a case may hold: the largest hostile file is 40 MB, the output cap of a chat
/// template 32 MiB, and a 100 MB repeated string is minijinja's own limit.
const CAP: usize = 512 << 20;

struct Capped;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size() > CAP {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

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
            "gguf-forward" => gpt::formats::gguf::GgufFile::open(&path)
                .and_then(|g| gpt::model::Transformer::from_gguf(&g))
                .and_then(|m| {
                    let mut cache = m.new_cache();
                    m.forward(&[1, 2, 3], &mut cache, gpt::model::Logits::All, None)
                })
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
