// Tile shapes are for windows over 2 or 3 axes; a causal kernel's tiles are runs of tokens.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = causal,
    tile = (q = 64, kv = (64)),
)]
pub struct Causal;

fn main() {}
