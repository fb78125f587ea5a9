//! Mustafar's pruning and compression on the GPU (seeds.md §1.2-1.3), written straight into
//! the bitmap format of `format::bitmap`, bit for bit as `BitmapCache::compress` of
//! `format::cache::prune_bits` writes it (the authors' rule, `PruneRule::KthSmallest`). Three
//! entries of one module over `planes × tokens × head_dim` 16-bit values (f16 or bf16 alike:
//! only the magnitude order of the bits and the zero test matter):
//!
//! 1. `mustafar_prune_count_d{D}`, one CTA per (64-token block, plane): each warp prunes tokens
//!    into shared memory (threshold: `format::prune::kth_smallest_bits`, bit by bit, one warp
//!    count per bit), then thread `u` builds the bitmap of the block's tile `u` (K: 64 tokens of
//!    channel `u`; V: 64 channels of one token) and its padded count in value pairs;
//! 2. `mustafar_offsets`, one CTA per plane: the exclusive scan of the counts (`offsets`, one
//!    more than tiles per plane) and the plane's total, from which the host places the planes'
//!    values (`head_base`) and sizes the buffer;
//! 3. `mustafar_scatter_d{D}`: prunes the block again (cheaper than a dense round trip through
//!    memory) and writes each tile's kept values in element order at its offset. Padding slots
//!    stay as the zeroed buffer has them.

use inkwell::IntPredicate;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::values::{BasicValueEnum, IntValue, PointerValue};

use super::kernel::sreg;
use super::lower::{Res, counted_loop};
use super::standalone::Standalone;
use crate::CodegenError;
use crate::format::bitmap::TILE;

/// Threads per CTA of every entry: 4 warps, one thread per tile of a 64-token block at
/// head_dim 128.
pub const COMPRESS_THREADS: u32 = 128;
/// Parameters of `mustafar_prune_count_d{D}`: the values `[planes, tokens, D]`, the bitmaps and
/// counts out (`[planes, tiles]`), tokens per plane, the authors' rank `k`, and the tile order
/// (0: K tiles along tokens, 1: V tiles along channels).
pub const PRUNE_COUNT_PARAMS: [&str; 6] = ["x", "bitmaps", "counts", "tokens", "rank", "order"];
/// Parameters of `mustafar_offsets`: counts in, offsets (`[planes, tiles + 1]`) and totals
/// (`[planes]`, value pairs) out, tiles per plane.
pub const OFFSETS_PARAMS: [&str; 4] = ["counts", "offsets", "totals", "tiles"];
/// Parameters of `mustafar_scatter_d{D}`: the values, the offsets and head bases (16-byte units)
/// of the format, the zeroed value buffer out, then as `PRUNE_COUNT_PARAMS`.
pub const SCATTER_PARAMS: [&str; 7] = ["x", "offsets", "head_base", "values", "tokens", "rank", "order"];

/// Elements per row of the shared `[64][D]` block: 4 past D, so that the V order's reads (one
/// row per thread, same column) spread over the banks (2-way at most) while rows stay 8-byte
/// aligned for the pruning's vector stores. The K order reads along a row, conflict-free.
fn pitch(d: u32) -> u32 {
    d + 4
}

/// The entries' names for `head_dim`.
pub fn names(head_dim: u32) -> [String; 3] {
    [format!("mustafar_prune_count_d{head_dim}"), "mustafar_offsets".to_string(), format!("mustafar_scatter_d{head_dim}")]
}

type Kernel<'ctx, 'a> = Standalone<'ctx, 'a>;

