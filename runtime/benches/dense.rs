//! Dense attention forward timings on the GPU, one JSON line per (shape, config): median of
//! CUDA-event timings with the L2 flushed, TFLOP/s from 4·B·H·S²·D (halved when causal).
//! Run with the anchors in the same call: `python3 torch_anchors.py dense --seq S [--causal]`.
//! Arguments: sequence lengths (default 1024 4096 16384) and kernel-name filters (substrings;
//! default: every dense-family kernel of the catalog).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_desc::{Dtype, KernelDesc, Visit};
use tessera_runtime::catalog;
use tessera_runtime::gpu::bench::{attention_flops, time};
use tessera_runtime::gpu::{Attention, AttentionArgs, DeviceTensor, Gpu, GpuError};

const HEADS: usize = 32;

fn main() -> Result<(), GpuError> {
    let gpu = match Gpu::open(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no GPU, nothing to time: {e}");
            return Ok(());
        }
    };
    println!("{{\"device\": \"{}\"}}", gpu.name);
    let seqs: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let seqs = if seqs.is_empty() { vec![1024, 4096, 16384] } else { seqs };
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| a.parse::<usize>().is_err()).collect();
    let wanted = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    for &seq in &seqs {
        for visit in [Visit::Dense, Visit::Causal] {
            for dtype in [Dtype::Bf16, Dtype::F16] {
                for d in [64u32, 128] {
                    let desc = catalog::all()
                        .iter()
                        .find(|k| k.visit == visit && k.dtype == dtype && k.head_dim == d)
                        .ok_or_else(|| GpuError::Invalid("catalog kernel missing".into()))?;
                    if wanted(desc.name) {
                        bench_shape(&gpu, desc, seq)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn bench_shape(gpu: &Gpu, desc: &KernelDesc, seq: usize) -> Result<(), GpuError> {
    let d = desc.head_dim as usize;
    let shape = [1, HEADS, seq, d];
    let mut rng = StdRng::seed_from_u64(seq as u64);
    let mut t = || {
        let v: Vec<f32> = (0..shape.iter().product()).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        DeviceTensor::from_f32(gpu, desc.dtype, shape, &v)
    };
    let (q, k, v) = (t()?, t()?, t()?);
    let mut o = DeviceTensor::poisoned(gpu, desc.dtype, shape)?;
    let flops = attention_flops(1, HEADS, seq, seq, d, desc.visit == Visit::Causal);
    let reps = if seq >= 16384 { 10 } else { 30 };
    let mut best: Option<(f64, String)> = None;
    for cfg in desc.configs() {
        let attn = match Attention::load(gpu, desc, &cfg) {
            Ok(a) => a,
            Err(e) => {
                println!("{{\"kernel\": \"{}\", \"config\": \"{cfg}\", \"error\": \"{e}\"}}", desc.name);
                continue;
            }
        };
        let timing = time(gpu, 2, reps, || {
            attn.run(gpu, AttentionArgs { q: &q, k: &k, v: &v, o: &mut o, lse: None, scale: None })
        })?;
        let tflops = flops / timing.median_ms / 1e9;
        println!(
            "{{\"kernel\": \"{}\", \"seq\": {seq}, \"config\": \"{cfg}\", \"ms\": {:.4}, \"tflops\": {tflops:.1}}}",
            desc.name, timing.median_ms
        );
        if best.as_ref().is_none_or(|(b, _)| tflops > *b) {
            best = Some((tflops, cfg.to_string()));
        }
    }
    if let Some((tflops, cfg)) = best {
        println!("BEST {} seq={seq}: {tflops:.1} TFLOP/s at {cfg}", desc.name);
    }
    Ok(())
}
