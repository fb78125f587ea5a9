//! The statements of a block-selection program (`ir::select`): the rows' thresholds in, the
//! CTA-wide vote, the map's flag out. A selection program reads θ through the `lse` kernel
//! parameter (f32 `[batch, heads, seq_q]`, an input here) and writes its int32 map through `o`
//! (`KERNEL_PARAMS`; `v` is unused), so it launches with the attention kernels' signature.

use inkwell::IntPredicate;
use inkwell::values::{FloatValue, IntValue};

use super::arith::Emit;
use super::lower::{Lowerer, Res};
use super::memo::Memo;
use crate::ir::{Expr, FragId, GlobalTile};
use crate::semantics::{Arith, select};

impl<'ctx> Lowerer<'ctx, '_> {
    /// `frag`'s two rows per slab from `src` (one f32 per row), `pad` for rows outside the grid.
    pub fn load_rows(&mut self, frag: FragId, src: &GlobalTile, pad: f32) -> Res<()> {
        let (ptr, _, _) = self.tensor(src.tensor)?;
        let head_rows = self.head_rows(src)?;
        let f32t = self.ctx.f32_type();
        let mut memo = Memo::default();
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let row = self.local_row(slab, h)?;
                let (token, inside) = self.row_token(src, row, &mut memo)?;
                let at = (slab * 2 + h) as usize;
                self.frags[frag.0][at] = self.f32(pad).into();
                self.if_then(inside, |l| {
                    let index = l.b.build_int_add(head_rows, l.b.build_int_s_extend(token, l.ctx.i64_type(), "")?, "")?;
                    let bytes = l.b.build_int_mul(index, l.ctx.i64_type().const_int(4, false), "")?;
                    let p = l.byte_ptr(ptr, bytes)?;
                    l.frags[frag.0][at] = super::lower::load_aligned(&l.b, f32t.into(), p, 4)?;
                    Ok(())
                })?;
            }
        }
        Ok(())
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
        let all = self.call_value("llvm.nvvm.barrier.cta.red.or.aligned.all", &[], &[self.i32(0).into(), any.into()])?;
        Ok(self.b.build_int_z_extend(all.into_int_value(), self.ctx.i32_type(), "")?)
    }

    /// `s = s · (row_scale · col_scale) + col_bias` per element (`Stmt::Dequantize`), as the
    /// interpreter computes it; each lane reads the column values of the columns it holds (two
    /// per n8 tile) straight from global memory, 0 outside the tiles.
    pub fn dequantize(&mut self, s: FragId, row_scale: FragId, col_scale: &GlobalTile, col_bias: &GlobalTile) -> Res<()> {
        let cols = self.program.frag(s).cols;
        let columns = |l: &mut Self, src: &GlobalTile| -> Res<Vec<FloatValue<'ctx>>> {
            let (ptr, _, _) = l.tensor(src.tensor)?;
            let head_rows = l.head_rows(src)?;
            let f32t = l.ctx.f32_type();
            let mut memo = Memo::default();
            let mut out = Vec::new();
            for nt in 0..cols / 8 {
                for j in 0..2 {
                    let col = l.b.build_int_add(l.b.build_int_mul(l.lane.t, l.i32(2), "")?, l.i32((nt * 8 + j) as i64), "")?;
                    let (token, inside) = l.row_token(src, col, &mut memo)?;
                    let safe = l.b.build_select(inside, token, l.i32(0), "")?.into_int_value();
                    let index = l.b.build_int_add(head_rows, l.b.build_int_s_extend(safe, l.ctx.i64_type(), "")?, "")?;
                    let bytes = l.b.build_int_mul(index, l.ctx.i64_type().const_int(4, false), "")?;
                    let v = super::lower::load_aligned(&l.b, f32t.into(), l.byte_ptr(ptr, bytes)?, 4)?.into_float_value();
                    out.push(l.b.build_select(inside, v, l.f32(0.0), "")?.into_float_value());
                }
            }
            Ok(out)
        };
        let (scale, bias) = (columns(self, col_scale)?, columns(self, col_bias)?);
        let mut a = Emit::new(self);
        let mut out = Vec::new();
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let rs = self.frags[row_scale.0][(slab * 2 + h) as usize].into_float_value();
                for nt in 0..cols / 8 {
                    for j in 0..2 {
                        let i = self.acc_index(cols, slab, nt, 2 * h + j);
                        let c = (nt * 2 + j) as usize;
                        out.push((i, select::estimate(&mut a, self.frags[s.0][i].into_float_value(), rs, scale[c], bias[c])));
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