/// What the compression entries add to a standalone entry.
impl<'ctx> Kernel<'ctx, '_> {
    /// The sum of `v` over the warp's 32 lanes, in every lane.
    fn warp_sum(&self, v: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let add = |k: &Self, a: BasicValueEnum<'ctx>, b: BasicValueEnum<'ctx>| Ok(k.b.build_int_add(a.into_int_value(), b.into_int_value(), "")?.into());
        Ok(self.warp_reduce(v.into(), add)?.into_int_value())
    }

    /// Prunes the 64-token block `at.block` of plane `at.plane` into `tile` (`[64][pitch]` shared, 16-bit): warp
    /// `w` takes tokens `w, w + 4, ...`, lane `l` channels `l·D/32 ..`; the threshold is
    /// `kth_smallest_bits` of the token's magnitudes, the kept test `magnitude >= threshold`.
    fn prune_block(&mut self, x: PointerValue<'ctx>, tile: PointerValue<'ctx>, at: &Place<'ctx>, tokens: IntValue<'ctx>, rank: IntValue<'ctx>, d: u32) -> Res<()> {
        let (plane, block) = (at.plane, at.block);
        let per_lane = d / 32;
        let vec_ty = self.ctx.i16_type().vec_type(per_lane);
        let warp = self.b.build_right_shift(self.tid, self.i32(5), false, "")?;
        let lane = self.b.build_and(self.tid, self.i32(31), "")?;
        let warps = (COMPRESS_THREADS / 32) as i64;
        counted_loop(self, self.i32(TILE as i64 / warps), &[], |k, step, _| {
            let t = k.b.build_int_add(warp, k.b.build_int_mul(step, k.i32(warps), "")?, "")?;
            let token = k.b.build_int_add(k.b.build_int_mul(block, k.i32(TILE as i64), "")?, t, "")?;
            let row = k.b.build_int_add(k.b.build_int_mul(k.i64(plane)?, k.i64(tokens)?, "")?, k.i64(token)?, "")?;
            let first = k.b.build_int_add(
                k.b.build_int_mul(row, k.ctx.i64_type().const_int(d as u64, false), "")?,
                k.i64(k.b.build_int_mul(lane, k.i32(per_lane as i64), "")?)?,
                "",
            )?;
            let values = k.load(vec_ty.into(), k.at(x, first, 2)?, 2 * per_lane)?.into_vector_value();
            let mut mags = Vec::new();
            for i in 0..per_lane {
                let v = k.b.build_extract_element(values, k.i32(i as i64), "")?.into_int_value();
                let v = k.b.build_int_z_extend(v, k.ctx.i32_type(), "")?;
                mags.push(k.b.build_and(v, k.i32(0x7fff), "")?);
            }
            // Bit by bit from the top: keep a bit set while fewer than `rank` are below.
            let mut threshold = k.i32(0);
            for bit in (0..16).rev() {
                let candidate = k.b.build_or(threshold, k.i32(1 << bit), "")?;
                let mut below = k.i32(0);
                for &m in &mags {
                    let lt = k.b.build_int_compare(IntPredicate::ULT, m, candidate, "")?;
                    below = k.b.build_int_add(below, k.b.build_int_z_extend(lt, k.ctx.i32_type(), "")?, "")?;
                }
                let below = k.warp_sum(below)?;
                let fewer = k.b.build_int_compare(IntPredicate::SLT, below, rank, "")?;
                threshold = k.b.build_select(fewer, candidate, threshold, "")?.into_int_value();
            }
            let mut pruned = vec_ty.get_undef();
            for (i, &m) in mags.iter().enumerate() {
                let idx = k.i32(i as i64);
                let v = k.b.build_extract_element(values, idx, "")?;
                let keep = k.b.build_int_compare(IntPredicate::UGE, m, threshold, "")?;
                let v = k.b.build_select(keep, v, k.ctx.i16_type().const_zero().into(), "")?;
                pruned = k.b.build_insert_element(pruned, v, idx, "")?;
            }
            let at = k.b.build_int_add(k.b.build_int_mul(t, k.i32(pitch(d) as i64), "")?, k.b.build_int_mul(lane, k.i32(per_lane as i64), "")?, "")?;
            k.store(k.at(tile, k.i64(at)?, 2)?, pruned, 2 * per_lane)?;
            Ok(vec![])
        })?;
        self.barrier()
    }

    /// Element `i` of the block's tile `u` in `tile` (rows of `pitch(d)`): K (order 0) is token `i` of channel `u`,
    /// V (order 1) channel `64·(u / 64) + i` of token `u % 64` (`BitmapCache::element`).
    fn tile_element(&self, tile: PointerValue<'ctx>, order: IntValue<'ctx>, u: IntValue<'ctx>, i: IntValue<'ctx>, d: u32) -> Res<IntValue<'ctx>> {
        let b = &self.b;
        let values = b.build_int_compare(IntPredicate::NE, order, self.i32(0), "")?;
        let t64 = self.i32(TILE as i64);
        let row = b.build_select(values, b.build_int_unsigned_rem(u, t64, "")?, i, "")?.into_int_value();
        let strip = b.build_int_mul(b.build_int_unsigned_div(u, t64, "")?, t64, "")?;
        let col = b.build_select(values, b.build_int_add(strip, i, "")?, u, "")?.into_int_value();
        let at = b.build_int_add(b.build_int_mul(row, self.i32(pitch(d) as i64), "")?, col, "")?;
        Ok(self.load(self.ctx.i16_type().into(), self.at(tile, self.i64(at)?, 2)?, 2)?.into_int_value())
    }

    /// Whether 16-bit element bits are nonzero (±0 are left out: `format::bitmap::is_zero`).
    fn nonzero(&self, v: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let m = self.b.build_and(v, self.ctx.i16_type().const_int(0x7fff, false), "")?;
        Ok(self.b.build_int_compare(IntPredicate::NE, m, self.ctx.i16_type().const_zero(), "")?)
    }
}

