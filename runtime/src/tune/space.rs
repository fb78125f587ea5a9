//! The search space and what is pruned from it before any GPU time is spent.
//!
//! The space is the description's `configs()` (already free of invalid combinations). Of those,
//! a config is pruned when it cannot run on the device (shared memory over the per-block
//! limit), when its register fragments alone exceed a thread's registers, when ptxas reports
//! heavy spilling, for a neighborhood kernel when its tiles waste far more work on the
//! problem's grid than the space's best (`cost::window_efficiency`), and for a decode kernel
//! when its query tile cannot hold the problem's GQA group. Spilling is judged by a threshold, not at zero:
//! on H100 some configs that spill a few hundred bytes (a handful of values kept in local
//! memory, which stays in L1) are among the fastest, because the larger tile they buy
//! outweighs the spill traffic; configs that spill kilobytes are never competitive.

use tessera_codegen::Target;
use tessera_codegen::ir::decode::query_rows;
use tessera_codegen::ptxas::KernelResources;
use tessera_desc::{Config, KernelDesc};

use super::decode::holds_group;
use super::problem::Problem;
use super::record::Entry;

/// Spill bytes (stores plus loads, as `ptxas -v` reports them) above which a config is pruned.
/// On sm_90a the catalog's configs spill either at most ~260 bytes or well over 1 KB.
pub const SPILL_LIMIT_BYTES: u32 = 256;

/// The configs to tune on a `target` device: the kernel's schedule times the target's
/// instruction families (the instruction is the device's choice, not the kernel author's).
pub fn space(desc: &KernelDesc, target: Target) -> Vec<Config> {
    desc.configs_with(target.mma_families())
}

/// Registers a thread can have.
pub const MAX_REGISTERS: u32 = 255;

/// Whether a tile program's register fragments alone are over a thread's registers.
pub fn fragments_spill(program: &tessera_codegen::ir::Program) -> bool {
    program.fragment_registers() > MAX_REGISTERS
}

/// Why a config cannot run well before it is compiled, if it cannot: shared memory over the
/// device's limit, or register fragments alone over a thread's registers (such a config spills
/// at least the excess, kilobytes per CTA, and is pruned by ptxas's report anyway; finding it
/// from the tile program saves its codegen, the slowest of the space).
pub fn program_pruned(
    desc: &KernelDesc,
    cfg: &Config,
    max_shared_bytes: u32,
) -> Option<String> {
    match tessera_codegen::kernel_program(desc, cfg) {
        Ok(program) if program.shared_bytes() > max_shared_bytes => Some(format!(
            "shared memory {} KiB > {} KiB",
            program.shared_bytes().div_ceil(1024),
            max_shared_bytes / 1024
        )),
        Ok(program) if fragments_spill(&program) => Some(format!(
            "its register fragments alone take {} registers per thread (at most {MAX_REGISTERS})",
            program.fragment_registers()
        )),
        Ok(_) => None,
        Err(e) => Some(format!("codegen: {e}")),
    }
}

/// A config is pruned when its useful fraction of computed pairs is below this share of the
/// space's best: generous, because the fraction ignores what tile size does to the rate (the
/// measured H100 winner of NATTEN's 3-D case sits at 0.78 of the space's best fraction).
pub const USEFUL_WORK_SHARE: f64 = 0.5;

/// Why each of `configs` wastes too much of a neighborhood kernel's work on the grid `extents`
/// to be worth timing (`None` where it does not, and for every config of other kernels),
/// against the best of those that can run on a device with `max_shared_bytes`
/// (`program_pruned`), so that a config that cannot run does not set the bar.
pub fn useful_work_pruned(desc: &KernelDesc, configs: &[Config], extents: &[usize], max_shared_bytes: u32) -> Vec<Option<String>> {
    let useful: Vec<Option<f64>> = configs
        .iter()
        .map(|c| tessera_codegen::cost::window_efficiency(desc, c, extents).ok().flatten())
        .collect();
    let best = useful
        .iter()
        .zip(configs)
        .filter(|(_, c)| program_pruned(desc, c, max_shared_bytes).is_none())
        .filter_map(|(u, _)| *u)
        .fold(0.0, f64::max);
    useful
        .iter()
        .map(|u| match u {
            Some(u) if *u < USEFUL_WORK_SHARE * best => Some(format!(
                "{:.0}% of its tile products are useful on this grid, under {:.0}% of the best config's {:.0}%",
                100.0 * u,
                100.0 * USEFUL_WORK_SHARE,
                100.0 * best
            )),
            _ => None,
        })
        .collect()
}

/// Why each of `configs` should not run on `problem` (`None` where it may): too little useful
/// work on a neighborhood kernel's grid (`useful_work_pruned`), or a decode kernel's query
/// rows too few for the GQA group (`holds_group`).
pub fn problem_pruned(desc: &KernelDesc, configs: &[Config], problem: &Problem, max_shared_bytes: u32) -> Vec<Option<String>> {
    let wasteful = useful_work_pruned(desc, configs, &problem.extents(), max_shared_bytes);
    configs
        .iter()
        .zip(wasteful)
        .map(|(c, why)| {
            why.or_else(|| {
                (!holds_group(desc, c, problem)).then(|| {
                    format!("its {} query rows per warp cannot hold the {} query heads of a KV head", query_rows(c), problem.group())
                })
            })
        })
        .collect()
}

/// Why a config spills too much to be worth timing, if it does.
pub fn spills_pruned(resources: &KernelResources) -> Option<String> {
    let spilled = resources.spill_stores + resources.spill_loads;
    (spilled > SPILL_LIMIT_BYTES).then(|| {
        format!(
            "spills {}+{} bytes (limit {SPILL_LIMIT_BYTES})",
            resources.spill_stores, resources.spill_loads
        )
    })
}

/// The configs a sweep must run: those of the space without a record in `entry`, or all of
/// them when `retune` is set. The space's order is kept: it puts the default config (the
/// catalog lists its H100 winner first) early, so early elimination has a strong reference.
pub fn to_run(space: &[Config], entry: Option<&Entry>, retune: bool) -> Vec<Config> {
    space
        .iter()
        .filter(|c| retune || entry.is_none_or(|e| !e.records.contains_key(&c.to_string())))
        .copied()
        .collect()
}
