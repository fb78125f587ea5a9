//! The first lowering: a kernel description and config become a straightforward tile program,
//! one KV tile at a time with synchronous loads. Passes then lower the visit set, pipeline the
//! loads and place shared memory.

use tessera_desc::{Config, KernelDesc, Load};

use crate::format::TileOrder;

use super::geometry::TileBox;
use super::{
    BufId, CopyEngine, Expr, Frag, FragId, FragKind, GlobalTile, Locals, MmaEngine, Operand, Program,
    Shared, Stmt, Tensor, Var,
};

pub fn build(desc: &KernelDesc, cfg: &Config) -> Program {
    let (bq, bkv, d) = (cfg.block_q(), cfg.block_kv(), desc.head_dim);
    let (q_box, kv_box) = (TileBox::queries(desc.visit, cfg), TileBox::keys(desc.visit, cfg));
    let mut locals = Locals::default();
    let q_tile = locals.fresh("q_tile");
    let q_origin: Vec<Var> = ["qx", "qy", "qz"][..q_box.dims].iter().map(|n| locals.fresh(n)).collect();
    let q_origin_e: Vec<Expr> = q_origin.iter().map(|&v| v.into()).collect();
    let kv_origin: Vec<Expr> =
        (0..kv_box.dims).map(|a| Expr::var(Var::KvTile(a as u8)).mul(kv_box.shape[a] as i32)).collect();
    let head = locals.fresh("head");
    let batch = locals.fresh("batch");
    let kv_head = locals.fresh("kv_head");
    let j = locals.fresh("j");

    let (shared, frags) = buffers(bq, bkv, d);

    let tile = |tensor, head: Var, tiles: &TileBox, origin: &[Expr]| GlobalTile {
        tensor,
        batch: batch.into(),
        head: head.into(),
        token: tiles.token(origin, Var::Row.into()),
        valid: tiles.valid(origin, Var::Row.into()),
    };
    let body = kv_step(
        (tile(Tensor::K, kv_head, &kv_box, &kv_origin), kv_engine(desc, Tensor::K)),
        (tile(Tensor::V, kv_head, &kv_box, &kv_origin), kv_engine(desc, Tensor::V)),
        Some(Stmt::VisitMask { frag: FRAG_S }),
    );

    // Query tiles run last-first: under a causal visit set the last tiles see the most keys,
    // so starting them first keeps the grid's tail short (dense tiles are all equal).
    let mut program_body = vec![Stmt::Let { var: q_tile, value: q_box.total().sub(1).sub(Var::Cta(0)) }];
    let origins = q_box.origin_of(q_tile.into());
    program_body.extend(q_origin.iter().zip(origins).map(|(&var, value)| Stmt::Let { var, value }));
    program_body.extend([
        Stmt::Let { var: head, value: Var::Cta(1).into() },
        Stmt::Let { var: batch, value: Var::Cta(2).into() },
        // Grouped-query attention: consecutive query heads share one KV head.
        Stmt::Let {
            var: kv_head,
            value: Expr::var(head).div(Expr::var(Var::Heads).div(Var::KvHeads)),
        },
    ]);
    program_body.extend(start(tile(Tensor::Q, head, &q_box, &q_origin_e)));
    program_body.push(Stmt::VisitTiles {
        visit: desc.visit,
        var: j,
        plane: Expr::var(batch).mul(Var::Heads).add(head),
        q_origin: q_origin_e.clone(),
        body,
    });
    program_body.extend(finish(tile(Tensor::O, head, &q_box, &q_origin_e), tile(Tensor::Lse, head, &q_box, &q_origin_e)));

    Program {
        name: desc.name.to_string(),
        dtype: desc.dtype,
        head_dim: d,
        config: *cfg,
        grid: [q_box.total(), Var::Heads.into(), Var::Batch.into()],
        shared,
        frags,
        body: program_body,
        locals,
    }
}

