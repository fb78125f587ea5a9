//! Mustafar's bitmap-compressed K/V tiles (`crate::format::bitmap`) on their way to the mma
//! path, in the three hops of `ir::decode::Staged`, none of which waits on DRAM (the value
//! copies read one word, the plane's value base, which stays in L1 from step to step):
//!
//! - `CopyEngine::BitmapMeta`: thread `u` copies the bitmap and value offset of the KV tile's
//!   bitmap tile `u` (the cache's tile `chunk·D + u % D` of the KV tile's `u / D`-th 64-token
//!   chunk) into the `Form::Meta` stage with two `cp.async`s;
//! - `Stmt::CopyValues`: thread `u` reads them back, and copies the tile's packed values
//!   (`ceil(popc / 8)` 16-byte vectors) into its 128-byte slot of the `Form::Values` stage, one
//!   predicated `cp.async` per vector; the rest of the slot keeps stale bytes, which the
//!   expansion never reads. Vector `v` of slot `u` sits at vector `v ^ (u % 8)`: the 32 lanes of a
//!   warp read 32 slots at once while expanding, and without the XOR every slot would start on
//!   the same bank;
//! - `Stmt::Expand`: thread `u` rebuilds its bitmap tile's 64 elements in registers, value `k`
//!   for the `k`-th set bit (a running count, no popcount per element: the arithmetic of
//!   `BitmapCache::value_index`), 0 for a clear one (whose load is predicated off), and stores
//!   them as one row segment of the dense tile with eight 16-byte stores. Every element is
//!   written, so nothing is zero-filled first and no barrier separates two writers.

use inkwell::IntPredicate;
use inkwell::values::{IntValue, PointerValue};

use super::lower::{CacheParams, Lowerer, Res, load_aligned};
use super::memo::Memo;
use crate::CodegenError;
use crate::format::TileOrder;
use crate::format::bitmap::{PAD, TILE};
use crate::ir::{BufId, Expr, GlobalTile, Tensor, Var};

/// Bytes of a slot of `Form::Values`: a bitmap tile's values, at most 64 of 16 bits.
const SLOT_BYTES: u32 = TILE as u32 * 2;
/// Values per 16-byte vector.
const VECTOR_VALUES: u32 = PAD as u32;

/// The cache arrays of one compressed tile's plane.
struct Plane<'ctx> {
    cache: CacheParams<'ctx>,
    plane: IntValue<'ctx>,
    /// i64 indices of the plane's first bitmap and first offset.
    bitmap_base: IntValue<'ctx>,
    offset_base: IntValue<'ctx>,
}

/// One bitmap tile of a compressed tile, as thread `u` sees it.
struct Unit<'ctx> {
    u: IntValue<'ctx>,
    /// First row of its 64-token chunk in the tile, and its index within the chunk's `D`
    /// bitmap tiles: the channel (K) or `strip·64 + token` (V).
    row0: IntValue<'ctx>,
    within: IntValue<'ctx>,
}

