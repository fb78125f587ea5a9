//! Mustafar's decode attention in float64: prune each token of the compressed region of K and
//! V (the dense recent window is left alone), then dense attention of one query per head over
//! `[compressed ; local]` (seeds.md §4.1).

use super::{Mask, Output, Shape, try_attention};
use crate::format::cache::concat_tokens;
use crate::format::{PruneRule, prune_token};

/// A decode step's shape: one query token per (batch, head); per KV head `compressed` pruned
/// tokens followed by `local` dense ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub compressed: usize,
    pub local: usize,
    pub head_dim: usize,
}

/// How the compressed region was pruned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pruning {
    pub k_sparsity: f64,
    pub v_sparsity: f64,
    pub rule: PruneRule,
}

impl From<&crate::format::CachePolicy> for Pruning {
    /// How a cache of this policy prunes its compressed region.
    fn from(p: &crate::format::CachePolicy) -> Pruning {
        Pruning { k_sparsity: p.k_sparsity, v_sparsity: p.v_sparsity, rule: p.rule }
    }
}

/// Each `head_dim`-long token of `x` pruned (values taken as they are: round them to the cache's
/// element type first, as the cache holds them).
pub fn prune_tokens(x: &[f64], head_dim: usize, sparsity: f64, rule: PruneRule) -> Vec<f64> {
    x.chunks(head_dim)
        .flat_map(|t| {
            let t32: Vec<f32> = t.iter().map(|&v| v as f32).collect();
            prune_token(&t32, sparsity, rule).into_iter().map(f64::from)
        })
        .collect()
}

/// `q`: `[batch, heads, 1, D]`; `kc`/`vc`: `[batch, kv_heads, compressed, D]` before pruning;
/// `kl`/`vl`: `[batch, kv_heads, local, D]`. Values must be exact in f32.
#[allow(clippy::too_many_arguments)]
pub fn mustafar_decode(
    shape: &DecodeShape,
    pruning: Pruning,
    scale: f64,
    q: &[f64],
    kc: &[f64],
    vc: &[f64],
    kl: &[f64],
    vl: &[f64],
) -> Result<Output, String> {
    let d = shape.head_dim;
    let (tc, tl) = (shape.compressed, shape.local);
    let planes = shape.batch * shape.kv_heads;
    for (name, got, want) in [("kc", kc.len(), planes * tc * d), ("vc", vc.len(), planes * tc * d), ("kl", kl.len(), planes * tl * d), ("vl", vl.len(), planes * tl * d)] {
        if got != want {
            return Err(format!("{name} has {got} values, the shape needs {want}"));
        }
    }
    let kc = prune_tokens(kc, d, pruning.k_sparsity, pruning.rule);
    let vc = prune_tokens(vc, d, pruning.v_sparsity, pruning.rule);
    try_attention(&shape.dense(), Mask::None, scale, q, &shape.concat(&kc, kl), &shape.concat(&vc, vl))
}

/// [`mustafar_decode`] of K and V given per KV head as one run of `compressed + local` tokens
/// (`[batch, kv_heads, compressed + local, D]`, as they were pushed into a `MustafarCache`).
pub fn mustafar_decode_tokens(shape: &DecodeShape, pruning: Pruning, scale: f64, q: &[f64], k: &[f64], v: &[f64]) -> Result<Output, String> {
    let (d, tc, tl) = (shape.head_dim, shape.compressed, shape.local);
    let planes = shape.batch * shape.kv_heads;
    let n = tc + tl;
    for (name, got) in [("k", k.len()), ("v", v.len())] {
        if got != planes * n * d {
            return Err(format!("{name} has {got} values, the shape needs {}", planes * n * d));
        }
    }
    let part = |x: &[f64], from: usize, len: usize| -> Vec<f64> {
        (0..planes).flat_map(|p| x[(p * n + from) * d..(p * n + from + len) * d].iter().copied()).collect()
    };
    mustafar_decode(shape, pruning, scale, q, &part(k, 0, tc), &part(v, 0, tc), &part(k, tc, tl), &part(v, tc, tl))
}

impl DecodeShape {
    /// The same step as dense attention of one query over all `compressed + local` tokens.
    pub fn dense(&self) -> Shape {
        let (batch, heads, kv_heads, head_dim) = (self.batch, self.heads, self.kv_heads, self.head_dim);
        Shape { batch, heads, kv_heads, seq_q: 1, seq_kv: self.compressed + self.local, head_dim }
    }

    /// Per KV head, the compressed region's tokens followed by the local window's.
    pub fn concat(&self, compressed: &[f64], local: &[f64]) -> Vec<f64> {
        let planes = self.batch * self.kv_heads;
        concat_tokens(compressed, self.compressed, local, self.local, planes, self.head_dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::attention;

    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                half::f16::from_f32(((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0).to_f32() as f64
            })
            .collect()
    }

    const SHAPE: DecodeShape = DecodeShape { batch: 2, heads: 8, kv_heads: 2, compressed: 128, local: 40, head_dim: 64 };

    fn run(pruning: Pruning) -> (Output, Output) {
        let s = SHAPE;
        let planes = s.batch * s.kv_heads * s.head_dim;
        let (q, kc, vc) = (values(s.batch * s.heads * s.head_dim, 1), values(planes * s.compressed, 2), values(planes * s.compressed, 3));
        let (kl, vl) = (values(planes * s.local, 4), values(planes * s.local, 5));
        let got = mustafar_decode(&s, pruning, 0.125, &q, &kc, &vc, &kl, &vl).unwrap();
        (got, attention(&s.dense(), Mask::None, 0.125, &q, &s.concat(&kc, &kl), &s.concat(&vc, &vl)))
    }

    #[test]
    fn zero_sparsity_is_dense_decode() {
        let (got, dense) = run(Pruning { k_sparsity: 0.0, v_sparsity: 0.0, rule: PruneRule::TopK });
        assert_eq!(got.o, dense.o);
    }

    #[test]
    fn pruning_moves_the_output_and_more_pruning_moves_it_more() {
        let err = |s| {
            let (got, dense) = run(Pruning { k_sparsity: s, v_sparsity: s, rule: PruneRule::KthSmallest });
            crate::reference::rel_error(&got.o, &dense.o)
        };
        let (half, most) = (err(0.5), err(0.9));
        assert!(half > 1e-3 && most > half, "0.5: {half}, 0.9: {most}");
    }
}
