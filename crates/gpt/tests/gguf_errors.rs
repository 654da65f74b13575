//! The GGUF reader against synthetic files: what the writer writes reads back exactly, and every
//! kind of malformed file is an error naming the problem and the file, never a panic.

use gpt::formats::gguf::{GgufFile, GgufWriter, Value, DEFAULT_ALIGNMENT};
use gpt::tensor::{Bytes, DType};
use gpt::Error;
use proptest::prelude::*;

const FILE: &str = "synthetic.gguf";

fn parse(bytes: Vec<u8>) -> gpt::Result<GgufFile> {
    GgufFile::from_bytes(FILE, Bytes::from_vec(bytes))
}

/// Parses and returns the error message, failing the test if the parse succeeded.
fn parse_err(bytes: Vec<u8>) -> String {
    match parse(bytes) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(FILE), "error does not name the file: {msg}");
            msg
        }
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "expected {p:?} in: {msg}");
    }
}

/// Hand-built GGUF bytes, for files the writer refuses to produce.
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ggml_type).u64(offset)
    }
    fn pad(&mut self, alignment: usize) -> &mut Self {
        let n = self.0.len().next_multiple_of(alignment);
        self.0.resize(n, 0);
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Deterministic filler bytes so a misplaced slice is caught.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn every_value_type() -> Vec<(&'static str, Value)> {
    vec![
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-100)),
        ("u16", Value::U16(60000)),
        ("i16", Value::I16(-30000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("f32", Value::F32(1e-5)),
        ("bool", Value::Bool(true)),
        ("string", Value::String("héllo ✓".into())),
        ("empty string", Value::String(String::new())),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f64", Value::F64(-2.5e300)),
        (
            "array of strings",
            Value::Array(vec![
                Value::String("a".into()),
                Value::String("Ġthe".into()),
            ]),
        ),
        (
            "array of i32",
            Value::Array(vec![Value::I32(1), Value::I32(-6)]),
        ),
        ("array of f32", Value::Array(vec![Value::F32(0.5)])),
        ("empty array", Value::Array(vec![])),
        (
            "nested arrays",
            Value::Array(vec![
                Value::Array(vec![Value::U16(1), Value::U16(2)]),
                Value::Array(vec![]),
                Value::Array(vec![Value::U16(3)]),
            ]),
        ),
        (
            "array of arrays of arrays of bools",
            Value::Array(vec![Value::Array(vec![Value::Array(vec![
                Value::Bool(false),
                Value::Bool(true),
            ])])]),
        ),
    ]
}

/// One tensor of every dtype, in shapes of one to four dims.
fn every_dtype() -> Vec<(String, Vec<u64>, DType)> {
    [
        (DType::F32, vec![3u64]),
        (DType::F16, vec![5, 3]),
        (DType::BF16, vec![2, 3, 4]),
        (DType::Q4_0, vec![64, 2]),
        (DType::Q4_1, vec![32, 3, 1, 2]),
        (DType::Q8_0, vec![96, 1]),
    ]
    .into_iter()
    .map(|(dt, dims)| (format!("blk.0.{}.weight", dt.name()), dims, dt))
    .collect()
}

fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()));
    for (k, v) in every_value_type() {
        w.add_metadata(k, v);
    }
    for (i, (name, dims, dt)) in every_dtype().into_iter().enumerate() {
        let n = dt.bytes_for(dims.iter().product()).unwrap() as usize;
        w.add_tensor(name, &dims, dt, pattern(n, i as u8));
    }
    w
}

fn sample_file() -> Vec<u8> {
    sample_writer().to_bytes().unwrap()
}

#[test]
fn every_value_type_round_trips_including_nested_arrays() {
    let f = parse(sample_file()).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.architecture().unwrap(), "llama");
    let expected = every_value_type();
    assert_eq!(f.metadata.len(), expected.len() + 1);
    for (k, v) in &expected {
        assert_eq!(f.get(k), Some(v), "key {k}");
    }
    // File order is kept.
    let keys: Vec<&str> = f.metadata.iter().skip(1).map(|(k, _)| k.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, want);
}

