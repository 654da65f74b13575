//! Model files that are well-formed GGUF but wrong as models: each is a clear error that names the
//! tensor or field, never a panic. Made from the tiny llama fixture (tests/fixtures/arch/llama) by
//! changing one thing.

use gpt::formats::gguf::{GgufFile, GgufWriter, Value};
use gpt::model::Transformer;
use gpt::tensor::DType;
use std::path::Path;

/// The fixture with `edit` applied to its tensor list (name, GGML dims, type, bytes) and metadata.
fn variant(
    edit: impl Fn(&mut Vec<(String, Vec<u64>, DType, Vec<u8>)>, &mut Vec<(String, Value)>),
) -> GgufFile {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch/llama/model-f16.gguf");
    let g = GgufFile::open(&src).unwrap();
    let mut tensors: Vec<(String, Vec<u64>, DType, Vec<u8>)> = g
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.dims.clone(),
                t.dtype,
                g.tensor_data(t).to_vec(),
            )
        })
        .collect();
    let mut meta = g.metadata.clone();
    edit(&mut tensors, &mut meta);
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(k, v);
    }
    for (n, d, t, b) in tensors {
        w.add_tensor(n, &d, t, b);
    }
    let dir = std::env::temp_dir().join(format!("gpt-rs-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:x}.gguf", rand_name()));
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    GgufFile::open(&path).unwrap()
}

fn rand_name() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn load_err(g: &GgufFile) -> String {
    match Transformer::from_gguf(g) {
        Ok(_) => panic!("a broken model loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn zero_dimensional_bias_is_an_error_naming_it() {
    let g = variant(|t, _| {
        t.push(("blk.0.attn_q.bias".into(), vec![], DType::F32, vec![0; 4]));
    });
    let e = load_err(&g);
    assert!(e.contains("blk.0.attn_q.bias"), "{e}");
}

#[test]
fn unknown_architecture_is_named() {
    let g = variant(|_, m| {
        for (k, v) in m.iter_mut() {
            if k == "general.architecture" {
                *v = Value::String("falcon-h9".into());
            }
        }
    });
    let e = load_err(&g);
    assert!(
        e.contains("falcon-h9") && e.contains("general.architecture"),
        "{e}"
    );
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let g = variant(|t, _| t.retain(|x| x.0 != "blk.0.ffn_gate.weight"));
    assert!(load_err(&g).contains("blk.0.ffn_gate.weight"));
    let g = variant(|t, _| {
        for x in t
            .iter_mut()
            .filter(|x| x.0 == "blk.0.attn_k_norm.weight" || x.0 == "blk.0.attn_norm.weight")
        {
            x.1 = vec![128];
            x.3.truncate(128 * 4);
        }
    });
    assert!(load_err(&g).contains("blk.0.attn_norm.weight"));
}
