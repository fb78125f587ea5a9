//! The tile IR: one CTA's program over tiles.
//!
//! A program declares shared-memory buffers (tiles of the element type, possibly several pipeline
//! stages) and register fragments (tiles spread over the CTA's warps in the mma accumulator
//! layout), then runs structured statements: async copies into shared memory with explicit
//! commit/wait/barrier, tensor-core products, masks, the online-softmax step, and stores.
//!
//! The same program is executed by the CPU interpreter (`crate::interp`) and lowered to LLVM
//! (`crate::llvm`); the scalar semantics both need live in `expr` and `crate::semantics`.
//!
//! Room for Hopper: a copy names its engine and a product names its instruction, so TMA copies
//! completing on an mbarrier, wgmma products and producer/consumer warpgroup roles are new
//! variants of `CopyEngine`, `MmaEngine` and a role field on blocks, not a new IR.

pub mod decode;
pub mod expr;
pub mod from_desc;
pub mod geometry;
mod print;
pub mod select;
mod subst;

use tessera_desc::{Config, Dtype, Visit};

use crate::format::TileOrder;

pub use expr::{BinOp, Expr, Table, Var};

/// Global tensors a kernel reads or writes, all `[batch, heads, tokens, head_dim]`
/// (`Lse` is `[batch, heads, tokens]`, f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tensor {
    Q,
    K,
    V,
    O,
    Lse,
    /// A split-KV kernel's per-split outputs, f32 and normalised over the split's keys:
    /// `[batch, heads, splits · seq_q, head_dim]`, split `s` at tokens `s·seq_q ..` (written
    /// where `O` is, merged by the decode merge kernel).
    OSplit,
    /// The per-split LSE, `[batch, heads, splits · seq_q]` f32 (written where `Lse` is).
    LseSplit,
    /// A selection program's per-row score thresholds, `[batch, heads, seq_q]` f32, read by
    /// `Stmt::LoadRows` (`ir::select`).
    Theta,
    /// A low-bit selection's scales (`ir::select`, `Operands::Int8`), one f32 per token: of the
    /// query codes `[batch, heads, seq_q]` and of the key codes `[batch, kv_heads, seq_kv]`.
    QScale,
    KScale,
    /// A low-bit selection's per-key correction `q̄_h · (k_j − k̄)` of the query mean, per query
    /// head: `[batch, heads, seq_kv]` f32.
    Qmk,
    /// A low-bit selection's per-query shift `q_i · k̄` back from mean-smoothed keys to the
    /// keys the thresholds were computed with: `[batch, heads, seq_q]` f32.
    QkMean,
}

