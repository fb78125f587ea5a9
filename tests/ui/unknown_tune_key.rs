#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    tile = (q = 64, kv = 64),
    tune = (warps = 4, threads = 128),
)]
pub struct Dense;

fn main() {}
