//! The block-sparse visit (`visit = blocks(..)`): the interpreter of its tile program against
//! the float64 reference over the same map of kept blocks, on random maps, ragged lengths,
//! grouped-query attention, empty rows, and the sm_90a wgmma program.

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_codegen::format::BlockLists;
use tessera_codegen::interp::{self, Launch};
use tessera_codegen::reference::{self, BlockGrid, Shape};
use tessera_codegen::semantics::round_to;
use tessera_codegen::{Target, target_program, tile_program};
use tessera_desc::{
    Blocks, Config, Dtype, Estimate, KernelDesc, Layout, Load, Mma, Param, Schedule, Visit,
};

const SPACE: Schedule = Schedule::line(
    Param::Choices(&[16, 32, 64]),
    Param::Choices(&[16, 32, 64]),
    Param::Choices(&[1, 2, 4]),
    Param::Choices(&[1, 2, 3]),
);

fn desc(causal: bool, dtype: Dtype) -> KernelDesc {
    // A local window of 0 tokens is whole tiles of any block_kv, so every config of SPACE is valid.
    let estimate = Estimate {
        local: 0,
        ..Estimate::SALE
    };
    KernelDesc {
        name: "t",
        head_dim: 64,
        dtype,
        layout: Layout::Bhsd,
        visit: Visit::Blocks(Blocks { causal, estimate }),
        load: Load::Dense,
        schedule: SPACE,
    }
}

struct Case {
    shape: Shape,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    kept: Vec<bool>,
    lists: BlockLists,
}

impl Case {
    /// Random inputs and a map keeping each block with probability `density`.
    fn random(seed: u64, shape: Shape, cfg: &Config, density: f64) -> Case {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut fill = |n| {
            (0..n)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect::<Vec<_>>()
        };
        let (q, k, v) = (
            fill(shape.q_len()),
            fill(shape.kv_len()),
            fill(shape.kv_len()),
        );
        let grid = grid(cfg, true);
        let (nq, nk) = grid.blocks(&shape);
        let planes = shape.batch * shape.heads;
        let kept: Vec<bool> = (0..planes * nq * nk)
            .map(|_| rng.random_bool(density))
            .collect();
        let lists = poisoned(BlockLists::from_kept(planes, nq, nk, &kept).unwrap());
        Case {
            shape,
            q,
            k,
            v,
            kept,
            lists,
        }
    }

    fn launch(&self) -> Launch<'_> {
        let scale = 1.0 / (self.shape.head_dim as f32).sqrt();
        Launch { blocks: Some(&self.lists), ..Launch::new(&self.shape, scale, &self.q, &self.k, &self.v) }
    }

    fn reference(&self, cfg: &Config, causal: bool, dtype: Dtype) -> reference::Output {
        // The kernel sees inputs rounded to its element type; so does the reference.
        let r = |x: &[f32]| -> Vec<f64> { x.iter().map(|&v| round_to(dtype, v) as f64).collect() };
        let scale = 1.0 / (self.shape.head_dim as f64).sqrt();
        let (q, k, v) = (r(&self.q), r(&self.k), r(&self.v));
        reference::block_sparse_attention(
            &self.shape,
            &grid(cfg, causal),
            &self.kept,
            scale,
            &q,
            &k,
            &v,
        )
        .unwrap()
    }
}

/// `lists` with every entry past a row's count set to `i32::MIN`: an entry the kernel reads
/// there (a prefetch past the count) is then out of range, which the interpreter reports,
/// instead of a harmless tile 0.
fn poisoned(mut lists: BlockLists) -> BlockLists {
    let n = lists.kv_tiles;
    for (row, &count) in lists.count.iter().enumerate() {
        lists.list[row * n + count as usize..(row + 1) * n].fill(i32::MIN);
    }
    assert!(lists.validate().is_ok(), "tails are never read, so any value validates");
    lists
}

fn grid(cfg: &Config, causal: bool) -> BlockGrid {
    BlockGrid {
        block_q: cfg.block_q() as usize,
        block_k: cfg.block_kv() as usize,
        causal,
    }
}

fn shape(batch: usize, heads: usize, kv_heads: usize, seq_q: usize, seq_kv: usize) -> Shape {
    Shape {
        batch,
        heads,
        kv_heads,
        seq_q,
        seq_kv,
        head_dim: 64,
    }
}

