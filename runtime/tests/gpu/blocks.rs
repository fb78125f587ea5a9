//! The block-sparse kernel (`sale_causal_bf16_d128`) on the GPU against the float64 reference
//! over the same block map: random maps (empty rows included), ragged lengths, GQA, SALE's
//! 64 × 32 tiles and the catalog's default, mma.sync and (on Hopper) wgmma; and the launch's
//! checks of the lists. Without a GPU every test prints why it skipped and passes. A module of
//! the `gpu` test binary (`--test gpu blocks`), so that the GPU bundle carries no extra copy of
//! LLVM.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_codegen::format::BlockLists;
use tessera_codegen::reference::{self, BlockGrid, Shape};
use tessera_codegen::semantics::round_to;
use tessera_desc::{Config, KernelDesc, Mma};
use tessera_runtime::catalog;
use tessera_runtime::gpu::{Attention, AttentionArgs, DeviceBlockLists, DeviceTensor, Gpu};

use crate::common::gpu;

fn sale() -> &'static KernelDesc {
    catalog::find("sale_causal_bf16_d128").expect("the catalog has the block-sparse kernel")
}

struct Inputs {
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    host: [Vec<f64>; 3],
}

fn inputs(gpu: &Gpu, desc: &KernelDesc, shape: &Shape, rng: &mut StdRng) -> Inputs {
    let mut fill = |n: usize| {
        (0..n)
            .map(|_| rng.random_range(-2.0f32..2.0))
            .collect::<Vec<_>>()
    };
    let (q, k, v) = (
        fill(shape.q_len()),
        fill(shape.kv_len()),
        fill(shape.kv_len()),
    );
    let up = |x: &[f32], heads, tokens| {
        DeviceTensor::from_f32(
            gpu,
            desc.dtype,
            [shape.batch, heads, tokens, shape.head_dim],
            x,
        )
        .unwrap()
    };
    let r = |x: &[f32]| {
        x.iter()
            .map(|&v| round_to(desc.dtype, v) as f64)
            .collect::<Vec<_>>()
    };
    Inputs {
        q: up(&q, shape.heads, shape.seq_q),
        k: up(&k, shape.kv_heads, shape.seq_kv),
        v: up(&v, shape.kv_heads, shape.seq_kv),
        host: [r(&q), r(&k), r(&v)],
    }
}

/// One launch on a random map of density `density`; returns the o and lse relative errors.
fn run_case(gpu: &Gpu, cfg: &Config, shape: Shape, density: f64, seed: u64) -> (f64, f64) {
    let desc = sale();
    let mut rng = StdRng::seed_from_u64(seed);
    let x = inputs(gpu, desc, &shape, &mut rng);
    let grid = BlockGrid {
        block_q: cfg.block_q() as usize,
        block_k: cfg.block_kv() as usize,
        causal: true,
    };
    let (nq, nk) = grid.blocks(&shape);
    let planes = shape.batch * shape.heads;
    let kept: Vec<bool> = (0..planes * nq * nk)
        .map(|_| rng.random_bool(density))
        .collect();
    let lists =
        DeviceBlockLists::upload(gpu, &BlockLists::from_kept(planes, nq, nk, &kept).unwrap())
            .unwrap();
    let mut o = DeviceTensor::poisoned(
        gpu,
        desc.dtype,
        [shape.batch, shape.heads, shape.seq_q, shape.head_dim],
    )
    .unwrap();
    let mut lse = gpu
        .stream
        .clone_htod(&vec![f32::NAN; shape.lse_len()])
        .unwrap();
    let attn = Attention::load(gpu, desc, cfg).unwrap();
    let args = AttentionArgs {
        q: &x.q,
        k: &x.k,
        v: &x.v,
        o: &mut o,
        lse: Some(&mut lse),
        scale: None,
        grid: None,
        blocks: Some(&lists),
    };
    attn.run(gpu, args).unwrap();
    gpu.stream.synchronize().unwrap();
    let out: Vec<f64> = o.to_f32(gpu).unwrap().into_iter().map(f64::from).collect();
    let lse: Vec<f64> = gpu
        .stream
        .clone_dtoh(&lse)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let [q, k, v] = &x.host;
    let scale = 1.0 / (shape.head_dim as f64).sqrt();
    let want = reference::block_sparse_attention(&shape, &grid, &kept, scale, q, k, v).unwrap();
    (
        reference::rel_error(&out, &want.o),
        reference::rel_error(&lse, &want.lse),
    )
}

