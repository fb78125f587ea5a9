//! Which reference a kernel description is checked against.

use tessera_desc::{KernelDesc, Visit};

use super::{Axis, Mask, NaShape, Output, Shape, neighborhood_attention, try_attention};

/// The float64 reference of what `desc` computes on `shape`; a window kernel's tokens form the
/// grid `grid` (one extent per window axis, product `seq_q`), other kernels ignore it.
pub fn of_desc(
    desc: &KernelDesc,
    shape: &Shape,
    grid: &[usize],
    scale: f64,
    q: &[f64],
    k: &[f64],
    v: &[f64],
) -> Result<Output, String> {
    let mask = match desc.visit {
        Visit::Dense => Mask::None,
        Visit::Causal => Mask::Causal,
        Visit::Window(w) => {
            if grid.len() != w.dims as usize || grid.iter().product::<usize>() != shape.seq_q {
                return Err(format!("a {}-D window over {} tokens cannot use the grid {grid:?}", w.dims, shape.seq_q));
            }
            let axes = w.axes().iter().zip(grid).map(|(a, &extent)| Axis {
                extent,
                window: a.size as usize,
                dilation: a.dilation as usize,
                stride: a.stride as usize,
                causal: a.causal,
            });
            let na = NaShape {
                batch: shape.batch,
                heads: shape.heads,
                kv_heads: shape.kv_heads,
                axes: axes.collect(),
                head_dim: shape.head_dim,
            };
            return neighborhood_attention(&na, scale, q, k, v);
        }
        Visit::Blocks(_) => {
            return Err("a block-sparse kernel's reference needs its block map: use reference::block_sparse_attention".into());
        }
        other => return Err(format!("no reference for visit `{}`", other.name())),
    };
    try_attention(shape, mask, scale, q, k, v)
}
