//! Dense attention forward timings on the GPU, one JSON line per (shape, config): median of
//! CUDA-event timings with the L2 flushed, TFLOP/s from 4·B·H·S²·D (halved when causal).
//! Run with the anchors in the same call: `python3 torch_anchors.py dense --seq S [--causal]`.
//! Arguments: sequence lengths (default 1024 4096 16384) and kernel-name filters (substrings;
//! default: every dense-family kernel of the catalog). `tessera bench` times the same way.

use tessera_desc::{Dtype, Visit};
use tessera_runtime::catalog;
use tessera_runtime::gpu::bench::{BenchShape, bench_attention, default_reps, json_string};
use tessera_runtime::gpu::{Gpu, GpuError};

const HEADS: usize = 32;

fn main() -> Result<(), GpuError> {
    let gpu = match Gpu::open(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no GPU, nothing to time: {e}");
            return Ok(());
        }
    };
    println!("{{\"device\": {}}}", json_string(&gpu.name));
    let seqs: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seqs = if seqs.is_empty() {
        vec![1024, 4096, 16384]
    } else {
        seqs
    };
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a.parse::<usize>().is_err())
        .collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    for &seq in &seqs {
        for visit in [Visit::Dense, Visit::Causal] {
            for dtype in [Dtype::Bf16, Dtype::F16] {
                for d in [64u32, 128] {
                    let desc = catalog::all()
                        .iter()
                        .find(|k| k.visit == visit && k.dtype == dtype && k.head_dim == d)
                        .ok_or_else(|| GpuError::Invalid("catalog kernel missing".into()))?;
                    if !wanted(desc.name) {
                        continue;
                    }
                    let shape = BenchShape {
                        batch: 1,
                        heads: HEADS,
                        seq,
                    };
                    let measured =
                        bench_attention(&gpu, desc, &desc.configs(), shape, 2, default_reps(seq))?;
                    for m in &measured {
                        println!("{}", m.json());
                    }
                    let best = measured
                        .iter()
                        .filter_map(|m| Some((m.tflops()?, m)))
                        .max_by(|a, b| a.0.total_cmp(&b.0));
                    if let Some((tflops, m)) = best {
                        println!(
                            "BEST {} seq={seq}: {tflops:.1} TFLOP/s at {}",
                            desc.name, m.config
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
