//! SALE's block selection as a tile program (`ir::select`): the interpreter's votes against the
//! float64 reference's selection (`sale_select` with exact scores) on structured inputs, with
//! the thresholds θ_i = LSE_i + ln τ computed in float64 from the reference's forced-only LSE.
//!
//! How mismatches are counted: for every visible tile, its margin is the largest
//! `scale · s_ij − θ_i` over its visible elements, in float64 from the inputs the kernel sees
//! (rounded to its element type). The program computes S in f32 and compares with an f32 θ, and
//! the reference decides by `exp(s − m) / l ≥ τ` rather than `s ≥ LSE + ln τ`, so a tile whose
//! margin is within `TOLERANCE` of 0 may go either way; every other tile must agree exactly.

use tessera_codegen::ir::select::Scores;
use tessera_codegen::format::int4::{self, Grouping};
use tessera_codegen::format::lowbit::{self, LowBit};
use tessera_codegen::interp::{self, Launch, LowBitRows, UNWRITTEN};
use tessera_codegen::ir::{Operands, Program};
use tessera_codegen::reference::sale::{Estimate, SaleBlocks, forced_map, sale_select};
use tessera_codegen::reference::structured::{Structured, alternating_tiles, structured_inputs};
use tessera_codegen::reference::{BlockGrid, Mask, Shape, block_sparse_attention};
use tessera_codegen::select_program;
use tessera_codegen::semantics::round_to;
use tessera_desc::{Blocks, Config, Dtype, Estimate as DescEstimate, KernelDesc, Layout, Load, Param, Schedule, Visit};

/// Margins (natural-log units) within which f32 scores and an f32 θ may decide either way: far
/// above the f32 error of a 64-term dot product of scores of a few units, far below the margins
/// the structured inputs' tiles have.
const TOLERANCE: f64 = 1e-4;

const SPACE: Schedule = Schedule::line(
    Param::Choices(&[16, 32, 64]),
    Param::Choices(&[16, 32, 64]),
    Param::Choices(&[1, 2, 4]),
    Param::Choices(&[1, 2, 3]),
);

fn desc(dtype: Dtype) -> KernelDesc {
    let estimate = DescEstimate { local: 0, ..DescEstimate::SALE };
    KernelDesc {
        name: "t",
        head_dim: 64,
        dtype,
        layout: Layout::Bhsd,
        visit: Visit::Blocks(Blocks { causal: true, estimate }),
        load: Load::Dense,
        schedule: SPACE,
    }
}

/// One problem: inputs rounded to the element type, in f32 for the program and f64 for the
/// reference.
struct Case {
    shape: Shape,
    blocks: SaleBlocks,
    scale: f64,
    q: Vec<f32>,
    k: Vec<f32>,
    q64: Vec<f64>,
    k64: Vec<f64>,
    /// Per row, the natural-log LSE over the forced blocks (float64).
    lse: Vec<f64>,
    program: Program,
}

impl Case {
    fn new(shape: Shape, blocks: SaleBlocks, cfg: Config, dtype: Dtype, seed: u64) -> Case {
        Case::of_inputs(shape, blocks, cfg, dtype, structured_inputs(&shape, seed).unwrap())
    }

