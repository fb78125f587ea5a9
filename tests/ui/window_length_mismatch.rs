// Lists give one value per axis, and `size` says how many axes there are.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [13, 13], dilation = [2, 2, 2]),
    tile = (q = (8, 8), kv = (8, 8)),
)]
pub struct Na2d;

fn main() {}
