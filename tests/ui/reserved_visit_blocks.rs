#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = blocks(top_k = 16),
    tile = (q = 64, kv = 64),
)]
pub struct Estimated;

fn main() {}
