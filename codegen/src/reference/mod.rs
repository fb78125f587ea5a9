//! Float64 reference attention: the ground truth every kernel and the tile-IR interpreter are
//! checked against. Written for obviousness, not speed.
//!
//! Layout of every tensor: `[batch, heads, tokens, head_dim]`, contiguous, row-major. `lse` is
//! `[batch, heads, seq_q]`.
//!
//! Dense attention lives here; [`neighborhood`] is NATTEN's neighborhood attention. Both run the
//! same softmax core, so they can differ only in which keys a query sees. [`mustafar`] is decode
//! attention over a pruned cache: pruning, then this dense attention.

pub mod blocks;
pub mod mustafar;
pub mod neighborhood;
pub mod sale;
pub mod structured;
mod of_desc;
mod rule;

pub use blocks::{BlockGrid, block_sparse_attention};
pub use mustafar::{DecodeShape, Pruning, mustafar_decode, mustafar_decode_tokens};
pub use neighborhood::{NaShape, Neighborhood, neighborhood_attention};
pub use of_desc::of_desc;
pub use rule::{Axis, AxisRule};

/// Problem shape. Grouped-query attention when `kv_heads < heads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub seq_q: usize,
    pub seq_kv: usize,
    pub head_dim: usize,
}

impl Shape {
    /// `[batch, heads, seq_q, head_dim]`: Q's and O's dimensions.
    pub fn q_shape(&self) -> [usize; 4] {
        [self.batch, self.heads, self.seq_q, self.head_dim]
    }

    /// `[batch, kv_heads, seq_kv, head_dim]`: K's and V's dimensions.
    pub fn kv_shape(&self) -> [usize; 4] {
        [self.batch, self.kv_heads, self.seq_kv, self.head_dim]
    }

    /// `[batch, heads, seq_q]`: the LSE's dimensions.
    pub fn lse_shape(&self) -> [usize; 3] {
        [self.batch, self.heads, self.seq_q]
    }

    /// Elements of Q (and of O).
    pub fn q_len(&self) -> usize {
        self.batch * self.heads * self.seq_q * self.head_dim
    }

    /// Elements of K (and of V).
    pub fn kv_len(&self) -> usize {
        self.batch * self.kv_heads * self.seq_kv * self.head_dim
    }

    /// Elements of the log-sum-exp output.
    pub fn lse_len(&self) -> usize {
        self.batch * self.heads * self.seq_q
    }