pub(super) const BUF_Q: BufId = BufId(0);
pub(super) const BUF_K: BufId = BufId(1);
pub(super) const BUF_V: BufId = BufId(2);
pub(super) const FRAG_S: FragId = FragId(0);
pub(super) const FRAG_O: FragId = FragId(2);
pub(super) const FRAG_M: FragId = FragId(3);
pub(super) const FRAG_L: FragId = FragId(4);

/// The Q, K and V tiles and the fragments of one query tile's attention (ids above).
pub(super) fn buffers(bq: u32, bkv: u32, d: u32) -> (Vec<Shared>, Vec<Frag>) {
    let shared = vec![
        Shared { name: "Qs", rows: bq, cols: d, block_cols: d, stages: 1, offset: None },
        Shared { name: "Ks", rows: bkv, cols: d, block_cols: d, stages: 1, offset: None },
        Shared { name: "Vs", rows: bkv, cols: d, block_cols: d, stages: 1, offset: None },
    ];
    let frags = vec![
        Frag { name: "S", cols: bkv, kind: FragKind::Acc },
        Frag { name: "P", cols: bkv, kind: FragKind::Operand },
        Frag { name: "O", cols: d, kind: FragKind::Acc },
        Frag { name: "m", cols: 1, kind: FragKind::RowStat },
        Frag { name: "l", cols: 1, kind: FragKind::RowStat },
    ];
    (shared, frags)
}

/// Loads the query tile and clears the running output, max and sum.
pub(super) fn start(q: GlobalTile) -> Vec<Stmt> {
    vec![
        Stmt::Copy { dst: BUF_Q, stage: 0.into(), src: q, engine: CopyEngine::CpAsync },
        Stmt::Commit,
        Stmt::Fill { frag: FRAG_O, value: 0.0 },
        Stmt::Fill { frag: FRAG_M, value: f32::NEG_INFINITY },
        Stmt::Fill { frag: FRAG_L, value: 0.0 },
    ]
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
/// `S = Q·Kᵀ`, `mask` (if any key may be hidden), the online softmax and `O += P·V`.
pub(super) fn kv_step(k: (GlobalTile, CopyEngine), v: (GlobalTile, CopyEngine), mask: Option<Stmt>) -> Vec<Stmt> {
    let (s, p, o, m, l) = (FRAG_S, FragId(1), FRAG_O, FRAG_M, FRAG_L);
    let shared_op = |buf, kn| Operand::Shared { buf, stage: 0.into(), kn };
    let mut step = vec![
        Stmt::Copy { dst: BUF_K, stage: 0.into(), src: k.0, engine: k.1 },
        Stmt::Copy { dst: BUF_V, stage: 0.into(), src: v.0, engine: v.1 },
        Stmt::Commit,
        Stmt::Wait { pending: 0 },
        Stmt::Barrier,
        Stmt::Fill { frag: s, value: 0.0 },
        Stmt::Mma { acc: s, a: shared_op(BUF_Q, false), b: shared_op(BUF_K, false), engine: MmaEngine::MmaSync },
    ];
    step.extend(mask);
    step.extend([
        Stmt::Softmax { s, p, m, l, o },
        Stmt::Mma { acc: o, a: Operand::Frag(p), b: shared_op(BUF_V, true), engine: MmaEngine::MmaSync },
        // The next iteration's copies overwrite Ks/Vs: every warp must be done reading them.
        Stmt::Barrier,
    ]);
    step
}

/// How K or V reaches shared memory under the description's load strategy.
fn kv_engine(desc: &KernelDesc, tensor: Tensor) -> CopyEngine {
    match desc.load {
        Load::Bitmap(b) if tensor == Tensor::K && b.k => CopyEngine::Bitmap(TileOrder::Keys),
        Load::Bitmap(b) if tensor == Tensor::V && b.v => CopyEngine::Bitmap(TileOrder::Values),
        _ => CopyEngine::CpAsync,
    }
}
