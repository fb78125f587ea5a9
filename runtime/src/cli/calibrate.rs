//! `tessera calibrate sale`: SALE's per-head thresholds (seeds.md §2.4): from τ = 0.008, halve a
//! head's τ while the sum of |O_sparse − O_dense| over its output is not below θ · seq; at
//! τ ≤ 1e-4 the head runs dense (τ = 0). The sparse and dense outputs are the float64 references
//! (`reference::sale`) on the CPU, one head at a time (practical for prompts of a few thousand
//! tokens), or with `--gpu` SALE's GPU selection and kernels, all heads at once
//! (`calibrate_gpu`). Inputs are `q`, `k`, `v` from a safetensors file, or structured
//! long-context inputs (`--structured`).

use std::io::Write;
use std::path::PathBuf;

use tessera_codegen::reference::sale::{Estimate, SALE_BLOCKS, SaleBlocks, calibrate, calibration_error, sale_prefill};
use tessera_codegen::reference::structured::structured_inputs;
use tessera_codegen::reference::{Mask, Shape, attention};

use super::table::Table;
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The method (only `sale`).
    #[arg(value_parser = ["sale"])]
    method: String,
    /// safetensors file with `q`, `k`, `v` [batch, heads, tokens, head_dim] (bf16, f16 or f32):
    /// a calibration prompt. Without it, --structured inputs.
    #[arg(long, value_name = "FILE", conflicts_with = "structured")]
    inputs: Option<PathBuf>,
    /// Structured long-context inputs (local patterns, a sink, planted retrievals) of --seq
    /// tokens, --heads query heads over --kv-heads, --head-dim.
    #[arg(long)]
    structured: bool,
    #[command(flatten)]
    problem: super::sale_estimates::Structured,
    /// SALE's error knob θ: a head's error must fall below θ · seq (the authors' default 0.4).
    #[arg(long, default_value_t = 0.4)]
    theta: f64,
    /// The estimate that selects blocks: exact, int4, int8 or e4m3.
    #[arg(long, default_value = "int8", value_parser = super::sale::parse_estimate)]
    estimate: Estimate,
    /// Queries per block (SALE: 64).
    #[arg(long, default_value_t = SALE_BLOCKS.block_q)]
    block_q: usize,
    /// Keys per block (SALE: 32).
    #[arg(long, default_value_t = SALE_BLOCKS.block_k)]
    block_k: usize,
    /// Calibrate on GPU 0 with SALE's GPU selection and the block-sparse kernel against the
    /// causal kernel (bf16, head_dim 128; the estimate exact or int8).
    #[arg(long)]
    gpu: bool,
}

/// Query head `h`'s planes (with its KV head's) of every batch element, as a one-head problem.
fn one_head(shape: &Shape, h: usize, q: &[f64], k: &[f64], v: &[f64]) -> (Shape, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (l, d) = (shape.seq_q, shape.head_dim);
    let plane = |x: &[f64], heads: usize, head: usize| -> Vec<f64> {
        (0..shape.batch).flat_map(|b| x[(b * heads + head) * l * d..][..l * d].to_vec()).collect()
    };
    let kvh = h / shape.group_size();
    let one = Shape { heads: 1, kv_heads: 1, ..*shape };
    (one, plane(q, shape.heads, h), plane(k, shape.kv_heads, kvh), plane(v, shape.kv_heads, kvh))
}

pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), Error> {
    let (shape, q, k, v) = match &args.inputs {
        Some(path) => {
            let file = crate::io::TensorFile::open(path)?;
            let tensor = |name: &str| -> Result<(Vec<usize>, Vec<f64>), Error> {
                let t = file.tensor(name)?;
                let values = t.to_f32().ok_or_else(|| Error::Problem(format!("`{name}` is not floating point")))?;
                Ok((t.shape.clone(), values.into_iter().map(f64::from).collect()))
            };
            let ((qs, q), (ks, k), (_, v)) = (tensor("q")?, tensor("k")?, tensor("v")?);
            let [b, h, l, d] = qs[..] else { return Err(Error::Problem(format!("q has shape {qs:?}, not [batch, heads, tokens, head_dim]"))) };
            let kv_heads = ks.get(1).copied().unwrap_or(0);
            (Shape { batch: b, heads: h, kv_heads, seq_q: l, seq_kv: l, head_dim: d }, q, k, v)
        }
        None => {
            let shape = args.problem.shape();
            let x = structured_inputs(&shape, 1).map_err(Error::Problem)?;
            (shape, x.q, x.k, x.v)
        }
    };
    let blocks = SaleBlocks { block_q: args.block_q, block_k: args.block_k, ..SALE_BLOCKS };
    let scale = 1.0 / (shape.head_dim as f64).sqrt();
    let target = args.theta * shape.seq_q as f64;
    let mut errors: Vec<Option<String>> = Vec::new();
    let mut last: Vec<(f64, f64)> = vec![(f64::NAN, 1.0); shape.heads];
    let taus = if args.gpu {
        let mut gpu = super::calibrate_gpu::GpuCalibration::new(&shape, (&q, &k, &v), args.estimate, (args.block_q, args.block_k))?;
        let mut failure = None;
        let taus = calibrate(shape.heads, target, |taus, pending| match gpu.errors(taus) {
            Ok(got) => {
                for (h, &(error, density)) in got.iter().enumerate().filter(|(h, _)| pending[*h]) {
                    last[h] = (error, density);
                }
                got.into_iter().map(|(error, _)| error).collect()
            }
            Err(e) => {
                // NaN errors halve every head to dense in a few failing calls; the first error
                // is what is reported.
                failure.get_or_insert(e);
                vec![f64::NAN; taus.len()]
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        taus
    } else {
        calibrate(shape.heads, target, |taus, pending| {
            (0..shape.heads)
                .map(|h| {
                    if !pending[h] {
                        return f64::NAN;
                    }
                    let (one, qh, kh, vh) = one_head(&shape, h, &q, &k, &v);
                    let dense = attention(&one, Mask::Causal, scale, &qh, &kh, &vh);
                    match sale_prefill(&one, &blocks, &[taus[h]], args.estimate, scale, &qh, &kh, &vh) {
                        Ok(sparse) => {
                            let error = calibration_error(&sparse.out.o, &dense.o) / shape.batch as f64;
                            last[h] = (error, sparse.density());
                            error
                        }
                        Err(e) => {
                            errors.push(Some(e));
                            f64::NAN
                        }
                    }
                })
                .collect()
        })
    };
    if let Some(Some(e)) = errors.into_iter().next() {
        return Err(Error::Problem(e));
    }
    writeln!(
        out,
        "SALE thresholds: {} tokens, {} heads ({} KV), d{}, theta {} (error below {target:.1}), {} estimate, {}x{} blocks",
        shape.seq_q,
        shape.heads,
        shape.kv_heads,
        shape.head_dim,
        args.theta,
        super::sale::estimate_name(args.estimate),
        blocks.block_q,
        blocks.block_k
    )
    .map_err(Error::Stdout)?;
    let mut table = Table::new(vec!["head", "tau", "error", "kept density"]);
    for (h, tau) in taus.iter().enumerate() {
        // A dense head's last error is that of the last τ tried, which did not pass.
        let (error, density) = if *tau == 0.0 { (0.0, 1.0) } else { last[h] };
        table.row(vec![h.to_string(), format!("{tau}"), format!("{error:.2}"), format!("{density:.3}")]);
    }
    table.write(out).map_err(Error::Stdout)?;
    let flags: Vec<String> = taus.iter().map(|t| t.to_string()).collect();
    writeln!(out, "tessera run sale --tau {} ...", flags.join(" ")).map_err(Error::Stdout)
}
