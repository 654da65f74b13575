//! Pre-training: the optimizer, the learning-rate schedule, token data on disk and checkpoints.
//! The model's forward and backward passes are in [`crate::model::training`].

pub mod adamw;