/// Block `ctaid.x` of plane `ctaid.y`, this thread's tile `u` (< D), its index in the plane's
/// tiles, and the plane's tile count.
struct Place<'ctx> {
    plane: IntValue<'ctx>,
    block: IntValue<'ctx>,
    tile: IntValue<'ctx>,
    tiles: IntValue<'ctx>,
}

fn place<'ctx>(k: &Kernel<'ctx, '_>, tokens: IntValue<'ctx>, d: u32) -> Res<Place<'ctx>> {
    let block = sreg(k.module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.x")?;
    let plane = sreg(k.module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.y")?;
    let tile = k.b.build_int_add(k.b.build_int_mul(block, k.i32(d as i64), "")?, k.tid, "")?;
    let tiles = k.b.build_int_mul(k.b.build_int_unsigned_div(tokens, k.i32(TILE as i64), "")?, k.i32(d as i64), "")?;
    Ok(Place { plane, block, tile, tiles })
}

/// What both pruning entries start with: this CTA's block pruned into shared memory, its place,
/// and whether this thread owns a tile (`tid < D`).
fn pruned_block<'ctx>(k: &mut Kernel<'ctx, '_>, x: PointerValue<'ctx>, (tokens, rank): (IntValue<'ctx>, IntValue<'ctx>), d: u32) -> Res<(PointerValue<'ctx>, Place<'ctx>, IntValue<'ctx>)> {
    let tile = k.shared("tile", TILE as u32 * pitch(d), 2);
    let p = place(k, tokens, d)?;
    k.prune_block(x, tile, &p, tokens, rank, d)?;
    let active = k.b.build_int_compare(IntPredicate::ULT, k.tid, k.i32(d as i64), "")?;
    Ok((tile, p, active))
}

