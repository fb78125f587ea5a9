//! The tuning key: what a winner depends on, written as canonical text and hashed (the PTX
//! cache's approach, for the same reason: the key outlives the process, so it must be a
//! function of its inputs alone, not of `Hash` or `Debug`).
//!
//! - The kernel: a hash of what it computes, *not* of its tuning space. Records are kept per
//!   config, so a space that gains a config keeps every timing and only the new config is
//!   timed (re-tuning everything when one config is added is what users of other tuners
//!   complain about).
//! - The problem, bucketed: sequence lengths rounded up to powers of two (nearby lengths share
//!   a winner; tuning every length would make the cache useless for variable-length serving);
//!   head dim, dtype and GQA group exact, since they change the kernel's inner loop. The token
//!   grid of a window over 2 or 3 axes is exact too: its tiles are boxes, so each extent sets
//!   how full the last box of its axis is and how much of the grid is border (where windows
//!   shift inward and a tile visits fewer KV tiles), and a model has few grids (its image or
//!   video sizes), so exact keys cost few sweeps. A 1-D window's length is bucketed as any.
//!   A decode kernel's problem (`seq_q` = 1, `seq_kv` its context, bucketed) adds its planes,
//!   batch × kv_heads, rounded up to a power of two: they are its grid's CTAs besides the
//!   splits, and the default split count spreads the GPU's resident CTAs over them, so
//!   they set how much context each CTA streams. (Its cache's
//!   sparsities are left out: see `decode::POLICY`.)
//! - The device: name, compute capability and driver version (the driver's JIT compiles the
//!   PTX, so a new driver can change which schedule wins).
//! - tessera's version and codegen's source fingerprint: a changed lowering invalidates timings.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};
use tessera_desc::KernelDesc;

use super::decode::is_decode;
use super::device::DeviceInfo;
use super::problem::{Grid, Problem};
use crate::cache::{kernel_lines, sha256_hex, tessera_version};

/// Version of the canonical text: bumped when its format changes, so older entries are never
/// looked up again instead of being misread.
const FORMAT: &str = "tessera-tune-key v1";

/// The problem as the key sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub seq_q: usize,
    pub seq_kv: usize,
    pub head_dim: u32,
    pub dtype: String,
    pub group: usize,
    /// Exact (see the module's comment); absent from the JSON, and from the canonical text,
    /// when `None`, so that the keys of problems without a grid did not change when grids came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<Grid>,
    /// A decode kernel's batch × kv_heads, bucketed; `None` (and absent, as `grid`) for
    /// other kernels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planes: Option<usize>,
}

impl Bucket {
    pub fn of(desc: &KernelDesc, problem: &Problem) -> Bucket {
        let planes = problem.batch.saturating_mul(problem.kv_heads);
        Bucket {
            planes: is_decode(desc).then(|| bucket_len(planes)),
            seq_q: bucket_len(problem.seq_q),
            seq_kv: bucket_len(problem.seq_kv),
            head_dim: desc.head_dim,
            dtype: desc.dtype.name().to_string(),
            group: problem.group(),
            grid: problem.grid,
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.planes {
            Some(planes) => write!(f, "context <= {}, batch x kv_heads <= {planes}, ", self.seq_kv)?,
            None => write!(f, "seq_q <= {}, seq_kv <= {}, ", self.seq_q, self.seq_kv)?,
        }
        if let Some(grid) = self.grid {
            write!(f, "grid {grid}, ")?;
        }
        write!(
            f,
            "head_dim {}, {}, GQA group {}",
            self.head_dim, self.dtype, self.group
        )
    }
}

/// A sequence length's bucket: the next power of two (a length is its own bucket if it is one).
pub fn bucket_len(n: usize) -> usize {
    n.checked_next_power_of_two().unwrap_or(usize::MAX)
}

/// Everything a key is made of, kept in each store entry so that `tessera cache` can show it
/// and a loaded entry can be checked against its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub kernel: String,
    /// SHA-256 of the PTX cache's kernel lines (name, head dim, dtype, layout, visit, load).
    pub kernel_hash: String,
    pub bucket: Bucket,
    pub device: DeviceInfo,
    /// tessera's version and codegen's source fingerprint.
    pub tessera: String,
}

impl KeyInfo {
    pub fn new(desc: &KernelDesc, problem: &Problem, device: &DeviceInfo) -> KeyInfo {
        KeyInfo {
            kernel: desc.name.to_string(),
            kernel_hash: sha256_hex(&kernel_lines(desc)),
            bucket: Bucket::of(desc, problem),
            device: device.clone(),
            tessera: tessera_version(),
        }
    }

    /// The entry's id in the store: hex SHA-256 of [`KeyInfo::canonical`].
    pub fn id(&self) -> String {
        sha256_hex(&self.canonical())
    }

    /// One `name=value` line per field; strings with `{:?}` so that no value can forge a line.
    pub fn canonical(&self) -> String {
        let b = &self.bucket;
        let d = &self.device;
        let mut t = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(t, "{FORMAT}");
        let _ = writeln!(t, "tessera={:?}", self.tessera);
        let _ = writeln!(t, "kernel={:?}", self.kernel);
        let _ = writeln!(t, "kernel.hash={}", self.kernel_hash);
        let _ = writeln!(t, "problem.seq_q={}", b.seq_q);
        let _ = writeln!(t, "problem.seq_kv={}", b.seq_kv);
        // Only with a grid: keys without one keep their v1 text (and id), and a v1 text without
        // this line cannot be misread, since it is a key without a grid.
        if let Some(grid) = b.grid {
            let _ = writeln!(t, "problem.grid={grid}");
        }
        // Only for decode kernels, for the same reason.
        if let Some(planes) = b.planes {
            let _ = writeln!(t, "problem.planes={planes}");
        }
        let _ = writeln!(t, "problem.head_dim={}", b.head_dim);
        let _ = writeln!(t, "problem.dtype={:?}", b.dtype);
        let _ = writeln!(t, "problem.group={}", b.group);
        let _ = writeln!(t, "device.name={:?}", d.name);
        let _ = writeln!(
            t,
            "device.cc={}.{}",
            d.compute_capability.0, d.compute_capability.1
        );
        let _ = writeln!(t, "device.driver={}", d.driver);
        t
    }
}
