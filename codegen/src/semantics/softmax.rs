//! Online softmax in base 2 (FlashAttention-2): scores are scaled by `scale·log2(e)` inside the
//! exponent so that each probability is one multiply-add and one `ex2`.

use super::Arith;

/// The per-row update when a new tile of scores arrives.
pub struct Rescale<F> {
    /// The new running max (raw score units).
    pub m: F,
    /// The scaled max subtracted inside `exp2`; 0 while the row has seen only masked scores, so
    /// that `-inf - -inf` never makes a NaN.
    pub shift: F,
    /// Factor for the old running sum and output: `exp2((m_old - m_new)·scale_log2)`.
    pub alpha: F,
}

pub fn rescale<A: Arith>(a: &mut A, m_old: A::F, tile_max: A::F, scale_log2: A::F) -> Rescale<A::F> {
    let m = a.max(m_old, tile_max);
    let scaled = a.mul(m, scale_log2);
    let neg_inf = a.constant(f32::NEG_INFINITY);
    let zero = a.constant(0.0);
    let is_empty = a.eq(m, neg_inf);
    let shift = a.select(is_empty, zero, scaled);
    let neg_shift = a.sub(zero, shift);
    let old = a.fma(m_old, scale_log2, neg_shift);
    let alpha = a.exp2(old);
    Rescale { m, shift, alpha }
}

/// Unnormalised probability of one score after `rescale`: one FMA and one `ex2` per score.
pub fn prob<A: Arith>(a: &mut A, s: A::F, shift: A::F, scale_log2: A::F) -> A::F {
    let zero = a.constant(0.0);
    let neg_shift = a.sub(zero, shift);
    let x = a.fma(s, scale_log2, neg_shift);
    a.exp2(x)
}

/// The fold of a row's partial states from the parts of a KV tile's keys (`Stmt::MergeParts`):
/// the largest of the parts' maxima, and each part's weight `exp2((m_p − m)·scale_log2)` for
/// its sum and outputs (`rescale`'s alpha: 0 for a part that saw no key).
pub fn part_weights<A: Arith>(a: &mut A, maxima: &[A::F], scale_log2: A::F) -> (A::F, Vec<A::F>) {
    let first = a.constant(f32::NEG_INFINITY);
    let max = maxima.iter().fold(first, |x, &y| a.max(x, y));
    let weights = maxima.iter().map(|&m| rescale(a, m, max, scale_log2).alpha).collect();
    (max, weights)
}

/// `Σ x_p·w_p` in part order: one multiply, then one FMA per further part (`part_weights`).
pub fn weighted_sum<A: Arith>(a: &mut A, xs: &[A::F], weights: &[A::F]) -> A::F {
    let first = a.mul(xs[0], weights[0]);
    xs.iter().zip(weights).skip(1).fold(first, |acc, (&x, &w)| a.fma(x, w, acc))
}

/// `l·alpha + tile_sum`.
pub fn running_sum<A: Arith>(a: &mut A, l: A::F, alpha: A::F, tile_sum: A::F) -> A::F {
    a.fma(l, alpha, tile_sum)
}

/// The factor that normalises a finished row: `1/l`, or 0 for a row that saw no key, which
/// makes its output 0 rather than NaN.
pub fn inverse_sum<A: Arith>(a: &mut A, l: A::F) -> A::F {
    let zero = a.constant(0.0);
    let one = a.constant(1.0);
    let inv = a.div(one, l);
    let seen = a.gt(l, zero);
    a.select(seen, inv, zero)
}

/// Natural-log LSE of a finished row: `(m·scale_log2 + log2 l)·ln 2`, or -inf for a row that
/// saw no key.
pub fn lse<A: Arith>(a: &mut A, m: A::F, l: A::F, scale_log2: A::F) -> A::F {
    let zero = a.constant(0.0);
    let ln2 = a.constant(std::f32::consts::LN_2);
    let neg_inf = a.constant(f32::NEG_INFINITY);
    let scaled = a.mul(m, scale_log2);
    let log_l = a.log2(l);
    let sum = a.add(scaled, log_l);
    let v = a.mul(sum, ln2);
    let seen = a.gt(l, zero);
    a.select(seen, v, neg_inf)
}

