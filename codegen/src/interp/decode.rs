//! Running a decode program (`ir::decode`) end to end: the launch in the program's packed terms,
//! then the merge of the splits' partial results, with the merge kernel's arithmetic.

use super::{Launch, Output, run};
use crate::format::BitmapCache;
use crate::ir::Program;
use crate::ir::decode::DecodeSizes;
use crate::semantics::{F32, round_to, softmax};

/// One decode step's inputs.
pub struct DecodeInputs<'a> {
    pub sizes: DecodeSizes,
    pub scale: f32,
    /// `[batch, heads, 1, head_dim]`.
    pub q: &'a [f32],
    /// The dense window, `[batch, kv_heads, window, head_dim]`.
    pub k: &'a [f32],
    pub v: &'a [f32],
    /// The compressed region, `batch × kv_heads` planes of `compressed` tokens.
    pub k_cache: &'a BitmapCache,
    pub v_cache: &'a BitmapCache,
}

/// Runs the decode program and merges its splits: `o` is `[batch, heads, 1, head_dim]` in the
/// element type, `lse` `[batch, heads, 1]`; `o_split`/`lse_split` are the partial results.
pub fn decode(program: &Program, inputs: &DecodeInputs) -> Result<Output, String> {
    let s = inputs.sizes;
    s.check(program)?;
    let launch = Launch {
        batch: s.batch,
        heads: s.kv_heads,
        kv_heads: s.kv_heads,
        seq_q: s.group(),
        seq_kv: s.window,
        grid: [s.window, 1, 1],
        scale: inputs.scale,
        q: inputs.q,
        k: inputs.k,
        v: inputs.v,
        k_bitmap: Some(inputs.k_cache),
        v_bitmap: Some(inputs.v_cache),
        compressed: s.compressed,
        splits: s.splits,
        blocks: None,
    };
    let mut out = run(program, &launch)?;
    let (o, lse) = merge_splits(
        &out.o_split,
        &out.lse_split,
        s.splits,
        s.group(),
        program.head_dim as usize,
        program.dtype,
    );
    (out.o, out.lse) = (o, lse);
    Ok(out)
}

/// Merges partial results `[planes, splits, group, d]` (LSEs `[planes, splits, group]`) into
/// rows `[planes, group]`, as the merge kernel does: the splits in order, weights from
/// `softmax::merge_weight`, the output rounded to `dtype`.
pub fn merge_splits(
    o_split: &[f32],
    lse_split: &[f32],
    splits: usize,
    group: usize,
    d: usize,
    dtype: tessera_desc::Dtype,
) -> (Vec<f32>, Vec<f32>) {
    let a = &mut F32;
    let rows = lse_split.len() / splits.max(1);
    let (mut o, mut lse) = (vec![0.0; rows * d], vec![0.0; rows]);
    for row in 0..rows {
        let (plane, r) = (row / group, row % group);
        let at = |s: usize| (plane * splits + s) * group + r;
        let max = (0..splits)
            .map(|s| lse_split[at(s)])
            .fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        let mut acc = vec![0.0f32; d];
        for s in 0..splits {
            let w = softmax::merge_weight(a, lse_split[at(s)], max);
            sum += w;
            // A split that saw no key has weight 0 and output 0, never NaN.
            for (x, &p) in acc.iter_mut().zip(&o_split[at(s) * d..(at(s) + 1) * d]) {
                *x = w.mul_add(p, *x);
            }
        }
        let inv = softmax::inverse_sum(a, sum);
        for (dst, x) in o[row * d..(row + 1) * d].iter_mut().zip(acc) {
            *dst = round_to(dtype, x * inv);
        }
        lse[row] = softmax::merge_lse(a, max, sum);
    }
    (o, lse)
}
