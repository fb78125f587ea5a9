//! SALE's selection on the GPU (`gpu::SaleSelect`), from exact scores and from the int8
//! estimate, against the host: the forced lists equal `forced_map`'s exactly; the selected lists
//! equal the interpreter's votes under the GPU's own thresholds (and codes) plus the forced
//! tiles (up to votes that f32 accumulation order can flip at the threshold), agree with the
//! float64 selection from the same kind of scores, and, fed to the
//! block-sparse kernel, give attention over exactly the tiles they list. Structured inputs
//! (sinks, local patterns, planted retrievals) so that the selection keeps some middle tiles
//! and skips others; ragged lengths, GQA, a dense head (τ = 0), SALE's tiles and the catalog's.

use tessera_codegen::ir::select::Scores;
use tessera_codegen::format::BlockLists;
use tessera_codegen::format::lowbit::LowBit;
use tessera_codegen::interp::{self, Launch, LowBitRows};
use tessera_codegen::reference::sale::{Estimate, SaleBlocks, forced_map, sale_select};
use tessera_codegen::reference::structured::{alternating_tiles, structured_inputs};
use tessera_codegen::reference::{self, BlockGrid, Shape};
use tessera_codegen::select_program;
use tessera_codegen::semantics::round_to;
use tessera_desc::{Config, Mma};
use tessera_runtime::catalog;
use tessera_runtime::gpu::{Attention, AttentionArgs, DeviceTensor, Gpu, SaleSelect, SelectArgs};

use crate::common::gpu;

const TAUS: [f64; 4] = [0.004, 0.02, 0.0, 0.001];

