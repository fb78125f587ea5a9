//! Copies of bitmap-compressed K/V tiles (`CopyEngine::Bitmap`, format in
//! `crate::format::bitmap`) into the swizzled shared tiles the mma path reads.
//!
//! The copy is a gather, not a scatter: every element of the shared tile is computed from the
//! format, with the arithmetic of `BitmapCache::locate` and `value_index` that the interpreter
//! evaluates per element (a pruned element reads as 0). Nothing is zero-filled first, no barrier
//! sits inside the copy, and no thread walks a tile's set bits one after another: every value's
//! index is a popcount of bits its thread already holds, so all of a thread's loads are
//! independent and in flight together.
//!
//! A thread's unit is an 8 × 8 block: byte `s` (elements `8s..8s+8`) of 8 bitmap tiles of
//! consecutive index in one 64-token chunk. K's tiles are 8 channels, so the block's columns
//! are 8 tokens' 16-byte chunks; V's tiles are 8 tokens, so its rows are 16-byte chunks of one
//! token's channels. Either way each store is a whole swizzled 16-byte chunk. Neighbouring lanes
//! take the bytes of the same tiles, so a warp's bitmap, offset and value loads fall on a few
//! lines.
//!
//! Each unit also readies what its thread will read at the next KV step: it prefetches the
//! bitmaps of its tiles there into L2, and loads their first offset with this step's, which
//! brings the next step's offsets near and says exactly where their values start, which it
//! prefetches too. The next step's two dependent round trips (bitmaps and offsets, then the
//! values they locate) then mostly hit L2 instead of HBM.
//!
//! Consecutive bitmap copies (a KV step's K and V) are lowered together, so that the loads of
//! both are issued before either's stores. An unset element's load reads the value where the next
//! set element's would be, up to one value past a tile's values, so the values array must extend
//! past its end (`BITMAP_PARAMS`).

use inkwell::IntPredicate;
use inkwell::values::{BasicValueEnum, IntValue, PointerValue};

use super::layout::CHUNK_ELEMS;
use super::lower::{CacheParams, Lowerer, Res, counted_loop, load_aligned};
use super::memo::Memo;
use crate::CodegenError;
use crate::format::TileOrder;
use crate::format::bitmap::{PAD, TILE};
use crate::ir::{BufId, Expr, GlobalTile, Tensor, Var};

/// Elements of a bitmap tile's byte, and tiles of a thread's unit: a unit is `BYTE × BYTE`.
const BYTE: u32 = 8;

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
    /// i64: the plane's tiles, and the index past its last value.
    tiles: IntValue<'ctx>,
    values_end: IntValue<'ctx>,
}

impl Plan<'_> {
    /// Units of the copy: the tile's elements in 8 × 8 blocks.
    fn units(&self) -> u32 {
        self.rows * self.cols / (BYTE * BYTE)
    }
}

/// One thread's unit, gathered and waiting to be stored.
struct Unit<'ctx> {
    plan: usize,
    /// Whether the unit is one of the copy's (the last round may be partial).
    inside: IntValue<'ctx>,
    /// First row of the unit's 64-token chunk, its first tile's index in the chunk (a multiple
    /// of 8) and its byte.
    row0: IntValue<'ctx>,
    within0: IntValue<'ctx>,
    byte: IntValue<'ctx>,
    /// `values[i][e]`: element `8·byte + e` of tile `within0 + i` (i16).
    values: Vec<Vec<IntValue<'ctx>>>,
}

