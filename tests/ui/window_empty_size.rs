// An empty `size` gives no axis.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = []),
    tile = (q = 64, kv = 64),
)]
pub struct Na0d;

fn main() {}
