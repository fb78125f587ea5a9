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
    /// Query tile extent along each grid axis (row-major; axes past the kernel's grid are
    /// `Fixed(1)`). The tile's query rows are the product.
    pub q_tile: [Param; 3],
    /// KV tile extent along each grid axis; its keys are the product.
    pub kv_tile: [Param; 3],
    /// Warps per CTA; warps split the query rows in 16-row slabs.
    pub warps: Param,
    /// K/V tiles in flight in shared memory (1 = no overlap of loads and math).
    pub stages: Param,
}

impl Schedule {
    /// A schedule whose tiles are runs of consecutive tokens (dense, causal, 1-D windows).
    pub const fn line(block_q: Param, block_kv: Param, warps: Param, stages: Param) -> Schedule {
        Schedule {
            q_tile: [block_q, Param::Fixed(1), Param::Fixed(1)],
            kv_tile: [block_kv, Param::Fixed(1), Param::Fixed(1)],
            warps,
            stages,
        }
    }
}

/// A tile's space per axis, such as `[64, 128]` or `8x[8, 16]` (trailing `1` axes left out).
pub fn tile_space(axes: &[Param; 3]) -> String {
    let n = (1..3).rev().find(|&a| axes[a] != Param::Fixed(1)).map_or(1, |a| a + 1);
    per_axis(&axes[..n])
}

/// The first `axes` extents of a tile shape, written `8x16`.
pub fn shape_text(shape: &[u32; 3], axes: usize) -> String {
    per_axis(&shape[..axes])
}

fn per_axis(items: &[impl fmt::Display]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join("x")
}
