//! Neighborhood attention (NATTEN's semantics) over 1-, 2- and 3-D token grids, one kernel each,
//! defined as a user would: the window is part of the kernel, the grid's extents come at launch
//! (`AttentionArgs::grid`; tokens are the grid in row-major order).
//!
//! `cargo run --release --example neighborhood`

mod common;

use std::error::Error;

use tessera::Kernel;

/// A 1-D sequence, dilated and causal: every second token, the 13 before and including it.
#[tessera::attention(
    head_dim = 64,
    dtype = bf16,
    visit = window(size = 13, dilation = 2, causal = true),
    tile = (q = 64, kv = 64),
    tune = (warps = 4, stages = 2),
)]
pub struct Na1d;

/// An image: each token attends to the 13 × 13 tokens around it (the window shifts inward at
/// the borders). Tiles are boxes of the grid: 16 × 8 = 128 queries against 8 × 8 or 8 × 16 keys.
#[tessera::attention(
    head_dim = 128,
    dtype = f16,
    visit = window(size = [13, 13]),
    tile = (q = (16, 8), kv = (8, [8, 16])),
    tune = (warps = 4, stages = [2, 3]),
)]
pub struct Na2d;

/// A video: causal in time (the 7 frames up to and including a token's own), centred in space.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 15, 15], causal = [true, false, false]),
    tile = (q = (1, 8, 16), kv = (2, 4, 8)),
    tune = (warps = 4, stages = 2),
)]
pub struct Na3d;

fn main() -> Result<(), Box<dyn Error>> {
    common::check_all(&[&Na1d::DESC, &Na2d::DESC, &Na3d::DESC], &|_| Ok(Vec::new()))
}
