//! The first lowering: a kernel description and config become a straightforward tile program,
//! one KV tile at a time with synchronous loads. Passes then lower the visit set, pipeline the
//! loads and place shared memory.

use tessera_desc::{Config, KernelDesc, Load};

use crate::format::TileOrder;

use super::geometry::TileBox;
use super::{
    BufId, CopyEngine, Expr, Frag, FragId, FragKind, GlobalTile, Locals, MmaEngine, Operand, Operands, Part,
    Program, Shared, Stmt, Tensor, Var,
};

pub fn build(desc: &KernelDesc, cfg: &Config) -> Program {
    let (bq, bkv, d) = (cfg.block_q(), cfg.block_kv(), desc.head_dim);
    let (q_box, kv_box) = (TileBox::queries(desc.visit, cfg), TileBox::keys(desc.visit, cfg));
    let mut locals = Locals::default();
    let (qt, mut program_body) = QueryTile::bind(&q_box, &mut locals);
    let j = locals.fresh("j");
    let kv_origin = kv_box.visit_origin();

    let (shared, frags) = buffers(bq, bkv, d, 1);

    let body = kv_step(
        (qt.tile(Tensor::K, qt.kv_head, &kv_box, &kv_origin), kv_engine(desc, Tensor::K)),
        (qt.tile(Tensor::V, qt.kv_head, &kv_box, &kv_origin), kv_engine(desc, Tensor::V)),
        Some(Stmt::VisitMask { frag: FRAG_S }),
        Part::Whole,
    );

    program_body.extend(start(qt.tile(Tensor::Q, qt.head, &q_box, &qt.origin)));
    program_body.push(Stmt::VisitTiles {
        visit: desc.visit,
        var: j,
        plane: qt.plane(),
        q_origin: qt.origin.clone(),
        body,
    });
    let (o, lse) = (qt.tile(Tensor::O, qt.head, &q_box, &qt.origin), qt.tile(Tensor::Lse, qt.head, &q_box, &qt.origin));
    program_body.extend(finish(o, lse));

    Program {
        name: desc.name.to_string(),
        dtype: desc.dtype,
        operands: Operands::Dtype,
        head_dim: d,
        config: *cfg,
        grid: [q_box.total(), Var::Heads.into(), Var::Batch.into()],
        shared,
        frags,
        body: program_body,
        locals,
        // Shared memory bounds residency; registers follow the code (see `llvm::kernel::entry`).
        min_ctas_per_sm: 1,
        key_parts: 1,
    }
}

/// The query tile a CTA works on (grid axis x, last tile first), its (batch, head) and the KV
/// head it reads under grouped-query attention: the variables every prefill-shaped program binds.
pub(super) struct QueryTile {
    pub q_tile: Var,
    /// The tile's first grid coordinate per axis.
    pub origin: Vec<Expr>,
    pub head: Var,
    pub batch: Var,
    pub kv_head: Var,
}

impl QueryTile {
    /// Fresh variables and the `let`s that bind them from the CTA's coordinates.
    pub fn bind(q_box: &TileBox, locals: &mut Locals) -> (QueryTile, Vec<Stmt>) {
        let q_tile = locals.fresh("q_tile");
        let origin_vars: Vec<Var> = ["qx", "qy", "qz"][..q_box.dims].iter().map(|n| locals.fresh(n)).collect();
        let (head, batch, kv_head) = (locals.fresh("head"), locals.fresh("batch"), locals.fresh("kv_head"));
        // Query tiles run last-first: under a causal visit set the last tiles see the most keys,
        // so starting them first keeps the grid's tail short (dense tiles are all equal).
        let mut body = vec![Stmt::Let { var: q_tile, value: q_box.total().sub(1).sub(Var::Cta(0)) }];
        let origins = q_box.origin_of(q_tile.into());
        body.extend(origin_vars.iter().zip(origins).map(|(&var, value)| Stmt::Let { var, value }));
        body.extend([
            Stmt::Let { var: head, value: Var::Cta(1).into() },
            Stmt::Let { var: batch, value: Var::Cta(2).into() },
            // Grouped-query attention: consecutive query heads share one KV head.
            Stmt::Let { var: kv_head, value: Expr::var(head).div(Expr::var(Var::Heads).div(Var::KvHeads)) },
        ]);
        let origin = origin_vars.iter().map(|&v| v.into()).collect();
        (QueryTile { q_tile, origin, head, batch, kv_head }, body)
    }

    /// The (batch, head) plane's index `batch · heads + head` (per-head launch tables).
    pub fn plane(&self) -> Expr {
        Expr::var(self.batch).mul(Var::Heads).add(self.head)
    }

    /// The tile of `tiles` at `origin` in `tensor`'s plane of head `head`.
    pub fn tile(&self, tensor: Tensor, head: Var, tiles: &TileBox, origin: &[Expr]) -> GlobalTile {
        GlobalTile {
            tensor,
            batch: self.batch.into(),
            head: head.into(),
            token: tiles.token(origin, Var::Row.into()),
            valid: tiles.valid(origin, Var::Row.into()),
        }
    }
}

pub(super) const BUF_Q: BufId = BufId(0);
pub(super) const BUF_K: BufId = BufId(1);
pub(super) const BUF_V: BufId = BufId(2);
pub(super) const FRAG_S: FragId = FragId(0);
pub(super) const FRAG_O: FragId = FragId(2);
pub(super) const FRAG_M: FragId = FragId(3);
pub(super) const FRAG_L: FragId = FragId(4);

/// The Q and K tiles (`BUF_Q`, `BUF_K`) of the scores `Q·Kᵀ`.
pub(super) fn qk_buffers(bq: u32, bkv: u32, d: u32) -> Vec<Shared> {
    vec![
        Shared::tile("Qs", bq, d),
        Shared::tile("Ks", bkv, d),
    ]
}

