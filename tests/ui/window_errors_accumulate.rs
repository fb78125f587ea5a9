// Every shape error inside `window(...)` is reported in one build.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 7], dilation = [2, 2, 2], causal = [true, "no"], strid = 2),
    tile = (q = (8, 8), kv = (8, 8)),
)]
pub struct Na2d;

fn main() {}