impl Tensor {
    pub fn name(self) -> &'static str {
        match self {
            Tensor::Q => "q",
            Tensor::K => "k",
            Tensor::V => "v",
            Tensor::O => "o",
            Tensor::Lse => "lse",
            Tensor::OSplit => "o_split",
            Tensor::LseSplit => "lse_split",
            Tensor::Theta => "theta",
            Tensor::QScale => "q_scale",
            Tensor::KScale => "k_scale",
            Tensor::Qmk => "qmk",
            Tensor::QkMean => "qk_mean",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufId(pub usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragId(pub usize);

/// A shared-memory buffer for a tile of `rows × cols` elements, `stages` copies of it. A
/// `Form::Tile` is stored as column blocks of `block_cols` elements whose rows are 16-byte
/// chunks permuted by an XOR swizzle (see `llvm::layout::BLOCK_ROW_BYTES`); the other forms
/// hold the tile compressed (`Form`).
#[derive(Clone, Debug, PartialEq)]
pub struct Shared {
    pub name: &'static str,
    pub rows: u32,
    pub cols: u32,
    /// `cols` (one block: whole rows) for ldmatrix readers; 64 (128-byte rows, the canonical
    /// layout of TMA and wgmma descriptors) for tiles that wgmma reads.
    pub block_cols: u32,
    pub stages: u32,
    /// Byte offset in the CTA's dynamic shared memory, set by `passes::smem`.
    pub offset: Option<u32>,
    pub form: Form,
    /// Placed at this buffer's offset instead of its own: the two are used in phases that a
    /// barrier separates (a decode kernel's packed values and the dense tiles they become, or
    /// its V expanded after the scores have read Kᵀ), so they can share the bytes. A larger
    /// overlay runs on over the buffers placed after that one, which must all be done with by
    /// then too (the fold of a decode kernel's partial states, after both loops). The
    /// interpreter compares placed buffers' bytes, so it sees every such overlap.
    pub overlay: Option<BufId>,
}

/// What a shared buffer's stage holds for a `rows × cols` tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The tile's elements, swizzled (see `Shared`).
    Tile,
    /// The tile as Mustafar's packed values (`crate::format::bitmap`): a 64-value slot per
    /// 64-element bitmap tile, the tile's values from the slot's start, each 16-byte vector
    /// `v` of slot `u` at vector `v ^ (u % 8)`. Its bitmaps are in a `Meta` buffer.
    Values,
    /// Per 64-element bitmap tile of the `rows × cols` tile: its 64-bit bitmap, then after all
    /// bitmaps its first value's index in the cache (i32).
    Meta,
    /// The partial softmax states of the key parts but the first (`Stmt::MergeParts`): `rows`
    /// parts of `cols` f32 words, each a lane's O, m and l registers, lane-minor
    /// (`[part − 1][register][lane]`).
    Partials,
}

impl Shared {
    /// A one-stage tile, not yet placed.
    pub fn tile(name: &'static str, rows: u32, cols: u32) -> Shared {
        Shared { name, rows, cols, block_cols: cols, stages: 1, offset: None, form: Form::Tile, overlay: None }
    }

    /// Bytes of one stage, with elements of `elem` bytes.
    pub fn stage_bytes(&self, elem: u32) -> u32 {
        let bitmap_tiles = self.rows * self.cols / crate::format::bitmap::TILE as u32;
        match self.form {
            Form::Tile => self.rows * self.cols * elem,
            Form::Values => bitmap_tiles * crate::format::bitmap::TILE as u32 * 2,
            Form::Meta => bitmap_tiles * (8 + 4),
            Form::Partials => self.rows * self.cols * 4,
        }
    }

    /// Bytes of all stages.
    pub fn bytes(&self, elem: u32) -> u32 {
        self.stage_bytes(elem) * self.stages
    }
}

/// What a register fragment holds. All fragments have `block_q` rows; a warp owns 16-row slabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragKind {
    /// f32 accumulators in the mma C layout.
    Acc,
    /// Values rounded to the element type, ready to be an mma A operand.
    Operand,
    /// One f32 per row (running max and sum of the online softmax).
    RowStat,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Frag {
    pub name: &'static str,
    pub cols: u32,
    pub kind: FragKind,
}

/// A tile of a global tensor's (batch, head) plane: tile row `Var::Row` is token `token`, and
/// exists iff `valid` (rows outside the grid are not read, i.e. zero-filled, nor written).
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalTile {
    pub tensor: Tensor,
    pub batch: Expr,
    pub head: Expr,
    pub token: Expr,
    pub valid: Expr,
}

impl GlobalTile {
    /// `origin` where the token is `origin + row`: a tile of consecutive tokens, whose rows
    /// follow each other in memory.
    pub fn consecutive_origin(&self) -> Option<&Expr> {
        static ZERO: Expr = Expr::Const(0);
        match &self.token {
            Expr::Var(Var::Row) => Some(&ZERO),
            Expr::Bin(BinOp::Add, a, b) if **b == Expr::Var(Var::Row) && !a.uses(Var::Row) => Some(a),
            Expr::Bin(BinOp::Add, a, b) if **a == Expr::Var(Var::Row) && !b.uses(Var::Row) => Some(b),
            _ => None,
        }
    }
}

/// The hardware path of a global → shared copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyEngine {
    /// `cp.async.cg` 16-byte copies per thread, completed by commit/wait groups.
    CpAsync,
    /// Decoding Mustafar's bitmap-compressed tiles (`crate::format::bitmap`) of this tile order
    /// into the shared tile: pruned elements become zeros. Completes like a cp.async group.
    /// The interpreter's: kernels stage compressed tiles with `BitmapMeta`, `Stmt::CopyValues`
    /// and `Stmt::Expand` instead.
    Bitmap(crate::format::TileOrder),
    /// The bitmaps and value offsets of a compressed tile's 64-element tiles, into a
    /// `Form::Meta` buffer, with `cp.async`.
    BitmapMeta,
}

/// The instruction of a tile product. Both give the same fragment layout (a warp's 16-row slab
/// holds m16n8 C tiles), so everything around a product is the same for either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmaEngine {
    /// Warp-level `mma.sync.m16n8k16`, operands through `ldmatrix`.
    MmaSync,
    /// Hopper's warpgroup-level `wgmma.mma_async.m64nNk16`: four warps multiply their 64 rows
    /// by the whole of B, read by the tensor cores from shared memory through descriptors (A
    /// from shared memory too, or from registers). Chosen by `passes::engine` for sm_90a.
    Wgmma,
}

