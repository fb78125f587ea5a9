//! `tessera run` for block-sparse kernels (`visit = blocks(..)`, and `tessera run sale`): the
//! block map comes from SALE's selection (seeds.md §2.3: always-kept sink and local blocks, the
//! Relative Attention Score against τ per head). By default it runs on the GPU from SALE's
//! int8 estimate, or exact scores (`gpu::SaleSelect`: the lists never leave the device);
//! `--select-on host` runs the float64 reference instead, from the exact scores or any low-bit
//! estimate, practical up to a few thousand tokens. The block-sparse kernel then runs on the GPU
//! over the lists.

use tessera_codegen::format::BlockLists;
use tessera_codegen::format::lowbit::LowBit;
use tessera_codegen::reference::Shape;
use tessera_codegen::reference::sale::{Estimate, SALE_BLOCKS, SaleBlocks, sale_select};
use tessera_desc::{Config, KernelDesc, Visit};

use crate::Error;
use crate::gpu::{DeviceTensor, Gpu, SaleSelect, SaleWorkspace, SelectArgs};
use tessera_codegen::ir::select::Scores;
use crate::io::AttentionInputs;

/// The kernel `tessera run sale` runs.
pub const SALE_KERNEL: &str = "sale_causal_bf16_d128";

/// How `run` selects the blocks of a block-sparse kernel.
#[derive(Debug, clap::Args)]
pub struct SaleArgs {
    /// Thresholds τ of the Relative Attention Score (block-sparse kernels only): one for every
    /// query head, or one per head (from `tessera calibrate`, or SALE's 0.004).
    #[arg(long, num_args = 1.., default_values_t = [0.004], value_parser = parse_tau)]
    tau: Vec<f64>,
    /// Scores that select blocks (block-sparse kernels only): `exact`, or the low-bit estimate
    /// `int4` (SALE's), `int8`, `e4m3` (the GPU selects from `exact` or `int8`) [default: int8
    /// on the GPU, the kernel's `estimate(bits)` on the host].
    #[arg(long, value_parser = parse_estimate)]
    estimate: Option<Estimate>,
    /// Where the blocks are selected (block-sparse kernels only): `gpu`, or `host` (the float64
    /// reference).
    #[arg(long, value_enum, default_value_t = SelectOn::Gpu)]
    select_on: SelectOn,
    /// Tokens per segment of the middle region, which the local window grows to align with
    /// (block-sparse kernels only; a multiple of the KV tile).
    #[arg(long, default_value_t = SALE_BLOCKS.segment)]
    segment: usize,
}

/// Where a block-sparse kernel's blocks are selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SelectOn {
    Gpu,
    Host,
}

pub(super) fn parse_tau(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("`{s}` is not a threshold (a finite number, at least 0)")),
    }
}

pub(super) fn parse_estimate(s: &str) -> Result<Estimate, String> {
    if s == "exact" {
        return Ok(Estimate::Exact);
    }
    LowBit::ALL
        .into_iter()
        .find(|f| f.name() == s)
        .map(Estimate::LowBit)
        .ok_or_else(|| format!("unknown estimate `{s}` (exact, int4, int8, e4m3)"))
}

/// The flag's spelling of an estimate.
pub(super) fn estimate_name(estimate: Estimate) -> &'static str {
    match estimate {
        Estimate::Exact => "exact",
        Estimate::LowBit(f) => f.name(),
    }
}

