//! What every example does with its kernels: PTX for every target at the default config, and
//! what ptxas says each needs of the GPU.

use std::error::Error;

use tessera::codegen::{canon, ptxas};
use tessera::{KernelDesc, Stage, Target};

/// The standalone modules a family loads beside its kernels for one target: (what, PTX).
pub type Built = Result<Vec<(&'static str, String)>, Box<dyn Error>>;
pub type Modules<'a> = &'a dyn Fn(Target) -> Built;

/// Summarizes each kernel, then each standalone module `modules` makes; returns an error
/// listing every ptxas failure.
pub fn check_all(kernels: &[&KernelDesc], modules: Modules<'_>) -> Result<(), Box<dyn Error>> {
    // Without ptxas the PTX is still generated, just not assembled.
    let ptxas = match ptxas::find() {
        Ok(path) => Some(path),
        Err(e) => {
            println!("note: {e}\n");
            None
        }
    };
    let mut failures = Vec::new();
    for desc in kernels {
        summarize(desc, ptxas.as_deref(), &mut failures)?;
    }
    check_modules(modules, ptxas.as_deref(), &mut failures)?;
    // Honest about scope: nothing here touched a GPU.
    println!("This example stops at PTX and ptxas; nothing above ran on a GPU. Loading and");
    println!("launching kernels on a GPU: tessera_runtime::gpu (see runtime/tests/gpu.rs).");
    if failures.is_empty() { Ok(()) } else { Err(failures.join("\n").into()) }
}

fn summarize(
    desc: &KernelDesc,
    ptxas: Option<&std::path::Path>,
    failures: &mut Vec<String>,
) -> Result<(), Box<dyn Error>> {
    let cfg = desc.default_config().ok_or("empty tuning space")?;
    let dynamic_smem = tessera::codegen::kernel_program(desc, &cfg)?.shared_bytes();
    let configs = desc.configs().len();
    println!(
        "{} ({} {}, head_dim {}): {configs} config{}, default {cfg}",
        desc.name,
        desc.visit.name(),
        desc.dtype,
        desc.head_dim,
        if configs == 1 { "" } else { "s" },
    );
    for target in Target::ALL {
        let ptx = tessera::codegen::emit(desc, &cfg, target, Stage::Ptx)?;
        let mma = canon::count_prefix(&ptx, "mma.sync");
        let mut line = format!(
            "  {target}: {} PTX lines, {mma} mma.sync",
            ptx.lines().count()
        );
        if let Some(ptxas) = ptxas {
            match ptxas::assemble_with(ptxas, &ptx, target.name()) {
                Ok(res) => match res.kernel(desc.name) {
                    Some(k) => {
                        line += &format!(
                            "; {} registers, {} B shared ({} static + {dynamic_smem} dynamic), \
                             {} B stack, {}/{} B spilled",
                            k.registers,
                            k.shared_bytes + dynamic_smem,
                            k.shared_bytes,
                            k.stack_bytes,
                            k.spill_stores,
                            k.spill_loads,
                        );
                        if k.spill_stores + k.spill_loads > 0 {
                            // Reported, not fatal: see `tessera check --deny-spills`.
                            line += " (spills)";
                        }
                    }
                    None => {
                        failures.push(format!("ptxas reported no entry {} on {target}", desc.name))
                    }
                },
                Err(e) => failures.push(format!("{} on {target}: {e}", desc.name)),
            }
        }
        println!("{line}");
    }
    println!();
    Ok(())
}

/// The standalone modules through ptxas where it is installed: their entries, most registers,
/// spills.
fn check_modules(modules: Modules<'_>, ptxas: Option<&std::path::Path>, failures: &mut Vec<String>) -> Result<(), Box<dyn Error>> {
    for target in Target::ALL {
        for (what, ptx) in modules(target)? {
            let mut line = format!("{what} ({target}): {} PTX lines", ptx.lines().count());
            if let Some(ptxas) = ptxas {
                match ptxas::assemble_with(ptxas, &ptx, target.name()) {
                    Ok(res) => {
                        let spilled: u32 = res.kernels.iter().map(|k| k.spill_stores + k.spill_loads).sum();
                        let registers = res.kernels.iter().map(|k| k.registers).max().unwrap_or(0);
                        line += &format!("; {} entries, up to {registers} registers, {spilled} B spilled", res.kernels.len());
                    }
                    Err(e) => failures.push(format!("{what} on {target}: {e}")),
                }
            }
            println!("{line}");
        }
    }
    Ok(())
}