#[test]
fn every_dtype_round_trips_with_aligned_offsets() {
    let bytes = sample_file();
    let f = parse(bytes.clone()).unwrap();
    assert_eq!(f.alignment, DEFAULT_ALIGNMENT);
    assert_eq!(f.data_offset % DEFAULT_ALIGNMENT, 0);
    let specs = every_dtype();
    assert_eq!(f.tensors.len(), specs.len());
    for (i, (name, dims, dt)) in specs.iter().enumerate() {
        let info = f.tensor_info(name).unwrap();
        assert_eq!(&info.dims, dims);
        assert_eq!(info.dtype, *dt);
        assert_eq!(info.offset % DEFAULT_ALIGNMENT, 0, "{name}");
        let n = dt.bytes_for(info.n_elements()).unwrap();
        assert_eq!(info.size, n);
        assert_eq!(&*f.tensor_data(info), &pattern(n as usize, i as u8)[..]);
        let (by_name, data) = f.tensor_bytes(name).unwrap();
        assert_eq!(by_name.offset, info.offset);
        assert_eq!(data.len() as u64, n);
    }
    assert!(f.tensor_info("missing").is_none());
    assert!(matches!(
        f.tensor_bytes("missing"),
        Err(Error::Tensor { ref name, .. }) if name == "missing"
    ));
}

#[test]
fn custom_alignment_of_64_is_honoured() {
    let mut w = sample_writer();
    w.add_metadata("general.alignment", Value::U32(64));
    let f = parse(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    for t in &f.tensors {
        assert_eq!((t.offset - f.data_offset) % 64, 0, "{}", t.name);
    }
    // Data still reads back, so the reader and writer agree on where the section starts.
    let first = &f.tensors[0];
    assert_eq!(&*f.tensor_data(first), &pattern(first.size as usize, 0)[..]);
}

#[test]
fn version_2_files_are_read() {
    let mut bytes = sample_file();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = parse(bytes).unwrap();
    assert_eq!(f.version, 2);
    assert_eq!(f.tensors.len(), every_dtype().len());
}

#[test]
fn open_maps_a_file_and_reports_missing_ones() {
    let path = std::env::temp_dir().join(format!("gpt-rs-gguf-test-{}.gguf", std::process::id()));
    sample_writer().write(&path).unwrap();
    let f = GgufFile::open(&path);
    std::fs::remove_file(&path).unwrap();
    let f = f.unwrap();
    let t = &f.tensors[2];
    assert_eq!(&*f.tensor_data(t), &pattern(t.size as usize, 2)[..]);

    let missing = std::env::temp_dir().join("gpt-rs-no-such-file.gguf");
    assert!(matches!(GgufFile::open(&missing), Err(Error::Io { .. })));
}

#[test]
fn typed_getters_name_the_key_on_missing_or_wrong_type() {
    let mut w = GgufWriter::new();
    w.add_metadata("llama.context_length", Value::U32(8192))
        .add_metadata("llama.rope.freq_base", Value::F32(10000.0))
        .add_metadata("tokenizer.ggml.add_bos_token", Value::Bool(false))
        .add_metadata("neg", Value::I32(-1))
        .add_metadata(
            "tokenizer.ggml.tokens",
            Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
        )
        .add_metadata(
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(1), Value::I32(3)]),
        )
        .add_metadata(
            "tokenizer.ggml.scores",
            Value::Array(vec![Value::F32(-1.5), Value::F32(0.0)]),
        );
    let f = parse(w.to_bytes().unwrap()).unwrap();

    assert_eq!(f.get_u64("llama.context_length").unwrap(), 8192);
    assert_eq!(f.get_u32("llama.context_length").unwrap(), 8192);
    assert_eq!(f.get_usize("llama.context_length").unwrap(), 8192);
    assert_eq!(f.get_f64("llama.context_length").unwrap(), 8192.0);
    assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
    assert!(!f.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap(),
        vec!["a", "b"]
    );
    assert_eq!(
        f.get_i32_array("tokenizer.ggml.token_type").unwrap(),
        vec![1, 3]
    );
    assert_eq!(
        f.get_f32_array("tokenizer.ggml.scores").unwrap(),
        vec![-1.5, 0.0]
    );
    assert_eq!(f.get_array("tokenizer.ggml.tokens").unwrap().len(), 2);
    assert_eq!(f.get_u64_opt("absent").unwrap(), None);
    assert_eq!(f.get_str_opt("absent").unwrap(), None);
    assert_eq!(f.get_str_array_opt("absent").unwrap(), None);

    let missing = f.get_u64("llama.block_count").unwrap_err().to_string();
    assert_mentions(&missing, &["llama.block_count", "missing", FILE]);
    let arch = f.architecture().unwrap_err().to_string();
    assert_mentions(&arch, &["general.architecture", "missing"]);
    let wrong = f.get_str("llama.context_length").unwrap_err().to_string();
    assert_mentions(
        &wrong,
        &["llama.context_length", "expected a string", "u32 8192"],
    );
    let negative = f.get_u64("neg").unwrap_err().to_string();
    assert_mentions(&negative, &["neg", "non-negative", "i32 -1"]);
    // A type mismatch is an error even through the Option getter.
    assert!(f.get_bool_opt("neg").is_err());
    let elem = f
        .get_str_array("tokenizer.ggml.token_type")
        .unwrap_err()
        .to_string();
    assert_mentions(&elem, &["tokenizer.ggml.token_type", "element 0"]);
}

