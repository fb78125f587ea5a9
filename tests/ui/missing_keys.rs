#[tessera::attention(head_dim = 128, tile = (q = 64, kv = 64))]
pub struct Dense;

fn main() {}
