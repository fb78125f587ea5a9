//! SALE's estimate operands for a whole problem in int8 (seeds.md §2.2): Q and K smoothed by
//! their per-head means, quantized with the fragment groupings (`Grouping::QueryFragments` for
//! Q, `KeyFragments { block }` for K), each row's scale written out, and the per-key correction
//! `q̄_h · Ks_j` for every query head, and each query's `q_i · k̄` of its KV head. This is what
//! the GPU quantizer (`llvm::quantize`) writes; given its means, the codes and scales here are
//! its bytes exactly. A selection kernel then estimates
//! `ŝ_ij = q_scale_i · k_scale_j · (q8_i · k8_j) + qmk_j + qk_mean_i`, which approximates
//! `q_i · k_j` itself: the last term undoes the keys' smoothing.
//!
//! Int8 because `mma.sync` s8 is native on Hopper, where s4 and e4m3 are emulated (`lowbit`).

use super::int4::{self, Grouping};
use super::lowbit::{self, LowBit};
use crate::reference::Shape;

/// Q `[batch, heads, seq_q, d]` and K `[batch, kv_heads, seq_kv, d]` smoothed and quantized.
#[derive(Clone, Debug, PartialEq)]
pub struct SmoothedInt8 {
    pub shape: Shape,
    /// Keys per KV tile: the block of K's scale groups.
    pub block: usize,
    /// Codes in [-127, 127], laid out as Q and K.
    pub q8: Vec<i8>,
    pub k8: Vec<i8>,
    /// Each row's scale (its group's, repeated for every row of the group): `[batch · heads,
    /// seq_q]` and `[batch · kv_heads, seq_kv]`.
    pub q_scale: Vec<f32>,
    pub k_scale: Vec<f32>,
    /// `q̄_h · Ks_j` for query head h and key j of its KV head: `[batch, heads, seq_kv]`.
    pub qmk: Vec<f32>,
    /// `q_i · k̄` for query i and the mean of its KV head's keys: `[batch · heads, seq_q]`.
    pub qk_mean: Vec<f32>,
    /// Means over tokens: `[batch · heads, d]` and `[batch · kv_heads, d]`.
    pub q_mean: Vec<f32>,
    pub k_mean: Vec<f32>,
}

/// The mean over tokens of each `tokens × d` plane of `x` (`int4::mean`'s), `[planes, d]`.
pub fn plane_means(x: &[f32], planes: usize, tokens: usize, d: usize) -> Result<Vec<f32>, String> {
    let n = tokens * d;
    if x.len() != planes * n {
        return Err(format!("{} values are not {planes} planes of {tokens} × {d}", x.len()));
    }
    let mut means = Vec::with_capacity(planes * d);
    for p in 0..planes {
        means.extend(int4::mean(plane(x, n, p), d)?);
    }
    Ok(means)
}

impl SmoothedInt8 {
    /// With the means of `plane_means`.
    pub fn new(shape: &Shape, block: usize, q: &[f32], k: &[f32]) -> Result<Self, String> {
        let q_mean = plane_means(q, shape.batch * shape.heads, shape.seq_q, shape.head_dim)?;
        let k_mean = plane_means(k, shape.batch * shape.kv_heads, shape.seq_kv, shape.head_dim)?;
        Self::with_means(shape, block, q, k, q_mean, k_mean)
    }

