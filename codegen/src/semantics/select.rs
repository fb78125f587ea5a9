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

/// SALE's estimate from an int32 dot product `s` of int8 codes (exactly an f32):
/// `s · (row_scale · col_scale) + col_bias`, one rounding for the product and one for the fma.
pub fn estimate<A: Arith>(a: &mut A, s: A::F, row_scale: A::F, col_scale: A::F, col_bias: A::F) -> A::F {
    let scale = a.mul(row_scale, col_scale);
    a.fma(s, scale, col_bias)
}

/// A bound on `estimate(s, row_scale, col_scale, b)` over elements whose int32 products are at
/// most `s_max` and whose biases are at most `b_max`, for `row_scale · col_scale ≥ 0`: then
/// `s·a + b ≤ s_max·a + b_max`, and rounding to nearest is monotone, so the rounded estimate is
/// at most this, exactly. Where no row's bound reaches its threshold, no element can pass, and
/// the kernel skips the elements (`llvm::select`).
pub fn bound<A: Arith>(a: &mut A, s_max: A::F, row_scale: A::F, col_scale: A::F, b_max: A::F) -> A::F {
    estimate(a, s_max, row_scale, col_scale, b_max)
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
            let bound = bound(a, s_max, row_scale, col_scale, b_max);
            for &(s, b) in &row {
                let e = estimate(a, s as f32, row_scale, col_scale, b);
                prop_assert!(e <= bound, "estimate {e} of ({s}, {b}) over the bound {bound}");
            }
        }
    }
}
