//! `tessera bench`: kernels timed on the GPU over sequence lengths and configs.
//!
//! Timing is `gpu::bench`'s: CUDA events around each launch, the L2 flushed before each, the
//! median reported. TFLOP/s count attention's two products, 4·D per visited (query, key) pair:
//! 4·B·H·S²·D, halved for causal; for windows the pairs the neighborhoods hold; for a
//! block-sparse kernel (timed on a seeded map of `--density` of its tiles) the pairs it keeps.

use std::io::Write;

use tessera_desc::{Config, Dtype, KernelDesc, Mma, Visit};

use super::{config_of, find_kernel};
use super::table::Table;
use crate::Error;
use crate::gpu::Gpu;
use crate::gpu::bench::{BenchShape, Measurement, BenchInputs, bench_attention, bench_selection, default_reps};
use tessera_codegen::ir::select::Scores;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel names, as `tessera list` prints them, or `mustafar` alone: one decode step
    /// over a random cache pruned and compressed by the --k-sparsity ... --chunk policy.
    #[arg(required = true)]
    kernels: Vec<String>,
    /// Sequence lengths (of queries and keys alike; for `mustafar`, the cache's tokens),
    /// comma-separated.
    #[arg(
        long,
        visible_alias = "context",
        value_name = "N,...",
        value_delimiter = ',',
        default_values_t = [1024, 4096, 16384],
        value_parser = positive
    )]
    seq: Vec<usize>,
    /// The token grid of a 2-D/3-D window kernel, e.g. `256,256` (replaces --seq: the tokens
    /// are the product).
    #[arg(long, value_name = "X,Y[,Z]", value_delimiter = ',', num_args = 1..=3, value_parser = positive)]
    grid: Option<Vec<usize>>,
    /// Batch size.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    batch: usize,
    /// Query heads (K and V have --kv-heads).
    #[arg(long, default_value_t = 32, value_parser = positive)]
    heads: usize,
    /// KV heads, dividing --heads. By default Llama-3-8B's 8 for `mustafar`, and --heads (no
    /// GQA) for the others.
    #[arg(long, value_parser = positive)]
    kv_heads: Option<usize>,
    /// Element type (`mustafar` only): bf16 or f16.
    #[arg(long, default_value = "bf16", value_parser = |s: &str| Dtype::from_name(s).ok_or_else(|| format!("unknown dtype `{s}` (bf16 or f16)")))]
    dtype: Dtype,
    #[command(flatten)]
    mustafar: super::mustafar::CacheArgs,
    /// Config overrides over each kernel's default, e.g. `block_q=128,warps=8`.
    #[arg(long, value_name = "KEY=VALUE,...", conflicts_with = "all_configs")]
    config: Option<String>,
    /// Time every config of each kernel's tuning space instead of one.
    #[arg(long)]
    all_configs: bool,
    /// Untimed launches before the timed ones.
    #[arg(long, value_name = "N", default_value_t = 2)]
    warmup: usize,
    /// Timed launches, of which the median is reported [default: 30; 10 from seq 16384 on].
    #[arg(long, value_name = "N", value_parser = positive)]
    reps: Option<usize>,
    /// For a block-sparse kernel (and only then): the fraction of causally visible tiles its
    /// map keeps, e.g. 0.2; the map is seeded and random, the tiles on the diagonal always kept,
    /// and TFLOP/s count the pairs the map keeps.
    #[arg(long, value_name = "F", value_parser = density)]
    density: Option<f64>,
    /// For a block-sparse kernel: also time SALE's selection on the GPU (forced pass,
    /// thresholds, quantization, selection, lists) with this τ for every head, on the same
    /// inputs, from the int8 estimate and from exact scores; their rows
    /// (`<kernel>:select-int8@τ`, `:select-exact@τ`) count the scores' FLOPs and report the
    /// density each kept; a `:quantize` row times the int8 quantization of Q and K alone.
    /// Several, comma-separated, time one row each.
    #[arg(long, value_name = "TAU", requires = "density", value_parser = super::sale::parse_tau, value_delimiter = ',')]
    tau: Vec<f64>,
    /// Time the selection on SALE's structured long-context inputs (local patterns, a sink,
    /// planted retrievals), which keep what τ asks for, instead of the uniform ones, whose
    /// near-uniform attention keeps almost every tile.
    #[arg(long, requires = "tau")]
    structured: bool,
    /// Print one JSON object per line (the device first, then one per row) instead of a table.
    #[arg(long)]
    json: bool,
}

