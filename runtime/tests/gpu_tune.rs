//! The autotuner on a real GPU: a sweep finds a winner that passes the reference check, a
//! second sweep of the same key times nothing, a budget leaves a partial entry that the next
//! sweep completes, and the launch API picks the stored winner. Each test has its own store in
//! a temporary directory. Without a GPU every test prints why it skipped and passes.

mod common;

use std::time::Duration;

use tessera_desc::KernelDesc;
use common::gpu;
use tessera_runtime::catalog;
use tessera_runtime::gpu::Attention;
use tessera_runtime::tune::{self, Options, Outcome, Policy, Problem, Source, Store};


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
    assert_eq!(first.ran, desc.configs().len());
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