/// Weight of one split's normalised output when split-KV partial results of a row merge:
/// `exp(lse_s - lse_max)`, or 0 when no split saw a key (`lse_max` = -inf).
pub fn merge_weight<A: Arith>(a: &mut A, lse_s: A::F, lse_max: A::F) -> A::F {
    let zero = a.constant(0.0);
    let log2e = a.constant(std::f32::consts::LOG2_E);
    let neg_inf = a.constant(f32::NEG_INFINITY);
    let empty = a.eq(lse_max, neg_inf);
    let shift = a.select(empty, zero, lse_max);
    let x = a.sub(lse_s, shift);
    let x = a.mul(x, log2e);
    let w = a.exp2(x);
    a.select(empty, zero, w)
}

/// The merged row's LSE from the largest split LSE and the sum of the weights (-inf when no
/// split saw a key).
pub fn merge_lse<A: Arith>(a: &mut A, lse_max: A::F, weights: A::F) -> A::F {
    let zero = a.constant(0.0);
    let ln2 = a.constant(std::f32::consts::LN_2);
    let neg_inf = a.constant(f32::NEG_INFINITY);
    let log_w = a.log2(weights);
    let v = a.fma(log_w, ln2, lse_max);
    let seen = a.gt(weights, zero);
    a.select(seen, v, neg_inf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantics::F32;

    #[test]
    fn two_tiles_match_one_softmax() {
        let (scale, s1, s2) = (0.5_f32, [1.0_f32, 3.0], [2.0_f32, 5.0]);
        let sl2 = scale * std::f32::consts::LOG2_E;
        let a = &mut F32;
        let r1 = rescale(a, f32::NEG_INFINITY, 3.0, sl2);
        let l1: f32 = s1.iter().map(|&s| prob(a, s, r1.shift, sl2)).sum();
        let l1 = running_sum(a, 0.0, r1.alpha, l1);
        let r2 = rescale(a, r1.m, 5.0, sl2);
        let l2: f32 = s2.iter().map(|&s| prob(a, s, r2.shift, sl2)).sum();
        let l = running_sum(a, l1, r2.alpha, l2);
        let want: f64 = [1.0_f64, 3.0, 2.0, 5.0].iter().map(|s| (0.5 * s).exp()).sum::<f64>().ln();
        assert!((lse(a, r2.m, l, sl2) as f64 - want).abs() < 1e-5);
    }

    /// Two halves' normalised outputs and LSEs merge into the whole row's.
    #[test]
    fn split_results_merge_into_one_softmax() {
        let a = &mut F32;
        let (scores, values) = ([1.0_f64, 3.0, 2.0, 5.0], [0.5_f64, -1.0, 2.0, 0.25]);
        let half = |r: std::ops::Range<usize>| {
            let lse = scores[r.clone()].iter().map(|s| s.exp()).sum::<f64>().ln();
            let o = r.map(|i| (scores[i] - lse).exp() * values[i]).sum::<f64>();
            (lse as f32, o as f32)
        };
        let (first, second) = (half(0..2), half(2..4));
        let max = first.0.max(second.0);
        let (w1, w2) = (merge_weight(a, first.0, max), merge_weight(a, second.0, max));
        let o = (w1 * first.1 + w2 * second.1) / (w1 + w2);
        let lse = scores.iter().map(|s| s.exp()).sum::<f64>().ln();
        let want: f64 = (0..4).map(|i| (scores[i] - lse).exp() * values[i]).sum();
        assert!((o as f64 - want).abs() < 1e-5, "{o} vs {want}");
        assert!((merge_lse(a, max, w1 + w2) as f64 - lse).abs() < 1e-5);
        let inf = f32::NEG_INFINITY;
        assert_eq!(merge_weight(a, inf, inf), 0.0);
        assert_eq!(merge_lse(a, inf, 0.0), inf);
    }

    #[test]
    fn masked_rows_give_zero_and_neg_inf() {
        let a = &mut F32;
        let r = rescale(a, f32::NEG_INFINITY, f32::NEG_INFINITY, 1.0);
        assert_eq!(r.alpha, 0.0);
        assert_eq!(prob(a, f32::NEG_INFINITY, r.shift, 1.0), 0.0);
        assert_eq!(inverse_sum(a, 0.0), 0.0);
        assert_eq!(lse(a, r.m, 0.0, 1.0), f32::NEG_INFINITY);
    }
}
