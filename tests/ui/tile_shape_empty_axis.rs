#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 7]),
    tile = (q = (8, 16), kv = ([], 8)),
)]
pub struct Na2d;

fn main() {}