/// How an mma operand is stored. `A` is `[m][k]`; `B` is `[k][n]` either as is or transposed.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A shared tile, stage `stage`. `kn` is true when the tile's rows run along k (V in P·V),
    /// false when they run along the other dimension (Q as A, K in Q·Kᵀ). `part` says which of
    /// the tile's keys a warp multiplies (`Part`).
    Shared { buf: BufId, stage: Expr, kn: bool, part: Part },
    /// A register fragment in the C layout, reused as the A operand without shared memory.
    Frag(FragId),
}

/// Which part of a shared B operand a warp's slabs multiply. In a program whose warps split the
/// keys (`Program::key_parts` > 1), warp `w` reads the `w`-th of `key_parts` equal parts of the
/// tile's rows (`Rows`: tokens are rows, as in K `[n][k]` and V `[k][n]`) or of its columns
/// (`Cols`: Kᵀ `[k][n]`); elsewhere every warp reads the `Whole` tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Whole,
    Rows,
    Cols,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Let { var: Var, value: Expr },
    /// Starts an async copy of `rows(dst)` rows of `src` into `dst[stage]`; it lands at a `Wait`.
    Copy { dst: BufId, stage: Expr, src: GlobalTile, engine: CopyEngine },
    /// Starts an async copy of the packed values of compressed tile `src` (order `order`) into
    /// the `Form::Values` buffer `dst[stage]`, finding them with the bitmaps and offsets that
    /// `meta[meta_stage]` holds for the same tile (landed and published before this).
    /// (`order` is for the interpreter, which decodes the tile there: the bytes copied do
    /// not depend on it.)
    CopyValues { dst: BufId, stage: Expr, meta: BufId, meta_stage: Expr, src: GlobalTile, order: TileOrder },
    /// Decodes the compressed tile in `src[stage]` (values) and `meta[meta_stage]` (bitmaps)
    /// into the one-stage tile `dst`, pruned elements 0, each 64-element bitmap tile one row
    /// segment of `dst`: in `Values` order `dst` is the tile itself, in `Keys` order (a tile is
    /// 64 tokens of one channel) its transpose `[channel][token]`. A thread writes `dst`
    /// directly: a barrier publishes it.
    Expand { dst: BufId, src: BufId, stage: Expr, meta: BufId, meta_stage: Expr, order: TileOrder },
    /// Closes the group of copies issued since the last commit.
    Commit,
    /// Waits until at most `pending` committed groups are still in flight (for this thread).
    Wait { pending: u32 },
    /// CTA-wide barrier: copies that landed become visible, and reads before it are finished.
    Barrier,
    Fill { frag: FragId, value: f32 },
    /// Loads the operand fragment `frag` (the A layout of `Operand::Frag`) from the shared tile
    /// `src` (stage 0, landed and published), each warp its slabs' rows: products that read it
    /// then take A from registers, not shared memory, at every KV step.
    LoadOperand { frag: FragId, src: BufId },
    /// `acc += a · b`.
    Mma { acc: FragId, a: Operand, b: Operand, engine: MmaEngine },
    /// Placeholder for the visit set's element mask of the scores of the current KV tile,
    /// replaced by `passes::visit`.
    VisitMask { frag: FragId },
    /// Sets element (row, col) of `frag` to -inf where `keep` is false, on tiles where `when` holds
    /// (`Row`/`Col` are the tile-local query row and key column; a warp's key part starts at
    /// column `part · cols` of the KV tile, `Program::key_parts`).
    Mask { frag: FragId, keep: Expr, when: Expr },
    /// One online-softmax step: fold scores `s` into running max `m` and sum `l`, rescale `o`,
    /// and write the probabilities, rounded to the element type, to `p`.
    Softmax { s: FragId, p: FragId, m: FragId, l: FragId, o: FragId },
    /// Folds the warps' partial softmax states (`Program::key_parts`) of each query row into
    /// part 0's row: `m` the largest, `l` and `o` summed with the weights of
    /// `semantics::softmax::rescale` (0 for a part that saw no key). The other parts pass
    /// theirs through `scratch` (`Form::Partials`), with a barrier between their writes and
    /// part 0's reads; only part 0's rows hold the result.
    MergeParts { o: FragId, m: FragId, l: FragId, scratch: BufId },
    /// `o /= l` per row (rows with l = 0 become 0).
    Normalize { o: FragId, l: FragId },
    /// Stores `frag`, rounded to the element type, to rows of `dst` below its limit.
    Store { frag: FragId, dst: GlobalTile },
    /// Stores the natural-log LSE per row, when the launch asked for it.
    StoreLse { m: FragId, l: FragId, dst: GlobalTile },
    /// Loads one f32 per row of `src` into the row-statistics fragment `frag`; rows that do not
    /// exist (`valid` false) get `pad`.
    LoadRows { frag: FragId, src: GlobalTile, pad: f32 },
    /// Turns the thresholds θ in the row-statistics fragment `rows` into the units of the
    /// scores a `Vote` compares: `rows[row] = θ / scale − bias[row]`
    /// (`semantics::select::threshold`; bias 0 without `bias`).
    Threshold { rows: FragId, bias: Option<FragId> },
    /// Binds `var`, the same in every thread of the CTA, to 1 iff some row's maximum over the
    /// scores `s` is ≥ `rows[row]` (`semantics::select::passes`: a NaN score never passes),
    /// else 0. Masked elements are -inf and pass only a threshold of -inf.
    Vote { var: Var, s: FragId, rows: FragId },
    /// Turns the int32 dot products of low-bit codes in `s` into score estimates: element
    /// (row, col) becomes `s · (row_scale[row] · col_scale[col mod 8 & !1]) + col_bias[col]`
    /// (`semantics::select::estimate`), the column values read from the tiles `col_scale` and
    /// `col_bias` whose row `Var::Row` is the column (0 past their valid rows). The column
    /// scale is SALE's key-fragment group's (`format::int4::Grouping::KeyFragments` with the
    /// tile as its block): one per lane of an n8 tile, read once. Biases past the valid rows
    /// are unspecified in the kernel (it reads `col_bias` up to a tile past its last row
    /// without bounds, `llvm::SCALE_PARAMS`); only masked columns lie there.
    Dequantize { s: FragId, row_scale: FragId, col_scale: GlobalTile, col_bias: GlobalTile },
    /// Writes the int32 `value` at flat index `index` of the launch's output block map (one
    /// store per CTA, not per thread).
    StoreMap { index: Expr, value: Expr },
    /// Placeholder for the loop over the KV tiles that the query tile at grid coordinates
    /// `q_origin` of (batch, head) plane `plane` (`batch · heads + head`, which indexes per-head
    /// launch tables such as a block map) visits, replaced by `passes::visit`; the body names
    /// the KV tile by `Var::KvTile(axis)`.
    VisitTiles { visit: Visit, var: Var, plane: Expr, q_origin: Vec<Expr>, body: Vec<Stmt> },
    /// `for var in begin..end`; `stages` > 1 asks `passes::pipeline` to overlap its loads.
    For { var: Var, begin: Expr, end: Expr, stages: u32, body: Vec<Stmt> },
    If { cond: Expr, body: Vec<Stmt> },
}

