//! Attention over a map of kept blocks (`Visit::Blocks`, SALE's block-sparse prefill): query
//! `i` sees key `j` iff the block (i / block_q, j / block_k) of its (batch, head) plane is kept
//! and, when causal, `j <= i + seq_kv - seq_q` (bottom-right aligned, as [`Mask::Causal`]).
//! A query row whose kept blocks hold no visible key gets `o = 0` and `lse = -inf`.

use super::{Mask, Output, Shape};

/// The block grid of a map: `block_q` queries × `block_k` keys per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockGrid {
    pub block_q: usize,
    pub block_k: usize,
    pub causal: bool,
}

impl BlockGrid {
    /// (query blocks, key blocks) of a shape.
    pub fn blocks(&self, shape: &Shape) -> (usize, usize) {
        (
            shape.seq_q.div_ceil(self.block_q),
            shape.seq_kv.div_ceil(self.block_k),
        )
    }
}

/// Float64 attention over the blocks `kept[(plane · q_blocks + qb) · k_blocks + kb]`,
/// `plane = batch · heads + head`.
#[allow(clippy::too_many_arguments)]
pub fn block_sparse_attention(
    shape: &Shape,
    grid: &BlockGrid,
    kept: &[bool],
    scale: f64,
    q: &[f64],
    k: &[f64],
    v: &[f64],
) -> Result<Output, String> {
    shape.check()?;
    super::check_lengths(shape, q, k, v)?;
    if grid.block_q == 0 || grid.block_k == 0 {
        return Err(format!("{grid:?}: blocks must not be empty"));
    }
    let (nq, nk) = grid.blocks(shape);
    let planes = shape.batch * shape.heads;
    if kept.len() != planes * nq * nk {
        return Err(format!(
            "a map of {} blocks for {planes} planes × {nq} × {nk} blocks",
            kept.len()
        ));
    }
    let (sq, skv, d) = (shape.seq_q, shape.seq_kv, shape.head_dim);
    let mask = if grid.causal {
        Mask::Causal
    } else {
        Mask::None
    };
    // One plane at a time: `masked_attention`'s predicate sees rows and keys, not planes.
    let one = Shape {
        batch: 1,
        heads: 1,
        kv_heads: 1,
        ..*shape
    };
    let mut out = Output {
        o: Vec::with_capacity(shape.q_len()),
        lse: Vec::with_capacity(shape.lse_len()),
    };
    for b in 0..shape.batch {
        for h in 0..shape.heads {
            let kvh = h / shape.group_size();
            let plane = b * shape.heads + h;
            let map = &kept[plane * nq * nk..][..nq * nk];
            let qh = &q[plane * sq * d..][..sq * d];
            let kh = &k[(b * shape.kv_heads + kvh) * skv * d..][..skv * d];
            let vh = &v[(b * shape.kv_heads + kvh) * skv * d..][..skv * d];
            let allowed = |i: usize, j: usize| {
                j < mask.visible_keys(i, sq, skv) && map[(i / grid.block_q) * nk + j / grid.block_k]
            };
            let part = super::masked_attention(&one, scale, qh, kh, vh, allowed)?;
            out.o.extend(part.o);
            out.lse.extend(part.lse);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{attention, rel_error};

    #[test]
    fn a_full_map_is_dense_or_causal_attention_and_an_empty_one_is_zero() {
        let shape = Shape {
            batch: 2,
            heads: 4,
            kv_heads: 2,
            seq_q: 37,
            seq_kv: 53,
            head_dim: 8,
        };
        let x = |n: usize, s: f64| (0..n).map(|i| (i as f64 * s).sin()).collect::<Vec<_>>();
        let (q, k, v) = (
            x(shape.q_len(), 0.37),
            x(shape.kv_len(), 0.11),
            x(shape.kv_len(), 0.23),
        );
        for (causal, mask) in [(true, Mask::Causal), (false, Mask::None)] {
            let grid = BlockGrid {
                block_q: 16,
                block_k: 32,
                causal,
            };
            let (nq, nk) = grid.blocks(&shape);
            let full = vec![true; 8 * nq * nk];
            let got = block_sparse_attention(&shape, &grid, &full, 0.3, &q, &k, &v).unwrap();
            let want = attention(&shape, mask, 0.3, &q, &k, &v);
            assert_eq!(rel_error(&got.o, &want.o), 0.0);
            assert_eq!(rel_error(&got.lse, &want.lse), 0.0);
            let none =
                block_sparse_attention(&shape, &grid, &vec![false; full.len()], 0.3, &q, &k, &v)
                    .unwrap();
            assert!(
                none.o.iter().all(|&x| x == 0.0)
                    && none.lse.iter().all(|&x| x == f64::NEG_INFINITY)
            );
            assert!(block_sparse_attention(&shape, &grid, &full[1..], 0.3, &q, &k, &v).is_err());
        }
    }
}