    fn of_inputs(shape: Shape, blocks: SaleBlocks, cfg: Config, dtype: Dtype, x: Structured) -> Case {
        assert_eq!((cfg.block_q() as usize, cfg.block_kv() as usize), (blocks.block_q, blocks.block_k));
        let round = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| round_to(dtype, x as f32)).collect() };
        let (q, k) = (round(&x.q), round(&x.k));
        let wide = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| x as f64).collect() };
        let (q64, k64) = (wide(&q), wide(&k));
        let scale = 1.0 / (shape.head_dim as f64).sqrt();
        let forced = forced_map(&blocks, shape.batch * shape.heads, shape.seq_q);
        let grid = BlockGrid { block_q: blocks.block_q, block_k: blocks.block_k, causal: true };
        // V does not enter the LSE; K stands in for it.
        let lse = block_sparse_attention(&shape, &grid, &forced, scale, &q64, &k64, &k64).unwrap().lse;
        let program = select_program(&desc(dtype), &cfg, Scores::Exact).unwrap();
        Case { shape, blocks, scale, q, k, q64, k64, lse, program }
    }

    fn planes(&self) -> usize {
        self.shape.batch * self.shape.heads
    }

    /// (query tiles, KV tiles).
    fn tiles(&self) -> (usize, usize) {
        (self.shape.seq_q.div_ceil(self.blocks.block_q), self.shape.seq_kv.div_ceil(self.blocks.block_k))
    }

    /// θ per row (float64) from one log-threshold per head.
    fn theta(&self, log_tau: &[f64]) -> Vec<f64> {
        let l = self.shape.seq_q;
        (0..self.planes() * l).map(|r| self.lse[r] + log_tau[(r / l) % self.shape.heads]).collect()
    }

    /// `scale · q_i · k_j` in float64 for query row `i` of `plane`.
    fn score(&self, plane: usize, i: usize, j: usize) -> f64 {
        let (s, d) = (&self.shape, self.shape.head_dim);
        let kv_plane = (plane / s.heads) * s.kv_heads + (plane % s.heads) / s.group_size();
        let row = &self.q64[(plane * s.seq_q + i) * d..][..d];
        let key = &self.k64[(kv_plane * s.seq_kv + j) * d..][..d];
        self.scale * row.iter().zip(key).map(|(a, b)| a * b).sum::<f64>()
    }

    /// The keys query row `i` sees.
    fn keys(&self, i: usize) -> usize {
        Mask::Causal.visible_keys(i, self.shape.seq_q, self.shape.seq_kv)
    }

    fn run(&self, theta: &[f32]) -> Result<Vec<i32>, String> {
        // V does not enter a selection; K stands in for it.
        let launch = Launch::new(&self.shape, self.scale as f32, &self.q, &self.k, &self.k);
        interp::select(&self.program, &launch, theta)
    }

    /// Whether tile (qb, kb) holds a causally visible element.
    fn visible(&self, qb: usize, kb: usize) -> bool {
        let last_row = ((qb + 1) * self.blocks.block_q).min(self.shape.seq_q) - 1;
        kb * self.blocks.block_k <= Mask::Causal.visible_keys(last_row, self.shape.seq_q, self.shape.seq_kv).saturating_sub(1)
    }

    /// The tile's largest `scale · s_ij − θ_i` over its visible elements, in float64.
    fn margin(&self, plane: usize, qb: usize, kb: usize, theta: &[f64]) -> f64 {
        let b = &self.blocks;
        let mut best = f64::NEG_INFINITY;
        for i in qb * b.block_q..((qb + 1) * b.block_q).min(self.shape.seq_q) {
            for j in kb * b.block_k..((kb + 1) * b.block_k).min(self.keys(i)) {
                best = best.max(self.score(plane, i, j) - theta[plane * self.shape.seq_q + i]);
            }
        }
        best
    }

    /// Runs the program at thresholds `theta` (rounded to f32) and checks that every visible
    /// tile's vote is what its margin says (unless it is a near-tie) and that no other tile is
    /// written. Returns the votes and the near-ties.
    fn votes(&self, theta: &[f64]) -> (Vec<i32>, usize) {
        let votes = self.run(&theta.iter().map(|&t| t as f32).collect::<Vec<_>>()).unwrap();
        let (nq, nk) = self.tiles();
        let mut ties = 0;
        for (at, &vote) in votes.iter().enumerate() {
            let (plane, qb, kb) = (at / (nq * nk), (at / nk) % nq, at % nk);
            if !self.visible(qb, kb) {
                assert_eq!(vote, UNWRITTEN, "plane {plane}, tile ({qb}, {kb}): past the causal range, written");
                continue;
            }
            let margin = self.margin(plane, qb, kb, theta);
            let near = margin.abs() <= TOLERANCE;
            ties += near as usize;
            assert!(near || vote == (margin >= 0.0) as i32, "plane {plane}, tile ({qb}, {kb}): vote {vote} at margin {margin}");
        }
        (votes, ties)
    }

    /// Checks the program's votes at thresholds `tau` (one per head) against the reference:
    /// returns (non-forced tiles compared, of them kept by the reference, near-ties).
    fn check(&self, tau: &[f64]) -> (usize, usize, usize) {
        let log_tau: Vec<f64> = tau.iter().map(|t| t.ln()).collect();
        let theta = self.theta(&log_tau);
        let (votes, ties) = self.votes(&theta);
        let want = sale_select(&self.shape, &self.blocks, tau, Estimate::Exact, self.scale, &self.q64, &self.k64).unwrap();
        let forced = forced_map(&self.blocks, self.planes(), self.shape.seq_q);
        let (nq, nk) = self.tiles();
        let (mut compared, mut kept) = (0, 0);
        for (at, &vote) in votes.iter().enumerate() {
            let (plane, qb, kb) = (at / (nq * nk), (at / nk) % nq, at % nk);
            let here = format!("tau {tau:?}, plane {plane}, tile ({qb}, {kb})");
            if !self.visible(qb, kb) {
                assert!(!want[at], "{here}: the reference keeps an invisible tile");
            } else if forced[at] {
                assert!(want[at], "{here}: a forced tile the reference drops");
            } else {
                compared += 1;
                kept += want[at] as usize;
                let near = self.margin(plane, qb, kb, &theta).abs() <= TOLERANCE;
                assert!(near || (vote == 1) == want[at], "{here}: vote {vote} vs reference {}", want[at]);
            }
        }
        (compared, kept, ties)
    }
}