/// Names and numbers the `let` and loop variables of one program (passes add their own).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Locals(u32);

impl Locals {
    pub fn fresh(&mut self, name: &'static str) -> Var {
        self.0 += 1;
        Var::Local(self.0, name)
    }
}

/// What the shared tiles and the mma operands hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operands {
    /// Values of the program's element type (`Program::dtype`).
    Dtype,
    /// Signed 8-bit codes (a low-bit selection's Q and K): products by `mma.sync.m16n8k32.s8`
    /// into int32 accumulators, which the fragments hold as f32 (exact below 2^24, so for any
    /// head_dim up to 1040).
    Int8,
}

/// A CTA program and the launch shape it expects.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub name: String,
    pub dtype: Dtype,
    pub operands: Operands,
    pub head_dim: u32,
    pub config: Config,
    /// Grid size along x, y, z as expressions of the launch's sizes.
    pub grid: [Expr; 3],
    pub shared: Vec<Shared>,
    pub frags: Vec<Frag>,
    pub body: Vec<Stmt>,
    pub locals: Locals,
    /// CTAs per SM that the register budget must leave room for (ptxas's `.minnctapersm`).
    pub min_ctas_per_sm: u32,
    /// Parts each KV tile's keys are split into: 1, or one per warp. With one per warp (a
    /// decode kernel, whose few query rows would leave all but one warp idle), each warp's
    /// rows hold the same queries (`rows_per_part`), its products read its part of each KV
    /// tile (`Part`), its fragments have `block_kv / key_parts` key columns, and its softmax
    /// state is a partial result of its own until `Stmt::MergeParts`.
    pub key_parts: u32,
}

