// A 2-D window: a single value (`dilation = 2`, `causal = true`) applies to every axis; a list
// (`size = [13, 9]`) gives one value per axis.
use tessera::{Kernel, Visit, Window, WindowAxis};

#[tessera::attention(
    head_dim = 64,
    dtype = bf16,
    visit = window(size = [13, 9], dilation = 2, causal = true),
    tile = (q = (8, 8), kv = (8, 8)),
)]
pub struct Na2d;

#[tessera::attention(
    head_dim = 64,
    dtype = bf16,
    visit = window(size = [13, 13], dilation = [2, 2]),
    tile = (q = (8, 8), kv = (8, 8)),
)]
pub struct Na2dDilated;

const UNUSED: WindowAxis = WindowAxis { size: 1, dilation: 1, stride: 1, causal: false };

fn main() {
    let axis = |size| WindowAxis { size, dilation: 2, stride: 1, causal: true };
    assert_eq!(
        Na2d::DESC.visit,
        Visit::Window(Window { dims: 2, axes: [axis(13), axis(9), UNUSED] })
    );
    let axis = WindowAxis { size: 13, dilation: 2, stride: 1, causal: false };
    assert_eq!(
        Na2dDilated::DESC.visit,
        Visit::Window(Window { dims: 2, axes: [axis, axis, UNUSED] })
    );
}
