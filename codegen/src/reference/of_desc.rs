//! Which reference a kernel description is checked against.

use tessera_desc::{KernelDesc, Visit};

use super::{Axis, Mask, NaShape, Output, Shape, neighborhood_attention, try_attention};

/// The float64 reference of what `desc` computes on `shape`. A window kernel's launch passes one
/// extent (the token count), so its grid is 1-D here.
pub fn of_desc(desc: &KernelDesc, shape: &Shape, scale: f64, q: &[f64], k: &[f64], v: &[f64]) -> Result<Output, String> {
    let mask = match desc.visit {
        Visit::Dense => Mask::None,
        Visit::Causal => Mask::Causal,
        Visit::Window(w) => {
            let axes = w.axes().iter().map(|a| Axis {
                extent: shape.seq_q,
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
        other => return Err(format!("no reference for visit `{}`", other.name())),
    };
    try_attention(shape, mask, scale, q, k, v)
}
