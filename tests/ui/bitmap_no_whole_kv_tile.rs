// A bitmap load reads whole 64-token bitmap tiles: the tuner prunes the KV tiles that are not,
// and here that is all of them.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    load = bitmap(k, v),
    tile = (q = 64, kv = [16, 32, 96]),
)]
pub struct Compressed;

fn main() {}