#[test]
fn bad_magic_is_rejected() {
    let mut bytes = sample_file();
    bytes[0..4].copy_from_slice(b"GGML");
    assert_mentions(&parse_err(bytes), &["not a GGUF file", "GGML"]);
}

#[test]
fn unsupported_versions_are_rejected() {
    for (version, phrase) in [
        (1u32, "version 1 is not supported"),
        (4, "version 4 is not supported"),
        (3u32.swap_bytes(), "big-endian"),
    ] {
        let mut bytes = sample_file();
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        assert_mentions(&parse_err(bytes), &[phrase]);
    }
}

#[test]
fn truncation_names_what_was_being_read() {
    let mut r = Raw::header(3, 0, 3);
    r.kv_u32("a", 1).kv_u32("b", 2).str("third.key").u32(4);
    // The u32 value of the third key (#2) is missing.
    let msg = parse_err(r.done());
    assert_mentions(
        &msg,
        &[
            "truncated while reading metadata key #2 ('third.key')",
            "u32 value",
        ],
    );

    let mut r = Raw::header(3, 1, 0);
    r.str("blk.0.attn_q.weight").u32(2).u64(32);
    let msg = parse_err(r.done());
    assert_mentions(
        &msg,
        &[
            "truncated while reading tensor info #0 ('blk.0.attn_q.weight')",
            "dimension",
        ],
    );

    let msg = parse_err(b"GGUF\x03\x00".to_vec());
    assert_mentions(&msg, &["truncated while reading the header", "version"]);
}

#[test]
fn absurd_string_length_fails_before_allocating() {
    let mut r = Raw::header(3, 0, 1);
    r.u64(1 << 60).zeros(16);
    assert_mentions(
        &parse_err(r.done()),
        &["metadata key #0", "length 1152921504606846976"],
    );

    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(u64::MAX);
    assert_mentions(
        &parse_err(r.done()),
        &["metadata key #0 ('k')", "string value"],
    );
}

#[test]
fn absurd_counts_fail_before_allocating() {
    let mut r = Raw::header(3, 0, u64::MAX);
    r.zeros(64);
    assert_mentions(&parse_err(r.done()), &["metadata count", "impossible"]);

    let mut r = Raw::header(3, 1 << 58, 0);
    r.zeros(64);
    assert_mentions(&parse_err(r.done()), &["tensor count", "impossible"]);

    // 100 u32 elements cannot fit in 40 bytes.
    let mut r = Raw::header(3, 0, 1);
    r.str("arr").u32(9).u32(4).u64(100).zeros(40);
    assert_mentions(&parse_err(r.done()), &["'arr'", "array length 100"]);

    // Nested arrays count at least 12 bytes per element.
    let mut r = Raw::header(3, 0, 1);
    r.str("arr").u32(9).u32(9).u64(u64::MAX / 4).zeros(64);
    assert_mentions(&parse_err(r.done()), &["'arr'", "array length"]);
}

#[test]
fn arrays_nested_too_deep_are_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.str("deep").u32(9);
    for _ in 0..20 {
        r.u32(9).u64(1);
    }
    r.zeros(64);
    assert_mentions(&parse_err(r.done()), &["'deep'", "nested more than 8"]);
}

#[test]
fn unknown_value_types_and_bad_values_are_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(13).zeros(8);
    assert_mentions(&parse_err(r.done()), &["'k'", "unknown value type 13"]);

    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(99).u64(0);
    assert_mentions(&parse_err(r.done()), &["'k'", "unknown element type 99"]);

    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(7).u8(2);
    assert_mentions(&parse_err(r.done()), &["'k'", "bool", "not 0 or 1"]);

    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(2).u8(0xff).u8(0xfe);
    assert_mentions(&parse_err(r.done()), &["'k'", "UTF-8"]);

    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("same", 1).kv_u32("same", 2);
    assert_mentions(&parse_err(r.done()), &["'same'", "duplicate key"]);
}

