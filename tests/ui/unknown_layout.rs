#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    layout = bshd,
    visit = dense,
    tile = (q = 64, kv = 64),
)]
pub struct Dense;

fn main() {}
