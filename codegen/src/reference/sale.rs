//! SALE's block-sparse causal prefill in float64 (seeds.md §2.3, §4.2): blocks of `block_q`
//! queries × `block_k` keys; the sink block, the local window (diagonal included, grown so the
//! middle splits into whole segments) are always computed; every other block is kept when some
//! query row of it has a key whose Relative Attention Score `exp(ŝ_ij - m_i) / l_i` reaches the
//! head's threshold τ, with `m_i`, `l_i` the exact row max and sum over the always-kept keys
//! (the two-pass variant) and `ŝ` the exact score or SALE's int4 estimate. The output is exact
//! attention over the kept blocks.

use super::blocks::{BlockGrid, block_sparse_attention};
use super::{Output, Shape};
use crate::format::int4::{self, Grouping};
use crate::format::lowbit::{self, LowBit};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaleBlocks {
    pub block_q: usize,
    pub block_k: usize,
    /// Tokens of the always-kept local window (a multiple of `block_k`).
    pub local: usize,
    /// Tokens per segment of the middle region (a multiple of `block_k`).
    pub segment: usize,
    /// Always-kept key blocks at the start (attention sinks).
    pub sink_blocks: usize,
}

/// The authors' defaults.
pub const SALE_BLOCKS: SaleBlocks = SaleBlocks { block_q: 64, block_k: 32, local: 128, segment: 128, sink_blocks: 1 };

/// Where the scores that select blocks come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Estimate {
    /// The exact scores: the selection SALE approximates.
    Exact,
    /// SALE's estimate: smoothed Q and K in a low-bit format (int4 as the authors, or int8 /
    /// FP8 E4M3, the fast formats on Hopper) with fragment-grouped scales, plus the query-mean
    /// correction.
    LowBit(LowBit),
}

impl Estimate {
    /// The authors' estimate.
    pub const INT4: Estimate = Estimate::LowBit(LowBit::Int4);
}

#[derive(Clone, Debug)]
pub struct SaleOutput {
    pub out: Output,
    /// Per (batch·head, query block, key block): computed or skipped. Blocks above the causal
    /// diagonal are false.
    pub kept: Vec<bool>,
    pub blocks: SaleBlocks,
    pub seq: usize,
}

impl SaleOutput {
    pub fn q_blocks(&self) -> usize {
        self.seq.div_ceil(self.blocks.block_q)
    }

    pub fn k_blocks(&self) -> usize {
        self.seq.div_ceil(self.blocks.block_k)
    }

    /// Whether block (plane, query block, key block) was computed.
    pub fn kept(&self, plane: usize, qb: usize, kb: usize) -> bool {
        self.kept[(plane * self.q_blocks() + qb) * self.k_blocks() + kb]
    }

    /// Whether a block is always computed, whatever the thresholds.
    pub fn forced(&self, qb: usize, kb: usize) -> bool {
        forced(&self.blocks, visible_blocks(&self.blocks, self.seq, qb), qb, kb)
    }

    /// Kept blocks over causally visible blocks (0 for an empty problem).
    pub fn density(&self) -> f64 {
        let planes = self.kept.len() / (self.q_blocks() * self.k_blocks()).max(1);
        let visible = planes * (0..self.q_blocks()).map(|qb| visible_blocks(&self.blocks, self.seq, qb)).sum::<usize>();
        if visible == 0 {
            return 0.0;
        }
        self.kept.iter().filter(|&&k| k).count() as f64 / visible as f64
    }

    /// This selection against `exact` (the same problem selected with exact scores), over the
    /// blocks the thresholds decide: visible and not always kept.
    pub fn against(&self, exact: &SaleOutput) -> Agreement {
        let mut a = Agreement::default();
        let planes = self.kept.len() / (self.q_blocks() * self.k_blocks()).max(1);
        for plane in 0..planes {
            for qb in 0..self.q_blocks() {
                for kb in (0..visible_blocks(&self.blocks, self.seq, qb)).filter(|&kb| !self.forced(qb, kb)) {
                    match (exact.kept(plane, qb, kb), self.kept(plane, qb, kb)) {
                        (true, true) => a.both += 1,
                        (true, false) => a.missed += 1,
                        (false, true) => a.extra += 1,
                        (false, false) => {}
                    }
                }
            }
        }
        a
    }
}