fn check(gpu: &Gpu, cfg: &Config, shape: Shape, seed: u64, scores: Scores) {
    let desc = catalog::find("sale_causal_bf16_d128").expect("the catalog has the block-sparse kernel");
    let at = format!("{scores:?} {cfg} {shape:?}");
    let x = structured_inputs(&shape, seed).unwrap();
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    let (q, k, v) = (f32s(&x.q), f32s(&x.k), f32s(&x.v));
    let dims = |heads| [shape.batch, heads, shape.seq_q, shape.head_dim];
    let up = |x: &[f32], heads| DeviceTensor::from_f32(gpu, desc.dtype, dims(heads), x).unwrap();
    let (qd, kd, vd) = (up(&q, shape.heads), up(&k, shape.kv_heads), up(&v, shape.kv_heads));
    let tau: Vec<f64> = (0..shape.heads).map(|h| TAUS[h % TAUS.len()]).collect();

    let select = SaleSelect::load(gpu, desc, cfg, 128, scores).unwrap();
    let blocks: SaleBlocks = *select.blocks();
    let mut ws = select.workspace(gpu, qd.shape, shape.kv_heads).unwrap();
    select.select(gpu, &mut ws, SelectArgs { q: &qd, k: &kd, v: &vd, tau: &tau, scale: None }).unwrap();
    gpu.stream.synchronize().unwrap();
    let (forced, lists) = (ws.forced().download(gpu).unwrap(), ws.lists().download(gpu).unwrap());
    forced.validate().unwrap();
    lists.validate().unwrap();
    let planes = shape.batch * shape.heads;
    let forced_want = forced_map(&blocks, planes, shape.seq_q);
    assert_eq!(forced.kept(), forced_want, "{at}: forced lists");

    // The host's lists from the interpreter's votes under the GPU's thresholds (and codes).
    let program = select_program(desc, &Config { mma: Mma::Sync, ..*cfg }, scores).unwrap();
    let theta = ws.theta(gpu).unwrap();
    let quantized = ws.quantized().map(|x| x.download(gpu).unwrap());
    let codes = |c: &[i8]| c.iter().map(|&v| v as f32).collect::<Vec<_>>();
    let (q_in, k_in) = match &quantized {
        Some(x) => (codes(&x.q8), codes(&x.k8)),
        None => (q.clone(), k.clone()),
    };
    let launch = Launch::new(&shape, 1.0 / (shape.head_dim as f32).sqrt(), &q_in, &k_in, &k_in);
    let votes = match &quantized {
        Some(x) => {
            let rows = LowBitRows { q_scale: &x.q_scale, k_scale: &x.k_scale, qmk: &x.qmk, qk_mean: &x.qk_mean };
            interp::select_low_bit(&program, &launch, &theta, rows).unwrap()
        }
        None => interp::select(&program, &launch, &theta).unwrap(),
    };
    let host: Vec<bool> = forced_want.iter().zip(&votes).map(|(&f, &v)| f || v == 1).collect();
    let got = lists.kept();
    assert!(forced_want.iter().zip(&got).all(|(&f, &g)| !f || g), "{at}: a forced tile is missing");
    let differ = host.iter().zip(&got).filter(|(a, b)| a != b).count();
    let kept = got.iter().filter(|&&g| g).count();
    println!("{at}: kept {kept} tiles, {} forced; {differ} differ from the interpreter's votes", forced_want.iter().filter(|&&f| f).count());
    assert!(differ <= 2.max(got.len() / 100), "{at}: {differ} tiles differ from the interpreter's selection");
    // A dense head keeps every visible tile.
    let (nq, nk) = (shape.seq_q.div_ceil(blocks.block_q), shape.seq_q.div_ceil(blocks.block_k));
    for plane in (0..planes).filter(|p| tau[p % shape.heads] == 0.0) {
        for qb in 0..nq {
            let visible = ((qb + 1) * blocks.block_q).min(shape.seq_q).div_ceil(blocks.block_k);
            assert_eq!(lists.count[plane * nq + qb] as usize, visible, "{at}: dense plane {plane}, query tile {qb}");
        }
    }

    // The float64 selection from the same kind of scores, on the values the GPU reads.
    let r = |x: &[f32]| x.iter().map(|&v| round_to(desc.dtype, v) as f64).collect::<Vec<_>>();
    let (q64, k64, v64) = (r(&q), r(&k), r(&v));
    let scale = 1.0 / (shape.head_dim as f64).sqrt();
    let estimate = match scores {
        Scores::Exact => Estimate::Exact,
        Scores::Int8 => Estimate::LowBit(LowBit::Int8),
    };
    let want = sale_select(&shape, &blocks, &tau, estimate, scale, &q64, &k64).unwrap();
    let agree = want.iter().zip(&got).filter(|(a, b)| a == b).count() as f64 / want.len() as f64;
    println!("{at}: {:.2}% of tiles agree with the float64 selection", 100.0 * agree);
    assert!(agree >= 0.97, "{at}: only {agree} of the tiles agree with the float64 selection");

    // The block-sparse kernel over the selected lists attends over exactly those tiles.
    let attn = Attention::load(gpu, desc, cfg).unwrap();
    let mut o = DeviceTensor::poisoned(gpu, desc.dtype, dims(shape.heads)).unwrap();
    attn.run(gpu, AttentionArgs { q: &qd, k: &kd, v: &vd, o: &mut o, lse: None, scale: None, grid: None, blocks: Some(ws.lists()) }).unwrap();
    let out: Vec<f64> = o.to_f32(gpu).unwrap().into_iter().map(f64::from).collect();
    let grid = BlockGrid { block_q: blocks.block_q, block_k: blocks.block_k, causal: true };
    let want = reference::block_sparse_attention(&shape, &grid, &got, scale, &q64, &k64, &v64).unwrap();
    let err = reference::rel_error(&out, &want.o);
    assert!(err <= 1e-2, "{at}: o rel error {err} over the selected tiles");
    assert_eq!(BlockLists::from_kept(planes, nq, nk, &got).unwrap(), lists, "{at}: lists are the kept map's");
}