    /// Query heads sharing one KV head.
    pub fn group_size(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Rejects shapes no kernel can run. Zero `batch`, `seq_q` or `seq_kv` are allowed: they are
    /// empty problems (and `seq_kv = 0` makes every row fully masked), which kernels must handle.
    pub fn check(&self) -> Result<(), String> {
        if self.heads == 0 {
            return Err("heads must be at least 1".into());
        }
        if self.kv_heads == 0 {
            return Err("kv_heads must be at least 1".into());
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "heads ({}) must be a multiple of kv_heads ({})",
                self.heads, self.kv_heads
            ));
        }
        if self.head_dim == 0 {
            return Err("head_dim must be at least 1".into());
        }
        // q_len() etc. multiply unchecked; make sure they cannot overflow.
        let dims = |tokens: usize, heads: usize| {
            [self.batch, heads, tokens, self.head_dim]
                .iter()
                .try_fold(1usize, |a, &b| a.checked_mul(b))
        };
        if dims(self.seq_q, self.heads).is_none() || dims(self.seq_kv, self.kv_heads).is_none() {
            return Err(format!("{self:?} has more elements than fit in usize"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mask {
    #[default]
    None,
    /// Bottom-right aligned (the convention of FlashAttention 2 and PyTorch's
    /// `causal_lower_right`): query `i` sees key `j` iff `j <= i + seq_kv - seq_q`. With a KV
    /// cache longer than the query block the last query sees every key; with `seq_q > seq_kv`
    /// the first `seq_q - seq_kv` rows see nothing.
    Causal,
}

impl Mask {
    /// Number of keys query row `i` sees (always a prefix `0..n` of the keys).
    pub fn visible_keys(self, i: usize, seq_q: usize, seq_kv: usize) -> usize {
        match self {
            Mask::None => seq_kv,
            Mask::Causal => {
                // i128 so the signed comparison cannot overflow for any usize inputs.
                let last = i as i128 + seq_kv as i128 - seq_q as i128;
                (last + 1).clamp(0, seq_kv as i128) as usize
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// `[batch, heads, seq_q, head_dim]`.
    pub o: Vec<f64>,
    /// Natural-log logsumexp of `scale * q·k` over visible keys, `[batch, heads, seq_q]`;
    /// `-inf` for a fully masked row.
    pub lse: Vec<f64>,
}

/// Reference attention, softmax(scale · Q Kᵀ + mask) V, in float64.
///
/// A fully masked row gives `o = 0` and `lse = -inf` (the convention kernels must follow: never
/// NaN).
///
/// # Panics
/// If the shape is invalid or a slice length does not match it; use [`try_attention`] to get
/// the error instead.
pub fn attention(shape: &Shape, mask: Mask, scale: f64, q: &[f64], k: &[f64], v: &[f64]) -> Output {
    match try_attention(shape, mask, scale, q, k, v) {
        Ok(out) => out,
        Err(e) => panic!("reference::attention: {e}"),
    }
}

/// [`attention`] that reports a bad shape or slice length instead of panicking.
pub fn try_attention(
    shape: &Shape,
    mask: Mask,
    scale: f64,
    q: &[f64],
    k: &[f64],
    v: &[f64],
) -> Result<Output, String> {
    let (seq_q, seq_kv) = (shape.seq_q, shape.seq_kv);
    masked_attention(shape, scale, q, k, v, |i, j| j < mask.visible_keys(i, seq_q, seq_kv))
}

/// Slice lengths against a shape that already passed [`Shape::check`].
fn check_lengths(shape: &Shape, q: &[f64], k: &[f64], v: &[f64]) -> Result<(), String> {
    for (name, got, want) in [
        ("q", q.len(), shape.q_len()),
        ("k", k.len(), shape.kv_len()),
        ("v", v.len(), shape.kv_len()),
    ] {
        if got != want {
            return Err(format!("{name} has {got} elements, {shape:?} needs {want}"));
        }
    }
    Ok(())
}

/// The softmax core every reference runs (SALE's kept blocks call it directly): query row `i` attends to the keys `j` with
/// `allowed(i, j)`, visited in increasing `j` so that results do not depend on how a caller
/// describes its mask. Rows are independent, so they are spread over the CPU's cores (the
/// tuner checks every candidate against this on problems of up to millions of pairs); each row's
/// arithmetic is the same sequential sum whichever thread runs it.
///
/// Errors name a bad shape or slice length.
pub(crate) fn masked_attention(
    shape: &Shape,
    scale: f64,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    allowed: impl Fn(usize, usize) -> bool + Sync,
) -> Result<Output, String> {
    shape.check()?;
    check_lengths(shape, q, k, v)?;
    let (seq_q, d, planes) = (shape.seq_q, shape.head_dim, shape.batch * shape.heads);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, seq_q.max(1));
    let chunk = seq_q.div_ceil(threads).max(1);
    let rows: Vec<Rows> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..seq_q)
            .step_by(chunk)
            .map(|start| {
                let allowed = &allowed;
                scope.spawn(move || attend_rows(shape, scale, q, k, v, start..(start + chunk).min(seq_q), allowed))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut o = vec![0.0; shape.q_len()];
    let mut lse = vec![f64::NEG_INFINITY; shape.lse_len()];
    for part in rows {
        for (n, i) in part.range.enumerate() {
            for p in 0..planes {
                let at = (p * seq_q + i) * d;
                o[at..at + d].copy_from_slice(&part.o[(n * planes + p) * d..(n * planes + p + 1) * d]);
                lse[p * seq_q + i] = part.lse[n * planes + p];
            }
        }
    }
    Ok(Output { o, lse })
}

/// The outputs of a range of query rows, row-major over (row, batch·head).
struct Rows {
    range: std::ops::Range<usize>,
    o: Vec<f64>,
    lse: Vec<f64>,
}

fn attend_rows(
    shape: &Shape,
    scale: f64,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    range: std::ops::Range<usize>,
    allowed: &(impl Fn(usize, usize) -> bool + Sync),
) -> Rows {
    let Shape { batch, heads, kv_heads, seq_q, seq_kv, head_dim: d } = *shape;
    let group = shape.group_size();
    let planes = batch * heads;
    let mut o = vec![0.0; range.len() * planes * d];
    let mut lse = vec![f64::NEG_INFINITY; range.len() * planes];
    let mut keys = Vec::with_capacity(seq_kv);
    let mut scores = Vec::with_capacity(seq_kv);

    // Rows outermost: the key set depends only on the row, so the predicate runs once per row
    // rather than once per (batch, head, row).
    for (n, i) in range.clone().enumerate() {
        keys.clear();
        keys.extend((0..seq_kv).filter(|&j| allowed(i, j)));
        if keys.is_empty() {
            // o stays 0 and lse stays -inf: no keys, no probability mass.
            continue;
        }
        for b in 0..batch {
            for h in 0..heads {
                let kvh = h / group;
                let q_base = (b * heads + h) * seq_q * d;
                let kv_base = (b * kv_heads + kvh) * seq_kv * d;
                let qi = &q[q_base + i * d..q_base + (i + 1) * d];
                scores.clear();
                scores.extend(keys.iter().map(|&j| {
                    let kj = &k[kv_base + j * d..kv_base + (j + 1) * d];
                    scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                }));
                // Subtracting the row max keeps exp() in range for any score magnitude.
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for s in &mut scores {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let at = n * planes + b * heads + h;
                let oi = &mut o[at * d..(at + 1) * d];
                for (&j, p) in keys.iter().zip(&scores) {
                    let vj = &v[kv_base + j * d..kv_base + (j + 1) * d];
                    for (acc, x) in oi.iter_mut().zip(vj) {
                        *acc += p * x;
                    }
                }
                for acc in oi.iter_mut() {
                    *acc /= sum;
                }
                lse[at] = max + sum.ln();
            }
        }
    }
    Rows { range, o, lse }
}

/// Relative error ‖out − ref‖₂ / ‖ref‖₂.
///
/// Designed so that a comparison `rel_error(..) <= tol` can only pass for a close output:
/// - if ‖ref‖₂ is 0 it returns the absolute error ‖out − ref‖₂ (that is ‖out‖₂), so an all-zero
///   reference cannot make a wrong output look perfect;
/// - positions where both sides are equal, including the same infinity (the `-inf` lse of
///   fully masked rows), count as no error, and infinite reference values are left out of ‖ref‖;
/// - a length mismatch, a NaN on either side, or an infinity on one side only gives `+inf`.
pub fn rel_error(out: &[f64], reference: &[f64]) -> f64 {
    if out.len() != reference.len() {
        return f64::INFINITY;
    }
    let mut diff = Vec::with_capacity(out.len());
    for (&a, &r) in out.iter().zip(reference) {
        if a.is_nan() || r.is_nan() {
            return f64::INFINITY;
        }
        if a == r {
            continue;
        }
        let d = a - r;
        if !d.is_finite() {
            return f64::INFINITY;
        }
        diff.push(d);
    }
    let diff = norm2(diff.into_iter());
    let ref_norm = norm2(reference.iter().copied().filter(|x| x.is_finite()));
    if ref_norm == 0.0 {
        diff
    } else {
        diff / ref_norm
    }
}

/// Euclidean norm, scaled by the largest magnitude so squares neither overflow nor underflow.
fn norm2(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = xs.clone().fold(0.0f64, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return max;
    }
    max * xs.map(|x| (x / max) * (x / max)).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    fn random(rng: &mut StdRng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn shape(
        batch: usize,
        heads: usize,
        kv_heads: usize,
        seq_q: usize,
        seq_kv: usize,
        head_dim: usize,
    ) -> Shape {
        Shape {
            batch,
            heads,
            kv_heads,
            seq_q,
            seq_kv,
            head_dim,
        }
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "element {i}: got {g}, want {w}\n got: {got:?}\nwant: {want:?}"
            );
        }
    }

    #[test]
    fn reference_hand_computed_one_query_two_keys() {
        // q·k0 = 1, q·k1 = 0 → p = [e/(e+1), 1/(e+1)] = [0.7310585786300049, 0.2689414213699951].
        let s = shape(1, 1, 1, 1, 2, 2);
        let out = attention(
            &s,
            Mask::None,
            1.0,
            &[1.0, 0.0],
            &[1.0, 0.0, 0.0, 1.0],
            &[1.0, 2.0, 3.0, 4.0],
        );
        // o = p0·[1,2] + p1·[3,4]; lse = ln(e + 1).
        assert_close(&out.o, &[1.5378828427399902, 2.5378828427399904], 1e-15);
        assert_close(&out.lse, &[1.3132616875182228], 1e-15);

        // Scale 2: scores [2, 0] → p0 = e²/(e²+1) = 0.8807970779778823, lse = ln(e²+1).
        let out = attention(
            &s,
            Mask::None,
            2.0,
            &[1.0, 0.0],
            &[1.0, 0.0, 0.0, 1.0],
            &[1.0, 2.0, 3.0, 4.0],
        );
        assert_close(&out.o, &[1.2384058440442351, 2.238405844044235], 1e-15);
        assert_close(&out.lse, &[2.1269280110429727], 1e-15);
    }

    #[test]
    fn reference_causal_row_zero_sees_key_zero_only() {
        let s = shape(1, 1, 1, 5, 5, 4);
        let mut rng = StdRng::seed_from_u64(1);
        let (q, k, v) = (
            random(&mut rng, s.q_len()),
            random(&mut rng, s.kv_len()),
            random(&mut rng, s.kv_len()),
        );
        let out = attention(&s, Mask::Causal, 0.5, &q, &k, &v);
        assert_close(&out.o[..4], &v[..4], 1e-15);
        let qk0: f64 = q[..4].iter().zip(&k[..4]).map(|(a, b)| a * b).sum();
        assert_close(&out.lse[..1], &[0.5 * qk0], 1e-15);
        // The last row sees every key: it must equal the unmasked result.
        let full = attention(&s, Mask::None, 0.5, &q, &k, &v);
        assert_close(&out.o[16..], &full.o[16..], 1e-15);
        assert_ne!(out.o[4..8], full.o[4..8]);
    }

    #[test]
    fn reference_causal_is_bottom_right_aligned() {
        assert_eq!(
            (0..3)
                .map(|i| Mask::Causal.visible_keys(i, 3, 5))
                .collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(
            (0..4)
                .map(|i| Mask::Causal.visible_keys(i, 4, 2))
                .collect::<Vec<_>>(),
            [0, 0, 1, 2]
        );
        assert_eq!(Mask::None.visible_keys(0, 4, 2), 2);
        assert_eq!(Mask::Causal.visible_keys(0, 1, 0), 0);

        // seq_q = 2 of seq_kv = 4: row 0 sees keys 0..=2, which equals attention over 3 keys.
        let s = shape(1, 1, 1, 2, 4, 3);
        let mut rng = StdRng::seed_from_u64(2);
        let (q, k, v) = (
            random(&mut rng, s.q_len()),
            random(&mut rng, s.kv_len()),
            random(&mut rng, s.kv_len()),
        );
        let out = attention(&s, Mask::Causal, 1.0, &q, &k, &v);
        let s3 = shape(1, 1, 1, 1, 3, 3);
        let row0 = attention(&s3, Mask::None, 1.0, &q[..3], &k[..9], &v[..9]);
        assert_close(&out.o[..3], &row0.o, 1e-15);
        assert_close(&out.lse[..1], &row0.lse, 1e-15);
    }

    #[test]
    fn reference_gqa_equals_per_head_mha() {
        let s = shape(2, 4, 2, 3, 5, 4);
        let mut rng = StdRng::seed_from_u64(3);
        let (q, k, v) = (
            random(&mut rng, s.q_len()),
            random(&mut rng, s.kv_len()),
            random(&mut rng, s.kv_len()),
        );
        for mask in [Mask::None, Mask::Causal] {
            let out = attention(&s, mask, 0.7, &q, &k, &v);
            let one = shape(1, 1, 1, s.seq_q, s.seq_kv, s.head_dim);
            let (qn, kvn) = (one.q_len(), one.kv_len());
            for b in 0..s.batch {
                for h in 0..s.heads {
                    let kvh = h / 2;
                    let qs = (b * s.heads + h) * qn;
                    let ks = (b * s.kv_heads + kvh) * kvn;
                    let r = attention(
                        &one,
                        mask,
                        0.7,
                        &q[qs..qs + qn],
                        &k[ks..ks + kvn],
                        &v[ks..ks + kvn],
                    );
                    assert_close(&out.o[qs..qs + qn], &r.o, 0.0);
                    let ls = (b * s.heads + h) * s.seq_q;
                    assert_close(&out.lse[ls..ls + s.seq_q], &r.lse, 0.0);
                }
            }
            // Heads 0 and 1 share a KV head but not a query: their outputs must differ.
            assert_ne!(out.o[..qn], out.o[qn..2 * qn]);
        }
    }

    #[test]
    fn reference_fully_masked_rows_are_zero_with_neg_inf_lse() {
        let s = shape(1, 2, 1, 4, 2, 3);
        let mut rng = StdRng::seed_from_u64(4);
        let (q, k, v) = (
            random(&mut rng, s.q_len()),
            random(&mut rng, s.kv_len()),
            random(&mut rng, s.kv_len()),
        );
        let out = attention(&s, Mask::Causal, 1.0, &q, &k, &v);
        for h in 0..2 {
            for i in 0..4 {
                let row = &out.o[(h * 4 + i) * 3..(h * 4 + i + 1) * 3];
                let lse = out.lse[h * 4 + i];
                assert!(row.iter().chain([&lse]).all(|x| !x.is_nan()));
                if i < 2 {
                    assert_eq!(row, [0.0; 3], "head {h} row {i}");
                    assert_eq!(lse, f64::NEG_INFINITY, "head {h} row {i}");
                } else {
                    assert!(
                        lse.is_finite() && row.iter().any(|&x| x != 0.0),
                        "head {h} row {i}"
                    );
                }
            }
        }
        // Row 2 sees key 0 only.
        assert_close(&out.o[6..9], &v[..3], 1e-15);
        // No keys at all: every row masked.
        let empty = attention(&shape(1, 1, 1, 2, 0, 3), Mask::None, 1.0, &q[..6], &[], &[]);
        assert_eq!(empty.o, vec![0.0; 6]);
        assert_eq!(empty.lse, vec![f64::NEG_INFINITY; 2]);
    }

    #[test]
    fn reference_softmax_rows_sum_to_one() {
        let s = shape(2, 2, 2, 6, 7, 5);
        let mut rng = StdRng::seed_from_u64(5);
        let (q, k) = (random(&mut rng, s.q_len()), random(&mut rng, s.kv_len()));
        let ones = vec![1.0; s.kv_len()];
        for mask in [Mask::None, Mask::Causal] {
            let out = attention(&s, mask, 3.0, &q, &k, &ones);
            assert_close(&out.o, &vec![1.0; s.q_len()], 1e-14);
        }
    }

    #[test]
    fn reference_lse_matches_naive_and_survives_large_scores() {
        let s = shape(1, 1, 1, 3, 4, 2);
        let mut rng = StdRng::seed_from_u64(6);
        let (q, k, v) = (
            random(&mut rng, s.q_len()),
            random(&mut rng, s.kv_len()),
            random(&mut rng, s.kv_len()),
        );
        let out = attention(&s, Mask::None, 1.0, &q, &k, &v);
        for i in 0..3 {
            let naive: f64 = (0..4)
                .map(|j| (q[i * 2] * k[j * 2] + q[i * 2 + 1] * k[j * 2 + 1]).exp())
                .sum::<f64>()
                .ln();
            assert!(
                (out.lse[i] - naive).abs() < 1e-14,
                "row {i}: {} vs {naive}",
                out.lse[i]
            );
        }
        // Scores near 1e4 overflow a naive exp(); the max subtraction keeps them exact.
        let big = attention(&s, Mask::None, 1e4, &q, &k, &v);
        assert!(
            big.o.iter().chain(&big.lse).all(|x| x.is_finite()),
            "{big:?}"
        );
        let shifted = attention(&s, Mask::None, 1.0, &q, &k, &v);
        assert!(shifted.lse.iter().zip(&big.lse).all(|(a, b)| a != b));
    }

    #[test]
    fn reference_is_invariant_to_key_permutation() {
        let s = shape(1, 2, 1, 4, 9, 3);
        let mut rng = StdRng::seed_from_u64(7);
        let (q, k, v) = (
            random(&mut rng, s.q_len()),
            random(&mut rng, s.kv_len()),
            random(&mut rng, s.kv_len()),
        );
        let mut perm: Vec<usize> = (0..s.seq_kv).collect();
        perm.shuffle(&mut rng);
        assert_ne!(perm, (0..s.seq_kv).collect::<Vec<_>>());
        let gather = |x: &[f64]| -> Vec<f64> {
            perm.iter()
                .flat_map(|&j| x[j * 3..j * 3 + 3].to_vec())
                .collect()
        };
        let (kp, vp) = (gather(&k), gather(&v));
        let a = attention(&s, Mask::None, 0.9, &q, &k, &v);
        let b = attention(&s, Mask::None, 0.9, &q, &kp, &vp);
        assert!(rel_error(&b.o, &a.o) < 1e-14);
        assert!(rel_error(&b.lse, &a.lse) < 1e-14);
        // Permuting V alone must change the output, or the test above proves nothing.
        let c = attention(&s, Mask::None, 0.9, &q, &k, &vp);
        assert!(rel_error(&c.o, &a.o) > 1e-3);
    }

    #[test]
    fn reference_shape_check() {
        assert!(shape(1, 4, 2, 3, 3, 8).check().is_ok());
        assert!(shape(0, 1, 1, 0, 0, 1).check().is_ok());
        assert!(shape(1, 0, 1, 3, 3, 8).check().is_err());
        assert!(shape(1, 4, 0, 3, 3, 8).check().is_err());
        assert!(shape(1, 4, 3, 3, 3, 8).check().is_err());
        assert!(shape(1, 4, 4, 3, 3, 0).check().is_err());
        assert!(shape(usize::MAX, 2, 2, 2, 2, 2).check().is_err());
        let s = shape(2, 4, 2, 3, 5, 8);
        assert_eq!(
            (s.q_len(), s.kv_len(), s.lse_len(), s.group_size()),
            (192, 160, 24, 2)
        );
        assert!(try_attention(&s, Mask::None, 1.0, &[0.0; 3], &[], &[]).is_err());
    }

    #[test]
    #[should_panic(expected = "q has 1 elements")]
    fn reference_attention_panics_on_bad_length() {
        attention(
            &shape(1, 1, 1, 1, 1, 2),
            Mask::None,
            1.0,
            &[0.0],
            &[0.0; 2],
            &[0.0; 2],
        );
    }

    #[test]
    fn reference_rel_error() {
        assert_eq!(rel_error(&[3.0, 4.0], &[3.0, 4.0]), 0.0);
        assert!((rel_error(&[3.0, 5.0], &[3.0, 4.0]) - 0.2).abs() < 1e-15);
        // Zero reference: absolute error, so a wrong output is not hidden.
        assert_eq!(rel_error(&[3.0, 4.0], &[0.0, 0.0]), 5.0);
        assert_eq!(rel_error(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
        // Matching -inf (fully masked lse) is fine; one-sided infinities and NaN are not.
        assert!(
            (rel_error(&[f64::NEG_INFINITY, 1.1], &[f64::NEG_INFINITY, 1.0]) - 0.1).abs() < 1e-12
        );
        assert_eq!(
            rel_error(&[0.0, 1.0], &[f64::NEG_INFINITY, 1.0]),
            f64::INFINITY
        );
        assert_eq!(rel_error(&[f64::NAN, 1.0], &[0.0, 1.0]), f64::INFINITY);
        assert_eq!(rel_error(&[1.0], &[1.0, 2.0]), f64::INFINITY);
        // No overflow for huge values.
        assert!((rel_error(&[1e300, 1e300], &[1e300, 2e300]) - 1.0 / 5f64.sqrt()).abs() < 1e-12);
    }
}
