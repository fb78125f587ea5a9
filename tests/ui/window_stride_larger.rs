// A stride larger than the window size breaks check_window's rule: the error points at the stride.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 7], stride = [1, 8]),
    tile = (q = (8, 8), kv = (8, 8)),
)]
pub struct Na2d;

fn main() {}
