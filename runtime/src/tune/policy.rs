//! Which config a launch uses: the stored winner for the problem's key, a sweep on first use
//! when tuning is enabled, else the kernel's default config.

use tessera_codegen::ir::decode::query_rows;
use tessera_desc::{Config, KernelDesc};

use super::TuneError;
use super::decode::{holds_group, is_decode};
use super::device::DeviceInfo;
use super::key::KeyInfo;
use super::problem::Problem;
use super::space::fragments_spill;
use super::store::Store;
use super::sweep::{Options, sweep};
use crate::gpu::Gpu;

/// Environment variable that turns tuning on first use on (`1`) for [`Policy::FromEnv`].
pub const AUTOTUNE_ENV: &str = "TESSERA_AUTOTUNE";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// The stored winner, else the default config; never times anything.
    Cached,
    /// Tunes when some config of the kernel's space has no record for the key (first use, or
    /// a space that gained configs), then uses the winner.
    TuneOnMiss,
    /// `TuneOnMiss` when `TESSERA_AUTOTUNE=1`, else `Cached`: tuning takes seconds of GPU
    /// time, which a program should not spend unless its user asked for it.
    #[default]
    FromEnv,
}

impl Policy {
    fn tunes(self) -> bool {
        match self {
            Policy::Cached => false,
            Policy::TuneOnMiss => true,
            Policy::FromEnv => std::env::var_os(AUTOTUNE_ENV).is_some_and(|v| v == "1"),
        }
    }
}

/// Where a chosen config came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Cached,
    Tuned,
    Default,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub config: Config,
    pub source: Source,
    /// The key's id in the store.
    pub key: String,
}

/// The config to launch `desc` with on `problem`. The store is an optimisation here: one that
/// cannot be read is reported and treated as empty, never a reason to fail a launch.
pub fn choose(
    gpu: &Gpu,
    desc: &KernelDesc,
    problem: &Problem,
    policy: Policy,
    store: &Store,
) -> Result<Choice, TuneError> {
    problem.check_for(desc).map_err(|why| TuneError::Problem {
        problem: *problem,
        why,
    })?;
    let key = KeyInfo::new(desc, problem, &DeviceInfo::of(gpu)?).id();
    let entry = match store.load() {
        Ok(mut entries) => entries.0.remove(&key),
        Err(e) => {
            eprintln!("tessera: {e}; using the default config");
            None
        }
    };
    // A stored config counts only while the kernel's current space still holds it.
    let valid = |c: &str| desc.parse_config(c).ok();
    let stored = |entry: &super::record::Entry| {
        entry
            .winner(|c| valid(c).is_some())
            .and_then(|(c, _)| valid(c))
    };
    if policy.tunes() && !super::space::to_run(&super::space::space(desc, gpu.target()?), entry.as_ref(), false).is_empty() {
        let summary = sweep(gpu, desc, problem, store, &Options::default(), &|_| {})?;
        if let Some(e) = &summary.store_error {
            eprintln!("tessera: {e}; the tuning result is not remembered");
        }
        for e in &summary.gpu_errors {
            eprintln!("tessera: tuning stopped early: {e}");
        }
        if let Some(config) = stored(&summary.entry) {
            return Ok(Choice {
                config,
                source: Source::Tuned,
                key,
            });
        }
    } else if let Some(config) = entry.as_ref().and_then(stored) {
        return Ok(Choice {
            config,
            source: Source::Cached,
            key,
        });
    }
    let config = fallback(desc, problem, gpu.max_shared_bytes).map_err(|why| TuneError::NothingFits { kernel: desc.name, why })?;
    Ok(Choice {
        config,
        source: Source::Default,
        key,
    })
}

/// Without a stored winner: the default config, or where it cannot run the problem (a decode
/// kernel's GQA group larger than its query rows, or more shared memory than the device has)
/// a config of the space that can (`Problem::check_for` has made sure that one holds the
/// group): one the tuner would time before one it prunes (for spills), then the fewest query
/// rows (more rows than the group needs are more slabs a warp holds in registers), then the
/// space's order. Where none can, why not.
pub(super) fn fallback(desc: &KernelDesc, problem: &Problem, max_shared_bytes: u32) -> Result<Config, String> {
    // A config with its shared memory and whether it spills (its program built once), or None
    // where its program does not build.
    let built = |c: Config| tessera_codegen::kernel_program(desc, &c).ok().map(|p| (c, p.shared_bytes(), fragments_spill(&p)));
    let holds = |c: &Config| holds_group(desc, c, problem);
    let default_config = desc.default_config().filter(holds);
    let others: Vec<Config> = desc.configs().into_iter().filter(|c| holds(c) && Some(*c) != desc.default_config()).collect();
    let which = if is_decode(desc) { format!("its configs that hold a GQA group of {} query heads", problem.group()) } else { "its configs".to_string() };
    if default_config.is_none() && others.is_empty() {
        return Err(if is_decode(desc) { format!("none of its configs holds a GQA group of {} query heads", problem.group()) } else { "it has no config".to_string() });
    }
    let default = default_config.and_then(built);
    if let Some((c, _, _)) = default.filter(|&(_, bytes, _)| bytes <= max_shared_bytes) {
        return Ok(c);
    }
    let candidates: Vec<(Config, u32, bool)> = default.into_iter().chain(others.into_iter().filter_map(built)).collect();
    let fitting = candidates.iter().filter(|&&(_, bytes, _)| bytes <= max_shared_bytes);
    fitting.min_by_key(|(c, _, spills)| (*spills, query_rows(c))).map(|(c, _, _)| *c).ok_or_else(|| match candidates.iter().map(|&(_, bytes, _)| bytes).min() {
        Some(least) => format!("{which} need {least} bytes of shared memory or more, and this GPU gives a CTA {max_shared_bytes}"),
        None => format!("none of {which} builds"),
    })
}
