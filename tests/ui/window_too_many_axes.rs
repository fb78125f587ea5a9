// Windows have 1 to 3 axes.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [3, 3, 3, 3]),
    tile = (q = 64, kv = 64),
)]
pub struct Na4d;

fn main() {}