/// Runs the interpreter and compares with the reference; `Err` describes the first mismatch.
fn check(causal: bool, dtype: Dtype, cfg: Config, case: &Case) -> Result<(), String> {
    let program = tile_program(&desc(causal, dtype), &cfg).map_err(|e| e.to_string())?;
    let out = interp::run(&program, &case.launch())?;
    compare(&out, &case.reference(&cfg, causal, dtype), dtype)
        .map_err(|e| format!("causal {causal} {dtype} {cfg} {:?}: {e}", case.shape))
}

fn compare(out: &interp::Output, want: &reference::Output, dtype: Dtype) -> Result<(), String> {
    let o: Vec<f64> = out.o.iter().map(|&x| x as f64).collect();
    let err = reference::rel_error(&o, &want.o);
    let tol = if dtype == Dtype::Bf16 { 1e-2 } else { 2e-3 };
    if err.is_nan() || err >= tol {
        return Err(format!("rel error {err}"));
    }
    for (i, (&got, &want)) in out.lse.iter().zip(&want.lse).enumerate() {
        let ok = if want == f64::NEG_INFINITY {
            got == f32::NEG_INFINITY
        } else {
            (got as f64 - want).abs() < 1e-3
        };
        if !ok {
            return Err(format!("lse[{i}] = {got}, reference {want}"));
        }
    }
    Ok(())
}

#[test]
fn random_maps_on_ragged_lengths_match_the_reference() {
    let cfg = Config::line(32, 16, 2, 2);
    let lengths = [
        (1, 1),
        (17, 17),
        (33, 50),
        (50, 33),
        (64, 64),
        (5, 70),
        (100, 100),
    ];
    for (i, (sq, skv)) in lengths.into_iter().enumerate() {
        for causal in [true, false] {
            let case = Case::random(i as u64, shape(1, 2, 2, sq, skv), &cfg, 0.6);
            check(causal, Dtype::Bf16, cfg, &case).unwrap();
        }
    }
}

#[test]
fn grouped_query_attention_and_f16() {
    let cfg = Config::line(16, 32, 1, 3);
    for (group, dtype) in [(1, Dtype::F16), (4, Dtype::Bf16), (8, Dtype::F16)] {
        let case = Case::random(group as u64, shape(2, 8, 8 / group, 45, 71), &cfg, 0.5);
        check(true, dtype, cfg, &case).unwrap();
    }
}

#[test]
fn empty_rows_give_zero_and_neg_inf_never_nan() {
    let cfg = Config::line(16, 16, 1, 2);
    for (sq, skv) in [(40, 40), (40, 7)] {
        let mut case = Case::random(3, shape(1, 2, 1, sq, skv), &cfg, 0.0);
        assert!(case.lists.count.iter().all(|&n| n == 0));
        check(true, Dtype::Bf16, cfg, &case).unwrap();
        let out = interp::run(
            &tile_program(&desc(true, Dtype::Bf16), &cfg).unwrap(),
            &case.launch(),
        )
        .unwrap();
        assert!(out.o.iter().all(|&x| x == 0.0) && out.lse.iter().all(|&x| x == f32::NEG_INFINITY));
        // A map keeping only blocks above the diagonal: rows see nothing there either.
        let (nq, nk) = grid(&cfg, true).blocks(&case.shape);
        case.kept = (0..2 * nq * nk).map(|i| (i % nk) > (i / nk) % nq).collect();
        case.lists = poisoned(BlockLists::from_kept(2, nq, nk, &case.kept).unwrap());
        check(true, Dtype::Bf16, cfg, &case).unwrap();
    }
}

#[test]
fn every_config_of_the_space_matches_the_reference() {
    let d = desc(true, Dtype::Bf16);
    for (i, cfg) in d.configs().into_iter().enumerate() {
        let case = Case::random(100 + i as u64, shape(1, 1, 1, 37, 45), &cfg, 0.5);
        check(true, Dtype::Bf16, cfg, &case).unwrap();
    }
}

