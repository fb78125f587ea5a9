//! A CPU interpreter of the tile IR: runs a program CTA by CTA with the same loops, masks and
//! roundings as the GPU kernel, and checks the async-copy discipline the GPU would silently
//! violate (reading a stage before its copy was waited for and published by a barrier, or
//! overwriting a stage that other warps may still be reading).

mod cta;
mod decode;
mod select;

pub use decode::{DecodeInputs, decode, merge_splits};
pub use select::{LowBitRows, SelectRows, UNWRITTEN, select, select_low_bit};

use std::collections::HashMap;

use crate::ir::{Program, Var};

/// Sizes and inputs of one launch. Tensors are `[batch, heads, tokens, head_dim]` in f32; the
/// interpreter rounds them to the program's element type where the kernel loads them.
pub struct Launch<'a> {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub seq_q: usize,
    pub seq_kv: usize,
    /// Grid extents of a neighborhood kernel's tokens (`[seq, 1, 1]` for a line).
    pub grid: [usize; 3],
    pub scale: f32,
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    /// K and V as bitmap-compressed caches (`batch × kv_heads` planes of `seq_kv` tokens), for
    /// kernels with a bitmap load; `k`/`v` are then unused for the compressed tensor.
    pub k_bitmap: Option<&'a crate::format::BitmapCache>,
    pub v_bitmap: Option<&'a crate::format::BitmapCache>,
    /// Tokens per plane of the bitmap caches (`Var::Compressed`).
    pub compressed: usize,
    /// CTAs each plane's keys are split over by a split-KV program (`Var::Splits`).
    pub splits: usize,
    /// The block map of a block-sparse kernel (`Visit::Blocks`), whose tiles are the program's
    /// tiles; other kernels ignore it.
    pub blocks: Option<&'a crate::format::BlockLists>,
}

