//! The autotuner on a real GPU: a sweep finds a winner that passes the reference check, a
//! second sweep of the same key times nothing, a budget leaves a partial entry that the next
//! sweep completes, the launch API picks the stored winner, and a window over a 2-D grid is
//! tuned for that grid; the Mustafar decode kernels are tuned over a compressed cache
//! (`gpu_tune/decode.rs`). Each test has its own store in a temporary directory. Without a GPU
//! every test prints why it skipped and passes.

// The DSL expands to `::tessera::...` paths; the description crate plays that role here.
extern crate tessera_desc as tessera;

mod common;
#[path = "gpu_tune/decode.rs"]
mod decode;

use std::time::Duration;

use common::gpu;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_desc::{Kernel, KernelDesc};
use tessera_runtime::catalog;
use tessera_runtime::gpu::{Attention, AttentionArgs, DeviceTensor};
use tessera_runtime::tune::{
    self, DeviceInfo, KeyInfo, Options, Outcome, Policy, Problem, Source, Store,
};

fn kernel(name: &str) -> &'static KernelDesc {
    catalog::find(name).expect("a catalog kernel")
}

/// Small enough that a sweep is mostly codegen and JIT.
fn problem() -> Problem {
    "1,8,2,1000,1000".parse().expect("a valid shape")
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::at(dir.path().join("tune.json"));
    (dir, store)
}

#[test]
fn a_sweep_finds_a_winner_and_a_second_one_times_nothing() {
    let Some(gpu) = gpu() else { return };
    let desc = kernel("dense_bf16_d64");
    let (_dir, store) = temp_store();
    let first = tune::sweep(&gpu, desc, &problem(), &store, &Options::default(), &|_| {})
        .expect("the sweep runs");
    let c = first.counts;
    println!(
        "first sweep: {} configs, {c:?}, {:.1} s (codegen {:.1} s, loading {:.1} s)",
        first.ran,
        first.wall.as_secs_f64(),
        first.codegen.as_secs_f64(),
        first.load_time.as_secs_f64()
    );
    assert!(first.gpu_errors.is_empty(), "{:?}", first.gpu_errors);
    assert!(first.store_error.is_none());
    assert_eq!(first.ran, tessera_runtime::tune::space::space(desc, gpu.target().unwrap()).len());
    assert_eq!(c.pruned + c.on_gpu() + c.untried, first.ran);
    assert!(c.timed >= 1 && c.untried == 0, "{c:?}");
    // Every catalog config computes the right answer (tests/gpu.rs checks each one too).
    assert_eq!(c.rejected, 0, "{:#?}", first.entry.records);
    let (winner, ms) = first.entry.winner(|_| true).expect("a winner");
    assert!(ms > 0.0);
    let eliminated_all_slower = first.entry.records.values().all(|r| match r.outcome {
        Outcome::Eliminated {
            quick_ms,
            best_quick_ms,
            ..
        } => quick_ms > 1.5 * best_quick_ms,
        _ => true,
    });
    assert!(eliminated_all_slower);

    let second = tune::sweep(&gpu, desc, &problem(), &store, &Options::default(), &|_| {})
        .expect("the sweep runs");
    assert_eq!(second.ran, 0);
    assert_eq!(second.counts.on_gpu(), 0);
    assert_eq!(second.entry.winner(|_| true), Some((winner, ms)));
    assert_eq!(second.id, first.id);

    // A length in the same bucket is answered by the same entry.
    let same_bucket: Problem = "1,8,2,600,1024".parse().expect("a valid shape");
    let third = tune::sweep(
        &gpu,
        desc,
        &same_bucket,
        &store,
        &Options::default(),
        &|_| {},
    )
    .expect("the sweep runs");
    assert_eq!((third.ran, &third.id), (0, &first.id));
}

#[test]
fn a_budget_leaves_a_partial_entry_that_the_next_sweep_completes() {
    let Some(gpu) = gpu() else { return };
    let desc = kernel("causal_bf16_d64");
    let (_dir, store) = temp_store();
    let rushed = Options {
        budget: Some(Duration::from_nanos(1)),
        ..Options::default()
    };
    let partial =
        tune::sweep(&gpu, desc, &problem(), &store, &rushed, &|_| {}).expect("the sweep runs");
    assert!(partial.stopped_by_budget);
    // The budget never stops a sweep before it has something to go on.
    assert_eq!(partial.counts.on_gpu(), 1, "{:?}", partial.counts);
    assert!(partial.entry.winner(|_| true).is_some());
    let untried = partial.entry.untried().len();
    assert_eq!(untried, partial.counts.untried);
    assert!(untried > 0);

    let rest = tune::sweep(&gpu, desc, &problem(), &store, &Options::default(), &|_| {})
        .expect("the sweep runs");
    assert_eq!(rest.ran, untried);
    assert!(rest.entry.untried().is_empty());
}

#[test]
fn every_gpu_of_the_host_can_share_a_sweep() {
    let Some(gpu) = gpu() else { return };
    let desc = kernel("dense_f16_d64");
    let (_dir, store) = temp_store();
    let options = Options {
        all_gpus: true,
        ..Options::default()
    };
    let s = tune::sweep(&gpu, desc, &problem(), &store, &options, &|_| {}).expect("the sweep runs");
    println!(
        "{} GPU(s): {:?} in {:.1} s",
        s.gpus,
        s.counts,
        s.wall.as_secs_f64()
    );
    assert!(s.gpus >= 1);
    assert!(s.gpu_errors.is_empty(), "{:?}", s.gpu_errors);
    assert_eq!(s.counts.untried, 0);
    assert!(s.entry.winner(|_| true).is_some());
}