fn shape(batch: usize, heads: usize, kv_heads: usize, seq: usize) -> Shape {
    Shape { batch, heads, kv_heads, seq_q: seq, seq_kv: seq, head_dim: 64 }
}

#[test]
fn votes_match_sales_exact_selection_at_several_thresholds() {
    // SALE's blocks (64 × 32, 128-token local window and segments) on a ragged length, GQA.
    let sale = SaleBlocks { block_q: 64, block_k: 32, local: 128, segment: 128, sink_blocks: 1 };
    let case = Case::new(shape(1, 4, 2, 600), sale, Config::line(64, 32, 4, 2), Dtype::Bf16, 5);
    let mut last_kept = 0;
    for tau in [0.05, 0.005, 0.0005] {
        let (compared, kept, ties) = case.check(&[tau; 4]);
        assert!(compared >= 50, "tau {tau}: only {compared} non-forced tiles");
        assert!(kept >= last_kept && kept < compared, "tau {tau}: {kept} of {compared} kept (before: {last_kept})");
        assert!(ties * 50 <= compared, "tau {tau}: {ties} near-ties of {compared}");
        last_kept = kept;
    }
    // Per-head thresholds.
    case.check(&[0.05, 0.0005, 0.01, 0.002]);
}

#[test]
fn votes_match_on_other_tiles_batches_and_dtypes() {
    // Tall KV tiles, a short local window and a 3-stage pipeline; f16; two batches.
    let blocks = SaleBlocks { block_q: 32, block_k: 64, local: 64, segment: 64, sink_blocks: 1 };
    let case = Case::new(shape(2, 2, 1, 333), blocks, Config::line(32, 64, 2, 3), Dtype::F16, 11);
    for tau in [0.02, 0.001] {
        let (compared, _, _) = case.check(&[tau; 2]);
        assert!(compared >= 20, "tau {tau}: only {compared} non-forced tiles");
    }
    // One stage (no pipelining), small square tiles.
    let blocks = SaleBlocks { block_q: 16, block_k: 16, local: 32, segment: 32, sink_blocks: 2 };
    let case = Case::new(shape(1, 2, 2, 150), blocks, Config::line(16, 16, 1, 1), Dtype::Bf16, 3);
    case.check(&[0.01, 0.003]);
}

#[test]
fn infinite_thresholds_keep_every_visible_tile_or_none() {
    let blocks = SaleBlocks { block_q: 32, block_k: 32, local: 64, segment: 64, sink_blocks: 1 };
    let case = Case::new(shape(1, 2, 1, 200), blocks, Config::line(32, 32, 2, 2), Dtype::Bf16, 7);
    let n = case.planes() * case.shape.seq_q;
    let (nq, nk) = case.tiles();
    for (theta, want) in [(f32::NEG_INFINITY, 1), (f32::INFINITY, 0)] {
        let votes = case.run(&vec![theta; n]).unwrap();
        for (at, &v) in votes.iter().enumerate() {
            let (qb, kb) = ((at / nk) % nq, at % nk);
            let expect = if case.visible(qb, kb) { want } else { UNWRITTEN };
            assert_eq!(v, expect, "θ = {theta}: tile ({qb}, {kb})");
        }
    }
    // NaN never passes (an ordered compare).
    assert!(case.run(&vec![f32::NAN; n]).unwrap().iter().all(|&v| v == 0 || v == UNWRITTEN));
}

