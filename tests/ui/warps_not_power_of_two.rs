#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    tile = (q = 128, kv = 64),
    tune = (warps = [4, 6]),
)]
pub struct Dense;

fn main() {}
