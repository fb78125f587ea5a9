// `causal` is a bool; 1 and 0 get a fix.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = 7, causal = 1),
    tile = (q = 64, kv = 64),
)]
pub struct Na1d;

fn main() {}
