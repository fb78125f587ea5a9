//! The first lowering: a kernel description and config become a straightforward tile program,
//! one KV tile at a time with synchronous loads. Passes then lower the visit set, pipeline the
//! loads and place shared memory.

use tessera_desc::{Config, KernelDesc};

use super::{
    CopyEngine, Expr, Frag, FragId, FragKind, GlobalTile, MmaEngine, Operand, Program, Shared,
    Stmt, Tensor, Var,
};

/// Names and numbers the `let` and loop variables of one program.
struct Locals(u32);

impl Locals {
    fn fresh(&mut self, name: &'static str) -> Var {
        self.0 += 1;
        Var::Local(self.0, name)
    }
}

pub fn build(desc: &KernelDesc, cfg: &Config) -> Program {
    let (bq, bkv, d) = (cfg.block_q(), cfg.block_kv(), desc.head_dim);
    let mut locals = Locals(0);
    let q0 = locals.fresh("q0");
    let head = locals.fresh("head");
    let batch = locals.fresh("batch");
    let kv_head = locals.fresh("kv_head");
    let j = locals.fresh("j");

    let shared = vec![
        Shared { name: "Qs", rows: bq, cols: d, stages: 1, offset: None },
        Shared { name: "Ks", rows: bkv, cols: d, stages: 1, offset: None },
        Shared { name: "Vs", rows: bkv, cols: d, stages: 1, offset: None },
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

    let tile = |tensor, head: Var, row0: Expr, limit: Var| GlobalTile {
        tensor,
        batch: batch.into(),
        head: head.into(),
        row0,
        limit: limit.into(),
    };
    let kv0 = Expr::var(j).mul(bkv as i32);
    let shared_op = |buf, kn| Operand::Shared { buf, stage: 0.into(), kn };

    let body = vec![
        Stmt::Copy {
            dst: ks,
            stage: 0.into(),
            src: tile(Tensor::K, kv_head, kv0.clone(), Var::SeqKv),
            engine: CopyEngine::CpAsync,
        },
        Stmt::Copy {
            dst: vs,
            stage: 0.into(),
            src: tile(Tensor::V, kv_head, kv0.clone(), Var::SeqKv),
            engine: CopyEngine::CpAsync,
        },
        Stmt::Commit,
        Stmt::Wait { pending: 0 },
        Stmt::Barrier,
        Stmt::Fill { frag: s, value: 0.0 },
        Stmt::Mma { acc: s, a: shared_op(qs, false), b: shared_op(ks, false), engine: MmaEngine::MmaSync },
        Stmt::VisitMask { frag: s, row0: q0.into(), col0: kv0 },
        Stmt::Softmax { s, p, m, l, o },
        Stmt::Mma { acc: o, a: Operand::Frag(p), b: shared_op(vs, true), engine: MmaEngine::MmaSync },
        // The next iteration's copies overwrite Ks/Vs: every warp must be done reading them.
        Stmt::Barrier,
    ];

    let program_body = vec![
        // Query tiles run last-first: under a causal visit set the last tiles see the most keys,
        // so starting them first keeps the grid's tail short (dense tiles are all equal).
        Stmt::Let {
            var: q0,
            value: Expr::var(Var::SeqQ).ceil_div(bq as i32).sub(1).sub(Var::Cta(0)).mul(bq as i32),
        },
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
            src: tile(Tensor::Q, head, q0.into(), Var::SeqQ),
            engine: CopyEngine::CpAsync,
        },
        Stmt::Commit,
        Stmt::Fill { frag: o, value: 0.0 },
        Stmt::Fill { frag: m, value: f32::NEG_INFINITY },
        Stmt::Fill { frag: l, value: 0.0 },
        Stmt::VisitTiles { visit: desc.visit, var: j, row0: q0.into(), body },
        Stmt::Normalize { o, l },
        Stmt::Store { frag: o, dst: tile(Tensor::O, head, q0.into(), Var::SeqQ) },
        Stmt::StoreLse { m, l, dst: tile(Tensor::Lse, head, q0.into(), Var::SeqQ) },
    ];

    Program {
        name: desc.name.to_string(),
        dtype: desc.dtype,
        head_dim: d,
        config: *cfg,
        grid: [Expr::var(Var::SeqQ).ceil_div(bq as i32), Var::Heads.into(), Var::Batch.into()],
        shared,
        frags,
        body: program_body,
    }
}
