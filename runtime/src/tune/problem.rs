//! The problem a schedule is tuned for: batch, heads of q and of k/v, and both sequence lengths,
//! or for a window over 2 or 3 axes the token grid in their place. A decode kernel's problem is
//! one query token per head (`seq_q = 1`) over a context of `seq_kv` cached tokens.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tessera_codegen::ir::decode::query_rows;
use tessera_codegen::reference::Shape;
use tessera_desc::{KernelDesc, Param, Visit, Window};

use super::decode::is_decode;
use crate::gpu::grid_extents;

/// Q is `[batch, heads, seq_q, head_dim]`, K and V `[batch, kv_heads, seq_kv, head_dim]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Problem {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub seq_q: usize,
    pub seq_kv: usize,
    /// The token grid of a window over 2 or 3 axes, whose tokens are both sequences; `None`
    /// for every other kernel (a 1-D window's grid is its sequence). Left out of the JSON when
    /// `None`, so that records written before grids existed read, and are written, unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<Grid>,
}

/// Extents of a 2- or 3-axis token grid, outermost first; tokens are row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "Vec<usize>", try_from = "Vec<usize>")]
pub struct Grid {
    extents: [usize; 3],
    dims: usize,
}

impl Grid {
    /// A grid of `extents`: 2 or 3 of them, each at least 1, their product a `usize`.
    pub fn new(extents: &[usize]) -> Result<Grid, String> {
        if !(2..=3).contains(&extents.len()) {
            return Err(format!(
                "a token grid has 2 or 3 extents, not {} (a 1-D window's grid is its sequence)",
                extents.len()
            ));
        }
        if extents.contains(&0) {
            return Err(format!("grid extents must be at least 1, got {extents:?}"));
        }
        if extents
            .iter()
            .try_fold(1usize, |n, &e| n.checked_mul(e))
            .is_none()
        {
            return Err(format!(
                "the grid {extents:?} has more tokens than fit in usize"
            ));
        }
        let mut padded = [1; 3];
        padded[..extents.len()].copy_from_slice(extents);
        Ok(Grid {
            extents: padded,
            dims: extents.len(),
        })
    }

    /// One extent per axis, as a launch takes them (`AttentionArgs::grid`).
    pub fn extents(&self) -> &[usize] {
        &self.extents[..self.dims]
    }

    pub fn tokens(&self) -> usize {
        self.extents.iter().product()
    }
}

/// `80x80`: the catalog's names and configs' tile shapes write shapes the same way.
impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.extents().iter().map(usize::to_string).collect();
        f.write_str(&parts.join("x"))
    }
}

impl FromStr for Grid {
    type Err = String;

    fn from_str(s: &str) -> Result<Grid, String> {
        let extents = s
            .split('x')
            .map(|e| e.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("grid `{s}` is not XxY or XxYxZ"))?;
        Grid::new(&extents)
    }
}

impl From<Grid> for Vec<usize> {
    fn from(g: Grid) -> Vec<usize> {
        g.extents().to_vec()
    }
}

impl TryFrom<Vec<usize>> for Grid {
    type Error = String;

    fn try_from(extents: Vec<usize>) -> Result<Grid, String> {
        Grid::new(&extents)
    }
}

impl Problem {
    /// Self-attention over `grid`: both sequences are its tokens.
    pub fn on_grid(batch: usize, heads: usize, kv_heads: usize, grid: Grid) -> Problem {
        let tokens = grid.tokens();
        Problem {
            batch,
            heads,
            kv_heads,
            seq_q: tokens,
            seq_kv: tokens,
            grid: Some(grid),
        }
    }

    /// A decode step: one query token per head attending to `context` cached tokens.
    pub fn decode(batch: usize, heads: usize, kv_heads: usize, context: usize) -> Problem {
        Problem {
            batch,
            heads,
            kv_heads,
            seq_q: 1,
            seq_kv: context,
            grid: None,
        }
    }

