// `warps` is a tuning choice, which lives in `tune = (...)`.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    tile = (q = 64, kv = 64),
    warps = 4,
)]
pub struct Dense;

fn main() {}