/// SALE's tiles and the catalog's; on Hopper the selections of the kernel's wgmma twins, which
/// run on wgmma too.
fn configs(gpu: &Gpu) -> Vec<Config> {
    let desc = catalog::find("sale_causal_bf16_d128").unwrap();
    let mut configs = vec![Config::line(64, 32, 4, 2), desc.default_config().unwrap()];
    if gpu.compute_capability.0 == 9 {
        configs.extend([Config::line(64, 32, 4, 2).with_mma(Mma::Wgmma), desc.default_config().unwrap().with_mma(Mma::Wgmma)]);
    }
    configs
}

/// On tiles that alternate between kept and dropped (`alternating_tiles`, whose scores sit
/// units away from every threshold) the GPU's lists are exactly the forced tiles and the
/// visible even ones, from exact scores and from the int8 estimate: no tolerance for a vote
/// stored for the wrong tile or a stale one.
#[test]
fn gpu_selection_follows_tiles_that_alternate() {
    let Some(gpu) = gpu() else { return };
    let desc = catalog::find("sale_causal_bf16_d128").unwrap();
    let shape = Shape { batch: 2, heads: 4, kv_heads: 2, seq_q: 700, seq_kv: 700, head_dim: 128 };
    let tau = [1e-3, 1e-2, 1e-4, 1e-3];
    for (cfg, scores) in configs(&gpu).into_iter().flat_map(|c| [(c, Scores::Exact), (c, Scores::Int8)]) {
        let select = SaleSelect::load(&gpu, desc, &cfg, 128, scores).unwrap();
        let blocks: SaleBlocks = *select.blocks();
        let x = alternating_tiles(&shape, blocks.block_k).unwrap();
        let up = |v: &[f64], heads| {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            DeviceTensor::from_f32(&gpu, desc.dtype, [shape.batch, heads, shape.seq_q, shape.head_dim], &v).unwrap()
        };
        let (q, k) = (up(&x.q, shape.heads), up(&x.k, shape.kv_heads));
        let mut ws = select.workspace(&gpu, q.shape, shape.kv_heads).unwrap();
        select.select(&gpu, &mut ws, SelectArgs { q: &q, k: &k, v: &k, tau: &tau, scale: None }).unwrap();
        gpu.stream.synchronize().unwrap();
        let got = ws.lists().download(&gpu).unwrap().kept();
        let (nq, nk) = (shape.seq_q.div_ceil(blocks.block_q), shape.seq_kv.div_ceil(blocks.block_k));
        let forced = forced_map(&blocks, shape.batch * shape.heads, shape.seq_q);
        let want: Vec<bool> = forced
            .iter()
            .enumerate()
            .map(|(i, &f)| {
                let (qb, kb) = ((i / nk) % nq, i % nk);
                let visible = kb < ((qb + 1) * blocks.block_q).min(shape.seq_q).div_ceil(blocks.block_k);
                f || (visible && kb % 2 == 0)
            })
            .collect();
        let differ = want.iter().zip(&got).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{scores:?} {cfg}: {differ} tiles differ from the alternating map");
    }
}

#[test]
fn gpu_selection_matches_the_host() {
    let Some(gpu) = gpu() else { return };
    let seed = crate::run_seed();
    let shape = |batch, heads, kv_heads, seq| Shape { batch, heads, kv_heads, seq_q: seq, seq_kv: seq, head_dim: 128 };
    for cfg in configs(&gpu) {
        for (i, s) in [shape(1, 4, 2, 700), shape(2, 2, 1, 130), shape(1, 4, 4, 9)].into_iter().enumerate() {
            for scores in [Scores::Exact, Scores::Int8] {
                check(&gpu, &cfg, s, seed.wrapping_add(i as u64), scores);
            }
        }
    }
}

