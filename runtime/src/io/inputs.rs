//! The q, k and v of one attention call, checked against the kernel before any GPU is touched,
//! so that every mistake in a user's file is reported in the file's terms.

use std::path::Path;

use tessera_codegen::reference::Shape;
use tessera_desc::KernelDesc;

use super::{HostTensor, TensorFile, file_dtype};
use crate::Error;

pub struct AttentionInputs {
    pub q: HostTensor,
    pub k: HostTensor,
    pub v: HostTensor,
    pub dims: Shape,
}

/// Reads tensors `q`, `k` and `v` from a safetensors file and checks them against `desc`.
pub fn read_inputs(path: &Path, desc: &KernelDesc) -> Result<AttentionInputs, Error> {
    let file = TensorFile::open(path)?;
    let (q, k, v) = (file.tensor("q")?, file.tensor("k")?, file.tensor("v")?);
    let dims = check_inputs(desc, &q, &k, &v)?;
    Ok(AttentionInputs { q, k, v, dims })
}

/// Checks that q, k and v are `[batch, heads, tokens, head_dim]` tensors of the kernel's dtype and
/// head_dim that agree with each other.
pub fn check_inputs(
    desc: &KernelDesc,
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
) -> Result<Shape, Error> {
    let kernel = |value: &dyn std::fmt::Display| format!("{value} (kernel `{}`)", desc.name);
    let Some(dtype) = file_dtype(desc.dtype) else {
        return Err(mismatch(
            "q",
            "dtype",
            format!("{}, which files cannot hold yet", kernel(&desc.dtype)),
            q.dtype,
        ));
    };
    let head_dim = desc.head_dim as usize;
    let mut shapes = [[0usize; 4]; 3];
    for (shape, (name, t)) in shapes.iter_mut().zip([("q", q), ("k", k), ("v", v)]) {
        if t.dtype != dtype {
            return Err(mismatch(name, "dtype", kernel(&dtype), t.dtype));
        }
        *shape = <[usize; 4]>::try_from(t.shape.as_slice()).map_err(|_| {
            mismatch(
                name,
                "rank",
                "4 ([batch, heads, tokens, head_dim])",
                format!("{} (shape {:?})", t.shape.len(), t.shape),
            )
        })?;
        if shape[3] != head_dim {
            return Err(mismatch(
                name,
                "head_dim (last dimension)",
                kernel(&head_dim),
                format!("{} (shape {:?})", shape[3], t.shape),
            ));
        }
        // Nothing to compute, and the device cannot allocate an empty buffer.
        if shape.contains(&0) {
            return Err(mismatch(
                name,
                "shape",
                "no zero dimension",
                format!("{shape:?}"),
            ));
        }
    }
    let [
        [batch, heads, seq_q, _],
        [k_batch, kv_heads, seq_kv, _],
        v_shape,
    ] = shapes;
    if k_batch != batch {
        return Err(mismatch("k", "batch", format!("{batch} (as `q`)"), k_batch));
    }
    if v_shape != shapes[1] {
        return Err(mismatch(
            "v",
            "shape",
            format!("{:?} (as `k`)", shapes[1]),
            format!("{v_shape:?}"),
        ));
    }
    if heads % kv_heads != 0 {
        return Err(mismatch(
            "q",
            "heads",
            format!("a multiple of {kv_heads} (`k`'s heads)"),
            heads,
        ));
    }
    Ok(Shape {
        batch,
        heads,
        kv_heads,
        seq_q,
        seq_kv,
        head_dim,
    })
}

fn mismatch(
    tensor: &'static str,
    what: &'static str,
    expected: impl ToString,
    got: impl ToString,
) -> Error {
    Error::Tensor {
        tensor,
        what,
        expected: expected.to_string(),
        got: got.to_string(),
    }
}