/// Thresholds just above (below) each row's largest visible score: no tile (exactly the tiles
/// holding a row's maximum) may vote, so hidden elements — future keys on the diagonal, zero-filled
/// keys past the end, padding query rows — must never count.
#[test]
fn hidden_elements_never_vote() {
    let blocks = SaleBlocks { block_q: 64, block_k: 32, local: 64, segment: 64, sink_blocks: 1 };
    let case = Case::new(shape(1, 2, 1, 211), blocks, Config::line(64, 32, 4, 2), Dtype::Bf16, 9);
    let l = case.shape.seq_q;
    let row_max: Vec<f64> = (0..case.planes() * l)
        .map(|r| (0..case.keys(r % l)).map(|j| case.score(r / l, r % l, j)).fold(f64::NEG_INFINITY, f64::max))
        .collect();
    let above: Vec<f64> = row_max.iter().map(|m| m + 1e-2).collect();
    let (votes, ties) = case.votes(&above);
    assert!(ties == 0 && votes.iter().all(|&v| v == 0 || v == UNWRITTEN));
    let below: Vec<f64> = row_max.iter().map(|m| m - 1e-2).collect();
    let (votes, _) = case.votes(&below);
    assert!(votes.contains(&1));
}

/// Tiles that alternate between kept and dropped (`alternating_tiles`) get exactly those votes,
/// from exact scores and from the int8 estimate, at any config: a vote stored one step late,
/// or for another tile, cannot pass.
#[test]
fn votes_follow_tiles_that_alternate() {
    let blocks = SaleBlocks { block_q: 64, block_k: 32, local: 128, segment: 128, sink_blocks: 1 };
    for cfg in [Config::line(64, 32, 4, 2), Config::line(64, 32, 2, 3), Config::line(64, 32, 1, 1)] {
        let s = shape(2, 2, 1, 300);
        let case = Case::of_inputs(s, blocks, cfg, Dtype::Bf16, alternating_tiles(&s, blocks.block_k).unwrap());
        let theta: Vec<f32> = case.theta(&[1e-3f64.ln(), 1e-2f64.ln()]).iter().map(|&t| t as f32).collect();
        let (nq, nk) = case.tiles();
        let want: Vec<i32> = (0..case.planes() * nq * nk)
            .map(|i| {
                let (qb, kb) = ((i / nk) % nq, i % nk);
                if case.visible(qb, kb) { kb.is_multiple_of(2) as i32 } else { UNWRITTEN }
            })
            .collect();
        assert_eq!(case.run(&theta).unwrap(), want, "{cfg}: exact scores");
        assert_eq!(Int8Case::new(&case, cfg, Dtype::Bf16).run(&theta), want, "{cfg}: int8 estimate");
    }
}

#[test]
fn bad_launches_are_errors() {
    let blocks = SaleBlocks { block_q: 32, block_k: 32, local: 64, segment: 64, sink_blocks: 1 };
    let case = Case::new(shape(1, 2, 1, 64), blocks, Config::line(32, 32, 2, 2), Dtype::Bf16, 1);
    let n = case.planes() * case.shape.seq_q;
    assert!(case.run(&vec![0.0; n - 1]).is_err());
    // Not a selection program.
    let attention = tessera_codegen::tile_program(&desc(Dtype::Bf16), &Config::line(32, 32, 2, 2)).unwrap();
    let other = Case { program: attention, ..case };
    assert!(other.run(&vec![0.0; n]).is_err());
    // A selection program needs a block-sparse description.
    let dense = KernelDesc { visit: Visit::Causal, ..desc(Dtype::Bf16) };
    assert!(select_program(&dense, &Config::line(32, 32, 2, 2), Scores::Exact).is_err());
}

#[test]
fn the_program_prints_its_vote_and_pipelines_k_alone() {
    let program = select_program(&desc(Dtype::Bf16), &Config::line(64, 32, 4, 2), Scores::Exact).unwrap();
    let text = program.to_string();
    for piece in ["load_rows theta <- theta[", "threshold theta = theta / scale\n", "= any(max(S per row) >= theta)", "store_map map["] {
        assert!(text.contains(piece), "{piece} missing from\n{text}");
    }
    // K only: no V tile, and the loop was pipelined over two Ks stages.
    assert!(!text.contains("Vs") && text.contains("shared Ks: 32x64 bf16 x2"), "{text}");
}