/// A full map is the causal kernel, bit for bit: the lists change which tiles the loop visits,
/// not how it computes them.
#[test]
fn a_full_map_is_the_causal_kernel() {
    let cfg = Config::line(32, 16, 2, 3);
    let mut case = Case::random(5, shape(1, 2, 1, 70, 90), &cfg, 1.0);
    // Only the causally visible tiles, as the causal kernel's loop runs them.
    let (nq, nk) = grid(&cfg, true).blocks(&case.shape);
    let visible = |qt: usize| ((qt + 1) * 32).min(70) + 90 - 70;
    case.kept = (0..2 * nq * nk)
        .map(|i| (i % nk) * 16 < visible((i / nk) % nq))
        .collect();
    case.lists = poisoned(BlockLists::from_kept(2, nq, nk, &case.kept).unwrap());
    let blocks = interp::run(
        &tile_program(&desc(true, Dtype::Bf16), &cfg).unwrap(),
        &case.launch(),
    )
    .unwrap();
    let causal = KernelDesc {
        visit: Visit::Causal,
        ..desc(true, Dtype::Bf16)
    };
    let plain = interp::run(&tile_program(&causal, &cfg).unwrap(), &case.launch()).unwrap();
    assert_eq!(blocks.o, plain.o);
    assert_eq!(blocks.lse, plain.lse);
}

/// The sm_90a wgmma program of every warpgroup config computes the mma.sync program's output.
#[test]
fn wgmma_selection_keeps_the_program_semantics() {
    let d = desc(true, Dtype::Bf16);
    let warpgroups: Vec<Config> = d
        .configs()
        .into_iter()
        .filter(|c| c.warps % 4 == 0)
        .collect();
    assert!(!warpgroups.is_empty());
    for cfg in warpgroups {
        let case = Case::random(21, shape(1, 2, 1, 70, 90), &cfg, 0.5);
        let sync = interp::run(&tile_program(&d, &cfg).unwrap(), &case.launch()).unwrap();
        let wgmma = target_program(&d, &cfg.with_mma(Mma::Wgmma), Target::Sm90a).unwrap();
        assert_eq!(
            interp::run(&wgmma, &case.launch()).unwrap().o,
            sync.o,
            "{cfg}"
        );
    }
}

#[test]
fn launches_without_fitting_lists_are_errors() {
    let cfg = Config::line(16, 16, 1, 2);
    let case = Case::random(9, shape(1, 2, 1, 40, 40), &cfg, 1.0);
    let program = tile_program(&desc(true, Dtype::Bf16), &cfg).unwrap();
    let missing = interp::run(
        &program,
        &Launch {
            blocks: None,
            ..case.launch()
        },
    )
    .err()
    .unwrap();
    assert!(missing.contains("passed none"), "{missing}");
    // Lists made for 32-row query tiles do not fit this program's 16-row tiles.
    let other = Case::random(9, shape(1, 2, 1, 40, 40), &Config::line(32, 16, 2, 2), 0.5);
    let wrong = interp::run(
        &program,
        &Launch {
            blocks: Some(&other.lists),
            ..case.launch()
        },
    )
    .err()
    .unwrap();
    assert!(wrong.contains("query tiles"), "{wrong}");
    let mut descending = case.lists.clone();
    let row = descending.count.iter().position(|&n| n >= 2).unwrap();
    descending.list.swap(row * 3, row * 3 + 1);
    let bad = interp::run(
        &program,
        &Launch {
            blocks: Some(&descending),
            ..case.launch()
        },
    )
    .err()
    .unwrap();
    assert!(bad.contains("ascending"), "{bad}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any map, any lengths (ragged or not, queries longer or shorter than keys), GQA, causal
    /// or not, over configs of the space: the interpreter agrees with the reference.
    #[test]
    fn random_maps_match_the_reference(
        seed in any::<u64>(),
        seq_q in 1usize..90,
        seq_kv in 1usize..90,
        group in prop::sample::select(vec![1usize, 2, 4]),
        density in 0.0f64..=1.0,
        causal in any::<bool>(),
        cfg_index in 0usize..64,
    ) {
        let configs = desc(causal, Dtype::Bf16).configs();
        let cfg = configs[cfg_index % configs.len()];
        let case = Case::random(seed, shape(1, 4, 4 / group, seq_q, seq_kv), &cfg, density);
        prop_assert_eq!(check(causal, Dtype::Bf16, cfg, &case), Ok(()));
    }
}
