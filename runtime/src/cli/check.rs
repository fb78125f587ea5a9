//! `tessera check`: assemble kernels with ptxas and report what each needs of the GPU.
//!
//! ptxas is the gate because LLVM's NVPTX backend accepts PTX the driver rejects (see
//! `tessera_codegen::ptxas`). Every kernel × config × target is tried even after a failure, so
//! one run shows everything that is wrong.

use std::io::Write;
use std::path::Path;

use tessera_codegen::ptxas::{self, KernelResources};
use tessera_codegen::{Stage, Target};
use tessera_desc::{Config, KernelDesc};

use super::table::Table;
use super::{find_kernel, parse_target};
use crate::{Error, catalog};

// Naming no kernel is an error rather than "check all": `check` alone checking nothing, or
// silently everything, would both surprise.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["kernels", "all"])))]
pub struct Args {
    /// Kernel names, as `tessera list` prints them.
    kernels: Vec<String>,
    /// Check every catalog kernel.
    #[arg(long)]
    all: bool,
    /// Check every config of each kernel's tuning space, not only the default one.
    #[arg(long)]
    all_configs: bool,
    /// Check only this target (sm_80 or sm_90a) instead of both.
    #[arg(long, value_parser = parse_target)]
    target: Option<Target>,
    /// Fail on any spill. Without it spills are reported but pass: on an H100 the fastest
    /// head_dim-128 configs spill a few dozen bytes and still beat every spill-free one.
    #[arg(long)]
    deny_spills: bool,
}

/// Largest shared memory one CTA may use (static + dynamic, with the opt-in attribute) on the
/// target's base GPU (A100, H100): a config above it assembles fine and then fails at launch, so
/// `check` reports it here. Other sm_8x GPUs running sm_80 PTX have less (99 KiB on sm_86/89).
fn max_shared_bytes(target: Target) -> u32 {
    match target {
        Target::Sm80 => 163 * 1024,
        Target::Sm90a => 227 * 1024,
    }
}

enum Status {
    Ok,
    Spills,
    /// ptxas's numbered notes (e.g. C7519: it serialized wgmmas around a register hazard):
    /// the code runs, slower than written.
    Notes(Vec<String>),
    SharedOverLimit { limit: u32 },
    Failed(String),
}

impl Status {
    fn fails(&self, deny_spills: bool) -> bool {
        match self {
            Status::Ok | Status::Notes(_) => false,
            Status::Spills => deny_spills,
            Status::SharedOverLimit { .. } | Status::Failed(_) => true,
        }
    }
}

struct Check {
    kernel: &'static str,
    config: Config,
    target: Target,
    resources: Option<(KernelResources, u32)>,
    status: Status,
}

pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), Error> {
    let kernels: Vec<&'static KernelDesc> = if args.all {
        catalog::all().iter().collect()
    } else {
        args.kernels
            .iter()
            .map(|name| find_kernel(name))
            .collect::<Result<_, _>>()?
    };
    // Up front, so a machine without ptxas gets one clear error instead of a table of failures.
    let ptxas = ptxas::find()?;
    let targets: Vec<Target> = match args.target {
        Some(t) => vec![t],
        None => Target::ALL.to_vec(),
    };

    let mut jobs = Vec::new();
    for &desc in &kernels {
        for &target in &targets {
            let configs = if args.all_configs {
                crate::tune::space::space(desc, target)
            } else {
                vec![desc.parse_config("").map_err(|source| Error::Config {
                    kernel: desc.name,
                    source,
                })?]
            };
            jobs.extend(configs.into_iter().map(|config| (desc, config, target)));
        }
    }
    let checks = crate::parallel::map(&jobs, |&(desc, config, target)| {
        check_one(&ptxas, desc, config, target)
    });
    report(&checks, out).map_err(Error::Stdout)?;

    let failed = checks.iter().filter(|c| c.status.fails(args.deny_spills)).count();
    if failed > 0 {
        return Err(Error::CheckFailed {
            failed,
            total: checks.len(),
        });
    }
    Ok(())
}

