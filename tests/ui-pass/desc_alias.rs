// The expansion names only items at the root of tessera-desc, so a crate that calls tessera-desc
// `tessera` (without the facade) can use the macro too.
extern crate tessera_desc as tessera;

use tessera_desc::Kernel;

#[tessera_dsl::attention(head_dim = 128, dtype = bf16, visit = causal, tile = (q = 128, kv = 64))]
pub struct Causal;

fn main() {
    assert_eq!(Causal::DESC.name, "causal");
}