fn prune_count<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, d: u32) -> Res<()> {
    let names = names(d);
    let mut k = Kernel::new(ctx, module, &names[0], &PRUNE_COUNT_PARAMS, &|n| ["x", "bitmaps", "counts"].contains(&n), COMPRESS_THREADS)?;
    let (x, bitmaps, counts) = (k.param(0)?.into_pointer_value(), k.param(1)?.into_pointer_value(), k.param(2)?.into_pointer_value());
    let (tokens, rank, order) = (k.param(3)?.into_int_value(), k.param(4)?.into_int_value(), k.param(5)?.into_int_value());
    let (tile_smem, p, active) = pruned_block(&mut k, x, (tokens, rank), d)?;
    k.when(active, |k| {
        let i64t = k.ctx.i64_type();
        let bitmap = counted_loop(k, k.i32(TILE as i64), &[i64t.const_zero().into()], |k, i, acc| {
            let v = k.tile_element(tile_smem, order, k.tid, i, d)?;
            let set = k.b.build_int_z_extend(k.nonzero(v)?, i64t, "")?;
            // Element i is bit 63 - i.
            let shift = k.i64(k.b.build_int_sub(k.i32(63), i, "")?)?;
            Ok(vec![k.b.build_or(acc[0].into_int_value(), k.b.build_left_shift(set, shift, "")?, "")?.into()])
        })?[0]
            .into_int_value();
        let at = k.b.build_int_add(k.b.build_int_mul(k.i64(p.plane)?, k.i64(p.tiles)?, "")?, k.i64(p.tile)?, "")?;
        k.store(k.at(bitmaps, at, 8)?, bitmap, 8)?;
        let count = k.call("llvm.ctpop", &[i64t.into()], &[bitmap.into()])?.into_int_value();
        let count = k.b.build_int_truncate(count, k.ctx.i32_type(), "")?;
        // Padded to 8 values, counted in pairs.
        let pairs = k.b.build_right_shift(k.b.build_and(k.b.build_int_add(count, k.i32(7), "")?, k.i32(!7), "")?, k.i32(1), false, "")?;
        k.store(k.at(counts, at, 4)?, pairs, 4)
    })?;
    k.b.build_return(None)?;
    Ok(())
}

