//! What the PyTorch-reference tests share: a fixture folder's expected tensors, and the
//! comparison that names the worst element.
#![allow(dead_code)] // each test binary uses its own part

use gpt::formats::safetensors::SafetensorsModel;
use std::path::Path;

/// The fixture's expected tensors: floats through our reader, int64 ids through the crate's.
pub struct Expected {
    pub floats: SafetensorsModel,
    raw: Vec<u8>,
}

impl Expected {
    pub fn open(dir: &Path) -> Expected {
        let path = dir.join("expected.safetensors");
        let mut floats = SafetensorsModel::default();
        floats.add_file(&path).unwrap();
        Expected {
            floats,
            raw: std::fs::read(&path).unwrap(),
        }
    }

    pub fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let e = &self.floats.tensors[name];
        (
            e.shape.clone(),
            e.data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }

    pub fn ids(&self, name: &str) -> (Vec<usize>, Vec<u32>) {
        let st = safetensors::SafeTensors::deserialize(&self.raw).unwrap();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::I64);
        let v = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect();
        (t.shape().to_vec(), v)
    }
}

pub fn assert_close(label: &str, got: &[f32], want: &[f32], atol: f32) {
    assert_eq!(got.len(), want.len(), "{label}: length");
    let (i, d) = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold((0, 0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
    if d > atol {
        panic!(
            "{label}: max |diff| {d} at {i} (ours {}, PyTorch {}); first ours {:?}, PyTorch {:?}",
            got[i],
            want[i],
            &got[..4.min(got.len())],
            &want[..4.min(want.len())]
        );
    }
}