impl<'ctx> Lowerer<'ctx, '_> {
    /// Bitmap tiles of a `rows × cols` tile.
    fn units(&self, buf: BufId) -> u32 {
        let sb = self.program.shared(buf);
        sb.rows * sb.cols / TILE as u32
    }

    /// Runs `f` for each of this thread's bitmap tiles (`per_thread` over `units`).
    fn per_unit(&mut self, units: u32, d: u32, mut f: impl FnMut(&mut Self, &Unit<'ctx>) -> Res<()>) -> Res<()> {
        self.per_thread(units, |l, u| {
            let unit = Unit {
                u,
                row0: l.b.build_int_mul(l.b.build_int_unsigned_div(u, l.i32(d as i64), "")?, l.i32(TILE as i64), "")?,
                within: l.b.build_int_unsigned_rem(u, l.i32(d as i64), "")?,
            };
            f(l, &unit)
        })
    }

    fn plane(&self, src: &GlobalTile, cols: u32) -> Res<Plane<'ctx>> {
        let which = match src.tensor {
            Tensor::K => 0,
            Tensor::V => 1,
            other => return Err(CodegenError::Ir(format!("{} cannot be read from a bitmap cache", other.name()))),
        };
        let cache = self.params.caches.ok_or_else(|| CodegenError::Ir("a bitmap copy in a kernel without cache parameters".into()))?[which];
        let i64t = self.ctx.i64_type();
        let widen = |v: IntValue<'ctx>| self.b.build_int_s_extend(v, i64t, "");
        let plane = self.b.build_int_mul(self.expr(&src.batch)?, self.expr(&Expr::var(Var::KvHeads))?, "")?;
        let plane = widen(self.b.build_int_add(plane, self.expr(&src.head)?, "")?)?;
        let tiles = self.b.build_int_mul(widen(self.expr(&Expr::var(Var::Compressed))?)?, i64t.const_int(cols as u64 / TILE as u64, false), "")?;
        Ok(Plane {
            cache,
            plane,
            bitmap_base: self.b.build_int_mul(plane, tiles, "")?,
            offset_base: self.b.build_int_mul(plane, self.b.build_int_add(tiles, i64t.const_int(1, false), "")?, "")?,
        })
    }

    /// The i64 index of the plane's first value. The same word every step: after the first it
    /// comes from L1, so the value copies behind it wait a cache hit, not a trip to memory.
    fn values_start(&self, p: &Plane<'ctx>) -> Res<IntValue<'ctx>> {
        let i64t = self.ctx.i64_type();
        let head_base = load_aligned(&self.b, self.ctx.i32_type().into(), self.element_ptr(p.cache.head_base, p.plane, 4)?, 4)?.into_int_value();
        Ok(self.b.build_int_mul(self.b.build_int_s_extend(head_base, i64t, "")?, i64t.const_int(PAD as u64, false), "")?)
    }

    /// The cache's index of bitmap tile `unit` of compressed tile `src`, relative to its plane.
    fn cache_tile(&mut self, src: &GlobalTile, unit: &Unit<'ctx>, d: u32, memo: &mut Memo<'ctx>) -> Res<IntValue<'ctx>> {
        let i64t = self.ctx.i64_type();
        let (token, _) = self.row_token(src, unit.row0, memo)?;
        let chunk = self.b.build_int_unsigned_div(token, self.i32(TILE as i64), "")?;
        let t = self.b.build_int_mul(self.b.build_int_s_extend(chunk, i64t, "")?, i64t.const_int(d as u64, false), "")?;
        Ok(self.b.build_int_add(t, self.b.build_int_z_extend(unit.within, i64t, "")?, "")?)
    }

    /// `ptr[index]` for elements of `bytes` bytes (index i64).
    fn element_ptr(&self, ptr: PointerValue<'ctx>, index: IntValue<'ctx>, bytes: u64) -> Res<PointerValue<'ctx>> {
        let off = self.b.build_int_mul(index, self.ctx.i64_type().const_int(bytes, false), "")?;
        self.byte_ptr(ptr, off)
    }

    /// Byte offsets in shared memory of unit `u`'s bitmap and offset in meta stage `base`.
    fn meta_slots(&self, meta: BufId, base: IntValue<'ctx>, u: IntValue<'ctx>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
        let units = self.units(meta);
        let bitmap = self.b.build_int_add(base, self.b.build_int_mul(u, self.i32(8), "")?, "")?;
        let offset = self.b.build_int_add(base, self.i32(units as i64 * 8), "")?;
        Ok((bitmap, self.b.build_int_add(offset, self.b.build_int_mul(u, self.i32(4), "")?, "")?))
    }

    /// Unit `u`'s bitmap from meta stage `base`.
    fn staged_bitmap(&self, meta: BufId, base: IntValue<'ctx>, u: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let (at, _) = self.meta_slots(meta, base, u)?;
        Ok(load_aligned(&self.b, self.ctx.i64_type().into(), self.byte_ptr(self.smem, at)?, 8)?.into_int_value())
    }

    /// `CopyEngine::BitmapMeta` of compressed tile `src` into `dst[stage]`.
    pub fn copy_meta(&mut self, dst: BufId, stage: &Expr, src: &GlobalTile) -> Res<()> {
        let d = self.program.shared(dst).cols;
        let plane = self.plane(src, d)?;
        let base = self.stage_base(dst, stage)?;
        let mut memo = Memo::default();
        self.per_unit(self.units(dst), d, |l, unit| {
            let t = l.cache_tile(src, unit, d, &mut memo)?;
            let (bitmap_at, offset_at) = l.meta_slots(dst, base, unit.u)?;
            let bitmap = l.element_ptr(plane.cache.bitmaps, l.b.build_int_add(plane.bitmap_base, t, "")?, 8)?;
            let offset = l.element_ptr(plane.cache.offsets, l.b.build_int_add(plane.offset_base, t, "")?, 4)?;
            l.call("llvm.nvvm.cp.async.ca.shared.global.8", &[], &[l.byte_ptr(l.smem, bitmap_at)?.into(), bitmap.into()])?;
            l.call("llvm.nvvm.cp.async.ca.shared.global.4", &[], &[l.byte_ptr(l.smem, offset_at)?.into(), offset.into()])?;
            Ok(())
        })
    }

    /// `Stmt::CopyValues`: the packed values of compressed tile `src` into `dst[stage]`.
    pub fn copy_values(&mut self, dst: BufId, stage: &Expr, (meta, meta_stage): (BufId, &Expr), src: &GlobalTile) -> Res<()> {
        let d = self.program.shared(dst).cols;
        let plane = self.plane(src, d)?;
        let values_start = self.values_start(&plane)?;
        let (base, meta_base) = (self.stage_base(dst, stage)?, self.stage_base(meta, meta_stage)?);
        let (i32t, i64t) = (self.ctx.i32_type(), self.ctx.i64_type());
        self.per_unit(self.units(dst), d, |l, unit| {
            let b = &l.b;
            let bitmap = l.staged_bitmap(meta, meta_base, unit.u)?;
            let (_, offset_at) = l.meta_slots(meta, meta_base, unit.u)?;
            let offset = load_aligned(&l.b, i32t.into(), l.byte_ptr(l.smem, offset_at)?, 4)?.into_int_value();
            // The tile's first value: offsets count value pairs.
            let first = b.build_int_add(values_start, b.build_int_mul(b.build_int_s_extend(offset, i64t, "")?, i64t.const_int(2, false), "")?, "")?;
            let count = b.build_int_truncate(l.call_value("llvm.ctpop", &[i64t.into()], &[bitmap.into()])?.into_int_value(), i32t, "")?;
            let vectors = b.build_right_shift(b.build_int_add(count, l.i32(VECTOR_VALUES as i64 - 1), "")?, l.i32(3), false, "")?;
            let slot = l.slot(base, unit.u)?;
            // Only the tile's own vectors: a zero-size copy would still write 16 bytes of zeros,
            // shared-memory traffic the expansion never needs (it reads nothing past the
            // values), in a kernel bound by that traffic.
            for v in 0..SLOT_BYTES / 16 {
                let real = l.b.build_int_compare(IntPredicate::ULT, l.i32(v as i64), vectors, "")?;
                l.if_then(real, |l| {
                    let at = l.b.build_int_add(first, i64t.const_int((v * VECTOR_VALUES) as u64, false), "")?;
                    let gaddr = l.element_ptr(plane.cache.values, at, 2)?;
                    let saddr = l.byte_ptr(l.smem, l.slot_byte(slot, unit.u, l.i32(v as i64 * 16))?)?;
                    l.call("llvm.nvvm.cp.async.cg.shared.global.16", &[], &[saddr.into(), gaddr.into()])?;
                    Ok(())
                })?;
            }
            Ok(())
        })
    }

    /// Where unit `u`'s slot starts in values stage `base`.
    fn slot(&self, base: IntValue<'ctx>, u: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        Ok(self.b.build_int_add(base, self.b.build_int_mul(u, self.i32(SLOT_BYTES as i64), "")?, "")?)
    }

    /// Byte `at` (below `SLOT_BYTES`) of unit `u`'s values, in its slot at `slot`: the
    /// 16-byte vector swizzled by `u % 8`. A slot starts at a multiple of `SLOT_BYTES` (stages
    /// of whole slots, placed at 1024-byte offsets by `passes::smem`), so the swizzled offset
    /// is XORed into its low bits: `slot | swizzle` is the same for all of a unit's values, and
    /// each value's address costs one instruction in the expansion.
    fn slot_byte(&self, slot: IntValue<'ctx>, u: IntValue<'ctx>, at: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let b = &self.b;
        let swizzle = b.build_left_shift(b.build_and(u, self.i32(7), "")?, self.i32(4), "")?;
        Ok(b.build_xor(b.build_or(slot, swizzle, "")?, at, "")?)
    }

    /// The 16-bit value at `ptr` (shared, the slot's byte `at`), zero-extended, where bit `bit`
    /// of `word` (the element's bitmap bit) is set, else 0; and the next value's byte `at + 2`
    /// then, `at` else. The load is predicated on the bit: lanes whose element is clear touch no
    /// bank, so the warp's 32 reads of 32 slots, about a third of them real, meet fewer bank
    /// conflicts than when every lane reads (and masks) the next value. One predicate, made by
    /// ptxas with one `LOP3`, guards the load and the step. Marked as having side effects so
    /// that LLVM keeps it between the barriers around it; its outputs are early-clobber, being
    /// written before the snippet reads the address and the offset.
    fn load_if_set(&self, word: IntValue<'ctx>, bit: u32, at: IntValue<'ctx>, ptr: PointerValue<'ctx>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
        let i32t = self.ctx.i32_type();
        let fn_ty = self.ctx.struct_type(&[i32t.into(), i32t.into()], false).fn_type(&[i32t.into(), i32t.into(), ptr.get_type().into()], false);
        let text = format!(
            "{{\n.reg .pred p;\n.reg .b32 t;\nand.b32 t, $2, {};\nsetp.ne.b32 p, t, 0;\nmov.b32 $0, 0;\nmov.b32 $1, $3;\n\
             @p ld.shared.u16 $0, [$4];\n@p add.u32 $1, $3, 2;\n}}",
            1u32 << bit
        );
        let asm = self.ctx.create_inline_asm(fn_ty, text, "=&r,=&r,r,r,r".to_string(), true, false, None, false);
        let inkwell::values::ValueKind::Basic(out) = self.b.build_indirect_call(fn_ty, asm, &[word.into(), at.into(), ptr.into()], "")?.try_as_basic_value() else {
            return Err(CodegenError::Llvm("a predicated load returned no value".into()));
        };
        let out = out.into_struct_value();
        Ok((self.b.build_extract_value(out, 0, "")?.into_int_value(), self.b.build_extract_value(out, 1, "")?.into_int_value()))
    }

    /// `Stmt::Expand` of `src[stage]` (with `meta[meta_stage]`) into `dst`.
    pub fn expand(&mut self, dst: BufId, (src, stage): (BufId, &Expr), (meta, meta_stage): (BufId, &Expr), order: TileOrder) -> Res<()> {
        let d = self.program.shared(src).cols;
        let (base, meta_base, dst_base) = (self.stage_base(src, stage)?, self.stage_base(meta, meta_stage)?, self.stage_base(dst, &Expr::from(0))?);
        let (i32t, i64t) = (self.ctx.i32_type(), self.ctx.i64_type());
        self.per_unit(self.units(src), d, |l, unit| {
            let bitmap = l.staged_bitmap(meta, meta_base, unit.u)?;
            let words = [
                l.b.build_int_truncate(l.b.build_right_shift(bitmap, i64t.const_int(32, false), false, "")?, i32t, "")?,
                l.b.build_int_truncate(bitmap, i32t, "")?,
            ];
            let slot = l.slot(base, unit.u)?;
            // Byte offset of the next set bit's value in the slot, before the swizzle.
            let mut at = l.i32(0);
            let mut pairs = Vec::with_capacity(TILE / 2);
            for e in 0..TILE as u64 {
                // Element e is bit 63 - e: bit 31 - e % 32 of the high word, then of the low.
                let word = words[(e / 32) as usize];
                let value;
                (value, at) = l.load_if_set(word, 31 - (e % 32) as u32, at, l.byte_ptr(l.smem, l.slot_byte(slot, unit.u, at)?)?)?;
                let b = &l.b;
                if e % 2 == 0 {
                    pairs.push(value);
                } else if let Some(low) = pairs.last_mut() {
                    *low = b.build_or(*low, b.build_left_shift(value, l.i32(16), "")?, "")?;
                }
            }
            // Row and first chunk of the tile's segment in `dst` (see `Stmt::Expand`).
            let (row, chunk0) = match order {
                TileOrder::Keys => (unit.within, l.b.build_right_shift(unit.row0, l.i32(3), false, "")?),
                TileOrder::Values => (
                    l.b.build_int_add(unit.row0, l.b.build_and(unit.within, l.i32(TILE as i64 - 1), "")?, "")?,
                    l.b.build_left_shift(l.b.build_right_shift(unit.within, l.i32(6), false, "")?, l.i32(3), "")?,
                ),
            };
            let v4 = i32t.vec_type(4);
            for (c, four) in pairs.chunks(4).enumerate() {
                let mut vector = v4.get_undef();
                for (i, &p) in four.iter().enumerate() {
                    vector = l.b.build_insert_element(vector, p, l.i32(i as i64), "")?;
                }
                let chunk = l.b.build_int_add(chunk0, l.i32(c as i64), "")?;
                let off = l.chunk_offset(dst, dst_base, row, chunk)?;
                l.b.build_store(l.byte_ptr(l.smem, off)?, vector)?.set_alignment(16).map_err(|e| CodegenError::Llvm(e.to_string()))?;
            }
            Ok(())
        })
    }
}