impl Program {
    pub fn threads(&self) -> u32 {
        self.config.threads()
    }

    pub fn shared(&self, id: BufId) -> &Shared {
        &self.shared[id.0]
    }

    pub fn frag(&self, id: FragId) -> &Frag {
        &self.frags[id.0]
    }

    /// Whether the program reads launch tables (`Expr::Load`): its kernel then takes them as
    /// parameters (`TABLE_PARAMS`), and a launch must pass them.
    pub fn reads_tables(&self) -> bool {
        self.any_stmt(&reads_table)
    }

    /// Whether some statement satisfies `f` (looking inside loops and branches).
    pub fn any_stmt(&self, f: &dyn Fn(&Stmt) -> bool) -> bool {
        fn walk(body: &[Stmt], f: &dyn Fn(&Stmt) -> bool) -> bool {
            body.iter().any(|s| {
                f(s) || match s {
                    Stmt::For { body, .. } | Stmt::If { body, .. } | Stmt::VisitTiles { body, .. } => walk(body, f),
                    _ => false,
                }
            })
        }
        walk(&self.body, f)
    }

    /// Whether K or V is read from bitmap-compressed caches.
    pub fn reads_bitmaps(&self) -> bool {
        self.any_stmt(&|s| matches!(s, Stmt::Copy { engine: CopyEngine::Bitmap(_) | CopyEngine::BitmapMeta, .. }))
    }

    /// Whether the keys are split over CTAs, whose partial results a merge kernel combines.
    pub fn splits_keys(&self) -> bool {
        self.any_stmt(&|s| matches!(s, Stmt::Store { dst: GlobalTile { tensor: Tensor::OSplit, .. }, .. }))
    }

    /// Whether the program writes an output block map (`Stmt::StoreMap`): a selection program.
    pub fn writes_map(&self) -> bool {
        self.any_stmt(&|s| matches!(s, Stmt::StoreMap { .. }))
    }

    /// Whether the program reads per-row thresholds (`Tensor::Theta`).
    pub fn reads_rows(&self) -> bool {
        self.any_stmt(&|s| matches!(s, Stmt::LoadRows { .. }))
    }

    /// Whether the program reads a low-bit selection's scales (`Stmt::Dequantize`): its kernel
    /// then takes them as parameters (`SCALE_PARAMS`).
    pub fn reads_scales(&self) -> bool {
        self.any_stmt(&|s| matches!(s, Stmt::Dequantize { .. }))
    }

    /// The rows and columns of `buf` that one warp's `part` covers (`Part`).
    pub fn part_dims(&self, buf: BufId, part: Part) -> (u32, u32) {
        let sb = self.shared(buf);
        match part {
            Part::Whole => (sb.rows, sb.cols),
            Part::Rows => (sb.rows / self.key_parts, sb.cols),
            Part::Cols => (sb.rows, sb.cols / self.key_parts),
        }
    }

    /// Query rows of one key part: slab `s` of warp `w` (rows `(s·warps + w)·16 ..`) holds rows
    /// `s·16 ..` of part `w` when the warps split the keys.
    pub fn rows_per_part(&self) -> u32 {
        self.config.block_q() / self.key_parts
    }