    /// With given means (a GPU's, whose summation order differs from `plane_means`).
    pub fn with_means(shape: &Shape, block: usize, q: &[f32], k: &[f32], q_mean: Vec<f32>, k_mean: Vec<f32>) -> Result<Self, String> {
        shape.check()?;
        let d = shape.head_dim;
        let (q_planes, k_planes) = (shape.batch * shape.heads, shape.batch * shape.kv_heads);
        for (name, len, want) in [
            ("q", q.len(), shape.q_len()),
            ("k", k.len(), shape.kv_len()),
            ("q_mean", q_mean.len(), q_planes * d),
            ("k_mean", k_mean.len(), k_planes * d),
        ] {
            if len != want {
                return Err(format!("{name} has {len} values; {shape:?} needs {want}"));
            }
        }
        let mut out = SmoothedInt8 {
            shape: *shape,
            block,
            q8: Vec::with_capacity(q.len()),
            k8: Vec::with_capacity(k.len()),
            q_scale: Vec::with_capacity(q_planes * shape.seq_q),
            k_scale: Vec::with_capacity(k_planes * shape.seq_kv),
            qmk: Vec::with_capacity(q_planes * shape.seq_kv),
            qk_mean: Vec::with_capacity(q_planes * shape.seq_q),
            q_mean: Vec::new(),
            k_mean: Vec::new(),
        };
        // Query planes are KV planes × group, so KV plane p's heads are planes p·group + g.
        let group = shape.group_size();
        for p in 0..q_planes {
            let rows = plane(q, shape.seq_q * d, p);
            let qs = int4::subtract_mean(rows, &q_mean[p * d..(p + 1) * d])?;
            let quantized = lowbit::quantize(&qs, d, Grouping::QueryFragments, LowBit::Int8)?;
            out.push_q(&quantized);
            let kv = p / group;
            out.qk_mean.extend(int4::correction(&k_mean[kv * d..(kv + 1) * d], rows)?);
        }
        for p in 0..k_planes {
            let ks = int4::subtract_mean(plane(k, shape.seq_kv * d, p), &k_mean[p * d..(p + 1) * d])?;
            let quantized = lowbit::quantize(&ks, d, Grouping::KeyFragments { block }, LowBit::Int8)?;
            out.push_k(&quantized);
            for h in p * group..(p + 1) * group {
                out.qmk.extend(int4::correction(&q_mean[h * d..(h + 1) * d], &ks)?);
            }
        }
        out.q_mean = q_mean;
        out.k_mean = k_mean;
        Ok(out)
    }

    fn push_q(&mut self, q: &lowbit::Quantized) {
        self.q8.extend(codes(q));
        self.q_scale.extend((0..q.rows).map(|r| q.scale(r)));
    }

    fn push_k(&mut self, k: &lowbit::Quantized) {
        self.k8.extend(codes(k));
        self.k_scale.extend((0..k.rows).map(|r| k.scale(r)));
    }
}

/// Plane `p` of `n` values.
fn plane(x: &[f32], n: usize, p: usize) -> &[f32] {
    &x[p * n..(p + 1) * n]
}