/// SALE's int8 estimate (`Scores::Int8`) of one problem: the codes, scales and corrections made
/// on the host (`format::int4::smooth`, `lowbit::quantize` with the fragment groupings), the
/// program's votes checked against float64 margins of the same estimate, and against the
/// reference's int8 selection.
struct Int8Case<'a> {
    case: &'a Case,
    program: Program,
    q8: Vec<f32>,
    k8: Vec<f32>,
    q_scale: Vec<f32>,
    k_scale: Vec<f32>,
    qmk: Vec<f32>,
    qk_mean: Vec<f32>,
}

impl<'a> Int8Case<'a> {
    fn new(case: &'a Case, cfg: Config, dtype: Dtype) -> Int8Case<'a> {
        let (s, d) = (&case.shape, case.shape.head_dim);
        let [mut q8, mut k8, mut q_scale, mut k_scale, mut qmk, mut qk_mean]: [Vec<f32>; 6] = Default::default();
        let mut keys = Vec::new();
        for plane in case.k.chunks(s.seq_kv * d) {
            let (mean, smoothed) = int4::smooth(plane, d).unwrap();
            let codes = lowbit::quantize(&smoothed, d, Grouping::KeyFragments { block: case.blocks.block_k }, LowBit::Int8).unwrap();
            k8.extend(codes.codes.iter().copied());
            k_scale.extend((0..s.seq_kv).map(|j| codes.scale(j)));
            keys.push((mean, smoothed));
        }
        for (p, plane) in case.q.chunks(s.seq_q * d).enumerate() {
            let (mean, smoothed) = int4::smooth(plane, d).unwrap();
            let codes = lowbit::quantize(&smoothed, d, Grouping::QueryFragments, LowBit::Int8).unwrap();
            q8.extend(codes.codes.iter().copied());
            q_scale.extend((0..s.seq_q).map(|i| codes.scale(i)));
            let (mean_k, smoothed_k) = &keys[(p / s.heads) * s.kv_heads + (p % s.heads) / s.group_size()];
            qmk.extend(int4::correction(&mean, smoothed_k).unwrap());
            qk_mean.extend(plane.chunks(d).map(|row| row.iter().zip(mean_k).map(|(a, b)| a * b).sum::<f32>()));
        }
        let program = select_program(&desc(dtype), &cfg, Scores::Int8).unwrap();
        Int8Case { case, program, q8, k8, q_scale, k_scale, qmk, qk_mean }
    }

    fn run(&self, theta: &[f32]) -> Vec<i32> {
        let launch = self.launch();
        let scales = LowBitRows { q_scale: &self.q_scale, k_scale: &self.k_scale, qmk: &self.qmk, qk_mean: &self.qk_mean };
        interp::select_low_bit(&self.program, &launch, theta, scales).unwrap()
    }

    fn launch(&self) -> Launch<'_> {
        Launch::new(&self.case.shape, self.case.scale as f32, &self.q8, &self.k8, &self.k8)
    }

    /// `scale · ŝ_ij` in float64 from the codes, scales and corrections the program reads.
    fn estimate(&self, plane: usize, i: usize, j: usize) -> f64 {
        let (s, d) = (&self.case.shape, self.case.shape.head_dim);
        let kv_plane = (plane / s.heads) * s.kv_heads + (plane % s.heads) / s.group_size();
        let (qi, kj) = (plane * s.seq_q + i, kv_plane * s.seq_kv + j);
        let dot: f64 = (0..d).map(|c| self.q8[qi * d + c] as f64 * self.k8[kj * d + c] as f64).sum();
        let unit = self.q_scale[qi] as f64 * self.k_scale[kj] as f64;
        self.case.scale * (unit * dot + self.qmk[plane * s.seq_kv + j] as f64 + self.qk_mean[qi] as f64)
    }

