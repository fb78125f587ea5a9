//! The Mustafar family, defined as a user would: decode attention that reads K and V from a
//! bitmap-compressed (pruned) cache, `load = bitmap(k, v)`, its PTX for every target at the
//! default config (the split-KV decode entry and its `_merge` entry), and what ptxas says; then
//! the module that prunes and compresses a cache on the GPU.
//!
//! `cargo run --release --example mustafar`
//! (On a GPU: `tessera run mustafar` / `tessera bench mustafar`, see the README.)

mod common;

use std::error::Error;

use tessera::Kernel;

/// Llama-3-8B's decode: bf16, head dim 128; the query heads of a KV group share a 16-row tile.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    load = bitmap(k, v),
    tile = (q = 16, kv = [64, 128]),
    tune = (warps = 1, stages = [1, 2]),
)]
pub struct MustafarDecodeBf16;

fn main() -> Result<(), Box<dyn Error>> {
    // Beside the decode kernel, what writes the cache on the GPU (`gpu::Compressor`).
    let d = MustafarDecodeBf16::DESC.head_dim;
    common::check_all(&[&MustafarDecodeBf16::DESC], &|target| Ok(vec![("pruning + compression", tessera::codegen::compress_ptx(d, target)?)]))
}