#[test]
fn invalid_alignment_is_rejected() {
    for (value_bytes, phrase) in [
        (
            Raw::header(0, 0, 0).kv_u32("general.alignment", 0).done(),
            "u32 0",
        ),
        (
            Raw::header(0, 0, 0).kv_u32("general.alignment", 48).done(),
            "u32 48",
        ),
        (
            Raw::header(0, 0, 0)
                .str("general.alignment")
                .u32(8)
                .str("32")
                .done(),
            "string",
        ),
    ] {
        let mut r = Raw::header(3, 0, 1);
        // Reuse only the key-value part of the helper's output (after the 24-byte header).
        r.0.extend_from_slice(&value_bytes[24..]);
        assert_mentions(
            &parse_err(r.done()),
            &["general.alignment", "power of two", phrase],
        );
    }
}

#[test]
fn unknown_tensor_type_is_unsupported_and_named() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("blk.0.ffn_down.weight", &[256, 4], 16, 0)
        .pad(32)
        .zeros(1024);
    match parse(r.done()) {
        Err(e @ Error::UnsupportedType { .. }) => assert_mentions(
            &e.to_string(),
            &[FILE, "blk.0.ffn_down.weight", "IQ2_XXS", "16"],
        ),
        other => panic!("expected UnsupportedType, got {other:?}"),
    }

    let mut r = Raw::header(3, 1, 0);
    r.tensor("x", &[4], 1000, 0).pad(32).zeros(64);
    match parse(r.done()) {
        Err(e @ Error::UnsupportedType { .. }) => assert_mentions(&e.to_string(), &["'x'", "1000"]),
        other => panic!("expected UnsupportedType, got {other:?}"),
    }
}

#[test]
fn bad_tensor_shapes_are_rejected() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("five", &[1, 1, 1, 1, 1], 0, 0).pad(32).zeros(64);
    assert_mentions(
        &parse_err(r.done()),
        &["'five'", "5 dimensions", "at most 4"],
    );

    let mut r = Raw::header(3, 1, 0);
    r.tensor("huge", &[1 << 32, 1 << 32], 0, 0)
        .pad(32)
        .zeros(64);
    assert_mentions(&parse_err(r.done()), &["'huge'", "overflows"]);

    let mut r = Raw::header(3, 1, 0);
    r.tensor("neg", &[u64::MAX], 0, 0).pad(32).zeros(64);
    assert_mentions(&parse_err(r.done()), &["'neg'", "out of range"]);

    let mut r = Raw::header(3, 1, 0);
    r.tensor("odd", &[33, 2], 8, 0).pad(32).zeros(256);
    assert_mentions(&parse_err(r.done()), &["'odd'", "33", "Q8_0 block size 32"]);
}

#[test]
fn tensor_offsets_must_be_aligned_and_inside_the_file() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4], 0, 16).pad(32).zeros(64);
    assert_mentions(&parse_err(r.done()), &["'t'", "offset 16", "alignment 32"]);

    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4], 0, 64).pad(32).zeros(64);
    assert_mentions(&parse_err(r.done()), &["'t'", "outside the file"]);

    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4], 0, u64::MAX - 31).pad(32).zeros(64);
    assert_mentions(&parse_err(r.done()), &["'t'", "outside the file"]);

    // Data that starts inside the file but runs past its end.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[32], 0, 0).pad(32).zeros(100);
    assert_mentions(
        &parse_err(r.done()),
        &["'t'", "128 bytes", "outside the file"],
    );
}

#[test]
fn duplicate_tensor_names_are_rejected() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("w", &[4], 0, 0)
        .tensor("w", &[4], 0, 32)
        .pad(32)
        .zeros(64);
    assert_mentions(&parse_err(r.done()), &["duplicate tensor name 'w'"]);
}

#[test]
fn writer_rejects_what_the_reader_would() {
    let mut w = GgufWriter::new();
    w.add_tensor("short", &[32], DType::Q8_0, vec![0; 33]);
    assert!(w.to_bytes().unwrap_err().to_string().contains("short"));

    let mut w = GgufWriter::new();
    w.add_metadata("mixed", Value::Array(vec![Value::U8(1), Value::I8(1)]));
    assert!(w.to_bytes().unwrap_err().to_string().contains("mixes"));

    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", Value::U32(24));
    assert!(w.to_bytes().is_err());

    let mut w = GgufWriter::new();
    w.add_metadata("k", Value::U8(1))
        .add_metadata("k", Value::U8(2));
    assert!(w.to_bytes().unwrap_err().to_string().contains("duplicate"));
}

