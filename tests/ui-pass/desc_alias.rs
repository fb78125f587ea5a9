// The expansion names only items at the root of tessera-desc, so a crate that calls tessera-desc
// `tessera` (without the facade) can use the macro too.
extern crate tessera_desc as tessera;

use tessera_desc::Kernel;

#[tessera_dsl::attention(head_dim = 128, dtype = bf16, visit = causal, tile = (q = 128, kv = 64))]
pub struct Causal;

#[tessera_dsl::attention(
    head_dim = 128,
    dtype = bf16,
    visit = window(size = [7, 7], stride = 2),
    tile = (q = (8, 16), kv = (8, 8)),
)]
pub struct Na2d;

fn main() {
    assert_eq!(Causal::DESC.name, "causal");
    let tessera_desc::Visit::Window(w) = Na2d::DESC.visit else { panic!("not a window") };
    assert_eq!((w.dims, w.axes[1].size, w.axes[1].stride), (2, 7, 2));
}
