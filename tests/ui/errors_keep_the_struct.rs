// On error the struct is still emitted, so code using it reports nothing beyond our error.
#[tessera::attention(head_dim = 96, dtype = bf16, visit = dense, tile = (q = 64, kv = 64))]
pub struct Dense;

fn main() {
    let _kernel = Dense;
}