/// Touches everything a caller might read from a parsed file.
fn exercise(f: &GgufFile) {
    for t in &f.tensors {
        let d = f.tensor_data(t);
        assert_eq!(d.len() as u64, t.size);
    }
    for (k, _) in &f.metadata {
        let _ = f.get_u64(k);
        let _ = f.get_str_array(k);
        let _ = f.get_i32_array(k);
        let _ = f.get_f32_array(k);
    }
    let _ = f.architecture();
}

#[test]
fn truncation_at_every_length_is_an_error_not_a_panic() {
    let bytes = sample_file();
    let f = parse(bytes.clone()).unwrap();
    let data_end = f.tensors.iter().map(|t| t.offset + t.size).max().unwrap() as usize;
    for len in 0..bytes.len() {
        match parse(bytes[..len].to_vec()) {
            Ok(f) => {
                // Only the padding after the last tensor may go missing.
                assert!(len >= data_end, "truncated to {len} bytes but parsed");
                exercise(&f);
            }
            Err(e) => assert!(e.to_string().contains(FILE)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn corrupted_bytes_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut bytes = sample_file();
        // Concentrate corruption in the header, where the structure is.
        let header_len = parse(bytes.clone()).unwrap().data_offset as usize;
        for (i, v) in flips {
            let at = i.index(header_len);
            bytes[at] = v;
        }
        if let Ok(f) = parse(bytes) {
            exercise(&f);
        }
    }

    #[test]
    fn random_bytes_after_the_magic_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..256),
        version in 2u32..=3,
    ) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&tail);
        if let Ok(f) = parse(bytes) {
            exercise(&f);
        }
    }
}

/// A manual check against a real model: `GGUF_CHECK_FILE=path cargo test -- --ignored`.
#[test]
#[ignore = "needs a real GGUF file in GGUF_CHECK_FILE"]
fn real_file_parses() {
    let Ok(path) = std::env::var("GGUF_CHECK_FILE") else {
        return;
    };
    let f = GgufFile::open(std::path::Path::new(&path)).unwrap();
    println!(
        "{path}: v{} {} kv, {} tensors, arch {:?}",
        f.version,
        f.metadata.len(),
        f.tensors.len(),
        f.architecture()
    );
    for t in f.tensors.iter().take(3) {
        println!("  {} {:?} {} {} bytes", t.name, t.dims, t.dtype, t.size);
    }
    exercise(&f);

    // Rewriting the file reproduces every value and tensor.
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        w.add_metadata(k.clone(), v.clone());
    }
    for t in &f.tensors {
        w.add_tensor(t.name.clone(), &t.dims, t.dtype, f.tensor_data(t).to_vec());
    }
    let rewritten = w.to_bytes().unwrap();
    let original = std::fs::read(&path).unwrap();
    println!(
        "rewritten file is byte-identical: {}",
        rewritten == original
    );
    let g = parse(rewritten).unwrap();
    assert_eq!(g.metadata, f.metadata);
    for (a, b) in f.tensors.iter().zip(&g.tensors) {
        assert_eq!((&a.name, &a.dims, a.dtype), (&b.name, &b.dims, b.dtype));
        assert_eq!(&*f.tensor_data(a), &*g.tensor_data(b));
    }
}

/// A GGUF header with one metadata key holding a u8 array of `n` elements.
fn one_u8_array(n: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes()); // version
    b.extend(0u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata entries
    let key = b"hostile.bytes";
    b.extend((key.len() as u64).to_le_bytes());
    b.extend(key);
    b.extend(9u32.to_le_bytes()); // array
    b.extend(0u32.to_le_bytes()); // of u8
    b.extend(n.to_le_bytes());
    b.resize(b.len() + n as usize, 7);
    b
}

/// Issue 10: a 40 MB file of one u8 array took 1.27 GB (32 bytes per decoded element). Arrays
/// past the cap on metadata elements are refused before they are decoded; real sizes still load.
#[test]
fn metadata_arrays_past_the_element_cap_are_refused() {
    let cap = gpt::formats::gguf::MAX_METADATA_ELEMENTS;
    let msg = parse_err(one_u8_array(cap + 1));
    assert_mentions(&msg, &["array", "elements", FILE]);
    let ok = parse(one_u8_array(1 << 20)).expect("a 1M-element array is a real size");
    assert_eq!(ok.metadata.len(), 1);
}
