//! The dense/causal attention family, defined as a user would: two kernels, their PTX for every
//! target at the default config, and what ptxas says each needs of the GPU.
//!
//! `cargo run --release --example dense`

mod common;

use std::error::Error;

use tessera::Kernel;

/// Causal self-attention over bf16, head dim 128, with a small tuning space.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = causal,
    tile = (q = [64, 128], kv = [32, 64]),
    tune = (warps = [4, 8], stages = [1, 2]),
)]
pub struct CausalBf16;

/// Dense (unmasked) attention over f16, head dim 64, one fixed schedule.
#[tessera::attention(
    name = "dense_f16_d64",
    head_dim = 64,
    dtype = f16,
    visit = dense,
    tile = (q = 128, kv = 64),
    tune = (warps = 8, stages = 2),
)]
pub struct DenseF16;

fn main() -> Result<(), Box<dyn Error>> {
    common::check_all(&[&CausalBf16::DESC, &DenseF16::DESC], &|_| Ok(Vec::new()))
}