fn offsets<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>) -> Res<()> {
    let mut k = Kernel::new(ctx, module, "mustafar_offsets", &OFFSETS_PARAMS, &|n| ["counts", "offsets", "totals"].contains(&n), COMPRESS_THREADS)?;
    let (counts, offsets, totals) = (k.param(0)?.into_pointer_value(), k.param(1)?.into_pointer_value(), k.param(2)?.into_pointer_value());
    let tiles = k.param(3)?.into_int_value();
    let sums = k.shared("sums", COMPRESS_THREADS, 4);
    let plane = sreg(module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.x")?;
    let threads = k.i32(COMPRESS_THREADS as i64);
    // Thread t scans the segment [t·seg, min((t + 1)·seg, tiles)).
    let seg = k.b.build_int_unsigned_div(k.b.build_int_add(tiles, k.i32(COMPRESS_THREADS as i64 - 1), "")?, threads, "")?;
    let lo = k.b.build_int_mul(k.tid, seg, "")?;
    let hi = k.b.build_select(
        k.b.build_int_compare(IntPredicate::ULT, k.b.build_int_add(lo, seg, "")?, tiles, "")?,
        k.b.build_int_add(lo, seg, "")?,
        tiles,
        "",
    )?.into_int_value();
    let len = k.b.build_select(k.b.build_int_compare(IntPredicate::ULT, lo, hi, "")?, k.b.build_int_sub(hi, lo, "")?, k.i32(0), "")?.into_int_value();
    let count_at = |k: &Kernel<'ctx, '_>, j: IntValue<'ctx>| -> Res<IntValue<'ctx>> {
        let at = k.b.build_int_add(k.b.build_int_mul(k.i64(plane)?, k.i64(tiles)?, "")?, k.i64(j)?, "")?;
        Ok(k.load(k.ctx.i32_type().into(), k.at(counts, at, 4)?, 4)?.into_int_value())
    };
    let zero = k.i32(0);
    let sum = counted_loop(&mut k, len, &[zero.into()], |k, j, acc| {
        let c = count_at(k, k.b.build_int_add(lo, j, "")?)?;
        Ok(vec![k.b.build_int_add(acc[0].into_int_value(), c, "")?.into()])
    })?[0]
        .into_int_value();
    k.store(k.at(sums, k.i64(k.tid)?, 4)?, sum, 4)?;
    k.barrier()?;
    // One thread turns the segment sums into starts (128 of them) and writes the total.
    let first = k.b.build_int_compare(IntPredicate::EQ, k.tid, k.i32(0), "")?;
    k.when(first, |k| {
        let zero = k.i32(0);
        let total = counted_loop(k, threads, &[zero.into()], |k, t, acc| {
            let p = k.at(sums, k.i64(t)?, 4)?;
            let s = k.load(k.ctx.i32_type().into(), p, 4)?.into_int_value();
            k.store(p, acc[0].into_int_value(), 4)?;
            Ok(vec![k.b.build_int_add(acc[0].into_int_value(), s, "")?.into()])
        })?[0]
            .into_int_value();
        k.store(k.at(totals, k.i64(plane)?, 4)?, total, 4)?;
        let row = k.b.build_int_mul(k.i64(plane)?, k.i64(k.b.build_int_add(tiles, k.i32(1), "")?)?, "")?;
        k.store(k.at(offsets, row, 4)?, k.i32(0), 4)
    })?;
    k.barrier()?;
    let start = k.load(k.ctx.i32_type().into(), k.at(sums, k.i64(k.tid)?, 4)?, 4)?;
    let row = k.b.build_int_mul(k.i64(plane)?, k.i64(k.b.build_int_add(tiles, k.i32(1), "")?)?, "")?;
    counted_loop(&mut k, len, &[start], |k, j, acc| {
        let j = k.b.build_int_add(lo, j, "")?;
        let end = k.b.build_int_add(acc[0].into_int_value(), count_at(k, j)?, "")?;
        let at = k.b.build_int_add(row, k.i64(k.b.build_int_add(j, k.i32(1), "")?)?, "")?;
        k.store(k.at(offsets, at, 4)?, end, 4)?;
        Ok(vec![end.into()])
    })?;
    k.b.build_return(None)?;
    Ok(())
}

fn scatter<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, d: u32) -> Res<()> {
    let names = names(d);
    let mut k = Kernel::new(ctx, module, &names[2], &SCATTER_PARAMS, &|n| ["x", "offsets", "head_base", "values"].contains(&n), COMPRESS_THREADS)?;
    let (x, offsets, head_base, values) = (
        k.param(0)?.into_pointer_value(),
        k.param(1)?.into_pointer_value(),
        k.param(2)?.into_pointer_value(),
        k.param(3)?.into_pointer_value(),
    );
    let (tokens, rank, order) = (k.param(4)?.into_int_value(), k.param(5)?.into_int_value(), k.param(6)?.into_int_value());
    let (tile_smem, p, active) = pruned_block(&mut k, x, (tokens, rank), d)?;
    k.when(active, |k| {
        let i64t = k.ctx.i64_type();
        // The tile's first value: the plane's base (16-byte units) plus its offset (pairs).
        let base = k.load(k.ctx.i32_type().into(), k.at(head_base, k.i64(p.plane)?, 4)?, 4)?.into_int_value();
        let row = k.b.build_int_mul(k.i64(p.plane)?, k.i64(k.b.build_int_add(p.tiles, k.i32(1), "")?)?, "")?;
        let off = k.load(k.ctx.i32_type().into(), k.at(offsets, k.b.build_int_add(row, k.i64(p.tile)?, "")?, 4)?, 4)?.into_int_value();
        let start = k.b.build_int_add(
            k.b.build_int_mul(k.b.build_int_s_extend(base, i64t, "")?, i64t.const_int(8, false), "")?,
            k.b.build_int_mul(k.b.build_int_s_extend(off, i64t, "")?, i64t.const_int(2, false), "")?,
            "",
        )?;
        counted_loop(k, k.i32(TILE as i64), &[start.into()], |k, i, next| {
            let v = k.tile_element(tile_smem, order, k.tid, i, d)?;
            let next = next[0].into_int_value();
            let kept = k.nonzero(v)?;
            k.when(kept, |k| k.store(k.at(values, next, 2)?, v, 2))?;
            Ok(vec![k.b.build_int_add(next, k.b.build_int_z_extend(kept, i64t, "")?, "")?.into()])
        })?;
        Ok(())
    })?;
    k.b.build_return(None)?;
    Ok(())
}

/// The three entries for `head_dim` (64 or 128: a lane's channels are one vector load).
pub fn lower<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, head_dim: u32) -> Res<()> {
    if !head_dim.is_multiple_of(TILE as u32) || head_dim > COMPRESS_THREADS {
        return Err(CodegenError::Unsupported(format!("GPU compression for head_dim {head_dim}: 64 or 128 only")));
    }
    prune_count(ctx, module, head_dim)?;
    offsets(ctx, module)?;
    scatter(ctx, module, head_dim)
}