#[test]
fn bad_selection_arguments_are_errors() {
    let Some(gpu) = gpu() else { return };
    let desc = catalog::find("sale_causal_bf16_d128").unwrap();
    let cfg = Config::line(64, 32, 4, 2);
    assert!(SaleSelect::load(&gpu, desc, &cfg, 100, Scores::Exact).is_err(), "a segment of partial tiles");
    let dense = catalog::find("dense_bf16_d128").unwrap();
    assert!(SaleSelect::load(&gpu, dense, &dense.default_config().unwrap(), 128, Scores::Exact).is_err(), "not block-sparse");
    let select = SaleSelect::load(&gpu, desc, &cfg, 128, Scores::Int8).unwrap();
    let t = |heads, seq| DeviceTensor::from_f32(&gpu, desc.dtype, [1, heads, seq, 128], &vec![0.5; heads * seq * 128]).unwrap();
    let (q, k) = (t(2, 100), t(1, 100));
    let mut ws = select.workspace(&gpu, q.shape, 1).unwrap();
    let mut run = |q: &DeviceTensor, k: &DeviceTensor, tau: &[f64]| select.select(&gpu, &mut ws, SelectArgs { q, k, v: k, tau, scale: None });
    assert!(run(&q, &k, &[0.01]).is_err(), "one threshold for two heads");
    assert!(run(&q, &k, &[0.01, f64::NAN]).is_err(), "a NaN threshold");
    assert!(run(&q, &k, &[0.01, -1.0]).is_err(), "a negative threshold");
    assert!(run(&t(2, 99), &k, &[0.01, 0.01]).is_err(), "q of another shape than the workspace's");
    assert!(run(&q, &t(1, 99), &[0.01, 0.01]).is_err(), "k of another length");
    assert!(run(&q, &k, &[0.01, 0.01]).is_ok());
    // A workspace of an int8 selection does not serve an exact one (its buffers would be the
    // wrong arguments), nor one of other tiles.
    let exact = SaleSelect::load(&gpu, desc, &cfg, 128, Scores::Exact).unwrap();
    let args = SelectArgs { q: &q, k: &k, v: &k, tau: &[0.01, 0.01], scale: None };
    assert!(exact.select(&gpu, &mut ws, args).is_err(), "an int8 workspace for an exact selection");
    // Before any selection the workspace's lists are the forced ones.
    let fresh = exact.workspace(&gpu, q.shape, 1).unwrap();
    assert_eq!(fresh.lists().download(&gpu).unwrap(), fresh.forced().download(&gpu).unwrap());
}

/// `tessera calibrate sale --gpu` against the CPU path on the same structured prompt, exact
/// scores: each head's threshold within one halving of the float64 calibration's (the GPU's
/// bf16 outputs and f32 scores may decide a borderline step the other way), both of the form
/// 0.008 / 2^k or 0.
#[test]
fn gpu_calibration_agrees_with_the_cpu() {
    use clap::Parser;
    let Some(_gpu) = gpu() else { return };
    let taus = |extra: &[&str]| -> Vec<f64> {
        let mut args = vec!["tessera", "calibrate", "sale", "--structured", "--seq", "700", "--heads", "4", "--kv-heads", "2", "--head-dim", "128", "--estimate", "exact", "--theta", "0.3"];
        args.extend(extra);
        let mut out = Vec::new();
        tessera_runtime::cli::run(tessera_runtime::cli::Cli::try_parse_from(args).unwrap(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        println!("{text}");
        let last = text.lines().last().unwrap();
        last.split_whitespace().skip(4).take(4).map(|t| t.parse().unwrap()).collect()
    };
    let (cpu, on_gpu) = (taus(&[]), taus(&["--gpu"]));
    for (c, g) in cpu.iter().zip(&on_gpu) {
        let near = c == g || (*c > 0.0 && *g > 0.0 && (c / g == 2.0 || g / c == 2.0)) || (c.max(*g) <= 2e-4);
        assert!(near, "thresholds {cpu:?} (CPU) vs {on_gpu:?} (GPU)");
    }
}
