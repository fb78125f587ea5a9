//! What the kernel computes: element type, tensor layout, which KV tiles a query tile visits and
//! how those tiles are loaded. Each enum is `non_exhaustive` because later kernel families
//! (windows, estimated blocks, bitmap-compressed KV) extend the vocabulary.

use std::fmt;

/// Element type of Q, K, V and O. Accumulation is always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    Bf16,
    F16,
}

impl Dtype {
    pub const ALL: [Dtype; 2] = [Dtype::Bf16, Dtype::F16];

    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        }
    }

    pub fn from_name(name: &str) -> Option<Dtype> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn bytes(self) -> u32 {
        2
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Memory layout of Q, K, V and O.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layout {
    /// `[batch, heads, tokens, head_dim]`, contiguous.
    Bhsd,
}

impl Layout {
    pub const ALL: [Layout; 1] = [Layout::Bhsd];

    pub fn name(self) -> &'static str {
        match self {
            Layout::Bhsd => "bhsd",
        }
    }
}

/// Which KV tiles each query tile visits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Visit {
    /// Every KV tile.
    Dense,
    /// KV tiles up to the diagonal; query `i` sees key `j` iff `j <= i + (seq_kv - seq_q)`
    /// (bottom-right aligned, as FlashAttention-2 and SDPA with `is_causal` on equal lengths).
    Causal,
    /// Neighborhood attention over a token grid with NATTEN's exact semantics (windows shift
    /// inward at borders; dilation groups; stride leaders; per-axis causality). Self-attention:
    /// queries and keys are the same grid, whose extents are given at launch.
    Window(Window),
    /// SALE's block-sparse visit (seeds.md §2): a query tile visits exactly the KV tiles its row
    /// of a block map keeps. The map's blocks are the config's tiles (block_q × block_kv), and
    /// the map reaches the kernel at launch as, per (batch, head, query tile), the ascending
    /// indices of its kept KV tiles and their count (`codegen::format::blocks`). `estimate`
    /// says how the map is made; the attention kernel only reads it.
    Blocks(Blocks),
}

impl Visit {
    /// Axes of the token grid the kernel's tiles cover: a window's axes, else 1 (a line).
    pub fn grid_dims(self) -> usize {
        match self {
            Visit::Window(w) => w.dims as usize,
            _ => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Visit::Dense => "dense",
            Visit::Causal => "causal",
            Visit::Window(_) => "window",
            Visit::Blocks(_) => "blocks",
        }
    }
}

/// `blocks(estimate(...), causal = ...)`: which block map a query tile's KV loop reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Blocks {
    /// Within the kept tiles, query `i` sees key `j` iff `j <= i + seq_kv - seq_q` (bottom-right
    /// aligned, as `Visit::Causal`); partial tiles on the diagonal are masked element by element.
    pub causal: bool,
    pub estimate: Estimate,
}

/// How SALE's estimation kernel builds the block map: a low-bit Q·Kᵀ per block, compared by the
/// Relative Attention Score against the always-kept blocks with a per-head threshold τ. τ is
/// calibrated per head and model (seeds.md §2.4), so it is a launch input, not part of the
/// description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Estimate {
    /// Bits of the quantized Q and K: 4 (SALE's int4) or 8 (the int8 fallback for Hopper,
    /// where 4-bit `mma.sync` is emulated).
    pub bits: u8,
    /// Always-kept KV tiles at the start of the sequence (attention sinks).
    pub sink: u32,
    /// Tokens of the always-kept local window before the diagonal: whole KV tiles.
    pub local: u32,
}

impl Estimate {
    /// SALE's defaults: int4, one sink block, a 128-token local window.
    pub const SALE: Estimate = Estimate { bits: 4, sink: 1, local: 128 };
    pub const BITS: [u8; 2] = [4, 8];
}

impl fmt::Display for Blocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.estimate;
        write!(
            f,
            "blocks(estimate(bits = {}, sink = {}, local = {}), causal = {})",
            e.bits, e.sink, e.local, self.causal
        )
    }
}

/// One axis of a neighborhood: window size, dilation, stride and causality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowAxis {
    pub size: u32,
    pub dilation: u32,
    pub stride: u32,
    pub causal: bool,
}

/// A neighborhood over a 1-, 2- or 3-D grid; `axes[dims..]` are unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub dims: u8,
    pub axes: [WindowAxis; 3],
}

impl Window {
    pub const MAX_DIMS: u8 = 3;

    pub fn axes(&self) -> &[WindowAxis] {
        &self.axes[..(self.dims as usize).min(3)]
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |g: &dyn Fn(&WindowAxis) -> String| {
            self.axes().iter().map(g).collect::<Vec<_>>().join(", ")
        };
        write!(
            f,
            "window(size = [{}], dilation = [{}], stride = [{}], causal = [{}])",
            list(&|a| a.size.to_string()),
            list(&|a| a.dilation.to_string()),
            list(&|a| a.stride.to_string()),
            list(&|a| a.causal.to_string()),
        )
    }
}

/// How K/V tiles reach shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Load {
    /// Plain dense tiles from global memory.
    Dense,
    /// K and/or V read from Mustafar's bitmap-compressed format (`codegen::format::bitmap`):
    /// "load as compressed, compute as dense", decoded into the shared-memory tile.
    Bitmap(BitmapLoad),
}

/// Which of K and V a bitmap load reads compressed (at least one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BitmapLoad {
    pub k: bool,
    pub v: bool,
}

impl Load {
    pub fn name(self) -> &'static str {
        match self {
            Load::Dense => "dense",
            Load::Bitmap(_) => "bitmap",
        }
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Dense => f.write_str("dense"),
            Load::Bitmap(b) => {
                let names: Vec<&str> = [(b.k, "k"), (b.v, "v")].iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
                write!(f, "bitmap({})", names.join(", "))
            }
        }
    }
}