/// The scores fragment (`FRAG_S`), `block_q × block_kv` f32.
pub(super) fn scores_frag(bkv: u32) -> Frag {
    Frag { name: "S", cols: bkv, kind: FragKind::Acc }
}

/// The Q, K and V tiles and the fragments of one query tile's attention (ids above), whose
/// warps each multiply `1 / key_parts` of a KV tile's keys (`Program::key_parts`).
pub(super) fn buffers(bq: u32, bkv: u32, d: u32, key_parts: u32) -> (Vec<Shared>, Vec<Frag>) {
    let mut shared = qk_buffers(bq, bkv, d);
    shared.push(Shared::tile("Vs", bkv, d));
    let frags = vec![
        scores_frag(bkv / key_parts),
        Frag { name: "P", cols: bkv / key_parts, kind: FragKind::Operand },
        Frag { name: "O", cols: d, kind: FragKind::Acc },
        Frag { name: "m", cols: 1, kind: FragKind::RowStat },
        Frag { name: "l", cols: 1, kind: FragKind::RowStat },
    ];
    (shared, frags)
}

/// Loads the query tile and clears the running output, max and sum.
pub(super) fn start(q: GlobalTile) -> Vec<Stmt> {
    let mut out = load_q(q);
    out.extend([
        Stmt::Fill { frag: FRAG_O, value: 0.0 },
        Stmt::Fill { frag: FRAG_M, value: f32::NEG_INFINITY },
        Stmt::Fill { frag: FRAG_L, value: 0.0 },
    ]);
    out
}

/// Issues the query tile's copy into `BUF_Q` (it lands at the first KV tile's wait).
pub(super) fn load_q(q: GlobalTile) -> Vec<Stmt> {
    vec![Stmt::Copy { dst: BUF_Q, stage: 0.into(), src: q, engine: CopyEngine::CpAsync }, Stmt::Commit]
}

/// Normalises the output and stores it and the LSE.
pub(super) fn finish(o: GlobalTile, lse: GlobalTile) -> Vec<Stmt> {
    vec![
        Stmt::Normalize { o: FRAG_O, l: FRAG_L },
        Stmt::Store { frag: FRAG_O, dst: o },
        Stmt::StoreLse { m: FRAG_M, l: FRAG_L, dst: lse },
    ]
}

/// One KV tile's step, in the shape `passes::pipeline` expects: load K and V, then
/// `S = Q·Kᵀ`, `mask` (if any key may be hidden), the online softmax and `O += P·V`, each warp
/// reading the `part` of K's and V's rows (tokens) that is its own.
pub(super) fn kv_step(k: (GlobalTile, CopyEngine), v: (GlobalTile, CopyEngine), mask: Option<Stmt>, part: Part) -> Vec<Stmt> {
    let v_copy = Stmt::Copy { dst: BUF_V, stage: 0.into(), src: v.0, engine: v.1 };
    let mut step = scores_step(k, vec![v_copy], mask, part);
    step.extend(attend_values(shared_op(BUF_V, true, part)));
    // The next iteration's copies overwrite Ks/Vs: every warp must be done reading them.
    step.push(Stmt::Barrier);
    step
}

/// `S = Q·Kᵀ` with K read as `k`, then `mask` (if any key may be hidden).
pub(super) fn scores(k: Operand, mask: Option<Stmt>) -> Vec<Stmt> {
    let mut step = vec![
        Stmt::Fill { frag: FRAG_S, value: 0.0 },
        Stmt::Mma { acc: FRAG_S, a: shared_op(BUF_Q, false, Part::Whole), b: k, engine: MmaEngine::MmaSync },
    ];
    step.extend(mask);
    step
}

/// The online softmax of S and `O += P·V` with V read as `v`.
pub(super) fn attend_values(v: Operand) -> [Stmt; 2] {
    let (s, p, o, m, l) = (FRAG_S, FragId(1), FRAG_O, FRAG_M, FRAG_L);
    [
        Stmt::Softmax { s, p, m, l, o },
        Stmt::Mma { acc: o, a: Operand::Frag(p), b: v, engine: MmaEngine::MmaSync },
    ]
}

/// The head of a KV tile's step, shared by attention and selection programs: copy K (and
/// `more` copies of the same tile) and wait for them, then `S = Q·Kᵀ` and `mask` (if any key may
/// be hidden), each warp reading K's rows of `part`. The caller appends its use of S and the
/// closing barrier `passes::pipeline` needs.
pub(super) fn scores_step(k: (GlobalTile, CopyEngine), more: Vec<Stmt>, mask: Option<Stmt>, part: Part) -> Vec<Stmt> {
    let mut step = vec![Stmt::Copy { dst: BUF_K, stage: 0.into(), src: k.0, engine: k.1 }];
    step.extend(more);
    step.extend([Stmt::Commit, Stmt::Wait { pending: 0 }, Stmt::Barrier]);
    step.extend(scores(shared_op(BUF_K, false, part), mask));
    step
}

pub(super) fn shared_op(buf: BufId, kn: bool, part: Part) -> Operand {
    Operand::Shared { buf, stage: 0.into(), kn, part }
}

/// How K or V reaches shared memory under the description's load strategy.
fn kv_engine(desc: &KernelDesc, tensor: Tensor) -> CopyEngine {
    match desc.load {
        Load::Bitmap(b) if tensor == Tensor::K && b.k => CopyEngine::Bitmap(TileOrder::Keys),
        Load::Bitmap(b) if tensor == Tensor::V && b.v => CopyEngine::Bitmap(TileOrder::Values),
        _ => CopyEngine::CpAsync,
    }
}