#[test]
fn launches_use_the_stored_winner_or_the_default() {
    let Some(gpu) = gpu() else { return };
    let desc = kernel("dense_bf16_d128");
    let (_dir, store) = temp_store();
    let default = desc.default_config().expect("a default config");

    let cold = tune::choose(&gpu, desc, &problem(), Policy::Cached, &store).expect("a choice");
    assert_eq!((cold.config, cold.source), (default, Source::Default));
    let tuned = tune::choose(&gpu, desc, &problem(), Policy::TuneOnMiss, &store).expect("a choice");
    assert_eq!(tuned.source, Source::Tuned);
    let cached =
        tune::choose(&gpu, desc, &problem(), Policy::TuneOnMiss, &store).expect("a choice");
    assert_eq!(
        (cached.config, cached.source),
        (tuned.config, Source::Cached)
    );
    let entries = store.load().expect("the store reads");
    let (winner, _) = entries.0[&cached.key].winner(|_| true).expect("a winner");
    assert_eq!(winner, tuned.config.to_string());

    // The launch API: loads whatever the user's store says (never tunes with `Cached`).
    let attn = Attention::for_problem(&gpu, desc, &problem(), Policy::Cached).expect("loads");
    assert!(desc.check_config(&attn.config).is_ok());
}

/// A 2-D window small enough that its sweep is mostly codegen and JIT: 8 configs.
#[tessera_dsl::attention(
    name = "na2d_w5x7_d1x2_tune_test",
    head_dim = 64,
    dtype = bf16,
    visit = window(size = [5, 7], dilation = [1, 2]),
    tile = (q = ([16, 8], 8), kv = (8, [4, 8])),
    tune = (warps = 4, stages = [1, 2]),
)]
struct Na2dTiny;

#[test]
fn a_window_over_a_grid_is_tuned_for_its_grid() {
    let Some(gpu) = gpu() else { return };
    let desc = &Na2dTiny::DESC;
    let (_dir, store) = temp_store();
    let problem: Problem = "1,4,2,37x29".parse().expect("a valid shape");
    let first = tune::sweep(&gpu, desc, &problem, &store, &Options::default(), &|_| {})
        .expect("the sweep runs");
    println!(
        "{problem}: {:?} in {:.1} s",
        first.counts,
        first.wall.as_secs_f64()
    );
    assert!(first.gpu_errors.is_empty(), "{:?}", first.gpu_errors);
    assert_eq!(first.ran, tessera_runtime::tune::space::space(desc, gpu.target().unwrap()).len());
    // Every config computes the right answer on the ragged check grid.
    assert_eq!(first.counts.rejected, 0, "{:#?}", first.entry.records);
    assert!(
        first.counts.timed >= 1 && first.counts.untried == 0,
        "{:?}",
        first.counts
    );
    assert_eq!(first.entry.key.bucket.grid, problem.grid);
    let again = tune::sweep(&gpu, desc, &problem, &store, &Options::default(), &|_| {})
        .expect("the sweep runs");
    assert_eq!((again.ran, &again.id), (0, &first.id));
    // The same tokens on another grid are another key.
    let device = DeviceInfo::of(&gpu).expect("the driver's version");
    let transposed: Problem = "1,4,2,29x37".parse().expect("a valid shape");
    assert_ne!(KeyInfo::new(desc, &transposed, &device).id(), first.id);

    // The launch API: the stored winner, launched over the problem's grid.
    let choice = tune::choose(&gpu, desc, &problem, Policy::Cached, &store).expect("a choice");
    let (winner, _) = first.entry.winner(|_| true).expect("a winner");
    assert_eq!(
        (choice.source, choice.config.to_string()),
        (Source::Cached, winner.to_string())
    );
    let attn = Attention::for_problem(&gpu, desc, &problem, Policy::Cached).expect("loads");
    let d = desc.head_dim as usize;
    let mut rng = StdRng::seed_from_u64(1);
    let mut tensor = |dims: [usize; 4]| {
        let values: Vec<f32> = (0..dims.iter().product())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        DeviceTensor::from_f32(&gpu, desc.dtype, dims, &values).expect("uploads")
    };
    let (q, k, v) = (
        tensor(problem.q_dims(d)),
        tensor(problem.kv_dims(d)),
        tensor(problem.kv_dims(d)),
    );
    let mut o = DeviceTensor::poisoned(&gpu, desc.dtype, problem.q_dims(d)).expect("allocates");
    let args = AttentionArgs {
        q: &q,
        k: &k,
        v: &v,
        o: &mut o,
        lse: None,
        scale: None,
        grid: problem.grid_arg(),
        blocks: None,
    };
    attn.run(&gpu, args).expect("launches over the grid");
    gpu.stream.synchronize().expect("runs");
    assert!(
        o.to_f32(&gpu)
            .expect("downloads")
            .iter()
            .all(|x| x.is_finite())
    );
}
