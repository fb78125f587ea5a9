#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    tile = (q = 64, kv = 64),
    name = my_kernel,
)]
pub struct Dense;

fn main() {}
