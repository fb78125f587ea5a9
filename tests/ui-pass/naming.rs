// Derived names are the struct name in snake case; structs may have fields and other attributes.
use tessera::Kernel;

#[tessera::attention(head_dim = 128, dtype = bf16, visit = dense, tile = (q = 64, kv = 64))]
pub struct Na2d;

#[derive(Debug, Default)]
#[tessera::attention(head_dim = 128, dtype = f16, visit = causal, tile = (q = 64, kv = 64),)]
struct HTTPCausalF16 {
    _scale: f32,
}

mod kernels {
    #[tessera::attention(head_dim = 64, dtype = bf16, visit = dense, tile = (q = 64, kv = 64))]
    pub(crate) struct Fa2Dense(pub u8);
}

fn main() {
    assert_eq!(Na2d::DESC.name, "na2d");
    assert_eq!(HTTPCausalF16::DESC.name, "http_causal_f16");
    assert_eq!(kernels::Fa2Dense::DESC.name, "fa2_dense");
    let _ = HTTPCausalF16::default();
}
