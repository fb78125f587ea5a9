// A window's axes come from `size`, which has no default.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(dilation = 2),
    tile = (q = 64, kv = 64),
)]
pub struct Na1d;

fn main() {}
