//! Per-token magnitude pruning: each token's `head_dim` values are pruned independently.

/// Which elements of a token survive pruning at sparsity `s` over `d` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneRule {
    /// The authors' code: `k = max(1, floor(s·d))`, keep `|x| >= ` the k-th smallest `|x|`. It
    /// keeps `d - k + 1` elements when magnitudes are distinct (40 of 128 at s = 0.7), and every
    /// element tied with the threshold.
    KthSmallest,
    /// The paper's intent: keep exactly the `ceil((1 - s)·d)` largest `|x|`, ties broken towards
    /// the lower index.
    TopK,
}

impl PruneRule {
    /// How many elements of `d` the rule keeps when magnitudes are distinct.
    pub fn kept(self, sparsity: f64, d: usize) -> usize {
        match self {
            PruneRule::KthSmallest => d - smallest_rank(sparsity, d) + 1,
            PruneRule::TopK => (((1.0 - sparsity) * d as f64) - 1e-9).ceil().max(0.0) as usize,
        }
    }
}

/// The repo's `k`: `max(1, int(s·d))`, with a tolerance so that 0.7·128 = 89.6 floors to 89 and
/// 0.5·128 = 64 does not become 63 through rounding.
pub fn smallest_rank(sparsity: f64, d: usize) -> usize {
    ((sparsity * d as f64 + 1e-9).floor() as usize).clamp(1, d)
}

/// `x` with the pruned elements set to zero. `sparsity` is in `[0, 1]`; NaN magnitudes sort
/// last (kept), as `total_cmp` orders them.
pub fn prune_token(x: &[f32], sparsity: f64, rule: PruneRule) -> Vec<f32> {
    let d = x.len();
    if d == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| x[a].abs().total_cmp(&x[b].abs()).then(b.cmp(&a)));
    let keep: Vec<bool> = match rule {
        PruneRule::KthSmallest => {
            let threshold = x[order[smallest_rank(sparsity, d) - 1]].abs();
            x.iter().map(|v| v.abs() >= threshold || v.is_nan()).collect()
        }
        PruneRule::TopK => {
            let mut keep = vec![false; d];
            // `order` ends with the largest magnitudes, equal ones highest index first, so the
            // last `kept` are the largest with ties going to the lower index.
            for &i in &order[d - rule.kept(sparsity, d).min(d)..] {
                keep[i] = true;
            }
            keep
        }
    };
    x.iter().zip(keep).map(|(&v, k)| if k { v } else { 0.0 }).collect()
}

/// Whether the GPU compression kernel (`llvm::compress`) keeps an element of magnitude bits
/// `m` under threshold `t` (`kth_smallest_bits`) for an element type whose +inf is `infinity`:
/// the authors' rule `|x| >= t`, except that a NaN (a magnitude above `infinity`) is kept
/// whatever `t` is, as `prune_token` keeps it, and a zero is left out of the format anyway.
pub fn keeps_bits(m: u16, t: u16, infinity: u16) -> bool {
    (m >= t || m > infinity) && m != 0
}

