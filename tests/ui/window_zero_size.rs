// A zero window size breaks check_window's rule; the error names the axis and points at the 0.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 0]),
    tile = (q = (8, 8), kv = (8, 8)),
)]
pub struct Na2d;

fn main() {}
