// Both mistakes are reported in one build.
#[tessera::attention(
    head_dim = 96,
    dtype = bf16,
    visit = dense,
    tile = (q = 64, kv = 64),
    tune = (warps = 3),
)]
pub struct Dense;

fn main() {}
