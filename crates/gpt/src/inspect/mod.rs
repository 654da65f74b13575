//! Looking inside the model. The forward pass reports what it computes through [`capture`];
//! nothing here re-implements the forward pass.
//!
//! - [`attention_patterns`]: each head's attention probabilities, recorded in the forward pass.
//! - [`params_table`]: where the parameters are, for a loaded model or a preset.
//! - [`probes`]: embedding geometry (dot products, cosine, neighbours, analogies, directions).
//! - [`temperature`]: next-token probabilities at several temperatures.
//! - [`logit_lens`]: the prediction after every layer, from the residual stream.
//! - [`charts`] builds pictures of these; [`render`] writes them as PNG or SVG, with the bitmap
//!   [`font`] for PNG labels.

pub mod attention_patterns;
pub mod capture;
pub mod charts;
pub mod font;
pub mod logit_lens;
pub mod params_table;
pub mod probes;
pub mod render;
pub mod temperature;
