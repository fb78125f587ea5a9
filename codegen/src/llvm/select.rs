//! The statements of a block-selection program (`ir::select`): the rows' thresholds in, the
//! CTA-wide vote, the map's flag out. A selection program reads θ through the `lse` kernel
//! parameter (f32 `[batch, heads, seq_q]`, an input here) and writes its int32 map through `o`
//! (`KERNEL_PARAMS`; `v` is unused), so it launches with the attention kernels' signature.

use inkwell::values::{FloatValue, IntValue};
use inkwell::{FloatPredicate, IntPredicate};

use super::arith::Emit;
use super::lower::{Lowerer, Res};
use super::memo::Memo;
use crate::CodegenError;
use crate::ir::{Expr, FragId, GlobalTile, Stmt, Var};
use crate::semantics::{Arith, select};

impl<'ctx> Lowerer<'ctx, '_> {
    /// `frag`'s two rows per slab from `src` (one f32 per row), `pad` for rows outside the grid.
    pub fn load_rows(&mut self, frag: FragId, src: &GlobalTile, pad: f32) -> Res<()> {
        let mut memo = Memo::default();
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let row = self.local_row(slab, h)?;
                self.frags[frag.0][(slab * 2 + h) as usize] = self.row_value(src, row, pad, &mut memo)?.into();
            }
        }
        Ok(())
    }

    /// The f32 of `src`'s tile row `row`, `pad` past its valid rows (read at row 0 instead,
    /// so that the load needs no branch).
    fn row_value(&mut self, src: &GlobalTile, row: IntValue<'ctx>, pad: f32, memo: &mut Memo<'ctx>) -> Res<FloatValue<'ctx>> {
        let (ptr, _, _) = self.tensor(src.tensor)?;
        let head_rows = self.head_rows(src)?;
        let (token, inside) = self.row_token(src, row, memo)?;
        let safe = self.b.build_select(inside, token, self.i32(0), "")?.into_int_value();
        let index = self.b.build_int_add(head_rows, self.b.build_int_s_extend(safe, self.ctx.i64_type(), "")?, "")?;
        let bytes = self.b.build_int_mul(index, self.ctx.i64_type().const_int(4, false), "")?;
        let v = super::lower::load_aligned(&self.b, self.ctx.f32_type().into(), self.byte_ptr(ptr, bytes)?, 4)?.into_float_value();
        Ok(self.b.build_select(inside, v, self.f32(pad), "")?.into_float_value())
    }

    /// `rows = θ / scale − bias` for each of the lane's rows (`Stmt::Threshold`).
    pub fn threshold(&mut self, rows: FragId, bias: Option<FragId>) -> Res<()> {
        let mut a = Emit::new(self);
        let mut out = Vec::new();
        for (at, theta) in self.frags[rows.0].iter().enumerate() {
            let b = bias.map_or(a.constant(0.0), |b| self.frags[b.0][at].into_float_value());
            out.push(select::threshold(&mut a, theta.into_float_value(), self.params.scale, b));
        }
        a.finish()?;
        for (at, t) in out.into_iter().enumerate() {
            self.frags[rows.0][at] = t.into();
        }
        Ok(())
    }

    /// 1 in every thread when some row's maximum score reaches its threshold (one `max` per
    /// element, then a compare per row, as the interpreter decides; masked elements are -inf),
    /// else 0: each lane ORs its rows, then one `bar.red.or` over the CTA, which is also the
    /// barrier the interpreter's vote implies.
    pub fn vote(&mut self, s: FragId, rows: FragId) -> Res<IntValue<'ctx>> {
        let any = self.rows_pass(s, rows)?;
        self.cta_any(any)
    }

    /// Whether one of the lane's rows passes (its part of the vote).
    fn rows_pass(&mut self, s: FragId, rows: FragId) -> Res<IntValue<'ctx>> {
        let cols = self.program.frag(s).cols;
        let mut a = Emit::new(self);
        let mut any = self.ctx.bool_type().const_zero();
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let threshold: FloatValue<'ctx> = self.frags[rows.0][(slab * 2 + h) as usize].into_float_value();
                let mut row_max = a.constant(f32::NEG_INFINITY);
                for nt in 0..cols / 8 {
                    for j in 0..2 {
                        let v = self.frags[s.0][self.acc_index(cols, slab, nt, 2 * h + j)].into_float_value();
                        row_max = a.max(row_max, v);
                    }
                }
                let pass = select::passes(&mut a, row_max, threshold);
                any = self.b.build_or(any, pass, "")?;
            }
        }
        a.finish()?;
        Ok(any)
    }

    /// The OR of every thread's `any` (i1), as i32 in every thread.
    fn cta_any(&mut self, any: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let all = self.call_value("llvm.nvvm.barrier.cta.red.or.aligned.all", &[], &[self.i32(0).into(), any.into()])?;
        Ok(self.b.build_int_z_extend(all.into_int_value(), self.ctx.i32_type(), "")?)
    }

    /// `s = s · (row_scale · col_scale) + col_bias` per element (`Stmt::Dequantize`), as the
    /// interpreter computes it.
    pub fn dequantize(&mut self, s: FragId, row_scale: FragId, col_scale: &GlobalTile, col_bias: &GlobalTile) -> Res<()> {
        let scale = self.lane_scale(col_scale)?;
        let bias = self.lane_columns(col_bias, self.program.frag(s).cols)?;
        self.dequantize_with(s, row_scale, scale, &bias)
    }

    fn dequantize_with(&mut self, s: FragId, row_scale: FragId, scale: FloatValue<'ctx>, bias: &[FloatValue<'ctx>]) -> Res<()> {
        let cols = self.program.frag(s).cols;
        let mut a = Emit::new(self);
        let mut out = Vec::new();
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let rs = self.frags[row_scale.0][(slab * 2 + h) as usize].into_float_value();
                let pair = select::pair_scale(&mut a, rs, scale);
                for nt in 0..cols / 8 {
                    for j in 0..2 {
                        let i = self.acc_index(cols, slab, nt, 2 * h + j);
                        let c = (nt * 2 + j) as usize;
                        out.push((i, select::estimate(&mut a, self.frags[s.0][i].into_float_value(), pair, bias[c])));
                    }
                }
            }
        }
        a.finish()?;
        for (i, x) in out {
            self.frags[s.0][i] = x.into();
        }
        Ok(())
    }

    /// The scale of the lane's columns: SALE's key scales are shared by the keys that one lane
    /// holds in every n8 tile of a block, so the scale of its first column (2·t), 0 if that
    /// column is past the tile's valid rows.
    fn lane_scale(&mut self, src: &GlobalTile) -> Res<FloatValue<'ctx>> {
        let col = self.b.build_int_mul(self.lane.t, self.i32(2), "")?;
        self.row_value(src, col, 0.0, &mut Memo::default())
    }

    /// The lane's columns of `src` (two per n8 tile, `2·t + 8·nt + j`), read from one address
    /// at constant offsets: the tile's columns are consecutive tokens (`token = origin + row`),
    /// read without bounds, so past the valid rows they are whatever the padded allocation
    /// holds there (`SCALE_PARAMS`); the mask hides those columns.
    fn lane_columns(&mut self, src: &GlobalTile, cols: u32) -> Res<Vec<FloatValue<'ctx>>> {
        if cols as usize > super::QMK_PAD + 1 {
            return Err(CodegenError::Ir(format!("{cols} columns read past a tensor padded by {} values", super::QMK_PAD)));
        }
        let origin = src.consecutive_origin().ok_or_else(|| {
            CodegenError::Ir(format!("{}: column values need consecutive tokens, got {}", src.tensor.name(), src.token))
        })?;
        let (ptr, _, _) = self.tensor(src.tensor)?;
        let i64t = self.ctx.i64_type();
        let first = self.b.build_int_add(self.expr(origin)?, self.b.build_int_mul(self.lane.t, self.i32(2), "")?, "")?;
        let index = self.b.build_int_add(self.head_rows(src)?, self.b.build_int_s_extend(first, i64t, "")?, "")?;
        let base = self.byte_ptr(ptr, self.b.build_int_mul(index, i64t.const_int(4, false), "")?)?;
        let f32t = self.ctx.f32_type();
        let mut out = Vec::new();
        for nt in 0..cols / 8 {
            for j in 0..2 {
                let p = self.byte_ptr(base, i64t.const_int(4 * (8 * nt + j) as u64, false))?;
                out.push(super::lower::load_aligned(&self.b, f32t.into(), p, 4)?.into_float_value());
            }
        }
        Ok(out)
    }

    /// A selection's product, int8 estimate, mask and vote (`EstimateVote`), lowered together
    /// so that the columns' values load before the product (whose latency hides theirs) and
    /// warps none of whose rows can reach their thresholds skip the per-element work; the vote
    /// is the same. The bound (`semantics::select::bound`): a lane's row, with the lane's one
    /// column scale, its largest int32 product and its columns' largest bias, bounds every
    /// estimate of the row. Masked elements only loosen it. The largest bias ignores NaN biases
    /// (their elements never pass); a NaN scale, a NaN threshold, or biases that are all NaN make
    /// the bound or the compare unordered, and an infinite input makes the bound ±inf: the
    /// unordered `>=` sends such warps down the exact path, which decides as the interpreter.
    pub fn estimate_vote(&mut self, product: &Stmt, run: &EstimateVote<'_>) -> Res<()> {
        let scale = self.lane_scale(run.col_scale)?;
        let bias = self.lane_columns(run.col_bias, self.program.frag(run.s).cols)?;
        let Some(raw) = self.product(product)? else {
            return Err(CodegenError::Ir("an estimate vote follows a product without int32 accumulators".into()));
        };
        let maybe = self.may_pass(run, &raw, scale, &bias)?;
        let warp_maybe = self.call_value("llvm.nvvm.vote.any.sync", &[], &[self.i32(-1).into(), maybe.into()])?.into_int_value();
        let none = self.ctx.bool_type().const_zero();
        let any = self.if_then_value(warp_maybe, none, |l| {
            l.dequantize_with(run.s, run.row_scale, scale, &bias)?;
            if let Some(mask) = run.mask {
                l.stmt(mask)?;
            }
            l.rows_pass(run.s, run.rows)
        })?;
        let kept = self.cta_any(any)?;
        self.vars.insert(run.var, kept);
        Ok(())
    }

    /// Whether some row of the lane may pass (the bound of `estimate_vote`). Maxima as trees,
    /// not chains: their latency is on the path to the vote.
    fn may_pass(&mut self, run: &EstimateVote<'_>, raw: &[IntValue<'ctx>], scale: FloatValue<'ctx>, bias: &[FloatValue<'ctx>]) -> Res<IntValue<'ctx>> {
        let cols = self.program.frag(run.s).cols;
        let f32t = self.ctx.f32_type();
        let mut a = Emit::new(self);
        let b_max = tree(bias.to_vec(), |x, y| Ok(a.max(x, y)))?;
        a.finish()?;
        let mut maybe = self.ctx.bool_type().const_zero();
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let at = (slab * 2 + h) as usize;
                let row: Vec<IntValue<'ctx>> = (0..cols / 8).flat_map(|nt| [0, 1].map(|j| raw[self.acc_index(cols, slab, nt, 2 * h + j)])).collect();
                let m = tree(row, |x, y| {
                    let greater = self.b.build_int_compare(IntPredicate::SGT, x, y, "")?;
                    Ok(self.b.build_select(greater, x, y, "")?.into_int_value())
                })?;
                let rs = self.frags[run.row_scale.0][at].into_float_value();
                let threshold = self.frags[run.rows.0][at].into_float_value();
                let m = self.b.build_signed_int_to_float(m, f32t, "")?;
                let mut e = Emit::new(self);
                let pair = select::pair_scale(&mut e, rs, scale);
                let bound = select::bound(&mut e, m, pair, b_max);
                e.finish()?;
                // Unordered: NaN bounds, or a NaN or negative scale product, compute.
                let reach = self.b.build_float_compare(FloatPredicate::UGE, bound, threshold, "")?;
                let unsigned = self.b.build_float_compare(FloatPredicate::ULT, pair, self.f32(0.0), "")?;
                maybe = self.b.build_or(maybe, self.b.build_or(reach, unsigned, "")?, "")?;
            }
        }
        Ok(maybe)
    }

    /// `map[index] = value`, by thread 0 (the value is the same in every thread).
    pub fn store_map(&mut self, index: &Expr, value: &Expr) -> Res<()> {
        let (index, value) = (self.expr(index)?, self.expr(value)?);
        let first = self.b.build_int_compare(IntPredicate::EQ, self.lane.tid, self.i32(0), "")?;
        let map = self.params.o;
        self.if_then(first, |l| {
            let i = l.b.build_int_s_extend(index, l.ctx.i64_type(), "")?;
            let bytes = l.b.build_int_mul(i, l.ctx.i64_type().const_int(4, false), "")?;
            let p = l.byte_ptr(map, bytes)?;
            l.b.build_store(p, value)?;
            Ok(())
        })
    }
}

