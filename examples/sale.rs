//! The SALE family, defined as a user would: causal prefill over the KV tiles a block map keeps
//! (`visit = blocks(estimate(..))`), its PTX for every target at the default config (the map is
//! two int32 launch tables the KV loop reads), and what ptxas says each needs of the GPU; then
//! the rest of what the GPU selection (`gpu::SaleSelect`) loads for the first kernel: the int8
//! estimate's selection program, the quantizer, and the threshold and list entries.
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
    common::check_all(&[&SaleBf16::DESC, &SaleF16Wide::DESC], &selection_modules(&SaleBf16::DESC)?)
}

/// The modules `gpu::SaleSelect` loads beside `desc` at its default config: the int8
/// estimate's selection program, the quantizer, the threshold and list entries.
fn selection_modules(desc: &tessera::KernelDesc) -> Result<impl Fn(tessera::Target) -> common::Built, Box<dyn Error>> {
    use tessera::codegen::ir::select::Scores;
    use tessera::codegen::{compile_program, quantize_ptx, sale_ptx, select_program};
    let cfg = desc.default_config().ok_or("empty tuning space")?;
    let program = select_program(desc, &tessera::Config { mma: tessera::Mma::Sync, ..cfg }, Scores::Int8)?;
    let head_dim = desc.head_dim;
    Ok(move |target| -> common::Built {
        Ok(vec![
            ("SALE int8 estimate", compile_program(&program, target)?),
            ("SALE quantizer", quantize_ptx(head_dim, target)?),
            ("SALE thresholds and lists", sale_ptx(target)?),
        ])
    })
}
