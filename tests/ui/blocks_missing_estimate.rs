#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = blocks(causal = true),
    tile = (q = 64, kv = 32),
)]
pub struct Sparse;

fn main() {}
