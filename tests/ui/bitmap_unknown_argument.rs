// The arguments are the tensors' one-letter names; a long name is pointed to its letter.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = dense,
    load = bitmap(k, values),
    tile = (q = 64, kv = 64),
)]
pub struct Compressed;

fn main() {}
