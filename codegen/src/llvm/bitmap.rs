//! Copies of bitmap-compressed K/V tiles (`CopyEngine::Bitmap`, format in
//! `crate::format::bitmap`) into the swizzled shared tiles the mma path reads.
//!
//! Each thread takes whole 64-element bitmap tiles: tile `u` of a copy is the cache's tile
//! `chunk·D + u % D` of the KV tile's `u / D`-th 64-token chunk, so neighbouring lanes load
//! neighbouring bitmaps and offsets. A thread reads its tile's packed values as 16-byte vectors
//! and walks the set bits with `clz`, storing value `k` at the element of the `k`-th set bit:
//! the arithmetic of `BitmapCache::locate` and `value_index`, which the interpreter evaluates
//! per element. Pruned elements are zeros from a zero-fill of the whole tile that a barrier
//! orders before the scattered stores.
//!
//! Consecutive bitmap copies (a KV step's K and V) are lowered together, so that their global
//! loads overlap instead of queueing behind each other: every thread first loads the bitmaps,
//! offsets and first value vectors of all its tiles, then zero-fills, then one barrier, then the
//! scatters, each loading its next vector before storing the current one. Those look-ahead loads
//! read up to 16 bytes past a tile's values, so the values array must extend 16 bytes past its
//! end (`BITMAP_PARAMS`).

use inkwell::IntPredicate;
use inkwell::values::{BasicValueEnum, IntValue, PointerValue, VectorValue};

use super::layout::CHUNK_ELEMS;
use super::lower::{CacheParams, Lowerer, Res, counted_loop, load_aligned};
use super::memo::Memo;
use crate::CodegenError;
use crate::format::TileOrder;
use crate::format::bitmap::{PAD, TILE};
use crate::ir::{BufId, Expr, GlobalTile, Tensor, Var};

/// One bitmap copy of the run, with what does not depend on the tile.
pub struct BitmapCopy<'s> {
    pub dst: BufId,
    pub stage: &'s Expr,
    pub src: &'s GlobalTile,
    pub order: TileOrder,
}

/// A copy's destination and its plane's arrays.
struct Plan<'ctx> {
    dst: BufId,
    order: TileOrder,
    cache: CacheParams<'ctx>,
    /// Byte offset of the destination stage in shared memory.
    base: IntValue<'ctx>,
    rows: u32,
    cols: u32,
    /// i64 indices of the plane's first bitmap and offset, and of its first value.
    bitmap_base: IntValue<'ctx>,
    offset_base: IntValue<'ctx>,
    values_start: IntValue<'ctx>,
}

/// One thread's bitmap tile, loaded ahead of its scatter.
struct Tile<'ctx> {
    plan: usize,
    /// Whether the thread has this tile (the last round may be partial) and its rows exist.
    ok: IntValue<'ctx>,
    /// First row of the tile's 64-token chunk, and the channel (K) or strip·64 + row (V).
    row0: IntValue<'ctx>,
    within: IntValue<'ctx>,
    bitmap: IntValue<'ctx>,
    /// i64 index of the tile's first value.
    start: IntValue<'ctx>,
    first: VectorValue<'ctx>,
}