fn density(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        Ok(f) => Err(format!("{f} is not in (0, 1]")),
        Err(e) => Err(format!("`{s}` is not a fraction: {e}")),
    }
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}` is not a count: {e}")),
    }
}

impl Args {
    fn mustafar(&self) -> bool {
        self.kernels.iter().any(|k| k == "mustafar")
    }

    /// `--kv-heads`, else Llama-3-8B's 8 for `mustafar` and `--heads` (no GQA) for the others.
    fn kv_heads(&self) -> usize {
        self.kv_heads.unwrap_or(if self.mustafar() { 8 } else { self.heads })
    }
}

pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), Error> {
    if args.mustafar() {
        if args.kernels.len() > 1 || args.all_configs || args.grid.is_some() {
            return Err(Error::Problem("`tessera bench mustafar` times the decode kernel alone, at one config, over --context lengths".into()));
        }
        let plan = super::mustafar::BenchPlan {
            batch: args.batch,
            heads: args.heads,
            kv_heads: args.kv_heads(),
            contexts: &args.seq,
            dtype: args.dtype,
            config: args.config.as_deref(),
            warmup: args.warmup,
            reps: args.reps,
            json: args.json,
        };
        return super::mustafar::bench(&plan, &args.mustafar, out);
    }
    // Every name and config is checked before the GPU is opened, so a typo fails at once.
    let mut plan = args
        .kernels
        .iter()
        .map(|name| {
            let desc = find_kernel(name)?;
            Ok((desc, configs(desc, args)?))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let shapes = shapes(args, &plan)?;
    let gpu = Gpu::open(0)?;
    if args.all_configs {
        let families = gpu.target()?.mma_families();
        for (_, configs) in &mut plan {
            configs.retain(|c| families.contains(&c.mma));
        }
    }
    if args.json {
        writeln!(
            out,
            "{{\"device\": {}}}",
            crate::gpu::bench::json_string(&gpu.name)
        )
        .map_err(Error::Stdout)?;
    }

    let mut rows = Vec::new();
    let mut result = Ok(());
    'sweep: for (desc, configs) in &plan {
        for &shape in &shapes {
            let seq = shape.seq;
            let reps = args.reps.unwrap_or(default_reps(seq));
            let density = args.density.filter(|_| matches!(desc.visit, Visit::Blocks(_)));
            let selection = |measured: Vec<Measurement>| -> Result<Vec<Measurement>, crate::gpu::GpuError> {
                if args.tau.is_empty() || density.is_none() {
                    return Ok(measured);
                }
                let inputs = if args.structured { BenchInputs::structured(&gpu, desc, shape)? } else { BenchInputs::uniform(&gpu, desc, shape)? };
                // After the kernel's rows, so that each kernel's rows stay together.
                let configs: Vec<Config> = measured.iter().map(|m| m.config).collect();
                let mut rows = measured;
                for scores in [Scores::Int8, Scores::Exact] {
                    for &config in &configs {
                        rows.extend(bench_selection(&gpu, desc, config, shape, &inputs, (&args.tau, scores), args.warmup, reps)?);
                    }
                }
                Ok(rows)
            };
            match bench_attention(&gpu, desc, configs, shape, density, args.warmup, reps).and_then(selection) {
                Ok(measured) => {
                    if args.json {
                        // Line by line as they come: a long sweep shows progress.
                        for m in &measured {
                            writeln!(out, "{}", m.json()).map_err(Error::Stdout)?;
                        }
                        out.flush().map_err(Error::Stdout)?;
                    }
                    rows.extend(measured);
                }
                Err(e) => {
                    result = Err(Error::Gpu(e));
                    break 'sweep;
                }
            }
        }
    }
    // What was timed before a GPU error is still worth its table.
    if !args.json {
        report(&gpu, args, &rows, out).map_err(Error::Stdout)?;
    }
    result?;

    let failed = rows.iter().filter(|m| m.timing.is_err()).count();
    if failed > 0 {
        return Err(Error::BenchFailed {
            failed,
            total: rows.len(),
        });
    }
    Ok(())
}

/// One shape per `--seq` length, or the one `--grid`, checked against each kernel before any
/// GPU work: a grid needs a window kernel of as many axes, and a 2-D/3-D window needs a grid.
fn shapes(args: &Args, plan: &[(&'static KernelDesc, Vec<Config>)]) -> Result<Vec<BenchShape>, Error> {
    let (batch, heads) = (args.batch, args.heads);
    let kv_heads = args.kv_heads();
    super::check_heads(heads, kv_heads)?;
    let shapes = match &args.grid {
        Some(g) => {
            let seq = g.iter().try_fold(1usize, |n, &e| n.checked_mul(e)).ok_or_else(|| {
                Error::Problem(format!("--grid {g:?} holds more tokens than a usize counts"))
            })?;
            let mut grid = [1; 3];
            grid[..g.len()].copy_from_slice(g);
            vec![BenchShape { batch, heads, kv_heads, seq, grid: Some(grid) }]
        }
        None => args.seq.iter().map(|&seq| BenchShape { batch, heads, kv_heads, seq, grid: None }).collect(),
    };
    if args.density.is_some() && !plan.iter().any(|(d, _)| matches!(d.visit, Visit::Blocks(_))) {
        return Err(Error::Problem("--density applies to block-sparse kernels, and none is named".into()));
    }
    for (desc, _) in plan {
        // Said before the GPU is opened: a block-sparse kernel needs a map to run on.
        if matches!(desc.visit, Visit::Blocks(_)) && args.density.is_none() {
            return Err(Error::Problem(format!("{} is block-sparse: give the density of its map, e.g. --density 0.2", desc.name)));
        }
        // The random maps and their FLOP count are causal (`gpu::block_map`).
        if matches!(desc.visit, Visit::Blocks(b) if !b.causal) {
            return Err(Error::Problem(format!("{}: --density maps are causal, and this kernel is not", desc.name)));
        }
        for shape in &shapes {
            crate::gpu::grid_extents(desc, shape.seq, shape.grid_arg(desc))
                .map_err(|e| Error::Problem(format!("{}: {e}", desc.name)))?;
        }
    }
    Ok(shapes)
}

fn configs(desc: &'static KernelDesc, args: &Args) -> Result<Vec<Config>, Error> {
    if args.all_configs {
        // Narrowed to the device's instruction families once the GPU is open.
        return Ok(desc.configs_with(&Mma::ALL));
    }
    let cfg = config_of(desc, args.config.as_deref())?;
    Ok(vec![cfg])
}

fn report(
    gpu: &Gpu,
    args: &Args,
    rows: &[Measurement],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: batch {}, heads {}/{} kv; median ms, L2 flushed; TFLOP/s from 4·D per visited pair (dense S², causal S²/2)",
        gpu.name,
        args.batch,
        args.heads,
        args.kv_heads()
    )?;
    let sparse = rows.iter().any(|m| m.density.is_some());
    let windows = rows.iter().any(|m| m.useful.is_some());
    let mut columns = vec!["kernel", "seq", "config", "ms", "TFLOP/s"];
    if sparse {
        columns.push("kept");
    }
    if windows {
        columns.push("useful");
    }
    let mut table = Table::new(columns);
    for m in rows {
        let (ms, tflops) = match (&m.timing, m.tflops()) {
            (Ok(t), Some(tflops)) => (format!("{:.4}", t.median_ms), format!("{tflops:.1}")),
            _ => ("-".to_string(), "FAILED".to_string()),
        };
        let mut row = vec![m.kernel.clone(), m.shape.seq.to_string(), m.config.to_string(), ms, tflops];
        if sparse {
            row.push(m.density.map_or("-".into(), |d| format!("{:.1}%", 100.0 * d)));
        }
        if windows {
            row.push(m.useful.map_or("-".into(), |u| format!("{:.1}%", 100.0 * u)));
        }
        table.row(row);
    }
    table.write(out)?;
    if windows {
        writeln!(out, "useful: the share of the pairs a config's tiles compute that the neighborhoods hold (TFLOP/s / useful = its rate per computed pair)")?;
    }

    // Load failures carry multi-line messages, so they follow the table.
    for m in rows {
        if let Err(e) = &m.timing {
            writeln!(
                out,
                "\n{} seq={} ({}):\n{}",
                m.kernel,
                m.shape.seq,
                m.config,
                e.trim_end()
            )?;
        }
    }
    if args.all_configs {
        writeln!(out)?;
        for group in rows.chunk_by(|a, b| a.kernel == b.kernel && a.shape == b.shape) {
            let best = group
                .iter()
                .filter_map(|m| Some((m.tflops()?, m)))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((tflops, m)) = best {
                writeln!(
                    out,
                    "best {} seq={}: {tflops:.1} TFLOP/s at {}",
                    m.kernel, m.shape.seq, m.config
                )?;
            }
        }
    }
    Ok(())
}
