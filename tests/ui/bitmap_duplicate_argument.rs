#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    load = bitmap(k, v, k),
    tile = (q = 64, kv = 64),
)]
pub struct Compressed;

fn main() {}
