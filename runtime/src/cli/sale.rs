//! `tessera run` for block-sparse kernels (`visit = blocks(..)`, and `tessera run sale`): the
//! block map comes from SALE's selection (seeds.md §2.3: always-kept sink and local blocks, the
//! Relative Attention Score against τ per head, from the estimate the flags name), made on the
//! host by the float64 reference until the GPU estimation kernel exists, so practical up to a
//! few thousand tokens; the block-sparse kernel then runs on the GPU over it.

use tessera_codegen::format::BlockLists;
use tessera_codegen::format::lowbit::LowBit;
use tessera_codegen::reference::Shape;
use tessera_codegen::reference::sale::{Estimate, SALE_BLOCKS, SaleBlocks, sale_select};
use tessera_desc::{Config, KernelDesc, Visit};

use crate::Error;
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
    /// `int4` (SALE's), `int8`, `e4m3` [default: the kernel's `estimate(bits)`].
    #[arg(long, value_parser = parse_estimate)]
    estimate: Option<Estimate>,
    /// Tokens per segment of the middle region, which the local window grows to align with
    /// (block-sparse kernels only; a multiple of the KV tile).
    #[arg(long, default_value_t = SALE_BLOCKS.segment)]
    segment: usize,
}

fn parse_tau(s: &str) -> Result<f64, String> {
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

/// What was selected, for the output file's metadata and the report.
pub struct Selection {
    pub lists: BlockLists,
    pub density: f64,
    pub metadata: Vec<(&'static str, String)>,
}

impl SaleArgs {
    /// SALE's block map of `inputs` in `cfg`'s tiles, as block lists.
    pub fn select(&self, desc: &KernelDesc, cfg: &Config, inputs: &AttentionInputs, scale: Option<f32>) -> Result<Selection, Error> {
        let problem = |m: String| Error::Problem(format!("{}: {m}", desc.name));
        let Visit::Blocks(visit) = desc.visit else {
            return Err(problem("not a block-sparse kernel".into()));
        };
        if !visit.causal {
            return Err(problem("SALE's selection is for causal self-attention; this kernel is not causal".into()));
        }
        let dims: Shape = inputs.dims;
        let taus = match self.tau.as_slice() {
            [one] => vec![*one; dims.heads],
            many if many.len() == dims.heads => many.to_vec(),
            many => return Err(problem(format!("{} thresholds for {} query heads", many.len(), dims.heads))),
        };
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
        // Over the causally visible blocks, as `SaleOutput::density` counts.
        let visible: usize = (0..nq).map(|qb| ((qb + 1) * blocks.block_q).min(dims.seq_q).div_ceil(blocks.block_k)).sum();
        let density = kept.iter().filter(|&&k| k).count() as f64 / (visible * dims.batch * dims.heads).max(1) as f64;
        let metadata = vec![
            ("tau", format!("{taus:?}")),
            ("estimate", estimate_name(estimate).to_string()),
            ("density", format!("{density:.4}")),
        ];
        Ok(Selection { lists, density, metadata })
    }
}