/// How an estimated selection agrees with the exact one, in blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Agreement {
    /// Kept by both.
    pub both: usize,
    /// Kept by the exact scores only.
    pub missed: usize,
    /// Kept by the estimate only.
    pub extra: usize,
}

impl Agreement {
    /// Of the blocks the exact scores keep, the share the estimate keeps (1 when there are none).
    pub fn recall(&self) -> f64 {
        match self.both + self.missed {
            0 => 1.0,
            n => self.both as f64 / n as f64,
        }
    }
}

/// Key blocks the last row of query block `qb` can see (causal, equal lengths).
fn visible_blocks(b: &SaleBlocks, seq: usize, qb: usize) -> usize {
    ((qb + 1) * b.block_q).min(seq).div_ceil(b.block_k)
}

/// Key blocks always computed for query block `qb`: the sinks, the blocks on the causal
/// diagonal, and the last `n_local` blocks, `n_local` the smallest count of at least
/// `local / block_k` that leaves whole segments between the sinks and it (all visible blocks
/// when there is no room for a segment).
fn forced(b: &SaleBlocks, nmax: usize, qb: usize, kb: usize) -> bool {
    let n_local = local_blocks(nmax.saturating_sub(b.sink_blocks), b.local / b.block_k, b.segment / b.block_k);
    let diagonal = kb * b.block_k + b.block_k > qb * b.block_q;
    kb < b.sink_blocks || diagonal || kb + n_local >= nmax
}

/// The local window's blocks when `room` blocks follow the sinks: the smallest count of at
/// least `want` whose remainder `room - n` is whole segments of `seg` blocks, or all of `room`
/// if there is none. In closed form, as the GPU's list entry computes it.
fn local_blocks(room: usize, want: usize, seg: usize) -> usize {
    if room < want { room } else { want + (room - want) % seg }
}

/// The always-kept blocks of `planes` planes of causal self-attention over `seq` tokens,
/// `[planes, query blocks, key blocks]` as `sale_select`'s map: what the forced-only pass (the
/// row statistics of SALE's two-pass rule) computes, and what a selection program's votes are
/// ORed with.
pub fn forced_map(b: &SaleBlocks, planes: usize, seq: usize) -> Vec<bool> {
    let (nq, nk) = (seq.div_ceil(b.block_q), seq.div_ceil(b.block_k));
    let plane: Vec<bool> = (0..nq)
        .flat_map(|qb| {
            let nmax = visible_blocks(b, seq, qb);
            (0..nk).map(move |kb| kb < nmax && forced(b, nmax, qb, kb))
        })
        .collect();
    plane.repeat(planes)
}

/// Thresholds below this make a head dense, as in the authors' kernel.
pub const DENSE_BELOW: f64 = 1e-5;

fn check(shape: &Shape, b: &SaleBlocks, tau: &[f64], q: &[f64], k: &[f64], v: &[f64]) -> Result<(), String> {
    shape.check()?;
    super::check_lengths(shape, q, k, v)?;
    if shape.seq_kv != shape.seq_q {
        return Err(format!("SALE's prefill is causal self-attention: seq_q {} != seq_kv {}", shape.seq_q, shape.seq_kv));
    }
    if tau.len() != shape.heads {
        return Err(format!("{} thresholds for {} query heads", tau.len(), shape.heads));
    }
    if let Some(t) = tau.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
        return Err(format!("threshold {t} is not a finite, non-negative number"));
    }
    let mma = |n: usize| n > 0 && n.is_multiple_of(16);
    if !mma(b.block_q) || !mma(b.block_k) || !b.local.is_multiple_of(b.block_k) || b.segment == 0 || !b.segment.is_multiple_of(b.block_k) {
        return Err(format!("{b:?}: blocks must be positive multiples of 16, local and segment multiples of block_k (segment > 0)"));
    }
    Ok(())
}

