//! Pre-training: the optimizer, the learning-rate schedule, token data on disk and checkpoints.
//! The model's forward and backward passes are in [`crate::model::training`].

pub mod adamw;
pub mod checkpoint;
pub mod data;
pub mod distributed;
pub mod init;
pub mod loss_curve;
pub mod schedule;
pub mod trainer;
