#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = blocks(estimate(local = 100)),
    tile = (q = 64, kv = [32, 64]),
)]
pub struct Sparse;

fn main() {}
