//! The launch API's tuned entry points: the stored winner for the problem, tuning on first use
//! when enabled, the kernel's default config otherwise.

use tessera_desc::{Config, KernelDesc};

use super::{Attention, Gpu, MustafarDecode};
use crate::tune::{self, Policy, Problem, Store, TuneError};

impl Attention {
    /// `desc` loaded at the best known config for `problem` on `gpu`, from the tuning store
    /// (`$TESSERA_TUNE_CACHE` or the user cache directory). With [`Policy::FromEnv`],
    /// `TESSERA_AUTOTUNE=1` tunes keys the store does not know yet. `tune::choose` also says
    /// where the config came from. A window over 2 or 3 axes is tuned per grid: launches pass
    /// the problem's (`AttentionArgs::grid` = `problem.grid_arg()`).
    pub fn for_problem(
        gpu: &Gpu,
        desc: &KernelDesc,
        problem: &Problem,
        policy: Policy,
    ) -> Result<Attention, TuneError> {
        Ok(Attention::load(gpu, desc, &chosen(gpu, desc, problem, policy)?)?)
    }
}

impl MustafarDecode {
    /// The decode kernel `desc` loaded as [`Attention::for_problem`] loads an attention kernel,
    /// for a decode step's `problem` ([`Problem::decode`]: batch, heads, kv_heads, and the
    /// cache's tokens, compressed and dense, as the context).
    pub fn for_problem(
        gpu: &Gpu,
        desc: &KernelDesc,
        problem: &Problem,
        policy: Policy,
    ) -> Result<MustafarDecode, TuneError> {
        Ok(MustafarDecode::load(gpu, desc, &chosen(gpu, desc, problem, policy)?)?)
    }
}

/// The config `tune::choose` picks for `problem` from the store of the environment.
fn chosen(gpu: &Gpu, desc: &KernelDesc, problem: &Problem, policy: Policy) -> Result<Config, TuneError> {
    Ok(tune::choose(gpu, desc, problem, policy, &Store::from_env())?.config)
}