#[test]
fn random_maps_match_the_reference() {
    let Some(gpu) = gpu() else { return };
    let default = sale().default_config().unwrap();
    let sale_tiles = Config::line(64, 32, 4, 2);
    let mut configs = vec![sale_tiles, default];
    if gpu.compute_capability.0 == 9 {
        configs.extend([
            sale_tiles.with_mma(Mma::Wgmma),
            default.with_mma(Mma::Wgmma),
        ]);
    }
    let shapes = [
        Shape {
            batch: 2,
            heads: 8,
            kv_heads: 2,
            seq_q: 1000,
            seq_kv: 1000,
            head_dim: 128,
        },
        Shape {
            batch: 1,
            heads: 4,
            kv_heads: 4,
            seq_q: 333,
            seq_kv: 517,
            head_dim: 128,
        },
        Shape {
            batch: 1,
            heads: 8,
            kv_heads: 1,
            seq_q: 517,
            seq_kv: 333,
            head_dim: 128,
        },
    ];
    for cfg in &configs {
        for (i, shape) in shapes.iter().enumerate() {
            for density in [0.0, 0.2, 1.0] {
                let (o_err, lse_err) = run_case(
                    &gpu,
                    cfg,
                    *shape,
                    density,
                    i as u64 * 7 + (density * 10.0) as u64,
                );
                println!(
                    "{cfg} {shape:?} density {density}: o rel err {o_err:.2e}, lse rel err {lse_err:.2e}"
                );
                assert!(
                    o_err <= 1e-2,
                    "{cfg} {shape:?} density {density}: o rel error {o_err}"
                );
                assert!(
                    lse_err <= 1e-3,
                    "{cfg} {shape:?} density {density}: lse rel error {lse_err}"
                );
            }
        }
    }
}

#[test]
fn launches_check_the_lists() {
    let Some(gpu) = gpu() else { return };
    let desc = sale();
    let cfg = Config::line(64, 32, 4, 2);
    let shape = Shape {
        batch: 1,
        heads: 2,
        kv_heads: 1,
        seq_q: 100,
        seq_kv: 100,
        head_dim: 128,
    };
    let mut rng = StdRng::seed_from_u64(1);
    let x = inputs(&gpu, desc, &shape, &mut rng);
    let mut o = DeviceTensor::poisoned(&gpu, desc.dtype, [1, 2, 100, 128]).unwrap();
    let attn = Attention::load(&gpu, desc, &cfg).unwrap();
    let mut run = |blocks| {
        let args = AttentionArgs {
            q: &x.q,
            k: &x.k,
            v: &x.v,
            o: &mut o,
            lse: None,
            scale: None,
            grid: None,
            blocks,
        };
        attn.run(&gpu, args).unwrap_err().to_string()
    };
    assert!(run(None).contains("give its block lists"));
    // Lists for 128-query tiles: one query tile per plane where the config has two.
    let wrong =
        DeviceBlockLists::upload(&gpu, &BlockLists::from_kept(2, 1, 4, &[true; 8]).unwrap())
            .unwrap();
    assert!(run(Some(&wrong)).contains("query tiles"));
    // Lists that would make the kernel read out of bounds never reach the device.
    let mut descending = BlockLists::from_kept(2, 2, 4, &[true; 16]).unwrap();
    descending.list.swap(0, 1);
    assert!(DeviceBlockLists::upload(&gpu, &descending).is_err());
}
