//! Substitution of a variable in every expression of a statement, so passes can rename a
//! placeholder (a KV tile coordinate) or shift a loop index (a prefetch of tile `j + S - 1`).

use super::{Expr, GlobalTile, Operand, Stmt, Var};

impl GlobalTile {
    pub fn subst(&self, var: Var, with: &Expr) -> GlobalTile {
        GlobalTile {
            tensor: self.tensor,
            batch: self.batch.subst(var, with),
            head: self.head.subst(var, with),
            token: self.token.subst(var, with),
            valid: self.valid.subst(var, with),
        }
    }
}

impl Operand {
    fn subst(&self, var: Var, with: &Expr) -> Operand {
        match self {
            Operand::Shared { buf, stage, kn, part } => Operand::Shared { buf: *buf, stage: stage.subst(var, with), kn: *kn, part: *part },
            Operand::Frag(f) => Operand::Frag(*f),
        }
    }
}

impl Stmt {
    pub fn subst(&self, var: Var, with: &Expr) -> Stmt {
        let e = |x: &Expr| x.subst(var, with);
        let body = |b: &[Stmt]| b.iter().map(|s| s.subst(var, with)).collect();
        match self {
            Stmt::Let { var: v, value } => Stmt::Let { var: *v, value: e(value) },
            Stmt::Copy { dst, stage, src, engine } => {
                Stmt::Copy { dst: *dst, stage: e(stage), src: src.subst(var, with), engine: *engine }
            }
            Stmt::CopyValues { dst, stage, meta, meta_stage, src, order } => Stmt::CopyValues {
                dst: *dst,
                stage: e(stage),
                meta: *meta,
                meta_stage: e(meta_stage),
                src: src.subst(var, with),
                order: *order,
            },
            Stmt::Expand { dst, src, stage, meta, meta_stage, order } => Stmt::Expand {
                dst: *dst,
                src: *src,
                stage: e(stage),
                meta: *meta,
                meta_stage: e(meta_stage),
                order: *order,
            },
            Stmt::Mma { acc, a, b, engine } => {
                Stmt::Mma { acc: *acc, a: a.subst(var, with), b: b.subst(var, with), engine: *engine }
            }
            Stmt::Mask { frag, keep, when } => Stmt::Mask { frag: *frag, keep: e(keep), when: e(when) },
            Stmt::Store { frag, dst } => Stmt::Store { frag: *frag, dst: dst.subst(var, with) },
            Stmt::StoreLse { m, l, dst } => Stmt::StoreLse { m: *m, l: *l, dst: dst.subst(var, with) },
            Stmt::LoadRows { frag, src, pad } => Stmt::LoadRows { frag: *frag, src: src.subst(var, with), pad: *pad },
            Stmt::StoreMap { index, value } => Stmt::StoreMap { index: e(index), value: e(value) },
            Stmt::Dequantize { s, row_scale, col_scale, col_bias } => Stmt::Dequantize {
                s: *s,
                row_scale: *row_scale,
                col_scale: col_scale.subst(var, with),
                col_bias: col_bias.subst(var, with),
            },
            Stmt::VisitTiles { visit, var: v, plane, q_origin, body: b } => Stmt::VisitTiles {
                visit: *visit,
                var: *v,
                plane: e(plane),
                q_origin: q_origin.iter().map(e).collect(),
                body: body(b),
            },
            Stmt::For { var: v, begin, end, stages, body: b } => {
                Stmt::For { var: *v, begin: e(begin), end: e(end), stages: *stages, body: body(b) }
            }
            Stmt::If { cond, body: b } => Stmt::If { cond: e(cond), body: body(b) },
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
            | Stmt::Normalize { .. } => self.clone(),
        }
    }
}
