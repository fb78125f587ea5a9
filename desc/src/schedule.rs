//! The tile schedule: tile sizes, warps and pipeline depth, each fixed or a set of choices that
//! the tuner explores.

use std::fmt;

/// A schedule parameter: one value, or the choices a tuner may pick from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Param {
    Fixed(u32),
    Choices(&'static [u32]),
}

impl Param {
    pub fn values(&self) -> &[u32] {
        match self {
            Param::Fixed(v) => std::slice::from_ref(v),
            Param::Choices(vs) => vs,
        }
    }

    pub fn contains(&self, v: u32) -> bool {
        self.values().contains(&v)
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Fixed(v) => write!(f, "{v}"),
            Param::Choices(vs) => {
                let items: Vec<String> = vs.iter().map(u32::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// Query rows per CTA.
    pub block_q: Param,
    /// Keys per KV tile.
    pub block_kv: Param,
    /// Warps per CTA; warps split the query rows in 16-row slabs.
    pub warps: Param,
    /// K/V tiles in flight in shared memory (1 = no overlap of loads and math).
    pub stages: Param,
}
