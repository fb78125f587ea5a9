//! The SALE family, defined as a user would: causal prefill over the KV tiles a block map keeps
//! (`visit = blocks(estimate(..))`), its PTX for every target at the default config (the map is
//! two int32 launch tables the KV loop reads), and what ptxas says each needs of the GPU.
//!
//! `cargo run --release --example sale`
//! (On a GPU: `tessera run sale` selects the map from q and k and runs it; see the README.)

mod common;

use std::error::Error;

use tessera::Kernel;

/// SALE's setting on an Ampere-style estimate: 64 queries × 32 keys per block, int8 estimate,
/// one sink tile, a 128-token local window.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = blocks(estimate(bits = 8, sink = 1, local = 128), causal = true),
    tile = (q = 64, kv = 32),
    tune = (warps = 4, stages = [2, 3]),
)]
pub struct SaleBf16;

/// The same selection over larger tiles (128 × 64): coarser maps, faster tiles.
#[tessera::attention(
    head_dim = 128,
    dtype = f16,
    visit = blocks(estimate(), causal = true),
    tile = (q = 128, kv = 64),
    tune = (warps = [4, 8], stages = 2),
)]
pub struct SaleF16Wide;

fn main() -> Result<(), Box<dyn Error>> {
    common::check_all(&[&SaleBf16::DESC, &SaleF16Wide::DESC])
}