    /// Query heads per K/V head (1 without grouped-query attention).
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads.max(1)
    }

    /// The grid as a launch takes it (`AttentionArgs::grid`).
    pub fn grid_arg(&self) -> Option<&[usize]> {
        self.grid.as_ref().map(Grid::extents)
    }

    /// The token grid's extents as the float64 reference takes them: the grid's, else the
    /// tokens in a row.
    pub fn extents(&self) -> Vec<usize> {
        self.grid_arg().map_or(vec![self.seq_q], <[usize]>::to_vec)
    }

    /// Why this problem cannot be launched, if it cannot: the same limits `Attention::run`
    /// checks, found before anything is compiled or allocated.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("batch", self.batch),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("seq_q", self.seq_q),
            ("seq_kv", self.seq_kv),
        ];
        for (name, v) in fields {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
            if i32::try_from(v).is_err() {
                return Err(format!("{name} = {v} does not fit in i32"));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "kv_heads ({}) must divide heads ({})",
                self.kv_heads, self.heads
            ));
        }
        Ok(())
    }

    /// [`Problem::check`], and what `desc` asks of a problem: a neighborhood is
    /// self-attention over one grid, which must hold the window (checked as the launch does);
    /// a decode kernel takes one query token per head, and a GQA group that some query tile
    /// of its space holds; other kernels take no grid; block-sparse kernels cannot be tuned yet.
    pub fn check_for(&self, desc: &KernelDesc) -> Result<(), String> {
        self.check()?;
        if is_decode(desc) {
            return self.check_decode(desc);
        }
        // The tuner checks and times kernels on inputs it makes, and it makes no block maps
        // yet: say so before any GPU work rather than fail at the first launch.
        if let Visit::Blocks(_) = desc.visit {
            return Err(format!(
                "{} is block-sparse: tuning it needs a block map, which the tuner does not make yet",
                desc.name
            ));
        }
        if matches!(desc.visit, Visit::Window(_)) && self.seq_q != self.seq_kv {
            return Err(format!(
                "a window kernel needs seq_q = seq_kv, got {} and {}",
                self.seq_q, self.seq_kv
            ));
        }
        grid_extents(desc, self.seq_q, self.grid_arg()).map(drop)
    }

    fn check_decode(&self, desc: &KernelDesc) -> Result<(), String> {
        if self.seq_q != 1 || self.grid.is_some() {
            return Err(format!(
                "{} is a decode kernel: one query token per head over a context, so the shape is \
                 B,H,HKV,1,CONTEXT (got {self})",
                desc.name
            ));
        }
        let rows = desc.configs().iter().map(|c| query_rows(c) as usize).max().unwrap_or(0);
        if self.group() > rows {
            return Err(format!(
                "{} query heads per KV head do not fit any config of {} (at most {rows} query rows per warp)",
                self.group(),
                desc.name
            ));
        }
        Ok(())
    }

    pub fn q_dims(&self, head_dim: usize) -> [usize; 4] {
        [self.batch, self.heads, self.seq_q, head_dim]
    }

    pub fn kv_dims(&self, head_dim: usize) -> [usize; 4] {
        [self.batch, self.kv_heads, self.seq_kv, head_dim]
    }

    /// The reference's shape of this problem's tensors.
    pub fn shape(&self, head_dim: usize) -> Shape {
        Shape {
            batch: self.batch,
            heads: self.heads,
            kv_heads: self.kv_heads,
            seq_q: self.seq_q,
            seq_kv: self.seq_kv,
            head_dim,
        }
    }

    /// The small problem each candidate must get right before it is timed: the same GQA group
    /// over two K/V heads, and lengths that are no multiple of any tile (so the bounds checks
    /// run). Other kernels keep the ordering of seq_q against seq_kv (so a causal kernel's
    /// bottom-right alignment is exercised as in the real problem); a window gets the grid of
    /// [`check_grid`]; a decode kernel gets [`DECODE_CHECK_CONTEXT`] tokens.
    pub fn check_problem(&self, desc: &KernelDesc) -> Problem {
        const SEQ: usize = 131;
        let (seq_q, seq_kv, grid) = match desc.visit {
            _ if is_decode(desc) => (1, DECODE_CHECK_CONTEXT, None),
            Visit::Window(w) => {
                let axes = check_grid(desc, &w);
                let tokens = axes.iter().product();
                // `None` for one axis, whose grid is its sequence; more are a valid grid.
                (tokens, tokens, Grid::new(&axes).ok())
            }
            _ => match self.seq_kv.cmp(&self.seq_q) {
                Ordering::Greater => (SEQ, 197, None),
                Ordering::Less => (SEQ, 67, None),
                Ordering::Equal => (SEQ, SEQ, None),
            },
        };
        Problem {
            batch: 1,
            heads: 2 * self.group(),
            kv_heads: 2,
            seq_q,
            seq_kv,
            grid,
        }
    }
}

