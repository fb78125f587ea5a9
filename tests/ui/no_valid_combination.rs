// 16 query rows cannot be split into 16-row slabs over 4 or 8 warps.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    tile = (q = [16, 32], kv = 64),
    tune = (warps = [4, 8]),
)]
pub struct Dense;

fn main() {}
