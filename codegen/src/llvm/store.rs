//! Epilogue stores: O rows rounded to the element type (each lane writes 2 elements per n8
//! tile), and the LSE (one lane per quad) when the launch passed an LSE buffer.

use inkwell::IntPredicate;
use inkwell::values::{BasicValueEnum, IntValue};

use super::lower::{Lowerer, Res};
use super::memo::Memo;
use crate::ir::{FragId, GlobalTile, Tensor};

impl<'ctx> Lowerer<'ctx, '_> {
    /// Runs `f(slab, h, token)` for each of this lane's rows that lies inside the grid.
    fn for_valid_rows(
        &mut self,
        dst: &GlobalTile,
        mut f: impl FnMut(&mut Self, u32, u32, IntValue<'ctx>) -> Res<()>,
    ) -> Res<()> {
        let mut memo = Memo::default();
        for slab in 0..self.slabs() {
            for h in 0..2 {
                let row = self.local_row(slab, h)?;
                let (token, inside) = self.row_token(dst, row, &mut memo)?;
                self.if_then(inside, |l| f(l, slab, h, token))?;
            }
        }
        Ok(())
    }

    /// Element index (i64) of (row, col) in the tile's (batch, head) plane of `cols` columns.
    fn element(&self, head_rows: IntValue<'ctx>, row: IntValue<'ctx>, cols: u32, col: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let i64t = self.ctx.i64_type();
        let row = self.b.build_int_s_extend(row, i64t, "")?;
        let r = self.b.build_int_add(head_rows, row, "")?;
        let r = self.b.build_int_mul(r, i64t.const_int(cols as u64, false), "")?;
        let col = self.b.build_int_s_extend(col, i64t, "")?;
        Ok(self.b.build_int_add(r, col, "")?)
    }

    pub fn store(&mut self, frag: FragId, dst: &GlobalTile) -> Res<()> {
        let cols = self.program.frag(frag).cols;
        let head_rows = self.head_rows(dst)?;
        let (ptr, _, _) = self.tensor(dst.tensor)?;
        // Split-KV partial outputs stay f32 until the merge kernel combines them.
        let f32_out = dst.tensor == Tensor::OSplit;
        let elem = if f32_out { 4 } else { self.program.dtype.bytes() as u64 };
        let two_t = self.b.build_int_mul(self.lane.t, self.i32(2), "")?;
        self.for_valid_rows(dst, |l, slab, h, row| {
            for nt in 0..cols / 8 {
                let lo = l.frags[frag.0][l.acc_index(cols, slab, nt, 2 * h)].into_float_value();
                let hi = l.frags[frag.0][l.acc_index(cols, slab, nt, 2 * h + 1)].into_float_value();
                let value: BasicValueEnum = if f32_out {
                    let pair = l.ctx.f32_type().vec_type(2).get_undef();
                    let pair = l.b.build_insert_element(pair, lo, l.i32(0), "")?;
                    l.b.build_insert_element(pair, hi, l.i32(1), "")?.into()
                } else {
                    l.pack(lo, hi)?.into()
                };
                let col = l.b.build_int_add(two_t, l.i32((8 * nt) as i64), "")?;
                let at = l.element(head_rows, row, cols, col)?;
                let bytes = l.b.build_int_mul(at, l.ctx.i64_type().const_int(elem, false), "")?;
                let p = l.byte_ptr(ptr, bytes)?;
                l.b.build_store(p, value)?.set_alignment(2 * elem as u32).map_err(|e| crate::CodegenError::Llvm(e.to_string()))?;
            }
            Ok(())
        })
    }

    pub fn store_lse(&mut self, m: FragId, l: FragId, dst: &GlobalTile) -> Res<()> {
        let values = self.lse_values(m, l)?;
        let (ptr, _, _) = self.tensor(dst.tensor)?;
        let requested = self.b.build_is_not_null(ptr, "")?;
        let head_rows = self.head_rows(dst)?;
        let leader = self.b.build_int_compare(IntPredicate::EQ, self.lane.t, self.i32(0), "")?;
        let go = self.b.build_and(requested, leader, "")?;
        self.if_then(go, |lw| {
            lw.for_valid_rows(dst, |lw, slab, h, row| {
                let at = lw.element(head_rows, row, 1, lw.i32(0))?;
                let bytes = lw.b.build_int_mul(at, lw.ctx.i64_type().const_int(4, false), "")?;
                let p = lw.byte_ptr(ptr, bytes)?;
                lw.b.build_store(p, values[(slab * 2 + h) as usize])?;
                Ok(())
            })
        })
    }
}