impl<'ctx> Lowerer<'ctx, '_> {
    /// Runs `f(item)` for items `tid, tid + threads, ..` below `total`; only the last round may
    /// be partial, so it alone sits under a branch.
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

    /// The 8 values at value index `at` (i64, 16-byte aligned).
    fn value_vector(
        &self,
        cache: &CacheParams<'ctx>,
        at: IntValue<'ctx>,
    ) -> Res<VectorValue<'ctx>> {
        let ty = self.ctx.i32_type().vec_type(4).into();
        Ok(self
            .load(ty, self.element_ptr(cache.values, at, 2)?, 16)?
            .into_vector_value())
    }

    pub fn bitmap_copies(&mut self, copies: &[BitmapCopy<'_>]) -> Res<()> {
        let plans = copies
            .iter()
            .map(|c| self.plan(c))
            .collect::<Res<Vec<_>>>()?;
        let mut tiles = Vec::new();
        for (i, c) in copies.iter().enumerate() {
            self.load_tiles(i, &plans[i], c.src, &mut tiles)?;
        }
        for plan in &plans {
            let (rows, chunks_per_row) = (plan.rows, plan.cols / CHUNK_ELEMS);
            let zero = self.ctx.i32_type().vec_type(4).const_zero();
            self.per_thread(rows * chunks_per_row, |l, c| {
                let r =
                    l.b.build_int_unsigned_div(c, l.i32(chunks_per_row as i64), "")?;
                let ch =
                    l.b.build_int_unsigned_rem(c, l.i32(chunks_per_row as i64), "")?;
                let p = l.byte_ptr(l.smem, l.chunk_offset(plan.dst, plan.base, r, ch)?)?;
                l.b.build_store(p, zero)?
                    .set_alignment(16)
                    .map_err(|e| CodegenError::Llvm(e.to_string()))?;
                Ok(())
            })?;
        }
        // Scattered values land in chunks other threads zero-filled.
        self.barrier()?;
        for tile in &tiles {
            let plan = &plans[tile.plan];
            self.if_then(tile.ok, |l| l.scatter(plan, tile))?;
        }
        Ok(())
    }

    fn plan(&self, c: &BitmapCopy<'_>) -> Res<Plan<'ctx>> {
        let which = match c.src.tensor {
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
        let sb = self.program.shared(c.dst);
        let (rows, cols) = (sb.rows, sb.cols);
        if !rows.is_multiple_of(TILE as u32) || !cols.is_multiple_of(TILE as u32) {
            return Err(CodegenError::Ir(format!(
                "a bitmap copy into a {rows}x{cols} tile: both must be multiples of {TILE}"
            )));
        }
        let i64t = self.ctx.i64_type();
        let widen = |v: IntValue<'ctx>| self.b.build_int_s_extend(v, i64t, "");
        let plane = self.b.build_int_mul(
            self.expr(&c.src.batch)?,
            self.expr(&Expr::var(Var::KvHeads))?,
            "",
        )?;
        let plane = widen(self.b.build_int_add(plane, self.expr(&c.src.head)?, "")?)?;
        let compressed = widen(self.expr(&Expr::var(Var::Compressed))?)?;
        let tiles = self.b.build_int_mul(
            compressed,
            i64t.const_int(cols as u64 / TILE as u64, false),
            "",
        )?;
        let head_base = self
            .load(
                self.ctx.i32_type().into(),
                self.element_ptr(cache.head_base, plane, 4)?,
                4,
            )?
            .into_int_value();
        Ok(Plan {
            dst: c.dst,
            order: c.order,
            cache,
            base: self.stage_base(c.dst, c.stage)?,
            rows,
            cols,
            bitmap_base: self.b.build_int_mul(plane, tiles, "")?,
            offset_base: self.b.build_int_mul(
                plane,
                self.b.build_int_add(tiles, i64t.const_int(1, false), "")?,
                "",
            )?,
            values_start: self.b.build_int_mul(
                widen(head_base)?,
                i64t.const_int(PAD as u64, false),
                "",
            )?,
        })
    }

    /// Loads the bitmap, value offset and first value vector of each of this thread's tiles of
    /// copy `plan_id`. A thread without a tile in the last round, or a tile whose rows do not
    /// exist, loads tile 0 of the plane instead (in bounds) and scatters nothing.
    fn load_tiles(
        &mut self,
        plan_id: usize,
        plan: &Plan<'ctx>,
        src: &GlobalTile,
        tiles: &mut Vec<Tile<'ctx>>,
    ) -> Res<()> {
        let (i64t, d) = (self.ctx.i64_type(), plan.cols);
        let units = plan.rows * plan.cols / TILE as u32;
        let threads = self.program.threads();
        let mut memo = Memo::default();
        for it in 0..units.div_ceil(threads) {
            let u = self
                .b
                .build_int_add(self.lane.tid, self.i32((it * threads) as i64), "")?;
            let inside =
                self.b
                    .build_int_compare(IntPredicate::ULT, u, self.i32(units as i64), "")?;
            let c_local = self.b.build_int_unsigned_div(u, self.i32(d as i64), "")?;
            let within = self.b.build_int_unsigned_rem(u, self.i32(d as i64), "")?;
            let row0 = self.b.build_int_mul(c_local, self.i32(TILE as i64), "")?;
            let (token, valid) = self.row_token(src, row0, &mut memo)?;
            let ok = self.b.build_and(inside, valid, "")?;
            let chunk = self
                .b
                .build_int_unsigned_div(token, self.i32(TILE as i64), "")?;
            let chunk = self.b.build_int_s_extend(chunk, i64t, "")?;
            let t = self
                .b
                .build_int_mul(chunk, i64t.const_int(d as u64, false), "")?;
            let t = self
                .b
                .build_int_add(t, self.b.build_int_z_extend(within, i64t, "")?, "")?;
            let t = self
                .b
                .build_select(ok, t, i64t.const_zero(), "")?
                .into_int_value();
            let at = self.b.build_int_add(plan.bitmap_base, t, "")?;
            let bitmap = self
                .load(i64t.into(), self.element_ptr(plan.cache.bitmaps, at, 8)?, 8)?
                .into_int_value();
            let at = self.b.build_int_add(plan.offset_base, t, "")?;
            let offset = self
                .load(
                    self.ctx.i32_type().into(),
                    self.element_ptr(plan.cache.offsets, at, 4)?,
                    4,
                )?
                .into_int_value();
            let offset = self.b.build_int_s_extend(offset, i64t, "")?;
            let start = self.b.build_int_add(
                plan.values_start,
                self.b.build_int_mul(offset, i64t.const_int(2, false), "")?,
                "",
            )?;
            let first = self.value_vector(&plan.cache, start)?;
            tiles.push(Tile {
                plan: plan_id,
                ok,
                row0,
                within,
                bitmap,
                start,
                first,
            });
        }
        Ok(())
    }

    /// Stores one bitmap tile's values at the elements of its set bits.
    fn scatter(&mut self, plan: &Plan<'ctx>, tile: &Tile<'ctx>) -> Res<()> {
        let (i64t, i32t, i16t) = (
            self.ctx.i64_type(),
            self.ctx.i32_type(),
            self.ctx.i16_type(),
        );
        let count = self
            .call_value("llvm.ctpop", &[i64t.into()], &[tile.bitmap.into()])?
            .into_int_value();
        let count = self.b.build_int_truncate(count, i32t, "")?;
        let vectors = self.b.build_right_shift(
            self.b.build_int_add(count, self.i32(PAD as i64 - 1), "")?,
            self.i32(3),
            false,
            "",
        )?;
        let clz = |l: &Self, x: IntValue<'ctx>| -> Res<IntValue<'ctx>> {
            let z = l.call_value(
                "llvm.ctlz",
                &[i64t.into()],
                &[x.into(), l.ctx.bool_type().const_zero().into()],
            )?;
            Ok(l.b.build_int_truncate(z.into_int_value(), i32t, "")?)
        };
        // Past the last set bit, the padding (zeros) is stored at an element the bitmap leaves
        // out, which the zero-fill already holds: no branch per element. Such an element exists
        // whenever there is padding, since then fewer than 64 bits are set.
        let free = clz(self, self.b.build_not(tile.bitmap, "")?)?;
        let msb = i64t.const_int(1 << 63, false);
        let (row0, within, order) = (tile.row0, tile.within, plan.order);
        counted_loop(
            self,
            vectors,
            &[tile.bitmap.into(), tile.first.into()],
            |l, v, carried| {
                let (mut bits, packed) =
                    (carried[0].into_int_value(), carried[1].into_vector_value());
                // The next vector is loaded before this one is stored, so its latency overlaps.
                let next_at = l.b.build_int_add(
                    l.b.build_int_z_extend(v, i64t, "")?,
                    i64t.const_int(1, false),
                    "",
                )?;
                let next_at = l.b.build_int_add(
                    tile.start,
                    l.b.build_int_mul(next_at, i64t.const_int(PAD as u64, false), "")?,
                    "",
                )?;
                let next = l.value_vector(&plan.cache, next_at)?;
                for e in 0..PAD as u64 {
                    let word =
                        l.b.build_extract_element(packed, i32t.const_int(e / 2, false), "")?
                            .into_int_value();
                    let half = l.b.build_right_shift(
                        word,
                        i32t.const_int(16 * (e % 2), false),
                        false,
                        "",
                    )?;
                    let half = l.b.build_int_truncate(half, i16t, "")?;
                    let live =
                        l.b.build_int_compare(IntPredicate::NE, bits, i64t.const_zero(), "")?;
                    let pos =
                        l.b.build_select(live, clz(l, bits)?, free, "")?
                            .into_int_value();
                    let value = l.b.build_select(live, half, i16t.const_zero(), "")?;
                    let (row, col) = match order {
                        TileOrder::Keys => (l.b.build_int_add(row0, pos, "")?, within),
                        TileOrder::Values => {
                            let r = l.b.build_int_add(
                                row0,
                                l.b.build_int_unsigned_rem(within, l.i32(TILE as i64), "")?,
                                "",
                            )?;
                            let strip =
                                l.b.build_int_unsigned_div(within, l.i32(TILE as i64), "")?;
                            (
                                r,
                                l.b.build_int_add(
                                    l.b.build_int_mul(strip, l.i32(TILE as i64), "")?,
                                    pos,
                                    "",
                                )?,
                            )
                        }
                    };
                    let ch = l.b.build_right_shift(col, l.i32(3), false, "")?;
                    let lane_elem = l.b.build_and(col, l.i32(CHUNK_ELEMS as i64 - 1), "")?;
                    let off = l.b.build_int_add(
                        l.chunk_offset(plan.dst, plan.base, row, ch)?,
                        l.b.build_int_mul(lane_elem, l.i32(2), "")?,
                        "",
                    )?;
                    l.b.build_store(l.byte_ptr(l.smem, off)?, value)?
                        .set_alignment(2)
                        .map_err(|e| CodegenError::Llvm(e.to_string()))?;
                    let bit = l.b.build_right_shift(
                        msb,
                        l.b.build_int_z_extend(pos, i64t, "")?,
                        false,
                        "",
                    )?;
                    bits = l.b.build_and(bits, l.b.build_not(bit, "")?, "")?;
                }
                Ok(vec![bits.into(), next.into()])
            },
        )?;
        Ok(())
    }
}