/// Causal self-attention (`shape.seq_q == shape.seq_kv`) with SALE's block selection; `tau` has
/// one threshold per query head.
#[allow(clippy::too_many_arguments)]
pub fn sale_prefill(
    shape: &Shape,
    blocks: &SaleBlocks,
    tau: &[f64],
    estimate: Estimate,
    scale: f64,
    q: &[f64],
    k: &[f64],
    v: &[f64],
) -> Result<SaleOutput, String> {
    check(shape, blocks, tau, q, k, v)?;
    let kept = sale_select(shape, blocks, tau, estimate, scale, q, k)?;
    // Exact attention over the kept blocks, elementwise causal.
    let grid = BlockGrid { block_q: blocks.block_q, block_k: blocks.block_k, causal: true };
    let out = block_sparse_attention(shape, &grid, &kept, scale, q, k, v)?;
    Ok(SaleOutput { out, kept, blocks: *blocks, seq: shape.seq_q })
}

/// SALE's block map alone, `[batch · heads, query blocks, key blocks]`: what a block-sparse
/// kernel's lists are made of (`format::BlockLists::from_kept`). Arguments as `sale_prefill`'s.
pub fn sale_select(shape: &Shape, blocks: &SaleBlocks, tau: &[f64], estimate: Estimate, scale: f64, q: &[f64], k: &[f64]) -> Result<Vec<bool>, String> {
    check(shape, blocks, tau, q, k, k)?;
    let (l, d) = (shape.seq_q, shape.head_dim);
    let (nq, nk) = (l.div_ceil(blocks.block_q), l.div_ceil(blocks.block_k));
    let mut kept = vec![false; shape.batch * shape.heads * nq * nk];
    for b in 0..shape.batch {
        for h in 0..shape.heads {
            let qh = &q[(b * shape.heads + h) * l * d..][..l * d];
            let kh = &k[(b * shape.kv_heads + h / shape.group_size()) * l * d..][..l * d];
            let plane = &mut kept[(b * shape.heads + h) * nq * nk..][..nq * nk];
            if tau[h] < DENSE_BELOW {
                for qb in 0..nq {
                    plane[qb * nk..qb * nk + visible_blocks(blocks, l, qb)].fill(true);
                }
            } else {
                select(blocks, tau[h], estimate, scale, qh, kh, l, d, plane)?;
            }
        }
    }
    Ok(kept)
}

/// The kept blocks of one head. Scores use K minus its mean over tokens, as the kernel does
/// (softmax is blind to the per-row shift), so the exact scores and the int4 estimate agree.
#[allow(clippy::too_many_arguments)]
fn select(b: &SaleBlocks, tau: f64, estimate: Estimate, scale: f64, q: &[f64], k: &[f64], l: usize, d: usize, kept: &mut [bool]) -> Result<(), String> {
    let nk = l.div_ceil(b.block_k);
    let mean_k: Vec<f64> = (0..d).map(|c| (0..l).map(|j| k[j * d + c]).sum::<f64>() / l as f64).collect();
    let ks: Vec<f64> = k.chunks(d).flat_map(|row| row.iter().zip(&mean_k).map(|(x, m)| x - m).collect::<Vec<_>>()).collect();
    let exact = estimator(Estimate::Exact, scale, q, &ks, d, b.block_k)?;
    let low_bit = match estimate {
        Estimate::Exact => None,
        Estimate::LowBit(_) => Some(estimator(estimate, scale, q, &ks, d, b.block_k)?),
    };
    let estimated = low_bit.as_ref().unwrap_or(&exact);
    for qb in 0..l.div_ceil(b.block_q) {
        let nmax = visible_blocks(b, l, qb);
        let rows = qb * b.block_q..((qb + 1) * b.block_q).min(l);
        // Two-pass: each row's max and sum over its always-kept keys.
        let stats: Vec<(f64, f64)> = rows
            .clone()
            .map(|i| {
                let s: Vec<f64> = (0..=i).filter(|&j| forced(b, nmax, qb, j / b.block_k)).map(|j| exact(i, j)).collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (m, s.iter().map(|x| (x - m).exp()).sum())
            })
            .collect();
        for kb in 0..nmax {
            kept[qb * nk + kb] = forced(b, nmax, qb, kb)
                || rows.clone().zip(&stats).any(|(i, &(m, sum))| {
                    (kb * b.block_k..((kb + 1) * b.block_k).min(i + 1)).any(|j| (estimated(i, j) - m).exp() / sum >= tau)
                });
        }
    }
    Ok(())
}

