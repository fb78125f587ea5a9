// Bitmap tiles are runs of 64 consecutive tokens; a 2-D window's KV tiles are boxes of its grid.
#[tessera::attention(
    head_dim = 128,
    dtype = f16,
    visit = window(size = [7, 7]),
    load = bitmap(k, v),
    tile = (q = (8, 8), kv = (64, 1)),
)]
pub struct BitmapGrid;

fn main() {}