/// A selection's `[Mma s, Dequantize s, Mask s (optional), Vote s]`, which `Lowerer::block`
/// lowers together (`Lowerer::estimate_vote`).
pub struct EstimateVote<'s> {
    s: FragId,
    row_scale: FragId,
    col_scale: &'s GlobalTile,
    col_bias: &'s GlobalTile,
    mask: Option<&'s Stmt>,
    var: Var,
    rows: FragId,
}

impl<'s> EstimateVote<'s> {
    /// The run after the product into its scores at the start of `stmts`, and how many
    /// statements the two span.
    pub fn after_product(stmts: &'s [Stmt]) -> Option<(Self, usize)> {
        let (Some(Stmt::Mma { acc, .. }), Some(Stmt::Dequantize { s, row_scale, col_scale, col_bias })) = (stmts.first(), stmts.get(1)) else {
            return None;
        };
        let mask = stmts.get(2).filter(|m| matches!(m, Stmt::Mask { frag, .. } if frag == s));
        let at = 2 + mask.is_some() as usize;
        match stmts.get(at) {
            Some(Stmt::Vote { var, s: voted, rows }) if voted == s && acc == s => {
                Some((EstimateVote { s: *s, row_scale: *row_scale, col_scale, col_bias, mask, var: *var, rows: *rows }, at + 1))
            }
            _ => None,
        }
    }
}

/// `values` combined pairwise, level by level (at least one value).
fn tree<T: Copy>(mut values: Vec<T>, mut combine: impl FnMut(T, T) -> Res<T>) -> Res<T> {
    while values.len() > 1 {
        values = values.chunks(2).map(|p| if let [x, y] = p { combine(*x, *y) } else { Ok(p[0]) }).collect::<Res<_>>()?;
    }
    values.pop().ok_or_else(|| CodegenError::Ir("a maximum of no values".into()))
}
