// SALE's block-sparse visit: `estimate()` takes SALE's defaults (int4, one sink tile, a 128-token
// local window) and `causal` defaults to true. A local window that only some KV tiles hold whole
// prunes the others from the space instead of failing.
use tessera::{Blocks, Estimate, Kernel, Visit};

#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = blocks(estimate()),
    tile = (q = 64, kv = 32),
)]
pub struct Sale;

#[tessera::attention(
    head_dim = 64,
    dtype = f16,
    visit = blocks(estimate(bits = 8, sink = 2, local = 96), causal = false),
    tile = (q = 64, kv = [32, 64]),
)]
pub struct Int8Blocks;

fn main() {
    assert_eq!(Sale::DESC.visit, Visit::Blocks(Blocks { causal: true, estimate: Estimate::SALE }));
    assert_eq!(Sale::DESC.visit.name(), "blocks");
    let estimate = Estimate { bits: 8, sink: 2, local: 96 };
    assert_eq!(Int8Blocks::DESC.visit, Visit::Blocks(Blocks { causal: false, estimate }));
    let configs = Int8Blocks::DESC.configs();
    assert!(!configs.is_empty() && configs.iter().all(|c| c.block_kv() == 32));
}
