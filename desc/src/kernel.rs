use crate::{Config, Dtype, Layout, Load, Mma, Param, Schedule, Visit};

/// A kernel definition as written by the user, validated by the DSL at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelDesc {
    /// Kernel name: the struct name in snake case unless the definition gives `name = "..."`.
    pub name: &'static str,
    pub head_dim: u32,
    pub dtype: Dtype,
    pub layout: Layout,
    pub visit: Visit,
    pub load: Load,
    pub schedule: Schedule,
}

/// Implemented by `#[tessera::attention]` for the annotated item.
pub trait Kernel {
    const DESC: KernelDesc;
}

impl KernelDesc {
    /// Every config of the schedule's space that passes the combination rules, in a stable order,
    /// with the instruction every GPU has.
    pub fn configs(&self) -> Vec<Config> {
        self.configs_with(&[Mma::Sync])
    }

    /// The schedule's space times the instruction families `mmas` (those of a device), each
    /// schedule point with its families next to each other.
    pub fn configs_with(&self, mmas: &[Mma]) -> Vec<Config> {
        let s = &self.schedule;
        let mut out = Vec::new();
        for q_tile in shapes(&s.q_tile) {
            for kv_tile in shapes(&s.kv_tile) {
                for &warps in s.warps.values() {
                    for &stages in s.stages.values() {
                        for &mma in mmas {
                            let cfg = Config { q_tile, kv_tile, warps, stages, mma };
                            if self.check_config(&cfg).is_ok() {
                                out.push(cfg);
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// The config used when nothing is tuned: the first valid one in the space, so the first
    /// choice written for each parameter is its default (the catalog puts the H100 winner first).
    pub fn default_config(&self) -> Option<Config> {
        self.configs().into_iter().next()
    }
}

/// Every tile shape of per-axis choices, axis 0 varying slowest.
fn shapes(axes: &[Param; 3]) -> Vec<[u32; 3]> {
    let mut out = Vec::new();
    for &x in axes[0].values() {
        for &y in axes[1].values() {
            for &z in axes[2].values() {
                out.push([x, y, z]);
            }
        }
    }
    out
}
