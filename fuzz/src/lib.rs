//! The bodies of the fuzz targets: each takes the fuzzer's bytes as one kind of file gpt-rs reads
//! and goes as far as gpt-rs goes with it (a model file to a forward pass, a tokenizer to encode
//! and decode). Any outcome but a panic, an abort or a hang is a pass: hostile bytes may load or
//! fail with an error. Every target caps single allocations at [`MAX_ALLOCATION`]: one above it
//! is a failure (an allocation sized by untrusted input), reported as a crash with its size.

use gpt::formats::gguf::GgufFile;
use gpt::formats::hf_config::HfConfig;
use gpt::infer::chat_template::{ChatTemplate, Message};
use gpt::model::{Logits, Transformer};
use gpt::tokenizer::Tokenizer;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;

/// The largest single allocation a target may make: far above anything the seed files need
/// (the largest tensor of a fixture is a few MB), far below what a length field can ask for.
pub const MAX_ALLOCATION: usize = 256 << 20;

/// The system allocator, aborting on any request above [`MAX_ALLOCATION`].
pub struct Capped;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn check(size: usize) {
    if size > MAX_ALLOCATION {
        // No allocation here: write the message with a fixed buffer, then abort (libFuzzer
        // saves the input as a crash).
        let mut buf = *b"gpt-fuzz: an allocation of 0000000000000000000 bytes is above the cap\n";
        let mut n = size;
        for i in (27..46).rev() {
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let _ = std::io::Write::write_all(&mut std::io::stderr(), &buf);
        std::process::abort();
    }
}

/// Puts `#[global_allocator] static ALLOC: Capped` into a target.
#[macro_export]
macro_rules! cap_allocations {
    () => {
        #[global_allocator]
        static ALLOC: $crate::Capped = $crate::Capped;
    };
}

/// A scratch path of this process (in /dev/shm where there is one: the loaders take paths).
fn scratch(name: &str) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("gpt-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

/// Splits `data` at its first NUL byte: two files in one input.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

const TEXT: &str = "Hello, 세계! <bos> <|im_start|> 12345\n\tthe end";

fn forward(m: &Transformer) {
    let v = m.config.vocab_size.max(1) as u32;
    let _ = m.forward(
        &[1 % v, 2 % v, 3 % v],
        &mut m.new_cache(),
        Logits::All,
        None,
    );
}

fn use_tokenizer(t: &Tokenizer) {
    let ids = t.encode(TEXT, true);
    let _ = t.decode(&ids);
}

/// A GGUF file, opened as `gpt` opens one: the tokenizer from the metadata, then the model,
/// then a 3-token forward pass.
pub fn gguf(data: &[u8]) {
    let path = scratch("model.gguf");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(g) = GgufFile::open_metadata(&path) {
        if let Ok(t) = Tokenizer::from_gguf(&g) {
            use_tokenizer(&t);
        }
    }
    if let Ok(g) = GgufFile::open(&path) {
        if let Ok(m) = Transformer::from_gguf(&g) {
            forward(&m);
        }
    }
}

/// A Hugging Face folder: `config.json` NUL `model.safetensors`.
pub fn hf_folder(data: &[u8]) {
    let (config, weights) = split(data);
    let dir = scratch("hf");
    let _ = std::fs::create_dir_all(&dir);
    if std::fs::write(dir.join("config.json"), config).is_err()
        || std::fs::write(dir.join("model.safetensors"), weights).is_err()
    {
        return;
    }
    if let Ok(m) = Transformer::from_hf_dir(&dir) {
        forward(&m);
    }
}

/// A tokenizer.json.
pub fn tokenizer_json(data: &[u8]) {
    let path = scratch("tokenizer.json");
    if std::fs::write(&path, data).is_ok() {
        if let Ok(t) = Tokenizer::from_tokenizer_json(&path) {
            use_tokenizer(&t);
        }
    }
}

/// GPT-2's files: `encoder.json` NUL `vocab.bpe`.
pub fn gpt2_files(data: &[u8]) {
    let (enc, bpe) = split(data);
    let (e, b) = (scratch("encoder.json"), scratch("vocab.bpe"));
    if std::fs::write(&e, enc).is_ok() && std::fs::write(&b, bpe).is_ok() {
        if let Ok(t) = Tokenizer::from_gpt2_files(&e, &b) {
            use_tokenizer(&t);
        }
    }
}

/// A chat template (as a GGUF or tokenizer_config.json carries it), rendered for a short
/// conversation; also a config.json, since both are small JSON-ish texts of model folders.
pub fn chat_template(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let t = ChatTemplate::new(source, "<s>", "</s>");
    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "Hi <|im_end|> there"),
        Message::new("assistant", "Hello."),
        Message::new("user", "Bye"),
    ];
    let _ = t.render(&messages, true);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = HfConfig::from_json(&v, "config.json");
    }
}

/// A `gpt train` config.
pub fn train_config(data: &[u8]) {
    let path = scratch("train.toml");
    if std::fs::write(&path, data).is_ok() {
        let _ = gpt::train::trainer::TrainConfig::from_file(&path);
    }
}

/// A token file (the memory-mapped shards `gpt train` writes), read and batched.
pub fn token_file(data: &[u8]) {
    let path = scratch("tokens.bin");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(f) = gpt::train::data::TokenFile::open(&path) {
        let n = f.len();
        for i in [0, n / 2, n.saturating_sub(1)] {
            if i < n {
                let _ = f.get(i);
            }
        }
        let mut rng = gpt::infer::sampling::Rng::new(1);
        let _ = f.batch(2, 4, &mut rng);
    }
}

/// The endpoints [`http_bodies`] posts to; the input's first byte picks one.
pub const ENDPOINTS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/tokenize",
    "/detokenize",
    "/page/attention",
    "/inspect/tokens",
    "/inspect/embeddings",
    "/inspect/similarity",
    "/inspect/projection",
    "/inspect/attention",
    "/inspect/lens",
    "/inspect/logits",
    "/inspect/temperature",
];

/// A request body for every endpoint that takes one, posted to a real `gpt serve` (in this
/// process, on loopback, serving a tiny Qwen2 fixture with small bounds so that every request
/// is short). Only the documented answers pass: 200, or 400/404/408/413/503 in OpenAI's error
/// shape; a 500 (a failed model step) or a dead server is a crash.
pub fn http_bodies(data: &[u8]) {
    use std::io::{Read, Write};
    use std::sync::OnceLock;
    static SERVER: OnceLock<gpt_server::Background> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crates/gpt/tests/fixtures/arch/qwen2/model-Q4_K_M.gguf");
        let mut opts = gpt_server::Options::new("m");
        (opts.ctx, opts.max_tokens, opts.parallel) = (128, 8, 2);
        opts.body_timeout = std::time::Duration::from_secs(5);
        let m = gpt::LoadedModel::open(&model).expect("the fixture model");
        gpt_server::Background::start(m, opts).expect("starting the server")
    });
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let path = ENDPOINTS[pick as usize % ENDPOINTS.len()];
    let mut s = std::net::TcpStream::connect(server.addr).expect("the server is gone");
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
        return; // the server closed early (a 413 while we were still sending)
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(
        matches!(status, 200 | 400 | 404 | 408 | 413 | 503),
        "{path}: status {status}: {}",
        text.chars().take(400).collect::<String>()
    );
    if status != 200 {
        assert!(
            text.contains("\"error\""),
            "{path}: {status} without an error object: {text}"
        );
    }
}
