//! Copies of bitmap-compressed K/V tiles (`CopyEngine::Bitmap`, format in
//! `crate::format::bitmap`) into the swizzled shared tile the mma path reads.
//!
//! The CTA first zero-fills the tile with 16-byte stores (pruned elements read as zeros), then,
//! after a barrier, each thread takes whole 64-element bitmap tiles: tile `u` of the copy is the
//! cache's tile `chunk·D + u % D` of the KV tile's `u / D`-th 64-token chunk, so neighbouring
//! lanes load neighbouring bitmaps and offsets. A thread reads its tile's packed values as
//! 16-byte vectors and walks the set bits with `clz`, storing value `k` at the element of the
//! `k`-th set bit: the arithmetic of `BitmapCache::locate` and `value_index`, which the
//! interpreter evaluates per element.

use inkwell::IntPredicate;
use inkwell::values::{BasicValueEnum, IntValue, PointerValue};

use super::layout::CHUNK_ELEMS;
use super::lower::{CacheParams, Lowerer, Res, counted_loop, load_aligned};
use super::memo::Memo;
use crate::CodegenError;
use crate::format::TileOrder;
use crate::format::bitmap::{PAD, TILE};
use crate::ir::{BufId, Expr, GlobalTile, Tensor, Var};

impl<'ctx> Lowerer<'ctx, '_> {
    /// Runs `f(item)` for items `tid, tid + threads, ..` below `total`; only the last round may
    /// be partial, so it alone sits under a branch (see `Memo`).
    fn per_thread(
        &mut self,
        total: u32,
        mut f: impl FnMut(&mut Self, IntValue<'ctx>) -> Res<()>,
    ) -> Res<()> {
        let threads = self.program.threads();
        for it in 0..total.div_ceil(threads) {
            let item = self
                .b
                .build_int_add(self.lane.tid, self.i32((it * threads) as i64), "")?;
            if (it + 1) * threads > total {
                let inside = self.b.build_int_compare(
                    IntPredicate::ULT,
                    item,
                    self.i32(total as i64),
                    "",
                )?;
                self.if_then(inside, |l| f(l, item))?;
            } else {
                f(self, item)?;
            }
        }
        Ok(())
    }

    fn load(
        &self,
        ty: inkwell::types::BasicTypeEnum<'ctx>,
        ptr: PointerValue<'ctx>,
        align: u32,
    ) -> Res<BasicValueEnum<'ctx>> {
        load_aligned(&self.b, ty, ptr, align)
    }

    /// `ptr[index]` for elements of `bytes` bytes (index i64).
    fn element_ptr(
        &self,
        ptr: PointerValue<'ctx>,
        index: IntValue<'ctx>,
        bytes: u64,
    ) -> Res<PointerValue<'ctx>> {
        let off = self
            .b
            .build_int_mul(index, self.ctx.i64_type().const_int(bytes, false), "")?;
        self.byte_ptr(ptr, off)
    }

    pub fn bitmap_copy(
        &mut self,
        dst: BufId,
        stage: &Expr,
        src: &GlobalTile,
        order: TileOrder,
    ) -> Res<()> {
        let which = match src.tensor {
            Tensor::K => 0,
            Tensor::V => 1,
            other => {
                return Err(CodegenError::Ir(format!(
                    "{} cannot be read from a bitmap cache",
                    other.name()
                )));
            }
        };
        let cache = self.params.caches.ok_or_else(|| {
            CodegenError::Ir("a bitmap copy in a kernel without cache parameters".into())
        })?[which];
        let sb = self.program.shared(dst);
        let (rows, cols) = (sb.rows, sb.cols);
        if !rows.is_multiple_of(TILE as u32) || !cols.is_multiple_of(TILE as u32) {
            return Err(CodegenError::Ir(format!(
                "a bitmap copy into a {rows}x{cols} tile: both must be multiples of {TILE}"
            )));
        }
        let row_bytes = (cols * self.program.dtype.bytes()) as i64;
        let chunks_per_row = cols / CHUNK_ELEMS;
        let base = self.stage_base(dst, stage)?;

        let zero = self.ctx.i32_type().vec_type(4).const_zero();
        self.per_thread(rows * chunks_per_row, |l, c| {
            let r =
                l.b.build_int_unsigned_div(c, l.i32(chunks_per_row as i64), "")?;
            let ch =
                l.b.build_int_unsigned_rem(c, l.i32(chunks_per_row as i64), "")?;
            let p = l.byte_ptr(l.smem, l.shared_chunk(base, r, ch, row_bytes)?)?;
            l.b.build_store(p, zero)?
                .set_alignment(16)
                .map_err(|e| CodegenError::Llvm(e.to_string()))?;
            Ok(())
        })?;
        // Scattered values land in chunks other threads zero-filled.
        self.barrier()?;

        let i64t = self.ctx.i64_type();
        let widen = |l: &Self, v: IntValue<'ctx>| l.b.build_int_s_extend(v, i64t, "");
        let plane = self.b.build_int_mul(
            self.expr(&src.batch)?,
            self.expr(&Expr::var(Var::KvHeads))?,
            "",
        )?;
        let plane = widen(
            self,
            self.b.build_int_add(plane, self.expr(&src.head)?, "")?,
        )?;
        let compressed = widen(self, self.expr(&Expr::var(Var::Compressed))?)?;
        let d = cols as u64;
        let tiles = self
            .b
            .build_int_mul(compressed, i64t.const_int(d / TILE as u64, false), "")?;
        let head_base = self
            .load(
                self.ctx.i32_type().into(),
                self.element_ptr(cache.head_base, plane, 4)?,
                4,
            )?
            .into_int_value();
        let values_start = self.b.build_int_mul(
            widen(self, head_base)?,
            i64t.const_int(PAD as u64, false),
            "",
        )?;
        let bitmap_base = self.b.build_int_mul(plane, tiles, "")?;
        let offset_base = self.b.build_int_mul(
            plane,
            self.b.build_int_add(tiles, i64t.const_int(1, false), "")?,
            "",
        )?;
        let mut memo = Memo::default();
        self.per_thread(rows * cols / TILE as u32, |l, u| {
            let c_local = l.b.build_int_unsigned_div(u, l.i32(d as i64), "")?;
            let within = l.b.build_int_unsigned_rem(u, l.i32(d as i64), "")?;
            let row0 = l.b.build_int_mul(c_local, l.i32(TILE as i64), "")?;
            let (token, valid) = l.row_token(src, row0, &mut memo)?;
            l.if_then(valid, |l| {
                let chunk = l.b.build_int_unsigned_div(token, l.i32(TILE as i64), "")?;
                let t = l.b.build_int_add(
                    l.b.build_int_mul(widen(l, chunk)?, i64t.const_int(d, false), "")?,
                    widen(l, within)?,
                    "",
                )?;
                let tile = Tile {
                    cache,
                    t,
                    bitmap_base,
                    offset_base,
                    values_start,
                };
                l.decode_tile(&tile, base, row_bytes, |l, pos| {
                    let b = &l.b;
                    Ok(match order {
                        TileOrder::Keys => (b.build_int_add(row0, pos, "")?, within),
                        TileOrder::Values => {
                            let r = b.build_int_add(
                                row0,
                                b.build_int_unsigned_rem(within, l.i32(TILE as i64), "")?,
                                "",
                            )?;
                            let strip = b.build_int_unsigned_div(within, l.i32(TILE as i64), "")?;
                            (
                                r,
                                b.build_int_add(
                                    b.build_int_mul(strip, l.i32(TILE as i64), "")?,
                                    pos,
                                    "",
                                )?,
                            )
                        }
                    })
                })
            })
        })
    }

    /// Scatters one bitmap tile's values into the shared tile; `at(pos)` is the (row, column)
    /// of element `pos` of the tile.
    fn decode_tile(
        &mut self,
        tile: &Tile<'ctx>,
        base: IntValue<'ctx>,
        row_bytes: i64,
        at: impl Fn(&Self, IntValue<'ctx>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)>,
    ) -> Res<()> {
        let (i64t, i32t, i16t) = (
            self.ctx.i64_type(),
            self.ctx.i32_type(),
            self.ctx.i16_type(),
        );
        let bitmap_at = self.b.build_int_add(tile.bitmap_base, tile.t, "")?;
        let bitmap = self
            .load(
                i64t.into(),
                self.element_ptr(tile.cache.bitmaps, bitmap_at, 8)?,
                8,
            )?
            .into_int_value();
        let offset_at = self.b.build_int_add(tile.offset_base, tile.t, "")?;
        let offset = self
            .load(
                i32t.into(),
                self.element_ptr(tile.cache.offsets, offset_at, 4)?,
                4,
            )?
            .into_int_value();
        let offset = self.b.build_int_s_extend(offset, i64t, "")?;
        let start = self.b.build_int_add(
            tile.values_start,
            self.b.build_int_mul(offset, i64t.const_int(2, false), "")?,
            "",
        )?;
        let count = self
            .call_value("llvm.ctpop", &[i64t.into()], &[bitmap.into()])?
            .into_int_value();
        let vectors = self.b.build_int_truncate(count, i32t, "")?;
        let vectors = self.b.build_right_shift(
            self.b
                .build_int_add(vectors, self.i32(PAD as i64 - 1), "")?,
            self.i32(3),
            false,
            "",
        )?;
        // Past the last set bit, the padding (zeros) is stored at an element the bitmap leaves
        // out, which the zero-fill already holds: no branch per element. Such an element exists
        // whenever there is padding, since then fewer than 64 bits are set.
        let not_bitmap = self.b.build_not(bitmap, "")?;
        let clz = |l: &Self, x: IntValue<'ctx>| -> Res<IntValue<'ctx>> {
            let z = l.call_value(
                "llvm.ctlz",
                &[i64t.into()],
                &[x.into(), l.ctx.bool_type().const_zero().into()],
            )?;
            Ok(l.b.build_int_truncate(z.into_int_value(), i32t, "")?)
        };
        let free = clz(self, not_bitmap)?;
        let msb = i64t.const_int(1 << 63, false);
        let vec_t = i32t.vec_type(4);
        counted_loop(self, vectors, &[bitmap.into()], |l, v, carried| {
            let mut bits = carried[0].into_int_value();
            let first = l.b.build_int_add(
                start,
                l.b.build_int_mul(
                    l.b.build_int_z_extend(v, i64t, "")?,
                    i64t.const_int(PAD as u64, false),
                    "",
                )?,
                "",
            )?;
            let packed = l
                .load(
                    vec_t.into(),
                    l.element_ptr(tile.cache.values, first, 2)?,
                    16,
                )?
                .into_vector_value();
            for e in 0..PAD as u64 {
                let word =
                    l.b.build_extract_element(packed, i32t.const_int(e / 2, false), "")?
                        .into_int_value();
                let half =
                    l.b.build_right_shift(word, i32t.const_int(16 * (e % 2), false), false, "")?;
                let half = l.b.build_int_truncate(half, i16t, "")?;
                let live =
                    l.b.build_int_compare(IntPredicate::NE, bits, i64t.const_zero(), "")?;
                let pos =
                    l.b.build_select(live, clz(l, bits)?, free, "")?
                        .into_int_value();
                let value = l.b.build_select(live, half, i16t.const_zero(), "")?;
                let (row, col) = at(l, pos)?;
                let ch = l.b.build_right_shift(col, l.i32(3), false, "")?;
                let within = l.b.build_and(col, l.i32(CHUNK_ELEMS as i64 - 1), "")?;
                let off = l.b.build_int_add(
                    l.shared_chunk(base, row, ch, row_bytes)?,
                    l.b.build_int_mul(within, l.i32(2), "")?,
                    "",
                )?;
                l.b.build_store(l.byte_ptr(l.smem, off)?, value)?
                    .set_alignment(2)
                    .map_err(|e| CodegenError::Llvm(e.to_string()))?;
                let bit =
                    l.b.build_right_shift(msb, l.b.build_int_z_extend(pos, i64t, "")?, false, "")?;
                bits = l.b.build_and(bits, l.b.build_not(bit, "")?, "")?;
            }
            Ok(vec![bits.into()])
        })?;
        Ok(())
    }
}

/// Where one bitmap tile of a plane lives: its index `t` and the plane's array bases (i64).
struct Tile<'ctx> {
    cache: CacheParams<'ctx>,
    t: IntValue<'ctx>,
    bitmap_base: IntValue<'ctx>,
    offset_base: IntValue<'ctx>,
    values_start: IntValue<'ctx>,
}