/// The output file's metadata entries.
type Metadata = Vec<(&'static str, String)>;

/// What was selected, for the output file's metadata and the report.
pub struct Selection {
    pub lists: BlockLists,
    pub density: f64,
    pub metadata: Metadata,
}

impl SaleArgs {
    /// The thresholds for `heads` query heads: one for all, or one each.
    fn taus(&self, heads: usize) -> Result<Vec<f64>, String> {
        match self.tau.as_slice() {
            [one] => Ok(vec![*one; heads]),
            many if many.len() == heads => Ok(many.to_vec()),
            many => Err(format!("{} thresholds for {heads} query heads", many.len())),
        }
    }

    /// SALE's blocks of `inputs` in `cfg`'s tiles, selected on the host now (`--select-on
    /// host`), or `None` after checking the flags against the kernel and the inputs, so that
    /// [`SaleArgs::select_on_gpu`] fails only for GPU reasons.
    pub fn select_on_host(&self, desc: &KernelDesc, cfg: &Config, inputs: &AttentionInputs, scale: Option<f32>) -> Result<Option<Selection>, Error> {
        let problem = |m: String| Error::Problem(format!("{}: {m}", desc.name));
        let Visit::Blocks(visit) = desc.visit else {
            return Err(problem("not a block-sparse kernel".into()));
        };
        if !visit.causal {
            return Err(problem("SALE's selection is for causal self-attention; this kernel is not causal".into()));
        }
        let dims: Shape = inputs.dims;
        let taus = self.taus(dims.heads).map_err(problem)?;
        if self.select_on == SelectOn::Gpu {
            self.gpu_scores().map_err(problem)?;
            if dims.seq_q != dims.seq_kv {
                return Err(problem(format!("SALE's selection is for self-attention: q has {} tokens, k {}", dims.seq_q, dims.seq_kv)));
            }
            return Ok(None);
        }
        let estimate = self.estimate.unwrap_or(match visit.estimate.bits {
            4 => Estimate::LowBit(LowBit::Int4),
            _ => Estimate::LowBit(LowBit::Int8),
        });
        let blocks = SaleBlocks {
            block_q: cfg.block_q() as usize,
            block_k: cfg.block_kv() as usize,
            local: visit.estimate.local as usize,
            segment: self.segment,
            sink_blocks: visit.estimate.sink as usize,
        };
        let f64s = |t: &crate::io::HostTensor| t.to_f32().map(|v| v.into_iter().map(f64::from).collect::<Vec<_>>()).ok_or_else(|| problem("inputs must be floating point".into()));
        let (q, k) = (f64s(&inputs.q)?, f64s(&inputs.k)?);
        let scale = scale.map_or(1.0 / (dims.head_dim as f64).sqrt(), f64::from);
        let kept = sale_select(&dims, &blocks, &taus, estimate, scale, &q, &k).map_err(problem)?;
        let (nq, nk) = (dims.seq_q.div_ceil(blocks.block_q), dims.seq_kv.div_ceil(blocks.block_k));
        let lists = BlockLists::from_kept(dims.batch * dims.heads, nq, nk, &kept).map_err(problem)?;
        let density = density(&lists.count, &blocks, dims.seq_q);
        Ok(Some(Selection { lists, density, metadata: metadata(&taus, estimate, density) }))
    }

    /// The scores the GPU selects from: the int8 estimate unless `--estimate exact`; int4 and
    /// FP8 estimates select on the host only (their `mma.sync` is emulated on Hopper).
    fn gpu_scores(&self) -> Result<Scores, String> {
        match self.estimate {
            None | Some(Estimate::LowBit(LowBit::Int8)) => Ok(Scores::Int8),
            Some(Estimate::Exact) => Ok(Scores::Exact),
            Some(e) => Err(format!("the GPU selects from exact scores or the int8 estimate; the {} estimate selects on the host (--select-on host)", estimate_name(e))),
        }
    }

    /// SALE's blocks of `q`, `k` selected on `gpu` (`gpu::SaleSelect`): the workspace holding
    /// the lists, the kept density and the output file's metadata.
    pub fn select_on_gpu(&self, gpu: &Gpu, desc: &KernelDesc, cfg: &Config, (q, k, v): (&DeviceTensor, &DeviceTensor, &DeviceTensor), scale: Option<f32>) -> Result<(SaleWorkspace, f64, Metadata), Error> {
        let taus = self.taus(q.shape[1]).map_err(|m| Error::Problem(format!("{}: {m}", desc.name)))?;
        let scores = self.gpu_scores().map_err(|m| Error::Problem(format!("{}: {m}", desc.name)))?;
        let select = SaleSelect::load(gpu, desc, cfg, self.segment, scores)?;
        let mut ws = select.workspace(gpu, q.shape, k.shape[1])?;
        select.select(gpu, &mut ws, SelectArgs { q, k, v, tau: &taus, scale })?;
        let counts = ws.lists().download(gpu)?.count;
        let density = density(&counts, select.blocks(), q.shape[2]);
        let estimate = match scores {
            Scores::Exact => Estimate::Exact,
            Scores::Int8 => Estimate::LowBit(LowBit::Int8),
        };
        Ok((ws, density, metadata(&taus, estimate, density)))
    }
}

/// Kept tiles over the causally visible ones, as `SaleOutput::density` counts them, from the
/// lists' counts (`[planes, q_tiles]`).
fn density(counts: &[i32], blocks: &SaleBlocks, seq: usize) -> f64 {
    let nq = seq.div_ceil(blocks.block_q);
    let visible: usize = (0..nq).map(|qb| ((qb + 1) * blocks.block_q).min(seq).div_ceil(blocks.block_k)).sum();
    let planes = counts.len() / nq.max(1);
    counts.iter().map(|&c| c.max(0) as usize).sum::<usize>() as f64 / (visible * planes).max(1) as f64
}

fn metadata(taus: &[f64], estimate: Estimate, density: f64) -> Metadata {
    vec![("tau", format!("{taus:?}")), ("estimate", estimate_name(estimate).to_string()), ("density", format!("{density:.4}"))]
}
