//! The autotuner on the Mustafar decode kernels: a sweep over a compressed cache passes the
//! float64 decode reference for every config it does not prune, prunes the one-warp 64-row
//! configs (register fragments) and, for a GQA group of 32, the 16-row ones; a second sweep
//! of the key times nothing; a context in the same bucket shares it, another batch × kv_heads
//! bucket does not; the launch API loads the stored winner and it decodes. A module of the
//! `gpu_tune` test binary (`--test gpu_tune decode`), so that the GPU bundle carries no extra
//! copy of LLVM. Without a GPU every test prints why it skipped and passes.

use tessera_codegen::format::MustafarCache;
use tessera_desc::KernelDesc;
use tessera_runtime::gpu::{DecodeArgs, DeviceMustafarCache, DeviceTensor, Gpu, MustafarDecode};
use tessera_runtime::tune::{self, DECODE_POLICY, Options, Outcome, Policy, Problem, Source};

use super::{kernel, temp_store};
use crate::common::gpu;

/// Outcomes of the configs with `block_q` rows over `warps` warps.
fn outcomes(entry: &tune::Entry, block_q: u32, warps: u32) -> Vec<&Outcome> {
    let desc = kernel("mustafar_bf16_d128");
    entry
        .records
        .iter()
        .filter(|(c, _)| desc.parse_config(c).is_ok_and(|c| (c.block_q(), c.warps) == (block_q, warps)))
        .map(|(_, r)| &r.outcome)
        .collect()
}

#[test]
fn a_decode_sweep_finds_a_winner_that_launches_use() {
    let Some(gpu) = gpu() else { return };
    let desc = kernel("mustafar_bf16_d128");
    let (_dir, store) = temp_store();
    // Llama-3-8B's heads at batch 1 over 4096 tokens plus a ragged window.
    let problem = Problem::decode(1, 32, 8, 4196);
    let first = tune::sweep(&gpu, desc, &problem, &store, &Options::default(), &|_| {}).expect("the sweep runs");
    let c = first.counts;
    println!("{problem}: {} configs, {c:?}, {:.1} s", first.ran, first.wall.as_secs_f64());
    assert!(first.gpu_errors.is_empty(), "{:?}", first.gpu_errors);
    assert_eq!(first.ran, desc.configs().len());
    assert_eq!(c.rejected, 0, "{:#?}", first.entry.records);
    assert!(c.timed >= 1 && c.untried == 0, "{c:?}");
    let spillers = outcomes(&first.entry, 64, 1);
    assert_eq!(spillers.len(), 3);
    assert!(spillers.iter().all(|o| matches!(o, Outcome::Pruned { .. })), "{spillers:?}");
    assert_eq!(first.entry.key.bucket.planes, Some(8));
    let (winner, ms) = first.entry.winner(|_| true).expect("a winner");
    println!("winner {winner}: {ms:.4} ms");

    let again = tune::sweep(&gpu, desc, &problem, &store, &Options::default(), &|_| {}).expect("the sweep runs");
    assert_eq!((again.ran, &again.id), (0, &first.id));
    // Batch 2 over 4 KV heads: the same planes, GQA group and context bucket.
    let same_bucket = Problem::decode(2, 16, 4, 8000);
    let shared = tune::choose(&gpu, desc, &same_bucket, Policy::Cached, &store).expect("a choice");
    assert_eq!((shared.source, shared.config.to_string(), &shared.key), (Source::Cached, winner.to_string(), &first.id));
    let other = tune::choose(&gpu, desc, &Problem::decode(16, 32, 8, 4196), Policy::Cached, &store).expect("a choice");
    assert_eq!((other.source, other.config), (Source::Default, desc.default_config().unwrap()));

    // The stored winner decodes (the user's store, as launches read it: whatever it holds).
    let mut decode = MustafarDecode::for_problem(&gpu, desc, &problem, Policy::Cached).expect("loads");
    assert!(desc.check_config(&decode.config).is_ok());
    assert!(decodes(&gpu, desc, &mut decode, &problem));
}

#[test]
fn a_wide_gqa_group_prunes_the_small_query_tiles() {
    let Some(gpu) = gpu() else { return };
    let desc = kernel("mustafar_f16_d128");
    let (_dir, store) = temp_store();
    let problem = Problem::decode(1, 32, 1, 2048);
    let s = tune::sweep(&gpu, desc, &problem, &store, &Options::default(), &|_| {}).expect("the sweep runs");
    println!("{problem}: {:?}", s.counts);
    assert!(s.gpu_errors.is_empty(), "{:?}", s.gpu_errors);
    assert_eq!(s.counts.rejected, 0, "{:#?}", s.entry.records);
    let small = outcomes(&s.entry, 16, 1);
    assert_eq!(small.len(), 3);
    assert!(
        small.iter().all(|o| matches!(o, Outcome::Pruned { reason } if reason.contains("cannot hold the 32 query heads"))),
        "{small:?}"
    );
    let (winner, _) = s.entry.winner(|_| true).expect("a winner");
    assert!(winner.starts_with("block_q=64"), "{winner}");
}

/// One decode step of `problem` over a random cache: every output finite.
fn decodes(gpu: &Gpu, desc: &KernelDesc, decode: &mut MustafarDecode, problem: &Problem) -> bool {
    let d = desc.head_dim as usize;
    let planes = problem.batch * problem.kv_heads;
    let n = planes * problem.seq_kv * d;
    let bits: Vec<u16> = (0..n).map(|i| tessera_codegen::format::from_f32(desc.dtype, ((i * 7919) % 401) as f32 / 100.0 - 2.0)).collect();
    let mut cache = MustafarCache::new(desc.dtype, planes, d, DECODE_POLICY).expect("a policy");
    cache.push(&bits, &bits, problem.seq_kv).expect("compresses");
    let dev = DeviceMustafarCache::upload(gpu, &cache, problem.batch, problem.kv_heads).expect("uploads");
    let q = DeviceTensor::from_f32(gpu, desc.dtype, problem.q_dims(d), &vec![0.5; problem.batch * problem.heads * d]).expect("uploads");
    let mut o = DeviceTensor::poisoned(gpu, desc.dtype, problem.q_dims(d)).expect("allocates");
    let args = DecodeArgs { q: &q, cache: &dev, o: &mut o, lse: None, scale: None, splits: None };
    decode.run(gpu, args).expect("launches");
    gpu.stream.synchronize().expect("runs");
    o.to_f32(gpu).expect("downloads").iter().all(|x| x.is_finite())
}