type Scores<'a> = Box<dyn Fn(usize, usize) -> f64 + 'a>;

/// The scaled scores that select blocks, from queries `q` and mean-smoothed keys `ks`.
fn estimator<'a>(estimate: Estimate, scale: f64, q: &'a [f64], ks: &'a [f64], d: usize, block_k: usize) -> Result<Scores<'a>, String> {
    Ok(match estimate {
        Estimate::Exact => Box::new(move |i, j| scale * (0..d).map(|c| q[i * d + c] * ks[j * d + c]).sum::<f64>()),
        Estimate::LowBit(format) => {
            let f32s = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<_>>();
            let (mean_q, qs) = int4::smooth(&f32s(q), d)?;
            let ks = f32s(ks);
            let correction = int4::correction(&mean_q, &ks)?;
            let ql = lowbit::quantize(&qs, d, Grouping::QueryFragments, format)?;
            let kl = lowbit::quantize(&ks, d, Grouping::KeyFragments { block: block_k }, format)?;
            // The correction is added after the scales, unrounded, as tessera's estimation
            // kernel adds it in f32 (the authors' int4 kernel rounds it to the int32
            // accumulator's units first, a difference below half a code step).
            Box::new(move |i, j| scale * (ql.scale(i) as f64 * kl.scale(j) as f64 * ql.dot(i, &kl, j) + correction[j] as f64))
        }
    })
}

/// The authors' calibration error of one head: the sum of absolute differences from dense
/// attention over its `[seq, head_dim]` output (compared with `θ · seq`).
pub fn calibration_error(sparse: &[f64], dense: &[f64]) -> f64 {
    sparse.iter().zip(dense).map(|(a, b)| (a - b).abs()).sum()
}

