// A 3-D window with per-axis strides and causality only along the first axis, written through
// `macro_rules!` (whose `$x:expr` values arrive in invisible groups, here inside `window(...)`).
use tessera::{Kernel, Visit, Window, WindowAxis};

macro_rules! na3d {
    ($name:ident, $size:expr, $causal:expr) => {
        #[tessera::attention(
                    head_dim = 128,
                    dtype = f16,
                    visit = window(size = $size, causal = $causal),
                    tile = (q = (4, 4, 4), kv = (4, 4, 4)),
                )]
        pub struct $name;
    };
}

#[tessera::attention(
    head_dim = 128,
    dtype = f16,
    visit = window(size = [18, 24, 24], stride = [1, 8, 8], causal = [true, false, false]),
    tile = (q = (4, 4, 4), kv = (4, 4, 4)),
)]
pub struct Na3d;

na3d!(Na3dMacro, [7, 15, 15], [true, false, false]);

fn main() {
    let axis = |size, stride, causal| WindowAxis { size, dilation: 1, stride, causal };
    assert_eq!(
        Na3d::DESC.visit,
        Visit::Window(Window {
            dims: 3,
            axes: [axis(18, 1, true), axis(24, 8, false), axis(24, 8, false)],
        })
    );
    assert_eq!(
        Na3dMacro::DESC.visit,
        Visit::Window(Window {
            dims: 3,
            axes: [axis(7, 1, true), axis(15, 1, false), axis(15, 1, false)],
        })
    );
    let Visit::Window(w) = Na3d::DESC.visit else { unreachable!() };
    assert_eq!(
        w.to_string(),
        "window(size = [18, 24, 24], dilation = [1, 1, 1], stride = [1, 8, 8], \
         causal = [true, false, false])"
    );
}
