// `bitmap` needs to know which of K and V it reads compressed.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    load = bitmap,
    tile = (q = 64, kv = 64),
)]
pub struct Compressed;

fn main() {}