/// SALE's per-head threshold calibration (seeds.md §2.4): from τ = 0.008, halve a head's τ
/// while its error (e.g. [`calibration_error`]) is not below `target` (`θ · seq`; a NaN error is
/// not below it); at τ ≤ 1e-4 the head becomes dense (τ = 0). Heads are independent, so all of
/// them step together: `errors(taus, pending)` runs the sparse attention with one threshold per
/// head and returns each pending head's error (what it returns for the others is not read) —
/// the float64 reference one head at a time on the CPU, one launch for all heads on the GPU.
pub fn calibrate(heads: usize, target: f64, mut errors: impl FnMut(&[f64], &[bool]) -> Vec<f64>) -> Vec<f64> {
    let mut taus = vec![0.008; heads];
    let mut pending = vec![true; heads];
    while pending.contains(&true) {
        let got = errors(&taus, &pending);
        for h in 0..heads {
            if !pending[h] {
                continue;
            }
            if got.get(h).and_then(|e| e.partial_cmp(&target)) == Some(std::cmp::Ordering::Less) {
                pending[h] = false;
                continue;
            }
            taus[h] /= 2.0;
            if taus[h] <= 1e-4 {
                taus[h] = 0.0;
                pending[h] = false;
            }
        }
    }
    taus
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::structured::{Structured, structured_inputs};
    use crate::reference::{Mask, attention, rel_error};

    const SHAPE: Shape = Shape { batch: 1, heads: 2, kv_heads: 1, seq_q: 512, seq_kv: 512, head_dim: 64 };

    fn run(tau: f64, estimate: Estimate) -> (SaleOutput, Output, Structured) {
        let x = structured_inputs(&SHAPE, 3).unwrap();
        let scale = 1.0 / 8.0;
        let got = sale_prefill(&SHAPE, &SALE_BLOCKS, &[tau; 2], estimate, scale, &x.q, &x.k, &x.v).unwrap();
        let dense = attention(&SHAPE, Mask::Causal, scale, &x.q, &x.k, &x.v);
        (got, dense, x)
    }

    #[test]
    fn local_window_grows_to_whole_segments() {
        // seeds.md §2.1: 100 visible blocks, 4-block segments: 1 sink + 7 local + 23 × 4 (the
        // last query block's diagonal lies in the local window).
        let forced_blocks = (0..100).filter(|&kb| forced(&SALE_BLOCKS, 100, 49, kb)).count();
        assert_eq!(forced_blocks, 1 + 7);
        // Too few blocks for a segment: everything is forced.
        assert!((0..5).all(|kb| forced(&SALE_BLOCKS, 5, 2, kb)));
        // The diagonal is always computed, even when the local window is narrower: query block
        // 10 (rows 640..704) sees 22 key blocks; segment alignment forces only the last one,
        // the diagonal adds block 20.
        let narrow = SaleBlocks { local: 0, ..SALE_BLOCKS };
        assert!(forced(&narrow, 22, 10, 20) && forced(&narrow, 22, 10, 21) && !forced(&narrow, 22, 10, 19));
    }

    #[test]
    fn local_window_closed_form_is_the_smallest_aligned_count() {
        for room in 0usize..60 {
            for want in 0..10 {
                for seg in 1usize..9 {
                    let search = (want..=room).find(|n| (room - n).is_multiple_of(seg)).unwrap_or(room);
                    assert_eq!(local_blocks(room, want, seg), search, "room {room}, want {want}, seg {seg}");
                }
            }
        }
    }

    #[test]
    fn zero_threshold_is_dense_causal_attention() {
        let (got, dense, _) = run(0.0, Estimate::INT4);
        assert_eq!(got.out.o, dense.o);
        assert_eq!(got.density(), 1.0);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = structured_inputs(&SHAPE, 3).unwrap();
        let call = |shape: &Shape, blocks: &SaleBlocks, tau: &[f64], q: &[f64]| {
            sale_prefill(shape, blocks, tau, Estimate::INT4, 0.125, q, &x.k, &x.v).is_err()
        };
        assert!(call(&SHAPE, &SALE_BLOCKS, &[0.01; 2], &x.q[1..]));
        assert!(call(&SHAPE, &SALE_BLOCKS, &[0.01; 3], &x.q));
        assert!(call(&SHAPE, &SALE_BLOCKS, &[f64::NAN, 0.01], &x.q));
        assert!(call(&SHAPE, &SALE_BLOCKS, &[-1.0, 0.01], &x.q));
        assert!(call(&SHAPE, &SaleBlocks { block_k: 12, ..SALE_BLOCKS }, &[0.01; 2], &x.q));
        assert!(call(&SHAPE, &SaleBlocks { segment: 0, ..SALE_BLOCKS }, &[0.01; 2], &x.q));
        assert!(structured_inputs(&Shape { seq_kv: 256, ..SHAPE }, 1).is_err());
    }

    #[test]
    fn planted_retrievals_are_kept_and_error_falls_with_the_threshold() {
        let mut last = (f64::INFINITY, 0.0);
        for tau in [0.05, 0.005, 0.0005] {
            let (got, dense, x) = run(tau, Estimate::Exact);
            let err = rel_error(&got.out.o, &dense.o);
            let density = got.density();
            assert!(err <= last.0 + 1e-12 && density >= last.1, "tau {tau}: error {err}, density {density} after {last:?}");
            // Only retrievals outside the always-kept blocks say anything about selection.
            let selected: Vec<_> = x
                .planted
                .iter()
                .map(|&(plane, i, j)| (plane, i / SALE_BLOCKS.block_q, j / SALE_BLOCKS.block_k))
                .filter(|&(_, qb, kb)| !got.forced(qb, kb))
                .collect();
            assert!(selected.len() >= 3, "{selected:?}");
            for (plane, qb, kb) in selected {
                assert!(got.kept(plane, qb, kb), "tau {tau}: planted block ({qb}, {kb}) of plane {plane} skipped");
            }
            last = (err, density);
        }
        // Structure makes a sparse mask accurate: at 0.02 these inputs keep little beyond the
        // always-kept blocks (about 70% of the visible ones at 512 tokens) within 5% of dense.
        let (got, dense, _) = run(0.02, Estimate::Exact);
        assert!(got.density() < 0.8 && rel_error(&got.out.o, &dense.o) < 5e-2);
    }

    #[test]
    fn calibration_halves_each_head_until_its_error_is_under_the_target() {
        let x = structured_inputs(&SHAPE, 3).unwrap();
        let dense = attention(&SHAPE, Mask::Causal, 0.125, &x.q, &x.k, &x.v);
        let plane = SHAPE.seq_q * SHAPE.head_dim;
        // θ = 0.4 as the authors' default, against Σ|O_sparse - O_dense| over a head.
        let target = 0.4 * SHAPE.seq_q as f64;
        let error = |h: usize, tau: f64| {
            let mut taus = [0.0; 2];
            taus[h] = tau;
            let got = sale_prefill(&SHAPE, &SALE_BLOCKS, &taus, Estimate::INT4, 0.125, &x.q, &x.k, &x.v).unwrap();
            calibration_error(&got.out.o[h * plane..(h + 1) * plane], &dense.o[h * plane..(h + 1) * plane])
        };
        let mut tried = Vec::new();
        let taus = calibrate(2, target, |taus, pending| {
            (0..2)
                .map(|h| match pending[h] {
                    true => {
                        tried.push((h, taus[h]));
                        error(h, taus[h])
                    }
                    false => f64::NAN,
                })
                .collect()
        });
        for (h, &tau) in taus.iter().enumerate() {
            assert!(tau == 0.0 || error(h, tau) < target, "head {h}: tau {tau}");
            // Each head started at 0.008 and only halved, and stopped at the first pass.
            let steps: Vec<f64> = tried.iter().filter(|t| t.0 == h).map(|t| t.1).collect();
            assert_eq!(steps[0], 0.008);
            assert!(steps.windows(2).all(|w| w[1] == w[0] / 2.0), "{steps:?}");
            assert!(steps[..steps.len() - 1].iter().all(|&t| error(h, t) >= target), "{steps:?}");
        }
        // An unreachable target, or an error that is NaN, makes every head dense; heads settle
        // on their own (one passes at once, one never).
        assert_eq!(calibrate(2, 0.0, |_, _| vec![1.0; 2]), vec![0.0, 0.0]);
        assert_eq!(calibrate(1, 1.0, |_, _| vec![f64::NAN]), vec![0.0]);
        assert_eq!(calibrate(2, 1.0, |_, _| vec![0.5, 2.0]), vec![0.008, 0.0]);
    }

    /// Each low-bit estimate against the exact-score selection, over the blocks the thresholds
    /// decide (`tessera sale-estimates` reports the same on larger inputs).
    #[test]
    fn low_bit_estimates_recall_the_exact_selection() {
        let (exact, dense, _) = run(0.005, Estimate::Exact);
        assert_eq!(exact.against(&exact).recall(), 1.0);
        assert!(exact.against(&exact).both >= 20, "only {:?} selected blocks", exact.against(&exact));
        for format in LowBit::ALL {
            let (got, _, _) = run(0.005, Estimate::LowBit(format));
            let agreement = got.against(&exact);
            let err = rel_error(&got.out.o, &dense.o);
            assert!(agreement.recall() >= 0.9, "{format:?}: {agreement:?}");
            assert!(err < 5e-2, "{format:?}: error {err}");
        }
    }
}
