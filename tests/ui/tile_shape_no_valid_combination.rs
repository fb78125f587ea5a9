// The (block_q, warps) rule takes each shape's rows: 4 x 4 = 16 or 4 x 8 = 32 rows cannot be
// split into 16-row slabs over 8 warps.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 7]),
    tile = (q = (4, [4, 8]), kv = (8, 8)),
    tune = (warps = 8),
)]
pub struct Na2d;

fn main() {}
