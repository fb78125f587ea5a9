//! The CPU half of a sweep: every candidate's PTX generated on all cores (into the PTX cache,
//! where `Attention::load` then finds it), with the static pruning of `space`.

use std::path::Path;

use tessera_codegen::Target;
use tessera_desc::{Config, KernelDesc};

use super::space::{program_pruned, spills_pruned};

/// A config after the CPU half: ready for the GPU, or pruned with the reason.
pub struct Prepared {
    pub config: Config,
    pub pruned: Option<String>,
}

/// Prepares each config, calling `done` as each finishes (from worker threads). `ptxas`, when
/// given, assembles the PTX for `target` to read its spills; without it spills are not judged
/// (the GPU machine usually has no ptxas, and the driver's JIT would accept those configs).
pub fn prepare(
    desc: &KernelDesc,
    configs: &[Config],
    target: Target,
    max_shared_bytes: u32,
    ptxas: Option<&Path>,
    done: &(dyn Fn(&Config) + Sync),
) -> Vec<Prepared> {
    crate::parallel::map(configs, |config| {
        let pruned = program_pruned(desc, config, max_shared_bytes)
            .or_else(|| compile(desc, config, target, ptxas).err());
        done(config);
        Prepared {
            config: *config,
            pruned,
        }
    })
}

fn compile(
    desc: &KernelDesc,
    config: &Config,
    target: Target,
    ptxas: Option<&Path>,
) -> Result<(), String> {
    let ptx = crate::cache::global()
        .ptx(desc, config, target)
        .map_err(|e| format!("codegen: {e}"))?;
    let Some(ptxas) = ptxas else { return Ok(()) };
    let resources = tessera_codegen::ptxas::assemble_with(ptxas, &ptx, target.name())
        .map_err(|e| format!("ptxas: {e}"))?;
    let entry = tessera_codegen::entry_name(desc);
    let kernel = resources
        .kernel(entry)
        .ok_or_else(|| format!("ptxas reported no entry `{entry}`"))?;
    match spills_pruned(kernel) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}