    /// Votes at thresholds `tau` against the margins of the estimate (every visible tile, up to
    /// near-ties) and the reference's int8 selection (agreement on the non-forced tiles);
    /// returns (non-forced tiles, of them kept, of them agreeing with the reference, near-ties).
    fn check(&self, tau: &[f64]) -> (usize, usize, usize, usize) {
        let c = self.case;
        let b = &c.blocks;
        let theta = c.theta(&tau.iter().map(|t| t.ln()).collect::<Vec<_>>());
        let votes = self.run(&theta.iter().map(|&t| t as f32).collect::<Vec<_>>());
        let want = sale_select(&c.shape, b, tau, Estimate::LowBit(LowBit::Int8), c.scale, &c.q64, &c.k64).unwrap();
        let forced = forced_map(b, c.planes(), c.shape.seq_q);
        let (nq, nk) = c.tiles();
        let (mut compared, mut kept, mut agree, mut ties) = (0, 0, 0, 0);
        for (at, &vote) in votes.iter().enumerate() {
            let (plane, qb, kb) = (at / (nq * nk), (at / nk) % nq, at % nk);
            if !c.visible(qb, kb) {
                assert_eq!(vote, UNWRITTEN, "plane {plane}, tile ({qb}, {kb}): past the causal range, written");
                continue;
            }
            let mut margin = f64::NEG_INFINITY;
            for i in qb * b.block_q..((qb + 1) * b.block_q).min(c.shape.seq_q) {
                for j in kb * b.block_k..((kb + 1) * b.block_k).min(c.keys(i)) {
                    margin = margin.max(self.estimate(plane, i, j) - theta[plane * c.shape.seq_q + i]);
                }
            }
            let near = margin.abs() <= TOLERANCE;
            ties += near as usize;
            assert!(near || vote == (margin >= 0.0) as i32, "tau {tau:?}, plane {plane}, tile ({qb}, {kb}): vote {vote} at margin {margin}");
            if !forced[at] {
                compared += 1;
                kept += vote as usize;
                agree += ((vote == 1) == want[at]) as usize;
            }
        }
        (compared, kept, agree, ties)
    }
}

#[test]
fn int8_votes_follow_the_estimate_and_sales_int8_selection() {
    let sale = SaleBlocks { block_q: 64, block_k: 32, local: 128, segment: 128, sink_blocks: 1 };
    let cfg = Config::line(64, 32, 4, 2);
    let case = Case::new(shape(1, 4, 2, 600), sale, cfg, Dtype::Bf16, 5);
    let int8 = Int8Case::new(&case, cfg, Dtype::Bf16);
    for tau in [0.05, 0.005, 0.0005] {
        let (compared, kept, agree, ties) = int8.check(&[tau; 4]);
        println!("tau {tau}: {kept} of {compared} kept, {agree} agree with the reference, {ties} near-ties");
        assert!(compared >= 50 && ties * 50 <= compared, "tau {tau}: {compared} tiles, {ties} near-ties");
        assert!(kept < compared, "tau {tau}: every tile kept");
        // The reference smooths in float64 before quantizing: a code may differ by one step.
        assert!(agree * 100 >= compared * 98, "tau {tau}: {agree} of {compared} agree with the reference");
    }
    // Other tiles, f16, two batches, GQA 2:1.
    let blocks = SaleBlocks { block_q: 32, block_k: 64, local: 64, segment: 64, sink_blocks: 1 };
    let cfg = Config::line(32, 64, 2, 3);
    let case = Case::new(shape(2, 2, 1, 333), blocks, cfg, Dtype::F16, 11);
    Int8Case::new(&case, cfg, Dtype::F16).check(&[0.02, 0.001]);
}

#[test]
fn the_int8_program_prints_its_dequantization_and_needs_its_scales() {
    let blocks = SaleBlocks { block_q: 32, block_k: 32, local: 64, segment: 64, sink_blocks: 1 };
    let cfg = Config::line(32, 32, 2, 2);
    let case = Case::new(shape(1, 2, 1, 100), blocks, cfg, Dtype::Bf16, 2);
    let int8 = Int8Case::new(&case, cfg, Dtype::Bf16);
    let text = int8.program.to_string();
    for piece in ["dequantize S = fma(S, q_scale * k_scale[", ", qmk[", "load_rows qk_mean <- qk_mean[", "threshold theta = theta / scale - qk_mean"] {
        assert!(text.contains(piece), "{piece} missing from\n{text}");
    }
    assert_eq!(int8.program.operands, Operands::Int8);
    let n = case.planes() * case.shape.seq_q;
    // Without scales, or with scales of the wrong length, the launch is an error.
    let l = int8.launch();
    let theta = vec![0.0; n];
    assert!(interp::select(&int8.program, &l, &theta).is_err());
    let short = LowBitRows { qmk: &int8.qmk[1..], q_scale: &int8.q_scale, k_scale: &int8.k_scale, qk_mean: &int8.qk_mean };
    assert!(interp::select_low_bit(&int8.program, &l, &theta, short).is_err());
}