impl<'ctx> Lowerer<'ctx, '_> {
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

    fn popcount(&self, x: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let n = self
            .call_value("llvm.ctpop", &[x.get_type().into()], &[x.into()])?
            .into_int_value();
        Ok(self.b.build_int_truncate_or_bit_cast(n, self.ctx.i32_type(), "")?)
    }

    pub fn bitmap_copies(&mut self, copies: &[BitmapCopy<'_>]) -> Res<()> {
        let plans = copies
            .iter()
            .map(|c| self.plan(c))
            .collect::<Res<Vec<_>>>()?;
        let threads = self.program.threads();
        let rounds = plans
            .iter()
            .map(|p| p.units().div_ceil(threads))
            .max()
            .unwrap_or(0);
        // More than one round is a loop, not unrolled: unrolled, ptxas hoists every round's
        // loads above the first stores, and the registers they hold spill.
        if rounds == 1 {
            return self.copy_round(&plans, copies, self.lane.tid, rounds);
        }
        counted_loop(self, self.i32(rounds as i64), &[], |l, round, _| {
            let u = l.b.build_int_add(
                l.lane.tid,
                l.b.build_int_mul(round, l.i32(threads as i64), "")?,
                "",
            )?;
            l.copy_round(&plans, copies, u, rounds)?;
            Ok(Vec::new())
        })?;
        Ok(())
    }

    /// Unit `u` of every copy: all of them gathered, then all stored, so that K's and V's loads
    /// are in flight together.
    fn copy_round(
        &mut self,
        plans: &[Plan<'ctx>],
        copies: &[BitmapCopy<'_>],
        u: IntValue<'ctx>,
        rounds: u32,
    ) -> Res<()> {
        let units = plans
            .iter()
            .zip(copies)
            .enumerate()
            .map(|(id, (plan, c))| self.gather(id, plan, c.src, u))
            .collect::<Res<Vec<_>>>()?;
        let threads = self.program.threads();
        for unit in &units {
            let plan = &plans[unit.plan];
            if plan.units() == rounds * threads {
                self.store_unit(plan, unit)?;
            } else {
                self.if_then(unit.inside, |l| l.store_unit(plan, unit))?;
            }
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
        let offset_base = self.b.build_int_mul(
            plane,
            self.b.build_int_add(tiles, i64t.const_int(1, false), "")?,
            "",
        )?;
        let values_start = self.b.build_int_mul(
            widen(head_base)?,
            i64t.const_int(PAD as u64, false),
            "",
        )?;
        Ok(Plan {
            dst: c.dst,
            order: c.order,
            cache,
            base: self.stage_base(c.dst, c.stage)?,
            rows,
            cols,
            bitmap_base: self.b.build_int_mul(plane, tiles, "")?,
            offset_base,
            values_start,
            tiles,
            // The plane's last offset ends its values.
            values_end: self.tile_start(&cache, offset_base, values_start, tiles)?,
        })
    }

    /// Loads unit `u` of copy `plan_id`. A unit past the copy's, or one whose rows do not exist,
    /// reads tiles 0..8 of the plane (in bounds) as if their bitmaps were empty.
    fn gather(
        &mut self,
        plan_id: usize,
        plan: &Plan<'ctx>,
        src: &GlobalTile,
        u: IntValue<'ctx>,
    ) -> Res<Unit<'ctx>> {
        let (i64t, d) = (self.ctx.i64_type(), plan.cols);
        let inside = self.b.build_int_compare(
            IntPredicate::ULT,
            u,
            self.i32(plan.units() as i64),
            "",
        )?;
        // Unit u: byte u % 8 of tiles 8·((u / 8) % (D / 8)) + i of the copy's (u / D)-th 64-token
        // chunk.
        let byte = self.b.build_and(u, self.i32(BYTE as i64 - 1), "")?;
        let within = self.b.build_int_unsigned_rem(u, self.i32(d as i64), "")?;
        let within0 = self.b.build_and(within, self.i32(!(BYTE as i64 - 1)), "")?;
        let c_local = self.b.build_int_unsigned_div(u, self.i32(d as i64), "")?;
        let row0 = self.b.build_int_mul(c_local, self.i32(TILE as i64), "")?;
        let (token, valid) = self.row_token(src, row0, &mut Memo::default())?;
        let ok = self.b.build_and(inside, valid, "")?;
        let chunk = self
            .b
            .build_int_unsigned_div(token, self.i32(TILE as i64), "")?;
        let chunk = self.b.build_int_s_extend(chunk, i64t, "")?;
        let tile0 = self.b.build_int_add(
            self.b
                .build_int_mul(chunk, i64t.const_int(d as u64, false), "")?,
            self.b.build_int_z_extend(within0, i64t, "")?,
            "",
        )?;
        let tile0 = self
            .b
            .build_select(ok, tile0, i64t.const_zero(), "")?
            .into_int_value();
        // Element 8s + e is bit 63 - 8s - e: the byte is bits 63 - 8s ..= 56 - 8s, and the
        // values before it are the bits above (`>> 1 >> (63 - 8s)` avoids a shift by 64).
        let eight_s = self.b.build_int_z_extend(
            self.b.build_int_mul(byte, self.i32(BYTE as i64), "")?,
            i64t,
            "",
        )?;
        let low = self
            .b
            .build_int_sub(i64t.const_int(56, false), eight_s, "")?;
        let above = self
            .b
            .build_int_sub(i64t.const_int(63, false), eight_s, "")?;
        let next = self.next_step(plan, ok, tile0)?;
        let next_start = self.tile_start(&plan.cache, plan.offset_base, plan.values_start, next)?;
        let mut values = Vec::with_capacity(BYTE as usize);
        for i in 0..BYTE as u64 {
            let t = self
                .b
                .build_int_add(tile0, i64t.const_int(i, false), "")?;
            let at = self.b.build_int_add(plan.bitmap_base, t, "")?;
            let bitmap = self
                .load(i64t.into(), self.element_ptr(plan.cache.bitmaps, at, 8)?, 8)?
                .into_int_value();
            let bitmap = self
                .b
                .build_select(ok, bitmap, i64t.const_zero(), "")?
                .into_int_value();
            let start = self.tile_start(&plan.cache, plan.offset_base, plan.values_start, t)?;
            let before = self.b.build_right_shift(
                self.b
                    .build_right_shift(bitmap, i64t.const_int(1, false), false, "")?,
                above,
                false,
                "",
            )?;
            let first = self.element_ptr(
                plan.cache.values,
                self.b.build_int_add(
                    start,
                    self.b
                        .build_int_z_extend(self.popcount(before)?, i64t, "")?,
                    "",
                )?,
                2,
            )?;
            let bits = self.b.build_int_truncate(
                self.b.build_right_shift(bitmap, low, false, "")?,
                self.ctx.i32_type(),
                "",
            )?;
            let bits = self.b.build_and(bits, self.i32(0xff), "")?;
            values.push(self.gather_byte(bits, first)?);
        }
        // After this step's loads, so that waiting for `next_start` holds none of them up.
        self.prefetch_next(plan, next, next_start, byte)?;
        Ok(Unit {
            plan: plan_id,
            inside,
            row0,
            within0,
            byte,
            values,
        })
    }

    /// The i64 index of tile `t`'s first value (`BitmapCache::tile_start`).
    fn tile_start(
        &self,
        cache: &CacheParams<'ctx>,
        offset_base: IntValue<'ctx>,
        values_start: IntValue<'ctx>,
        t: IntValue<'ctx>,
    ) -> Res<IntValue<'ctx>> {
        let i64t = self.ctx.i64_type();
        let at = self.b.build_int_add(offset_base, t, "")?;
        let offset = self
            .load(
                self.ctx.i32_type().into(),
                self.element_ptr(cache.offsets, at, 4)?,
                4,
            )?
            .into_int_value();
        Ok(self.b.build_int_add(
            values_start,
            self.b.build_int_mul(
                self.b.build_int_s_extend(offset, i64t, "")?,
                i64t.const_int(2, false),
                "",
            )?,
            "",
        )?)
    }

    /// The unit's first tile at the next KV step, or `tile0` where there is no next step in the
    /// plane (or no unit).
    fn next_step(
        &self,
        plan: &Plan<'ctx>,
        ok: IntValue<'ctx>,
        tile0: IntValue<'ctx>,
    ) -> Res<IntValue<'ctx>> {
        let i64t = self.ctx.i64_type();
        let step_tiles = plan.rows as u64 / TILE as u64 * plan.cols as u64;
        let next = self
            .b
            .build_int_add(tile0, i64t.const_int(step_tiles, false), "")?;
        let last = self
            .b
            .build_int_add(next, i64t.const_int(BYTE as u64, false), "")?;
        let there = self.b.build_and(
            ok,
            self.b
                .build_int_compare(IntPredicate::ULE, last, plan.tiles, "")?,
            "",
        )?;
        Ok(self
            .b
            .build_select(there, next, tile0, "")?
            .into_int_value())
    }

    /// Prefetches into L2 the bitmaps of the unit's tiles at the next step, and 64 bytes a lane
    /// of their values from `start` (i64) on: the 8 lanes of a unit's tiles cover 512 bytes,
    /// their values' span at sparsity 0.7 and more. Everything prefetched is in bounds.
    fn prefetch_next(
        &self,
        plan: &Plan<'ctx>,
        next: IntValue<'ctx>,
        start: IntValue<'ctx>,
        byte: IntValue<'ctx>,
    ) -> Res<()> {
        let i64t = self.ctx.i64_type();
        let bitmaps = self.b.build_int_add(plan.bitmap_base, next, "")?;
        let at = self.b.build_int_add(
            start,
            self.b.build_int_z_extend(
                self.b.build_int_mul(byte, self.i32(32), "")?,
                i64t,
                "",
            )?,
            "",
        )?;
        let below = self
            .b
            .build_int_compare(IntPredicate::ULT, at, plan.values_end, "")?;
        let at = self
            .b
            .build_select(below, at, plan.values_end, "")?
            .into_int_value();
        for (ptr, at, bytes) in [(plan.cache.bitmaps, bitmaps, 8), (plan.cache.values, at, 2)] {
            self.prefetch_l2(self.element_ptr(ptr, at, bytes)?)?;
        }
        Ok(())
    }

    /// `prefetch.global.L2`, as inline PTX: LLVM selects its intrinsic on sm_90 only, the
    /// instruction exists on every target.
    fn prefetch_l2(&self, p: PointerValue<'ctx>) -> Res<()> {
        let fn_ty = self.ctx.void_type().fn_type(&[p.get_type().into()], false);
        let asm = self.ctx.create_inline_asm(
            fn_ty,
            "prefetch.global.L2 [$0];".into(),
            "l".into(),
            true,
            false,
            None,
            false,
        );
        self.b.build_indirect_call(fn_ty, asm, &[p.into()], "")?;
        Ok(())
    }

    /// The 8 elements of one tile byte `bits` (i32, element e at bit 7 - e) whose first set
    /// element's value is at `first`: element e is the value after the set bits above its own,
    /// or 0.
    fn gather_byte(
        &self,
        bits: IntValue<'ctx>,
        first: PointerValue<'ctx>,
    ) -> Res<Vec<IntValue<'ctx>>> {
        let i16t = self.ctx.i16_type();
        (0..BYTE as i64)
            .map(|e| {
                let rank = self.popcount(self.b.build_and(bits, self.i32(0xff00 >> e & 0xff), "")?)?;
                let at = self.b.build_int_mul(rank, self.i32(2), "")?;
                let value = self
                    .load(i16t.into(), self.byte_ptr(first, at)?, 2)?
                    .into_int_value();
                let set = self.b.build_int_compare(
                    IntPredicate::NE,
                    self.b.build_and(bits, self.i32(0x80 >> e), "")?,
                    self.i32(0),
                    "",
                )?;
                Ok(self
                    .b
                    .build_select(set, value, i16t.const_zero(), "")?
                    .into_int_value())
            })
            .collect()
    }

    /// Stores a unit as 8 whole 16-byte chunks: K's tiles are the block's columns (one chunk
    /// per token, across 8 channels), V's its rows (one chunk per token, along its channels).
    fn store_unit(&mut self, plan: &Plan<'ctx>, unit: &Unit<'ctx>) -> Res<()> {
        let n = BYTE as usize;
        for k in 0..n {
            let kk = self.i32(k as i64);
            let (row, ch, halves): (_, _, Vec<_>) = match plan.order {
                // Token 64c + 8s + k, channels within0 ..+ 8.
                TileOrder::Keys => (
                    self.b.build_int_add(
                        unit.row0,
                        self.b.build_int_add(
                            self.b.build_int_mul(unit.byte, self.i32(BYTE as i64), "")?,
                            kk,
                            "",
                        )?,
                        "",
                    )?,
                    self.b
                        .build_right_shift(unit.within0, self.i32(3), false, "")?,
                    (0..n).map(|i| unit.values[i][k]).collect(),
                ),
                // Tile within0 + k is token 64c + (within0 + k) % 64, channels of strip
                // (within0 + k) / 64 from 8s on.
                TileOrder::Values => {
                    let within = self.b.build_int_add(unit.within0, kk, "")?;
                    let strip = self
                        .b
                        .build_int_unsigned_div(within, self.i32(TILE as i64), "")?;
                    (
                        self.b.build_int_add(
                            unit.row0,
                            self.b
                                .build_int_unsigned_rem(within, self.i32(TILE as i64), "")?,
                            "",
                        )?,
                        self.b.build_int_add(
                            self.b.build_int_mul(
                                strip,
                                self.i32((TILE / CHUNK_ELEMS as usize) as i64),
                                "",
                            )?,
                            unit.byte,
                            "",
                        )?,
                        unit.values[k].clone(),
                    )
                }
            };
            self.store_chunk(plan, row, ch, &halves)?;
        }
        Ok(())
    }

    /// Stores 8 16-bit values as chunk `ch` of row `row` of the copy's destination.
    fn store_chunk(
        &self,
        plan: &Plan<'ctx>,
        row: IntValue<'ctx>,
        ch: IntValue<'ctx>,
        halves: &[IntValue<'ctx>],
    ) -> Res<()> {
        let mut chunk = self.ctx.i16_type().vec_type(BYTE).get_poison();
        for (e, &half) in halves.iter().enumerate() {
            chunk = self.b.build_insert_element(
                chunk,
                half,
                self.ctx.i32_type().const_int(e as u64, false),
                "",
            )?;
        }
        let p = self
            .byte_ptr(self.smem, self.chunk_offset(plan.dst, plan.base, row, ch)?)?;
        self.b
            .build_store(p, chunk)?
            .set_alignment(16)
            .map_err(|e| CodegenError::Llvm(e.to_string()))?;
        Ok(())
    }
}
