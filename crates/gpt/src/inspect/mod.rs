//! Looking inside the model. The forward pass reports what it computes through [`capture`];
//! nothing here re-implements the forward pass.

pub mod capture;