/// Int8 codes as bytes. A NaN input (all a NaN group can quantize to) becomes 0, as the GPU's
/// `cvt.rni.s32.f32` makes it.
fn codes(q: &lowbit::Quantized) -> impl Iterator<Item = i8> + '_ {
    q.codes.iter().map(|&c| c as i8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn shape(batch: usize, heads: usize, kv_heads: usize, seq_q: usize, seq_kv: usize, head_dim: usize) -> Shape {
        Shape { batch, heads, kv_heads, seq_q, seq_kv, head_dim }
    }

    fn inputs(s: &Shape, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        // An offset per channel, which smoothing removes, and a few planted outliers.
        let mut fill = |n: usize| -> Vec<f32> {
            (0..n).map(|i| if rng.random_bool(0.01) { rng.random_range(-20.0..20.0) } else { rng.random_range(-2.0..2.0) + (i % s.head_dim) as f32 * 0.1 }).collect()
        };
        (fill(s.q_len()), fill(s.kv_len()))
    }

    /// Plane by plane, the same as `int4::smooth`, `lowbit::quantize` and `int4::correction`
    /// composed by hand, on lengths that are not multiples of 16 or of the block, with GQA.
    #[test]
    fn matches_the_host_quantizer_plane_by_plane() {
        for (s, block) in [(shape(2, 4, 2, 77, 53, 64), 32), (shape(1, 8, 1, 1, 1, 128), 64), (shape(1, 2, 2, 40, 1000, 16), 8), (shape(1, 3, 3, 33, 33, 32), 24)] {
            let (q, k) = inputs(&s, s.seq_kv as u64);
            let got = SmoothedInt8::new(&s, block, &q, &k).unwrap();
            let d = s.head_dim;
            let group = s.group_size();
            let mut q_means = Vec::new();
            for p in 0..s.batch * s.heads {
                let (mean, qs) = int4::smooth(&q[p * s.seq_q * d..(p + 1) * s.seq_q * d], d).unwrap();
                let want = lowbit::quantize(&qs, d, Grouping::QueryFragments, LowBit::Int8).unwrap();
                for r in 0..s.seq_q {
                    assert_eq!(got.q_scale[p * s.seq_q + r], want.scale(r), "{s:?} q plane {p} row {r}");
                    for c in 0..d {
                        assert_eq!(got.q8[(p * s.seq_q + r) * d + c] as f32, want.code(r, c), "{s:?} q plane {p} ({r}, {c})");
                    }
                }
                assert_eq!(got.q_mean[p * d..(p + 1) * d], mean[..]);
                q_means.push(mean);
                let kv = p / group;
                let k_mean = int4::smooth(&k[kv * s.seq_kv * d..(kv + 1) * s.seq_kv * d], d).unwrap().0;
                let want = int4::correction(&k_mean, &q[p * s.seq_q * d..(p + 1) * s.seq_q * d]).unwrap();
                assert_eq!(got.qk_mean[p * s.seq_q..(p + 1) * s.seq_q], want[..], "{s:?} qk_mean plane {p}");
            }
            for p in 0..s.batch * s.kv_heads {
                let (mean, ks) = int4::smooth(&k[p * s.seq_kv * d..(p + 1) * s.seq_kv * d], d).unwrap();
                let want = lowbit::quantize(&ks, d, Grouping::KeyFragments { block }, LowBit::Int8).unwrap();
                for r in 0..s.seq_kv {
                    assert_eq!(got.k_scale[p * s.seq_kv + r], want.scale(r), "{s:?} k plane {p} row {r}");
                    for c in 0..d {
                        assert_eq!(got.k8[(p * s.seq_kv + r) * d + c] as f32, want.code(r, c), "{s:?} k plane {p} ({r}, {c})");
                    }
                }
                assert_eq!(got.k_mean[p * d..(p + 1) * d], mean[..]);
                for (h, mean) in q_means.iter().enumerate().skip(p * group).take(group) {
                    let want = int4::correction(mean, &ks).unwrap();
                    assert_eq!(got.qmk[h * s.seq_kv..(h + 1) * s.seq_kv], want[..], "{s:?} qmk head {h}");
                }
            }
        }
    }

    /// The scale groups as the brief states them: rows r and r + 8 of a 16-row group share
    /// a scale (the max over both, over 127); key t of a block shares with the keys of the same
    /// `(t mod 8) / 2`; rows past the end are not part of a group.
    #[test]
    fn scales_are_the_group_maxima_over_127() {
        let (s, block) = (shape(1, 1, 1, 29, 45, 8), 16);
        let (q, k) = inputs(&s, 7);
        let got = SmoothedInt8::new(&s, block, &q, &k).unwrap();
        let d = s.head_dim;
        let max_abs = |x: &[f32], mean: &[f32], rows: &mut dyn Iterator<Item = usize>| {
            rows.flat_map(|r| (0..d).map(move |c| (r, c))).map(|(r, c)| (x[r * d + c] - mean[c]).abs()).fold(0.0f32, f32::max)
        };
        for r in 0..s.seq_q {
            let base = r / 16 * 16 + r % 8;
            let m = max_abs(&q, &got.q_mean, &mut [base, base + 8].into_iter().filter(|&t| t < s.seq_q));
            assert_eq!(got.q_scale[r], m / 127.0, "q row {r}");
        }
        for t in 0..s.seq_kv {
            let b = t / block;
            let m = max_abs(&k, &got.k_mean, &mut (b * block..((b + 1) * block).min(s.seq_kv)).filter(|u| u % 8 / 2 == t % 8 / 2));
            assert_eq!(got.k_scale[t], m / 127.0, "k row {t}");
        }
    }

    /// The estimate a selection kernel forms from these operands is the score `Q_i · K_j`,
    /// within the rounding of the codes (half a step each).
    #[test]
    fn the_estimate_approximates_q_dot_smoothed_k() {
        let (s, block) = (shape(1, 4, 2, 37, 70, 64), 32);
        let (q, k) = inputs(&s, 11);
        let got = SmoothedInt8::new(&s, block, &q, &k).unwrap();
        let d = s.head_dim;
        for h in 0..s.heads {
            let p = h / s.group_size();
            for i in 0..s.seq_q {
                for j in 0..s.seq_kv {
                    let qi = |c: usize| q[(h * s.seq_q + i) * d + c] as f64;
                    let ks = |c: usize| k[(p * s.seq_kv + j) * d + c] as f64 - got.k_mean[p * d + c] as f64;
                    let exact: f64 = (0..d).map(|c| qi(c) * k[(p * s.seq_kv + j) * d + c] as f64).sum();
                    let dot: f64 = (0..d).map(|c| got.q8[(h * s.seq_q + i) * d + c] as f64 * got.k8[(p * s.seq_kv + j) * d + c] as f64).sum();
                    let (sq, sk) = (got.q_scale[h * s.seq_q + i] as f64, got.k_scale[p * s.seq_kv + j] as f64);
                    let estimate = sq * sk * dot + got.qmk[h * s.seq_kv + j] as f64 + got.qk_mean[h * s.seq_q + i] as f64;
                    // |q̃·k̃ − qs·ks| ≤ Σ_c |qs_c|·sk/2 + |ks_c|·sq/2 + sq·sk/4.
                    let qs = |c: usize| qi(c) - got.q_mean[h * d + c] as f64;
                    let bound: f64 = (0..d).map(|c| qs(c).abs() * sk / 2.0 + ks(c).abs() * sq / 2.0 + sq * sk / 4.0).sum::<f64>() + 1e-3;
                    assert!((estimate - exact).abs() <= bound, "head {h} ({i}, {j}): {estimate} vs {exact} (bound {bound})");
                }
            }
        }
    }

    #[test]
    fn empty_problems_and_bad_arguments() {
        let s = shape(1, 2, 1, 0, 0, 64);
        let got = SmoothedInt8::new(&s, 32, &[], &[]).unwrap();
        assert!(got.q8.is_empty() && got.k_scale.is_empty() && got.qmk.is_empty());
        assert_eq!(got.q_mean, vec![0.0; 2 * 64]);
        let s = shape(1, 2, 1, 3, 5, 8);
        let (q, k) = (vec![1.0; s.q_len()], vec![1.0; s.kv_len()]);
        assert!(SmoothedInt8::new(&s, 12, &q, &k).is_err(), "a block not a multiple of 8");
        assert!(SmoothedInt8::new(&s, 8, &q[1..], &k).is_err());
        assert!(SmoothedInt8::with_means(&s, 8, &q, &k, vec![0.0; 8], vec![0.0; 8]).is_err(), "q means for one head of two");
        assert!(SmoothedInt8::new(&shape(1, 3, 2, 3, 5, 8), 8, &[1.0; 72], &[1.0; 80]).is_err(), "heads not a multiple of kv_heads");
        // A constant plane smooths to zeros: zero codes and zero scales.
        let got = SmoothedInt8::new(&s, 8, &q, &k).unwrap();
        assert!(got.q8.iter().chain(&got.k8).all(|&c| c == 0) && got.q_scale.iter().all(|&x| x == 0.0));
    }
}