impl<'a> Launch<'a> {
    /// A launch over `shape`'s dense tensors: its tokens a line (`grid` `[seq_q, 1, 1]`), no
    /// compressed caches or block map, one split. Struct update adds the rest.
    pub fn new(shape: &crate::reference::Shape, scale: f32, q: &'a [f32], k: &'a [f32], v: &'a [f32]) -> Launch<'a> {
        Launch {
            batch: shape.batch,
            heads: shape.heads,
            kv_heads: shape.kv_heads,
            seq_q: shape.seq_q,
            seq_kv: shape.seq_kv,
            grid: [shape.seq_q, 1, 1],
            scale,
            q,
            k,
            v,
            k_bitmap: None,
            v_bitmap: None,
            compressed: shape.seq_kv,
            splits: 1,
            blocks: None,
        }
    }
}

pub struct Output {
    /// `[batch, heads, seq_q, head_dim]`, values rounded to the element type.
    pub o: Vec<f32>,
    /// `[batch, heads, seq_q]`, natural log.
    pub lse: Vec<f32>,
    /// A split-KV program's partial outputs and LSEs (see `Tensor::OSplit`), f32.
    pub o_split: Vec<f32>,
    pub lse_split: Vec<f32>,
    /// A selection program's block map (`Stmt::StoreMap`), `[batch · heads, q_tiles,
    /// kv_tiles]`; entries it does not write stay `UNWRITTEN`. Empty for other programs.
    pub kept: Vec<i32>,
}

pub fn run(program: &Program, launch: &Launch) -> Result<Output, String> {
    run_with(program, launch, SelectRows::default())
}

/// `run` with the per-token inputs of a selection program (`Tensor::Theta`, ...).
fn run_with(program: &Program, launch: &Launch, rows: SelectRows) -> Result<Output, String> {
    let d = program.head_dim as usize;
    let (b, h, hk) = (launch.batch, launch.heads, launch.kv_heads);
    if h == 0 || hk == 0 || h % hk != 0 {
        return Err(format!("heads ({h}) must be a positive multiple of kv_heads ({hk})"));
    }
    for (name, got, want) in [
        ("q", launch.q.len(), b * h * launch.seq_q * d),
        ("k", launch.k.len(), b * hk * launch.seq_kv * d),
        ("v", launch.v.len(), b * hk * launch.seq_kv * d),
    ] {
        if got != want {
            return Err(format!("{name} has {got} elements, the shape needs {want}"));
        }
    }
    for (name, cache) in [("k", launch.k_bitmap), ("v", launch.v_bitmap)] {
        if let Some(c) = cache {
            c.validate().map_err(|e| format!("{name} bitmap cache: {e}"))?;
            let want = (b * hk, launch.compressed, d, program.dtype);
            if (c.heads, c.tokens, c.head_dim, c.dtype) != want {
                return Err(format!(
                    "{name} bitmap cache holds {} planes × {} tokens × d{} {}; the launch needs {} × {} × d{} {}",
                    c.heads, c.tokens, c.head_dim, c.dtype.name(), want.0, want.1, want.2, want.3.name()
                ));
            }
        }
    }
    if program.reads_rows() && rows.theta.len() != b * h * launch.seq_q {
        return Err(format!("theta has {} elements, the shape needs {}", rows.theta.len(), b * h * launch.seq_q));
    }
    if program.reads_scales() {
        let s = rows.low_bit.ok_or("the program dequantizes low-bit scores, but the launch passed no scales")?;
        let (q_rows, k_rows) = (b * h * launch.seq_q, b * hk * launch.seq_kv);
        for (name, got, want) in [
            ("q_scale", s.q_scale.len(), q_rows),
            ("k_scale", s.k_scale.len(), k_rows),
            ("qmk", s.qmk.len(), b * h * launch.seq_kv),
            ("qk_mean", s.qk_mean.len(), q_rows),
        ] {
            if got != want {
                return Err(format!("{name} has {got} elements, the shape needs {want}"));
            }
        }
    }
    if program.reads_tables() {
        let lists = launch.blocks.ok_or("the kernel reads block lists, but the launch passed none")?;
        let (bq, bkv) = (program.config.block_q() as usize, program.config.block_kv() as usize);
        lists.check_launch(b * h, launch.seq_q, launch.seq_kv, bq, bkv)?;
    }
    let sizes: HashMap<Var, i32> = [
        (Var::Batch, b),
        (Var::Heads, h),
        (Var::KvHeads, hk),
        (Var::SeqQ, launch.seq_q),
        (Var::SeqKv, launch.seq_kv),
        (Var::Compressed, launch.compressed),
        (Var::Splits, launch.splits),
        (Var::Grid(0), launch.grid[0]),
        (Var::Grid(1), launch.grid[1]),
        (Var::Grid(2), launch.grid[2]),
    ]
    .into_iter()
    .map(|(v, n)| i32::try_from(n).map(|n| (v, n)).map_err(|_| format!("{v} = {n} overflows i32")))
    .collect::<Result<_, _>>()?;
    let grid: Vec<i32> = program
        .grid
        .iter()
        .map(|e| e.eval(&|v| sizes.get(&v).copied()))
        .collect::<Result<_, _>>()?;

    // Poisoned: anything the program forgets to write stays NaN and fails comparisons.
    let out_rows = b * h * launch.seq_q;
    let mut out = Output {
        o: vec![f32::NAN; out_rows * d],
        lse: vec![f32::NAN; out_rows],
        o_split: vec![f32::NAN; out_rows * launch.splits * d],
        lse_split: vec![f32::NAN; out_rows * launch.splits],
        kept: Vec::new(),
    };
    if program.writes_map() {
        let (bq, bkv) = (program.config.block_q() as usize, program.config.block_kv() as usize);
        out.kept = vec![UNWRITTEN; b * h * launch.seq_q.div_ceil(bq) * launch.seq_kv.div_ceil(bkv)];
    }
    for z in 0..grid[2] {
        for y in 0..grid[1] {
            for x in 0..grid[0] {
                let mut vars = sizes.clone();
                vars.extend([(Var::Cta(0), x), (Var::Cta(1), y), (Var::Cta(2), z)]);
                cta::Cta::new(program, launch, rows, vars)
                    .run(&mut out)
                    .map_err(|e| format!("CTA ({x}, {y}, {z}): {e}"))?;
            }
        }
    }
    Ok(out)
}
