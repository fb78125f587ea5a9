//! The per-lane side of masks and the online softmax. A lane holds, per 16-row slab, columns
//! 8n + 2t, 8n + 2t + 1 of rows g and g+8 of every n8 tile; a row lives in the 4 lanes of a
//! quad, so row reductions are two butterfly shuffles.

use inkwell::values::{BasicValue, BasicValueEnum, FloatValue, IntValue};
use tessera_desc::Dtype;

use super::arith::Emit;
use super::lower::{Lowerer, Res};
use super::memo::Memo;
use crate::ir::{Expr, FragId, Var};
use crate::semantics::{Arith, softmax};

impl<'ctx> Lowerer<'ctx, '_> {
    /// Index of accumulator register `i` of n8 tile `nt` in `slab` (fragment of `cols` columns).
    pub fn acc_index(&self, cols: u32, slab: u32, nt: u32, i: u32) -> usize {
        ((slab * (cols / 8) + nt) * 4 + i) as usize
    }

    /// Sets this lane's scores to -inf where `keep` fails. Parts of `keep` that depend on the
    /// row only or the column only (a query's window bounds, a key's coordinates) are emitted
    /// once per row or per column, not per element: a 2-D window's mask would otherwise repeat
    /// its index arithmetic for each of the lane's 32-64 elements.
    pub fn mask(&mut self, frag: FragId, keep: &Expr) -> Res<()> {
        let cols = self.program.frag(frag).cols;
        let col_lane = self.b.build_int_mul(self.lane.t, self.i32(2), "")?;
        // The warp's part of the KV tile's keys starts at its column `warp · cols`.
        let col_lane = if self.program.key_parts > 1 {
            self.b.build_int_add(col_lane, self.b.build_int_mul(self.lane.warp, self.i32(cols as i64), "")?, "")?
        } else {
            col_lane
        };
        let neg_inf = self.f32(f32::NEG_INFINITY);
        let mut memo = Memo::lane_rows();
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let row = self.local_row(slab, h)?;
                self.vars.insert(Var::Row, row);
                memo.next_row();
                for nt in 0..cols / 8 {
                    for j in 0..2 {
                        let col = self.b.build_int_add(col_lane, self.i32((8 * nt + j) as i64), "")?;
                        self.vars.insert(Var::Col, col);
                        let visible = self.expr_memo(keep, (2 * nt + j) as usize, &mut memo)?;
                        let visible = self.b.build_int_compare(inkwell::IntPredicate::NE, visible, self.i32(0), "")?;
                        let idx = self.acc_index(cols, slab, nt, 2 * h + j);
                        let s = self.frags[frag.0][idx].into_float_value();
                        self.frags[frag.0][idx] = self.b.build_select(visible, s, neg_inf, "")?;
                    }
                }
            }
        }
        self.vars.remove(&Var::Row);
        self.vars.remove(&Var::Col);
        Ok(())
    }

    /// Combines a value over the 4 lanes of a quad (`max` or `add`).
    fn quad_reduce(&self, e: &mut Emit<'_, 'ctx>, mut v: FloatValue<'ctx>, max: bool) -> Res<FloatValue<'ctx>> {
        for offset in [1, 2] {
            let args = [self.i32(-1).into(), v.into(), self.i32(offset).into(), self.i32(0x1f).into()];
            let other = self.call_value("llvm.nvvm.shfl.sync.bfly.f32", &[], &args)?.into_float_value();
            v = if max { e.max(v, other) } else { e.add(v, other) };
        }
        Ok(v)
    }

    /// The running sum of a row, summed over its quad (lanes keep partial sums until the end).
    fn row_sum(&self, e: &mut Emit<'_, 'ctx>, l: FragId, slab: u32, h: u32) -> Res<FloatValue<'ctx>> {
        let partial = self.frags[l.0][(slab * 2 + h) as usize].into_float_value();
        self.quad_reduce(e, partial, false)
    }

    /// Packs two f32 into one register of the element type (`lo` in the low half).
    pub fn pack(&self, lo: FloatValue<'ctx>, hi: FloatValue<'ctx>) -> Res<IntValue<'ctx>> {
        pack(self.module, &self.b, self.program.dtype, lo, hi)
    }

    pub fn softmax(&mut self, s: FragId, p: FragId, m: FragId, l: FragId, o: FragId) -> Res<()> {
        let (n, d) = (self.program.frag(s).cols, self.program.frag(o).cols);
        // Same layout as the scores; every entry is overwritten below.
        let mut probs: Vec<FloatValue<'ctx>> =
            self.frags[s.0].iter().map(|v| v.into_float_value()).collect();
        let mut packed: Vec<BasicValueEnum<'ctx>> = Vec::new();
        let mut new_m = self.frags[m.0].clone();
        let mut new_l = self.frags[l.0].clone();
        let mut new_o = self.frags[o.0].clone();
        let mut e = Emit::new(self);
        let scale_log2 = self.params.scale_log2;
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let idx = |nt: u32, j: u32| self.acc_index(n, slab, nt, 2 * h + j);
                let scores: Vec<(usize, FloatValue<'ctx>)> = (0..n / 8)
                    .flat_map(|nt| (0..2).map(move |j| (nt, j)))
                    .map(|(nt, j)| (idx(nt, j), self.frags[s.0][idx(nt, j)].into_float_value()))
                    .collect();
                let mut tile_max = e.constant(f32::NEG_INFINITY);
                for &(_, x) in &scores {
                    tile_max = e.max(tile_max, x);
                }
                let tile_max = self.quad_reduce(&mut e, tile_max, true)?;
                let stat = (slab * 2 + h) as usize;
                let re = softmax::rescale(&mut e, new_m[stat].into_float_value(), tile_max, scale_log2);
                let mut sum = e.constant(0.0);
                for &(i, x) in &scores {
                    let pr = softmax::prob(&mut e, x, re.shift, scale_log2);
                    sum = e.add(sum, pr);
                    probs[i] = pr;
                }
                let l_old = new_l[stat].into_float_value();
                new_l[stat] = softmax::running_sum(&mut e, l_old, re.alpha, sum).as_basic_value_enum();
                new_m[stat] = re.m.as_basic_value_enum();
                for nt in 0..d / 8 {
                    for j in 0..2 {
                        let i = self.acc_index(d, slab, nt, 2 * h + j);
                        new_o[i] = e.mul(new_o[i].into_float_value(), re.alpha).as_basic_value_enum();
                    }
                }
            }
            // Packed per slab, so a slab's f32 probabilities die before the next slab's exist.
            // C layout → A layout: k16 step kk is n8 tiles 2kk (a0..a3) and 2kk+1 (a4..a7).
            for kk in 0..n / 16 {
                for (nt, h) in [(2 * kk, 0), (2 * kk, 1), (2 * kk + 1, 0), (2 * kk + 1, 1)] {
                    let lo = probs[self.acc_index(n, slab, nt, 2 * h)];
                    let hi = probs[self.acc_index(n, slab, nt, 2 * h + 1)];
                    packed.push(self.pack(lo, hi)?.into());
                }
            }
        }
        e.finish()?;
        self.frags[p.0] = packed;
        self.frags[m.0] = new_m;
        self.frags[l.0] = new_l;
        self.frags[o.0] = new_o;
        Ok(())
    }

    pub fn normalize(&mut self, o: FragId, l: FragId) -> Res<()> {
        let d = self.program.frag(o).cols;
        let mut new_o = self.frags[o.0].clone();
        let mut e = Emit::new(self);
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let sum = self.row_sum(&mut e, l, slab, h)?;
                let inv = softmax::inverse_sum(&mut e, sum);
                for nt in 0..d / 8 {
                    for j in 0..2 {
                        let i = self.acc_index(d, slab, nt, 2 * h + j);
                        new_o[i] = e.mul(new_o[i].into_float_value(), inv).as_basic_value_enum();
                    }
                }
            }
        }
        e.finish()?;
        self.frags[o.0] = new_o;
        Ok(())
    }

    /// Per (slab, row-half): the natural-log LSE of this lane's row, for `store_lse`.
    pub fn lse_values(&self, m: FragId, l: FragId) -> Res<Vec<FloatValue<'ctx>>> {
        let mut e = Emit::new(self);
        let mut out = Vec::new();
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let sum = self.row_sum(&mut e, l, slab, h)?;
                let max = self.frags[m.0][(slab * 2 + h) as usize].into_float_value();
                out.push(softmax::lse(&mut e, max, sum, self.params.scale_log2));
            }
        }
        e.finish()?;
        Ok(out)
    }
}

/// Packs two f32 into one i32 of two `dtype` values (`lo` in the low half), rounding to nearest.
pub fn pack<'ctx>(module: &inkwell::module::Module<'ctx>, b: &inkwell::builder::Builder<'ctx>, dtype: Dtype, lo: FloatValue<'ctx>, hi: FloatValue<'ctx>) -> Res<IntValue<'ctx>> {
    let name = match dtype {
        Dtype::F16 => "llvm.nvvm.ff2f16x2.rn",
        _ => "llvm.nvvm.ff2bf16x2.rn",
    };
    let f = super::intrinsics::declare(module, name, &[])?;
    // cvt.rn.{bf16,f16}x2.f32 puts its first operand in the upper half.
    let v = match b.build_call(f, &[hi.into(), lo.into()], "")?.try_as_basic_value() {
        inkwell::values::ValueKind::Basic(v) => v,
        _ => return Err(crate::CodegenError::Llvm(format!("{name} returned no value"))),
    };
    Ok(b.build_bit_cast(v, module.get_context().i32_type(), "")?.into_int_value())
}