fn check_one(ptxas: &Path, desc: &KernelDesc, config: Config, target: Target) -> Check {
    let (resources, status) = match measure(ptxas, desc, &config, target) {
        Ok((res, dynamic, notes)) => {
            let shared = res.shared_bytes + dynamic;
            let status = if res.spill_stores > 0 || res.spill_loads > 0 {
                Status::Spills
            } else if shared > max_shared_bytes(target) {
                Status::SharedOverLimit {
                    limit: max_shared_bytes(target),
                }
            } else if !notes.is_empty() {
                Status::Notes(notes)
            } else {
                Status::Ok
            };
            (Some((res, dynamic)), status)
        }
        Err(message) => (None, Status::Failed(message)),
    };
    Check {
        kernel: desc.name,
        config,
        target,
        resources,
        status,
    }
}

/// ptxas's figures for the kernel's entry, the dynamic shared memory its program needs, and
/// ptxas's numbered notes on the module.
fn measure(
    ptxas: &Path,
    desc: &KernelDesc,
    config: &Config,
    target: Target,
) -> Result<(KernelResources, u32, Vec<String>), String> {
    let codegen = |e: tessera_codegen::CodegenError| format!("codegen: {e}");
    let dynamic = tessera_codegen::kernel_program(desc, config)
        .map_err(codegen)?
        .shared_bytes();
    let ptx = tessera_codegen::emit(desc, config, target, Stage::Ptx).map_err(codegen)?;
    let resources = ptxas::assemble_with(ptxas, &ptx, target.name()).map_err(|e| e.to_string())?;
    let entry = tessera_codegen::entry_name(desc);
    let found = resources.kernel(entry).cloned();
    found
        .ok_or_else(|| format!("ptxas reported no entry `{entry}`"))
        .map(|res| (res, dynamic, resources.notes))
}

fn report(checks: &[Check], out: &mut dyn Write) -> std::io::Result<()> {
    let mut table = Table::new(vec![
        "kernel",
        "config",
        "target",
        "regs",
        "smem",
        "stack",
        "spill st/ld",
        "status",
    ]);
    for c in checks {
        let figures = match &c.resources {
            Some((r, dynamic)) => [
                r.registers.to_string(),
                (r.shared_bytes + dynamic).to_string(),
                r.stack_bytes.to_string(),
                format!("{}/{}", r.spill_stores, r.spill_loads),
            ],
            None => ["-", "-", "-", "-"].map(String::from),
        };
        let status = match &c.status {
            Status::Ok => "ok".to_string(),
            Status::Spills => "spills".to_string(),
            Status::Notes(_) => "ptxas notes".to_string(),
            Status::SharedOverLimit { limit } => format!("SMEM > {} KiB", limit / 1024),
            Status::Failed(_) => "FAILED".to_string(),
        };
        let mut row = vec![
            c.kernel.to_string(),
            c.config.to_string(),
            c.target.name().to_string(),
        ];
        row.extend(figures);
        row.push(status);
        table.row(row);
    }
    table.write(out)?;

    // Failure messages are multi-line (ptxas's stderr), so they follow the table; so do notes.
    for c in checks {
        if let Status::Notes(notes) = &c.status {
            writeln!(out, "\n{} ({}, {}): {}", c.kernel, c.config, c.target, notes.join("; "))?;
        }
        if let Status::Failed(message) = &c.status {
            writeln!(
                out,
                "\n{} ({}, {}):\n{}",
                c.kernel,
                c.config,
                c.target,
                message.trim_end()
            )?;
        }
    }
    let ok = checks.iter().filter(|c| matches!(c.status, Status::Ok)).count();
    let spills = checks.iter().filter(|c| matches!(c.status, Status::Spills)).count();
    writeln!(
        out,
        "\n{ok} of {} checks ok, {spills} with spills (bytes; smem = static from ptxas + dynamic \
         from the tile program)",
        checks.len()
    )
}
