//! The dense/causal attention family, defined as a user would: two kernels, their PTX for every
//! target at the default config, and what ptxas says each needs of the GPU.
//!
//! `cargo run --release --example dense`

use std::error::Error;

use tessera::codegen::{canon, ptxas};
use tessera::{Kernel, KernelDesc, Stage, Target};

/// Causal self-attention over bf16, head dim 128, with a small tuning space.
#[tessera::attention(
    head_dim = 128,
    dtype = bf16,
    visit = causal,
    tile = (q = [64, 128], kv = [32, 64]),
    tune = (warps = [4, 8], stages = [1, 2]),
)]
pub struct CausalBf16;

/// Dense (unmasked) attention over f16, head dim 64, one fixed schedule.
#[tessera::attention(
    name = "dense_f16_d64",
    head_dim = 64,
    dtype = f16,
    visit = dense,
    tile = (q = 128, kv = 64),
    tune = (warps = 8, stages = 2),
)]
pub struct DenseF16;

fn main() -> Result<(), Box<dyn Error>> {
    // Without ptxas the PTX is still generated, just not assembled.
    let ptxas = match ptxas::find() {
        Ok(path) => Some(path),
        Err(e) => {
            println!("note: {e}\n");
            None
        }
    };
    let mut failures = Vec::new();
    for desc in [&CausalBf16::DESC, &DenseF16::DESC] {
        summarize(desc, ptxas.as_deref(), &mut failures)?;
    }

    // Honest about scope: nothing here touched a GPU.
    println!("This example stops at PTX and ptxas; nothing above ran on a GPU. Loading and");
    println!("launching kernels on a GPU: tessera_runtime::gpu (see runtime/tests/gpu.rs).");
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}

fn summarize(
    desc: &KernelDesc,
    ptxas: Option<&std::path::Path>,
    failures: &mut Vec<String>,
) -> Result<(), Box<dyn Error>> {
    let cfg = desc.default_config().ok_or("empty tuning space")?;
    let dynamic_smem = tessera::codegen::tile_program(desc, &cfg)?.shared_bytes();
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
                            failures.push(format!("{} spills registers on {target}", desc.name));
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
