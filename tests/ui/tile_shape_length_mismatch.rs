// A shape gives one extent per axis of the window.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 7, 7]),
    tile = (q = (4, 4, 8), kv = (8, 8)),
)]
pub struct Na3d;

fn main() {}
