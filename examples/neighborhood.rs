//! Neighborhood attention (NATTEN's semantics) over a 1-D token sequence, defined as a user
//! would: the window is part of the kernel, the sequence length comes at launch.
//!
//! `cargo run --release --example neighborhood`

mod common;

use std::error::Error;

use tessera::Kernel;

/// Each token attends to the 2048 tokens around it (the window shifts inward at the ends).
#[tessera::attention(
    head_dim = 128,
    dtype = f16,
    visit = window(size = 2048),
    tile = (q = 128, kv = [64, 32]),
    tune = (warps = 4, stages = 2),
)]
pub struct Na1d;

/// A dilated, causal neighborhood: every second token, the 13 before and including it.
#[tessera::attention(
    head_dim = 64,
    dtype = bf16,
    visit = window(size = 13, dilation = 2, causal = true),
    tile = (q = 64, kv = 64),
    tune = (warps = 4, stages = 2),
)]
pub struct DilatedCausal;

fn main() -> Result<(), Box<dyn Error>> {
    common::check_all(&[&Na1d::DESC, &DilatedCausal::DESC])
}
