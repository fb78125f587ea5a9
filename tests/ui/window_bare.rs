// `window` needs its neighborhood.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window,
    tile = (q = 64, kv = 64),
)]
pub struct Na;

fn main() {}
