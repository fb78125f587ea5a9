//! The `tessera` command line: argument parsing and dispatch; each subcommand lives in its own
//! file.

mod autotune;
mod bench;
mod cache;
mod calibrate;
mod calibrate_gpu;
mod check;
mod doctor;
mod emit;
mod list;
mod mustafar;
mod run;
mod sale;
mod sale_estimates;
mod table;
mod tune_report;

use std::io::{self, Write};

use clap::{Parser, Subcommand};
use tessera_codegen::{Stage, Target};
use tessera_desc::KernelDesc;

use crate::{Error, catalog};

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "List, emit, ptxas-check, run, time and autotune tessera's attention kernels"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the built-in kernels and their tuning spaces.
    List,
    /// Print one stage (tile IR, LLVM IR or PTX) of a kernel at one config.
    Emit(emit::Args),
    /// Assemble kernels with ptxas and report registers, shared memory, stack and spills.
    Check(check::Args),
    /// Run a kernel on GPU 0 over q, k and v from a safetensors file; write o (and lse).
    Run(run::Args),
    /// Time kernels on GPU 0 over sequence lengths and configs.
    Bench(bench::Args),
    /// Find the fastest config of a kernel for a problem on this GPU and remember it.
    Autotune(autotune::Args),
    /// List, show, clear, export or import the tuning store.
    Cache(cache::Args),
    /// Calibrate SALE's per-head thresholds against dense attention (float64, CPU).
    Calibrate(calibrate::Args),
    /// Check the driver, GPUs, LLVM, ptxas, the PTX cache and the tuning store; say how to fix
    /// what is missing.
    Doctor,
    /// Compare SALE's block selection by int4, int8 and FP8 estimates with the exact one (CPU).
    SaleEstimates(sale_estimates::Args),
}

/// Parses the process arguments and runs the command, writing to stdout. Usage errors, `--help`
/// and `--version` are handled (and the process exited) by clap.
pub fn main() -> Result<(), Error> {
    run(Cli::parse(), &mut io::stdout().lock())
}

/// Runs a parsed command line, writing its report to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Error> {
    match cli.command {
        Command::List => list::run(out),
        Command::Emit(args) => emit::run(&args, out),
        Command::Check(args) => check::run(&args, out),
        Command::Run(args) => run::run(&args, out),
        Command::Bench(args) => bench::run(&args, out),
        Command::Autotune(args) => autotune::run(&args, out),
        Command::Cache(args) => cache::run(&args, out),
        Command::Calibrate(args) => calibrate::run(&args, out),
        Command::Doctor => doctor::run(out),
        Command::SaleEstimates(args) => sale_estimates::run(&args, out),
    }
}

fn find_kernel(name: &str) -> Result<&'static KernelDesc, Error> {
    catalog::find(name).ok_or_else(|| Error::UnknownKernel {
        name: name.to_string(),
        known: catalog::names(),
    })
}

/// The config that `--config` overrides (possibly none) make of a kernel's default. An empty
/// list still goes through `parse_config`, so an empty space errors the same either way.
fn config_of(desc: &KernelDesc, overrides: Option<&str>) -> Result<tessera_desc::Config, Error> {
    desc.parse_config(overrides.unwrap_or(""))
        .map_err(|source| Error::Config { kernel: desc.name, source })
}

/// `--heads` query heads in GQA groups over `--kv-heads` KV heads, or the error that says why not.
fn check_heads(heads: usize, kv_heads: usize) -> Result<(), Error> {
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(Error::Problem(format!("--heads {heads} must be a multiple of --kv-heads {kv_heads}")));
    }
    Ok(())
}

fn known<T>(all: &[T], name: impl Fn(&T) -> &'static str) -> String {
    all.iter().map(name).collect::<Vec<_>>().join(", ")
}

fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse(s).ok_or_else(|| {
        format!(
            "unknown target `{s}` (known: {})",
            known(&Target::ALL, |t| t.name())
        )
    })
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    Stage::parse(s).ok_or_else(|| {
        format!(
            "unknown stage `{s}` (known: {})",
            known(&Stage::ALL, |t| t.name())
        )
    })
}

#[cfg(test)]
mod tests;
