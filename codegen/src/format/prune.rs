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
fn smallest_rank(sparsity: f64, d: usize) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
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
