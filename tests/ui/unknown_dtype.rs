#[tessera::attention(
    head_dim = 128,
    dtype = fp16,
    visit = dense,
    tile = (q = 64, kv = 64),
)]
pub struct Dense;

fn main() {}