    /// Warps split the query tile in 16-row slabs; a warp owns `slabs()` of them.
    pub fn slabs(&self) -> u32 {
        self.config.block_q() / (16 * self.config.warps.max(1))
    }

    /// Registers per lane of a fragment of `kind` and `cols` columns: 4 f32 per n8 tile
    /// (accumulators), 4 packed i32 per k16 step (operands), 2 f32 (rows g and g+8) per slab
    /// (row statistics).
    pub fn frag_registers(&self, kind: FragKind, cols: u32) -> u32 {
        self.slabs()
            * match kind {
                FragKind::Acc => cols / 8 * 4,
                FragKind::Operand => cols / 16 * 4,
                FragKind::RowStat => 2,
            }
    }

    /// Registers per thread the register fragments need at once: a floor under the kernel's
    /// register use (addresses, loop state and temporaries come on top). Operand fragments do
    /// not count: the softmax packs them from the scores slab by slab as the scores die, and
    /// they die in the product that reads them, so they never outlive the accumulator they
    /// replace, which is at least twice their size.
    pub fn fragment_registers(&self) -> u32 {
        let loaded = |id: usize| self.any_stmt(&|s| matches!(s, Stmt::LoadOperand { frag, .. } if frag.0 == id));
        self.frags.iter().enumerate().filter(|(id, f)| f.kind != FragKind::Operand || loaded(*id)).map(|(_, f)| self.frag_registers(f.kind, f.cols)).sum()
    }

    /// Bytes of one shared-tile element.
    pub fn elem_bytes(&self) -> u32 {
        match self.operands {
            Operands::Dtype => self.dtype.bytes(),
            Operands::Int8 => 1,
        }
    }

    /// Bytes of dynamic shared memory once `passes::smem` has placed the buffers.
    pub fn shared_bytes(&self) -> u32 {
        let elem = self.elem_bytes();
        self.shared
            .iter()
            .map(|b| b.offset.unwrap_or(0) + b.bytes(elem))
            .max()
            .unwrap_or(0)
    }
}

/// Whether a statement's own expressions (not those of its body) read a launch table; a
/// block-sparse visit reads its lists once lowered.
fn reads_table(s: &Stmt) -> bool {
    let tile = |t: &GlobalTile| [&t.batch, &t.head, &t.token, &t.valid].iter().any(|e| e.reads_table());
    let operand = |o: &Operand| matches!(o, Operand::Shared { stage, .. } if stage.reads_table());
    match s {
        Stmt::Let { value, .. } => value.reads_table(),
        Stmt::Copy { stage, src, .. } => stage.reads_table() || tile(src),
        Stmt::CopyValues { stage, meta_stage, src, .. } => stage.reads_table() || meta_stage.reads_table() || tile(src),
        Stmt::Expand { stage, meta_stage, .. } => stage.reads_table() || meta_stage.reads_table(),
        Stmt::Mma { a, b, .. } => operand(a) || operand(b),
        Stmt::Mask { keep, when, .. } => keep.reads_table() || when.reads_table(),
        Stmt::Store { dst, .. } | Stmt::StoreLse { dst, .. } | Stmt::LoadRows { src: dst, .. } => tile(dst),
        Stmt::StoreMap { index, value } => index.reads_table() || value.reads_table(),
        Stmt::Dequantize { col_scale, col_bias, .. } => tile(col_scale) || tile(col_bias),
        Stmt::VisitTiles { visit, plane, q_origin, .. } => {
            matches!(visit, Visit::Blocks(_)) || plane.reads_table() || q_origin.iter().any(Expr::reads_table)
        }
        Stmt::For { begin, end, .. } => begin.reads_table() || end.reads_table(),
        Stmt::If { cond, .. } => cond.reads_table(),
        Stmt::Commit
        | Stmt::Wait { .. }
        | Stmt::Barrier
        | Stmt::Fill { .. }
        | Stmt::VisitMask { .. }
        | Stmt::Softmax { .. }
        | Stmt::Vote { .. }
        | Stmt::Threshold { .. }
        | Stmt::MergeParts { .. }
        | Stmt::LoadOperand { .. }
        | Stmt::Normalize { .. } => false,
    }
}
