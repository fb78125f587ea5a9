// Sizes are integers, not strings.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = "7"),
    tile = (q = 64, kv = 64),
)]
pub struct Na1d;

fn main() {}
