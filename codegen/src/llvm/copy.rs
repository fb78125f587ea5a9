//! Global → shared tile copies with `cp.async.cg` (16 bytes per thread per step), into the
//! swizzled layout of `layout::BLOCK_ROW_BYTES`. Tile rows outside the grid (`GlobalTile::valid` false) are zero-filled
//! (`src_size = 0`), so masked keys multiply zeros, never stale data.

use inkwell::IntPredicate;
use inkwell::values::{IntValue, PointerValue};

use super::lower::{Lowerer, Res};
use super::memo::Memo;
use crate::CodegenError;
use crate::ir::{BufId, Expr, GlobalTile, Tensor, Var};

impl<'ctx> Lowerer<'ctx, '_> {
    /// The tensor's base pointer and its (heads, tokens) extents.
    pub fn tensor(&self, t: Tensor) -> Res<(PointerValue<'ctx>, IntValue<'ctx>, IntValue<'ctx>)> {
        let var = |v: Var| self.expr(&Expr::Var(v));
        let p = &self.params;
        Ok(match t {
            Tensor::Q => (p.q, var(Var::Heads)?, var(Var::SeqQ)?),
            Tensor::K => (p.k, var(Var::KvHeads)?, var(Var::SeqKv)?),
            Tensor::V => (p.v, var(Var::KvHeads)?, var(Var::SeqKv)?),
            Tensor::O => (p.o, var(Var::Heads)?, var(Var::SeqQ)?),
            Tensor::Lse => (p.lse, var(Var::Heads)?, var(Var::SeqQ)?),
            Tensor::OSplit | Tensor::LseSplit => {
                let rows = self.b.build_int_mul(var(Var::SeqQ)?, var(Var::Splits)?, "")?;
                (if t == Tensor::OSplit { p.o } else { p.lse }, var(Var::Heads)?, rows)
            }
            // A selection program's thresholds come through the `lse` slot (`llvm::select`).
            Tensor::Theta => (p.lse, var(Var::Heads)?, var(Var::SeqQ)?),
            Tensor::QScale | Tensor::KScale | Tensor::Qmk | Tensor::QkMean => {
                let scales = p.scales.ok_or_else(|| CodegenError::Ir(format!("{} read by a program without scale parameters", t.name())))?;
                match t {
                    Tensor::QScale => (scales[0], var(Var::Heads)?, var(Var::SeqQ)?),
                    Tensor::KScale => (scales[1], var(Var::KvHeads)?, var(Var::SeqKv)?),
                    Tensor::Qmk => (scales[2], var(Var::Heads)?, var(Var::SeqKv)?),
                    _ => (scales[3], var(Var::Heads)?, var(Var::SeqQ)?),
                }
            }
        })
    }

    /// What row `row` XORs its chunk index with in a block row of `block_chunks` chunks
    /// (`layout::row_swizzle`); no shift instruction for 128-byte rows, whose module sizes (and
    /// with them the pass list, `llvm::passes`) stay as they were.
    pub fn row_swizzle(&self, row: IntValue<'ctx>, block_chunks: u32) -> Res<IntValue<'ctx>> {
        let (shift, mask) = super::layout::row_swizzle(block_chunks);
        let row = if shift == 0 { row } else { self.b.build_right_shift(row, self.i32(shift as i64), false, "")? };
        Ok(self.b.build_and(row, self.i32(mask as i64), "")?)
    }

    /// Elements per 16-byte chunk of a shared tile.
    pub fn chunk_elems(&self) -> u32 {
        16 / self.program.elem_bytes()
    }

    /// Index (in rows, i64) of row 0 of (batch, head) in a `[batch, heads, tokens, ..]` tensor.
    pub fn head_rows(&self, t: &GlobalTile) -> Res<IntValue<'ctx>> {
        let i64t = self.ctx.i64_type();
        let (_, heads, tokens) = self.tensor(t.tensor)?;
        let widen = |v: IntValue<'ctx>| self.b.build_int_s_extend(v, i64t, "");
        let (batch, head) = (widen(self.expr(&t.batch)?)?, widen(self.expr(&t.head)?)?);
        let bh = self.b.build_int_mul(batch, widen(heads)?, "")?;
        let bh = self.b.build_int_add(bh, head, "")?;
        Ok(self.b.build_int_mul(bh, widen(tokens)?, "")?)
    }

    /// Byte offset of `stage` of a shared buffer.
    pub fn stage_base(&self, buf: BufId, stage: &Expr) -> Res<IntValue<'ctx>> {
        let sb = self.program.shared(buf);
        let stage_bytes = sb.stage_bytes(self.program.elem_bytes()) as i64;
        let stage = self.expr(stage)?;
        let off = self.b.build_int_mul(stage, self.i32(stage_bytes), "")?;
        Ok(self.b.build_int_add(off, self.i32(sb.offset.unwrap_or(0) as i64), "")?)
    }

    /// `base` (a tile stage's start) plus where chunk `chunk` of row `row` of shared tile `buf`
    /// sits in it (the layout of `layout::BLOCK_ROW_BYTES`).
    pub fn chunk_offset(&self, buf: BufId, base: IntValue<'ctx>, row: IntValue<'ctx>, chunk: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let sb = self.program.shared(buf);
        let (block_chunks, pitch) = (sb.block_cols / self.chunk_elems(), sb.block_cols * self.program.elem_bytes());
        let b = &self.b;
        let row_start = b.build_int_add(base, b.build_int_mul(row, self.i32(pitch as i64), "")?, "")?;
        // One block (whole rows) needs no block arithmetic: the module stays as small as it was
        // before blocks existed, which keeps large kernels under the O3 size limit.
        let (row_start, within) = if sb.block_cols == sb.cols {
            (row_start, chunk)
        } else {
            let block = b.build_int_unsigned_div(chunk, self.i32(block_chunks as i64), "")?;
            let block = b.build_int_mul(block, self.i32((sb.rows * pitch) as i64), "")?;
            (b.build_int_add(row_start, block, "")?, b.build_int_unsigned_rem(chunk, self.i32(block_chunks as i64), "")?)
        };
        let swizzled = b.build_xor(within, self.row_swizzle(row, block_chunks)?, "")?;
        Ok(b.build_int_add(row_start, b.build_int_mul(swizzled, self.i32(16), "")?, "")?)
    }

    /// The token of tile row `row` and whether it exists (see `GlobalTile`); `memo` keeps
    /// the parts that do not depend on the row across the rows of one tile.
    pub fn row_token(&mut self, t: &GlobalTile, row: IntValue<'ctx>, memo: &mut Memo<'ctx>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
        self.vars.insert(Var::Row, row);
        memo.next_row();
        let out = self.expr_memo(&t.token, 0, memo).and_then(|token| {
            let valid = self.expr_memo(&t.valid, 0, memo)?;
            Ok((token, self.b.build_int_compare(IntPredicate::NE, valid, self.i32(0), "")?))
        });
        self.vars.remove(&Var::Row);
        out
    }

    pub fn copy(&mut self, dst: BufId, stage: &Expr, src: &GlobalTile) -> Res<()> {
        let sb = self.program.shared(dst);
        let (rows, cols) = (sb.rows, sb.cols);
        let chunks_per_row = cols / self.chunk_elems();
        let row_bytes = (cols * self.program.elem_bytes()) as i64;
        let total = rows * chunks_per_row;
        let base = self.stage_base(dst, stage)?;
        let (gptr, _, _) = self.tensor(src.tensor)?;
        let head_rows = self.head_rows(src)?;
        let i64t = self.ctx.i64_type();
        // A tile of consecutive tokens is one run of memory from its first row: chunk `c` lies
        // `16·c` bytes on. The address of the thread's own first chunk is computed once per
        // tile, and its other chunks lie at constant offsets from it (`item - tid` chunks on),
        // instead of each rebuilding its row's 64-bit address, or holding a 64-bit offset of
        // its own across the loop.
        let run = match src.consecutive_origin() {
            Some(origin) => {
                let first = self.b.build_int_add(head_rows, self.b.build_int_s_extend(self.expr(origin)?, i64t, "")?, "")?;
                let first = self.b.build_int_mul(first, i64t.const_int(row_bytes as u64, false), "")?;
                let own = self.b.build_int_mul(self.b.build_int_z_extend(self.lane.tid, i64t, "")?, i64t.const_int(16, false), "")?;
                Some(self.byte_ptr_anywhere(gptr, self.b.build_int_add(first, own, "")?)?)
            }
            None => None,
        };
        let mut memo = Memo::default();
        self.per_thread(total, |l, c| {
            let b = &l.b;
            let r = b.build_int_unsigned_div(c, l.i32(chunks_per_row as i64), "")?;
            let ch = b.build_int_unsigned_rem(c, l.i32(chunks_per_row as i64), "")?;
            let (token, valid) = l.row_token(src, r, &mut memo)?;
            let b = &l.b;
            let size = b.build_select(valid, l.i32(16), l.i32(0), "")?;
            // A zero-size copy reads nothing. In a run, a row outside the grid keeps its own
            // address (which may lie past the tensor: never read), so that the offsets stay
            // constants; elsewhere such rows point at token 0.
            let gaddr = match run {
                Some(own) => {
                    let after = b.build_int_sub(c, l.lane.tid, "")?;
                    l.byte_ptr_anywhere(own, b.build_int_mul(b.build_int_z_extend(after, i64t, "")?, i64t.const_int(16, false), "")?)?
                }
                None => {
                    let srow = b.build_select(valid, token, l.i32(0), "")?.into_int_value();
                    let grow_abs = b.build_int_add(head_rows, b.build_int_s_extend(srow, i64t, "")?, "")?;
                    let gbytes = b.build_int_mul(grow_abs, i64t.const_int(row_bytes as u64, false), "")?;
                    let ch64 = b.build_int_z_extend(ch, i64t, "")?;
                    l.byte_ptr(gptr, b.build_int_add(gbytes, b.build_int_mul(ch64, i64t.const_int(16, false), "")?, "")?)?
                }
            };
            let soff = l.chunk_offset(dst, base, r, ch)?;
            let saddr = l.byte_ptr(l.smem, soff)?;
            l.call("llvm.nvvm.cp.async.cg.shared.global.16.s", &[], &[saddr.into(), gaddr.into(), size])?;
            Ok(())
        })
    }

    /// Runs `f(item)` for this thread's items `tid, tid + threads, ..` below `total`, the CTA's
    /// threads taking consecutive items each round; only the last round may be partial, so it
    /// alone sits under a branch.
    pub fn per_thread(&mut self, total: u32, mut f: impl FnMut(&mut Self, IntValue<'ctx>) -> Res<()>) -> Res<()> {
        let threads = self.program.threads();
        for it in 0..total.div_ceil(threads) {
            // No unsigned wrap (a thread index plus a tile's item count): LLVM may then widen the
            // item to 64 bits as `tid + const`, so addresses built from it keep constant offsets.
            let item = self.b.build_int_nuw_add(self.lane.tid, self.i32((it * threads) as i64), "")?;
            if (it + 1) * threads > total {
                let inside = self.b.build_int_compare(IntPredicate::ULT, item, self.i32(total as i64), "")?;
                self.if_then(inside, |l| f(l, item))?;
            } else {
                f(self, item)?;
            }
        }
        Ok(())
    }
}