/// The `k`-th smallest (1-based) of 16-bit magnitudes (element bits without the sign: for
/// f16 and bf16 their order is the values' magnitude order, NaN aside), found as the GPU
/// compression kernel finds it (`llvm::compress`): the largest `t` with fewer than `k`
/// magnitudes below it, decided bit by bit from the top, each bit one count over the token.
/// The authors' rule keeps `|x| >= t`.
pub fn kth_smallest_bits(mags: &[u16], k: usize) -> u16 {
    (0..16).rev().fold(0u16, |t, bit| {
        let candidate = t | (1 << bit);
        if mags.iter().filter(|&&m| m < candidate).count() < k { candidate } else { t }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{from_f32, to_f32};
    use proptest::prelude::*;
    use tessera_desc::Dtype;

    #[test]
    fn repo_rule_keeps_one_more_than_the_paper() {
        // Distinct magnitudes, mixed signs.
        let x: Vec<f32> = (0..128).map(|i| (i + 1) as f32 * if i % 3 == 0 { -0.01 } else { 0.01 }).collect();
        let nonzero = |v: &[f32]| v.iter().filter(|&&a| a != 0.0).count();
        assert_eq!(nonzero(&prune_token(&x, 0.7, PruneRule::KthSmallest)), 40);
        assert_eq!(nonzero(&prune_token(&x, 0.7, PruneRule::TopK)), 39);
        assert_eq!(nonzero(&prune_token(&x, 0.5, PruneRule::KthSmallest)), 65);
        assert_eq!(nonzero(&prune_token(&x, 0.5, PruneRule::TopK)), 64);
        assert_eq!((PruneRule::KthSmallest.kept(0.7, 128), PruneRule::TopK.kept(0.7, 128)), (40, 39));
    }

    #[test]
    fn ties_follow_each_rule() {
        let x = [1.0, -1.0, 1.0, 0.5];
        // k = 2: the threshold is 1.0, every element tied with it stays.
        assert_eq!(prune_token(&x, 0.5, PruneRule::KthSmallest), vec![1.0, -1.0, 1.0, 0.0]);
        // Exactly 2 survive, the lower indices among the tied.
        assert_eq!(prune_token(&x, 0.5, PruneRule::TopK), vec![1.0, -1.0, 0.0, 0.0]);
    }

    /// How the GPU counts magnitudes below an even `c`: pairs of halved magnitudes compared with
    /// `c >> 1` as f16x2 into `0xffff` half masks, the masks summed as wrapping integers, and
    /// the count decoded from the sum.
    fn below_as_f16(mags: &[u16], c: u16) -> usize {
        let below = |m: Option<&u16>| m.is_some_and(|&m| half::f16::from_bits(m >> 1) < half::f16::from_bits(c >> 1));
        let sum = mags.chunks(2).fold(0u32, |s, p| {
            let lo = if below(p.first()) { 0xffff } else { 0 };
            let hi = if below(p.get(1)) { 0xffff_0000 } else { 0 };
            s.wrapping_add(lo).wrapping_add(hi)
        });
        let neg = 0u32.wrapping_sub(sum) as i32;
        let lo = neg & 0xffff;
        (2 * lo + ((neg - lo) >> 16)) as usize
    }

    /// The GPU's search (`llvm::compress`): bit 15 never set, bits 14..1 decided on halved
    /// magnitudes compared as f16 values, bit 0 exactly.
    fn kth_smallest_halved(mags: &[u16], k: usize) -> u16 {
        let below_as_f16 = |c: u16| below_as_f16(mags, c);
        let t = (1..15).rev().fold(0u16, |t, bit| {
            let candidate = t | (1 << bit);
            if below_as_f16(candidate) < k { candidate } else { t }
        });
        let candidate = t | 1;
        if mags.iter().filter(|&&m| m < candidate).count() < k { candidate } else { t }
    }

    proptest! {
        /// The GPU's f16 search finds the threshold the bit-wise search does, on any 15-bit
        /// magnitudes (subnormal, infinite and NaN patterns as f16 included) and ties.
        #[test]
        fn the_f16_search_is_the_bitwise_search(
            mags in proptest::collection::vec(prop_oneof![0u16..0x8000, Just(0u16), Just(1), Just(0x3c00), Just(0x7c00), Just(0x7fff)], 1..=128),
            k in 1usize..=128,
        ) {
            let k = k.min(mags.len());
            prop_assert_eq!(kth_smallest_halved(&mags, k), kth_smallest_bits(&mags, k));
        }

        /// The bit-wise threshold is the sort-based one: the kernel's rule (`keeps_bits`) keeps
        /// what `prune_token` keeps, on every 16-bit input of either type, NaNs of any payload
        /// and share included.
        #[test]
        fn the_bitwise_threshold_prunes_as_the_authors_rule(
            bits in proptest::collection::vec(prop_oneof![3 => any::<u16>(), 1 => 0x7c01u16..0x8000, 1 => Just(0x7c00u16), 1 => Just(0x7f80u16)], 128),
            s in 0.0f64..1.0,
        ) {
            for dtype in [Dtype::Bf16, Dtype::F16] {
                let values: Vec<f32> = bits.iter().map(|&b| to_f32(dtype, b)).collect();
                let want = prune_token(&values, s, PruneRule::KthSmallest);
                let mags: Vec<u16> = bits.iter().map(|b| b & 0x7fff).collect();
                let t = kth_smallest_bits(&mags, smallest_rank(s, 128));
                for (i, (&m, &w)) in mags.iter().zip(&want).enumerate() {
                    // The reference zeroes what it drops (NaN != 0 when kept); a kept zero is
                    // zero either way.
                    prop_assert_eq!(keeps_bits(m, t, from_f32(dtype, f32::INFINITY)), w != 0.0, "{} element {} of magnitude {:#x}, threshold {:#x}", dtype, i, m, t);
                }
            }
        }

        /// Pruning keeps values unchanged, keeps the largest magnitudes, and keeps at least as
        /// many elements as the rule's count.
        #[test]
        fn keeps_the_largest(x in proptest::collection::vec(-4.0f32..4.0, 1..160), s in 0.0f64..1.0) {
            for rule in [PruneRule::KthSmallest, PruneRule::TopK] {
                let p = prune_token(&x, s, rule);
                for i in 0..x.len() {
                    prop_assert!(p[i] == x[i] || p[i] == 0.0);
                }
                let min_kept = (0..x.len()).filter(|&i| p[i] != 0.0).map(|i| x[i].abs()).fold(f32::INFINITY, f32::min);
                let max_dropped = (0..x.len()).filter(|&i| p[i] == 0.0 && x[i] != 0.0).map(|i| x[i].abs()).fold(0.0, f32::max);
                prop_assert!(max_dropped <= min_kept, "{rule:?}: dropped {max_dropped} > kept {min_kept}");
                let nonzero_kept = (0..x.len()).filter(|&i| p[i] != 0.0).count();
                let zeros = x.iter().filter(|&&v| v == 0.0).count();
                prop_assert!(nonzero_kept + zeros >= rule.kept(s, x.len()).min(x.len()), "{rule:?}");
                if rule == PruneRule::TopK {
                    prop_assert!(nonzero_kept <= rule.kept(s, x.len()));
                }
            }
        }
    }
}
