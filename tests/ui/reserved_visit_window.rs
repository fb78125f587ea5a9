#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(dims = 2),
    tile = (q = 64, kv = 64),
)]
pub struct Na2d;

fn main() {}
