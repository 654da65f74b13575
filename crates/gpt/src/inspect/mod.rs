//! Looking inside the model. The forward pass reports what it computes through [`capture`];
//! nothing here re-implements the forward pass.
//!
//! - [`attention_patterns`]: each head's attention probabilities, recorded in the forward pass.
//! - [`params_table`]: where the parameters are, for a loaded model or a preset.
//! - [`probes`]: embedding geometry (dot products, cosine, neighbours, analogies, directions).
//! - [`temperature`]: next-token probabilities at several temperatures.
//! - [`logit_lens`]: the prediction after every layer, from the residual stream.
//! - [`report`]: the JSON of each of these, shared by `gpt inspect --json` and `gpt serve`.
//! - [`charts`] builds pictures of these; [`render`] writes them as SVG, and as PNG through
//!   resvg with the machine's [`fonts`].

pub mod attention_patterns;
pub mod capture;
pub mod charts;
pub mod fonts;
pub mod logit_lens;
pub mod params_table;
pub mod probes;
pub mod render;
pub mod report;
pub mod temperature;
