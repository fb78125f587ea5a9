// A 1-D window: `size = N` is one axis; dilation and stride default to 1, causal to false, and the
// unused axes are filled with size 1, dilation 1, stride 1, non-causal.
use tessera::{Kernel, Visit, Window, WindowAxis};

#[tessera::attention(
    head_dim = 128,
    dtype = f16,
    visit = window(size = 2048),
    tile = (q = 128, kv = 64),
)]
pub struct Na1d;

const UNUSED: WindowAxis = WindowAxis { size: 1, dilation: 1, stride: 1, causal: false };

fn main() {
    let axis = WindowAxis { size: 2048, dilation: 1, stride: 1, causal: false };
    assert_eq!(Na1d::DESC.visit, Visit::Window(Window { dims: 1, axes: [axis, UNUSED, UNUSED] }));
    assert_eq!(Na1d::DESC.visit.name(), "window");
    assert_eq!(Na1d::DESC.name, "na1d");
}
