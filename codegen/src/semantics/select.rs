//! The arithmetic of a block-selection program (`ir::select`), written once for the interpreter
//! and the lowering. It is arranged so that the work per score element is one `fma` for the
//! estimate and one `max` for the vote: the scale and each row's bias move into the row's
//! threshold, computed once per query tile.

use super::Arith;

/// Row `r`'s threshold in the units of the scores the vote compares: a score `s` passes when
/// `scale · (s + bias) ≥ θ`, that is `s ≥ θ / scale − bias` (up to rounding; `bias` is 0 for
/// exact scores).
pub fn threshold<A: Arith>(a: &mut A, theta: A::F, scale: A::F, bias: A::F) -> A::F {
    let t = a.div(theta, scale);
    a.sub(t, bias)
}

/// The product scale of an estimate's row and column, `row_scale · col_scale` (one rounding),
/// shared by every element of a row where the column scale is the lane's.
pub fn pair_scale<A: Arith>(a: &mut A, row_scale: A::F, col_scale: A::F) -> A::F {
    a.mul(row_scale, col_scale)
}

/// SALE's estimate from an int32 dot product `s` of int8 codes (exactly an f32) at its
/// `pair_scale`: `s · scale + col_bias`, one rounding for the fma.
pub fn estimate<A: Arith>(a: &mut A, s: A::F, scale: A::F, col_bias: A::F) -> A::F {
    a.fma(s, scale, col_bias)
}

/// A bound on `estimate(s, scale, b)` over elements whose int32 products are at most `s_max`
/// and whose biases are at most `b_max`, for `scale ≥ 0`: then `s·scale + b ≤ s_max·scale +
/// b_max`, and rounding to nearest is monotone, so the rounded estimate is at most this,
/// exactly. Where no row's bound reaches its threshold, no element can pass, and the kernel
/// skips the elements (`llvm::select`).
pub fn bound<A: Arith>(a: &mut A, s_max: A::F, scale: A::F, b_max: A::F) -> A::F {
    estimate(a, s_max, scale, b_max)
}

/// Whether a row whose scores have the maximum `row_max` keeps its tile under the row's
/// `threshold`. `max` ignores NaN, so a NaN score never passes; a row of NaN scores alone has
/// the maximum -inf, which passes only a threshold of -inf (a dense head's).
pub fn passes<A: Arith>(a: &mut A, row_max: A::F, threshold: A::F) -> A::B {
    a.ge(row_max, threshold)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::semantics::F32;

    proptest! {
        /// The bound the kernel skips elements by is at least every estimate it stands for,
        /// for int8 dot products (|s| < 2^22), non-negative scales and any finite biases.
        #[test]
        fn the_bound_is_at_least_every_estimate(
            row in proptest::collection::vec((-4_194_303i32..4_194_304, -1e4f32..1e4), 1..32),
            row_scale in 0f32..1e-2,
            col_scale in 0f32..1e-2,
        ) {
            let a = &mut F32;
            let s_max = row.iter().map(|&(s, _)| s).max().unwrap() as f32;
            let b_max = row.iter().map(|&(_, b)| b).fold(f32::NEG_INFINITY, f32::max);
            let scale = pair_scale(a, row_scale, col_scale);
            let bound = bound(a, s_max, scale, b_max);
            for &(s, b) in &row {
                let e = estimate(a, s as f32, scale, b);
                prop_assert!(e <= bound, "estimate {e} of ({s}, {b}) over the bound {bound}");
            }
        }
    }
}
