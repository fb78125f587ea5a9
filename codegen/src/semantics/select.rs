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

/// Whether a row whose scores have the maximum `row_max` keeps its tile under the row's
/// `threshold`. `max` ignores NaN, so a NaN score never passes; a row of NaN scores alone has
/// the maximum -inf, which passes only a threshold of -inf (a dense head's).
pub fn passes<A: Arith>(a: &mut A, row_max: A::F, threshold: A::F) -> A::B {
    a.ge(row_max, threshold)
}
