// A 2-D window tiles its grid in boxes: a bare number would only extend the tile along axis 0.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 7]),
    tile = (q = 64, kv = (8, 8)),
)]
pub struct Na2d;

fn main() {}
