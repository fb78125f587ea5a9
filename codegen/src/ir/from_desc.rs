//! The first lowering: a kernel description and config become a straightforward tile program,
//! one KV tile at a time with synchronous loads. Passes then lower the visit set, pipeline the
//! loads and place shared memory.

use tessera_desc::{Config, KernelDesc, Load};

use crate::format::TileOrder;

use super::geometry::TileBox;
use super::{
    CopyEngine, Expr, Frag, FragId, FragKind, GlobalTile, Locals, MmaEngine, Operand, Program,
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

    let shared = vec![
        Shared { name: "Qs", rows: bq, cols: d, block_cols: d, stages: 1, offset: None },
        Shared { name: "Ks", rows: bkv, cols: d, block_cols: d, stages: 1, offset: None },
        Shared { name: "Vs", rows: bkv, cols: d, block_cols: d, stages: 1, offset: None },
    ];
    let (qs, ks, vs) = (super::BufId(0), super::BufId(1), super::BufId(2));
    let frags = vec![
        Frag { name: "S", cols: bkv, kind: FragKind::Acc },
        Frag { name: "P", cols: bkv, kind: FragKind::Operand },
        Frag { name: "O", cols: d, kind: FragKind::Acc },
        Frag { name: "m", cols: 1, kind: FragKind::RowStat },
        Frag { name: "l", cols: 1, kind: FragKind::RowStat },
    ];
    let (s, p, o, m, l) = (FragId(0), FragId(1), FragId(2), FragId(3), FragId(4));

    let tile = |tensor, head: Var, tiles: &TileBox, origin: &[Expr]| GlobalTile {
        tensor,
        batch: batch.into(),
        head: head.into(),
        token: tiles.token(origin, Var::Row.into()),
        valid: tiles.valid(origin, Var::Row.into()),
    };
    let shared_op = |buf, kn| Operand::Shared { buf, stage: 0.into(), kn };

    let body = vec![
        Stmt::Copy {
            dst: ks,
            stage: 0.into(),
            src: tile(Tensor::K, kv_head, &kv_box, &kv_origin),
            engine: kv_engine(desc, Tensor::K),
        },
        Stmt::Copy {
            dst: vs,
            stage: 0.into(),
            src: tile(Tensor::V, kv_head, &kv_box, &kv_origin),
            engine: kv_engine(desc, Tensor::V),
        },
        Stmt::Commit,
        Stmt::Wait { pending: 0 },
        Stmt::Barrier,
        Stmt::Fill { frag: s, value: 0.0 },
        Stmt::Mma { acc: s, a: shared_op(qs, false), b: shared_op(ks, false), engine: MmaEngine::MmaSync },
        Stmt::VisitMask { frag: s },
        Stmt::Softmax { s, p, m, l, o },
        Stmt::Mma { acc: o, a: Operand::Frag(p), b: shared_op(vs, true), engine: MmaEngine::MmaSync },
        // The next iteration's copies overwrite Ks/Vs: every warp must be done reading them.
        Stmt::Barrier,
    ];

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
        Stmt::Copy {
            dst: qs,
            stage: 0.into(),
            src: tile(Tensor::Q, head, &q_box, &q_origin_e),
            engine: CopyEngine::CpAsync,
        },
        Stmt::Commit,
        Stmt::Fill { frag: o, value: 0.0 },
        Stmt::Fill { frag: m, value: f32::NEG_INFINITY },
        Stmt::Fill { frag: l, value: 0.0 },
        Stmt::VisitTiles {
            visit: desc.visit,
            var: j,
            plane: Expr::var(batch).mul(Var::Heads).add(head),
            q_origin: q_origin_e.clone(),
            body,
        },
        Stmt::Normalize { o, l },
        Stmt::Store { frag: o, dst: tile(Tensor::O, head, &q_box, &q_origin_e) },
        Stmt::StoreLse { m, l, dst: tile(Tensor::Lse, head, &q_box, &q_origin_e) },
    ]);

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

/// How K or V reaches shared memory under the description's load strategy.
fn kv_engine(desc: &KernelDesc, tensor: Tensor) -> CopyEngine {
    match desc.load {
        Load::Bitmap(b) if tensor == Tensor::K && b.k => CopyEngine::Bitmap(TileOrder::Keys),
        Load::Bitmap(b) if tensor == Tensor::V && b.v => CopyEngine::Bitmap(TileOrder::Values),
        _ => CopyEngine::CpAsync,
    }
}