/// The correctness check's context for a decode kernel: with the tuner's cache policy
/// (`tune::decode::POLICY`: 32 tokens kept dense, 256-token chunks) two chunks are compressed,
/// eight 64-token tiles that the default split count spreads over several CTAs (so the merge
/// runs), and a dense window of 100 tokens, whose last tile is partial.
pub const DECODE_CHECK_CONTEXT: usize = 612;

/// Query-key pairs (tokens × window) up to which the float64 reference of a check grid takes
/// about a second in a release build, for two heads. (It also evaluates the window rule for
/// all tokens² pairs to find each row's keys: cheap next to the products, and like them spread
/// over the CPU's cores.)
const REFERENCE_PAIRS: usize = 2_000_000;

/// The correctness check's grid for the window `w` of `desc`, with as many axes: each axis one
/// tile of its largest extent longer than the window's span, so that windows slide between
/// tiles, where the float64 reference (tokens × window) can afford it; else the tightest grid
/// that holds the window, as a large window leaves no choice.
fn check_grid(desc: &KernelDesc, w: &Window) -> Vec<usize> {
    let roomy = axis_extents(desc, w, 1);
    let keys: usize = w.axes().iter().map(|a| a.size as usize).product();
    if roomy.iter().product::<usize>() * keys <= REFERENCE_PAIRS {
        roomy
    } else {
        axis_extents(desc, w, 0)
    }
}

/// Per axis, the smallest extent that holds the window's span (size × dilation) plus `margin`
/// tiles of the largest extent on that axis, and at least that tile and a ragged one, and that
/// no tile extent of the space (nor a dilation) divides, so that every config's last tile on
/// every axis is partial and dilation groups differ in length.
fn axis_extents(desc: &KernelDesc, w: &Window, margin: usize) -> Vec<usize> {
    let s = &desc.schedule;
    let tiles = |a: usize| -> Vec<usize> {
        [s.q_tile[a], s.kv_tile[a]]
            .iter()
            .flat_map(Param::values)
            .map(|&t| t as usize)
            .collect()
    };
    w.axes()
        .iter()
        .enumerate()
        .map(|(a, axis)| {
            let tiles = tiles(a);
            let largest = tiles.iter().copied().max().unwrap_or(1);
            let span = axis.size as usize * axis.dilation as usize;
            let mut extent = (span + margin * largest).max(largest + 3);
            // Dilation groups of unequal lengths too: the tiles of a short group end early.
            let d = axis.dilation as usize;
            while tiles.iter().any(|&t| t > 1 && extent.is_multiple_of(t)) || (d > 1 && extent.is_multiple_of(d)) {
                extent += 1;
            }
            extent
        })
        .collect()
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{},", self.batch, self.heads, self.kv_heads)?;
        match self.grid {
            Some(grid) => write!(f, "{grid}"),
            None => write!(f, "{},{}", self.seq_q, self.seq_kv),
        }
    }
}

/// `B,H,HKV,SQ,SKV`, as `--shape` takes it (a decode step is `B,H,HKV,1,CONTEXT`); for a window
/// over 2 or 3 axes `B,H,HKV,XxY[xZ]`: the grid in place of the two lengths, which are its tokens.
impl FromStr for Problem {
    type Err = String;

    fn from_str(s: &str) -> Result<Problem, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let num = |name: &str, v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{name} `{v}` is not a count"))
        };
        let counts = |b, h, hkv| -> Result<_, String> {
            Ok((num("batch", b)?, num("heads", h)?, num("kv heads", hkv)?))
        };
        let p = match parts.as_slice() {
            [b, h, hkv, sq, skv] => {
                let (batch, heads, kv_heads) = counts(b, h, hkv)?;
                Problem {
                    batch,
                    heads,
                    kv_heads,
                    seq_q: num("seq_q", sq)?,
                    seq_kv: num("seq_kv", skv)?,
                    grid: None,
                }
            }
            [b, h, hkv, grid] if grid.contains('x') => {
                let (batch, heads, kv_heads) = counts(b, h, hkv)?;
                Problem::on_grid(batch, heads, kv_heads, grid.parse()?)
            }
            _ => {
                return Err(format!(
                    "`{s}` is not B,H,HKV,SQ,SKV (batch, heads, kv heads, seq_q, seq_kv) \
                     or B,H,HKV,XxY[xZ] (a window's token grid in place of the lengths)"
                ));
            }
        };
        p.check()?;
        Ok(p)
    }
}
