//! `tessera sale-estimates`: how well each low-bit estimate selects SALE's blocks, on structured
//! long-context inputs, in float64 on the CPU: kept-block density, block recall against the
//! exact-score selection, the blocks it keeps beyond it, and the output error against dense
//! causal attention. Issue 7 picks the estimate's format by this and by tensor-core speed.

use std::io::Write;

use tessera_codegen::format::lowbit::LowBit;
use tessera_codegen::reference::sale::{Estimate, SALE_BLOCKS, SaleBlocks, sale_prefill};
use tessera_codegen::reference::structured::structured_inputs;
use tessera_codegen::reference::{Mask, Shape, attention, rel_error};

use super::table::Table;
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    problem: Structured,
    /// The threshold τ of every head.
    #[arg(long, default_value_t = 0.005)]
    tau: f64,
    /// Queries per block (SALE: 64).
    #[arg(long, default_value_t = SALE_BLOCKS.block_q)]
    block_q: usize,
    /// Keys per block (SALE: 32).
    #[arg(long, default_value_t = SALE_BLOCKS.block_k)]
    block_k: usize,
    /// Seed of the structured inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), Error> {
    let shape = args.problem.shape();
    let blocks = SaleBlocks { block_q: args.block_q, block_k: args.block_k, ..SALE_BLOCKS };
    let x = structured_inputs(&shape, args.seed).map_err(Error::Problem)?;
    let scale = 1.0 / (shape.head_dim as f64).sqrt();
    let taus = vec![args.tau; shape.heads];
    let sale = |estimate| sale_prefill(&shape, &blocks, &taus, estimate, scale, &x.q, &x.k, &x.v).map_err(Error::Problem);
    let dense = attention(&shape, Mask::Causal, scale, &x.q, &x.k, &x.v);
    let exact = sale(Estimate::Exact)?;
    let mut table = Table::new(vec!["estimate", "density", "recall", "missed", "extra", "rel. error vs dense"]);
    let estimates = std::iter::once(Estimate::Exact).chain(LowBit::ALL.map(Estimate::LowBit));
    for estimate in estimates {
        let got = if estimate == Estimate::Exact { exact.clone() } else { sale(estimate)? };
        let agreement = got.against(&exact);
        table.row(vec![
            super::sale::estimate_name(estimate).to_string(),
            format!("{:.3}", got.density()),
            format!("{:.4}", agreement.recall()),
            agreement.missed.to_string(),
            agreement.extra.to_string(),
            format!("{:.2e}", rel_error(&got.out.o, &dense.o)),
        ]);
    }
    writeln!(
        out,
        "SALE selection on structured inputs: {} tokens, {} heads ({} KV), d{}, tau {}, {}x{} blocks",
        shape.seq_q, shape.heads, shape.kv_heads, shape.head_dim, args.tau, args.block_q, args.block_k
    )
    .map_err(Error::Stdout)?;
    table.write(out).map_err(Error::Stdout)
}

/// A structured long-context problem's size (`reference::structured`): causal self-attention of
/// one batch element.
#[derive(Debug, clap::Args)]
pub struct Structured {
    /// Tokens (self-attention, causal).
    #[arg(long, default_value_t = 2048)]
    seq: usize,
    #[arg(long, default_value_t = 2)]
    heads: usize,
    #[arg(long, default_value_t = 1)]
    kv_heads: usize,
    #[arg(long, default_value_t = 128)]
    head_dim: usize,
}

impl Structured {
    pub fn shape(&self) -> Shape {
        Shape { batch: 1, heads: self.heads, kv_heads: self.kv_heads, seq_q: self.seq, seq_kv: self.seq, head_dim: self.head_dim }
    }
}
