//! Mustafar's pruning and compression on the GPU (seeds.md §1.2-1.3), written straight into
//! the bitmap format of `format::bitmap`, bit for bit as `BitmapCache::compress` of
//! `format::cache::prune_bits` writes it (the authors' rule, `PruneRule::KthSmallest`). Three
//! entries of one module over `planes × tokens × head_dim` 16-bit values (f16 or bf16 alike:
//! only the magnitude order of the bits and the zero test matter), with nothing read back by
//! the host in between:
//!
//! 1. `mustafar_prune_d{D}`, one CTA per (64-token block, plane): the block is staged in shared
//!    memory with 16-byte loads, two threads per token find its threshold
//!    (`format::prune::kth_smallest_bits`, searched on f16x2 pairs), the pruned block replaces
//!    it, and thread `u` writes the bitmap of the block's tile `u` (K: 64 tokens of channel
//!    `u`; V: 64 channels of one token); the block's padded value count, in 16-byte units, goes
//!    to `block_units`;
//! 2. `mustafar_scan`, one CTA: the exclusive scan of every block's units over all planes
//!    (`block_start`, one more entry than blocks), which places every block's values;
//! 3. `mustafar_scatter_d{D}`: stages the block again and takes its kept elements from the
//!    bitmaps (a second read of the input costs less than a second threshold search), packs
//!    each tile's values and padding in shared memory and writes the block's run of values with
//!    16-byte stores; it also writes the offsets, head bases, the planes' totals, and the zeros
//!    after the last value, which the decode kernel's zero-size copies may address.

use inkwell::IntPredicate;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::types::BasicMetadataTypeEnum;
use inkwell::values::{BasicMetadataValueEnum, IntValue, PointerValue};

use super::kernel::sreg;
use super::lower::{Res, counted_loop};
use super::standalone::Standalone;
use crate::CodegenError;
use crate::format::bitmap::TILE;

/// Threads per CTA of the pruning and scatter entries: 4 warps, one thread per tile of a
/// 64-token block at head_dim 128 and two per token.
pub const COMPRESS_THREADS: u32 = 128;
/// Threads of the scan's one CTA.
pub const SCAN_THREADS: u32 = 1024;
/// Block counts each scan thread sums per round.
const SCAN_PER_THREAD: u32 = 4;
/// Parameters of `mustafar_prune_d{D}`: the values `[planes, tokens, D]`, the bitmaps out
/// (`[planes, tiles]`), each block's padded value count out (`[planes, tokens / 64]`, 16-byte
/// units), tokens per plane, the authors' rank `k`, the tile order (0: K tiles along
/// tokens, 1: V tiles along channels), and the element type's +inf bits (magnitudes above are
/// NaN, which the rule keeps whatever the threshold: `format::prune::keeps_bits`).
pub const PRUNE_PARAMS: [&str; 7] = ["x", "bitmaps", "block_units", "tokens", "rank", "order", "infinity"];
/// Parameters of `mustafar_scan`: the blocks' units in, their exclusive scan out (one more
/// entry: the total), the number of blocks (at least 1).
pub const SCAN_PARAMS: [&str; 3] = ["block_units", "block_start", "blocks"];
/// Parameters of `mustafar_scatter_d{D}`: the values and the bitmaps and block starts the two
/// entries before wrote, the format's offsets, head bases and values out, each plane's value
/// pairs out, tokens per plane and the tile order.
pub const SCATTER_PARAMS: [&str; 9] = ["x", "bitmaps", "block_start", "offsets", "head_base", "totals", "values", "tokens", "order"];

/// Elements per row of the shared `[64][D]` block: 8 past D keeps rows 16-byte aligned for
/// vector accesses while 8 consecutive rows start 4 banks apart, so that a quarter warp reading
/// one 16-byte vector from each of 8 rows (the threshold search, V bitmaps) hits 32 banks.
fn pitch(d: u32) -> u32 {
    d + 8
}

/// The entries' names for `head_dim`.
pub fn names(head_dim: u32) -> [String; 3] {
    [format!("mustafar_prune_d{head_dim}"), "mustafar_scan".to_string(), format!("mustafar_scatter_d{head_dim}")]
}

type Kernel<'ctx, 'a> = Standalone<'ctx, 'a>;

/// Packed-pair constants: a 16-bit pattern in both halves of an i32.
const fn both(half: u32) -> i64 {
    (half as i64) | ((half as i64) << 16)
}

/// One f16x2 comparison of the threshold search: 1.0 in each half where `a < b`, else 0.
const ONE_BELOW: &str = "set.lt.f16x2.f16x2 $0, $1, $2;";
/// An f16x2 addition, which runs on the FMA pipe while the comparisons keep the ALU busy.
const ADD_F16X2: &str = "add.rn.f16x2 $0, $1, $2;";
/// 1024.0 in both halves of an f16x2: `1024 + n` has the bits `0x6400 + n` for whole `n` below
/// 1024, so counts summed onto it are read back as integers with a mask.
const F16_1024: u32 = 0x6400;

/// What the compression entries add to a standalone entry.
impl<'ctx> Kernel<'ctx, '_> {
    /// The sum of `v` over the warp's 32 lanes, in every lane.
    fn warp_sum(&self, v: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let add = |k: &Self, a: inkwell::values::BasicValueEnum<'ctx>, b: inkwell::values::BasicValueEnum<'ctx>| Ok(k.b.build_int_add(a.into_int_value(), b.into_int_value(), "")?.into());
        Ok(self.warp_reduce(v.into(), add)?.into_int_value())
    }

    /// An i32-valued PTX snippet over i32 operands (`$0` the result).
    fn asm(&self, text: &str, args: &[IntValue<'ctx>]) -> Res<IntValue<'ctx>> {
        let i32t = self.ctx.i32_type();
        let params: Vec<BasicMetadataTypeEnum<'ctx>> = args.iter().map(|_| i32t.into()).collect();
        let constraints = std::iter::once("=r").chain(args.iter().map(|_| "r")).collect::<Vec<_>>().join(",");
        let fn_ty = i32t.fn_type(&params, false);
        // No side effects: LLVM may schedule and combine the snippets like arithmetic.
        let asm = self.ctx.create_inline_asm(fn_ty, text.to_string(), constraints, false, false, None, false);
        let args: Vec<BasicMetadataValueEnum<'ctx>> = args.iter().map(|&a| a.into()).collect();
        match self.b.build_indirect_call(fn_ty, asm, &args, "")?.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Ok(v.into_int_value()),
            _ => Err(CodegenError::Llvm("inline PTX returned no value".into())),
        }
    }

    fn shuffle_xor(&self, v: IntValue<'ctx>, mask: i64) -> Res<IntValue<'ctx>> {
        Ok(self.call("llvm.nvvm.shfl.sync.bfly.i32", &[], &[self.i32(-1).into(), v.into(), self.i32(mask).into(), self.i32(0x1f).into()])?.into_int_value())
    }

    fn lane_and_warp(&self) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
        Ok((self.b.build_and(self.tid, self.i32(31), "")?, self.b.build_right_shift(self.tid, self.i32(5), false, "")?))
    }

    /// Copies block `at.block` of plane `at.plane` (64 tokens × D, contiguous) into `tile`
    /// (`[64][pitch]` shared, 16-bit), every load issued before the first store so that the
    /// CTA has its whole block in flight.
    fn stage_block(&self, x: PointerValue<'ctx>, tile: PointerValue<'ctx>, at: &Place<'ctx>, tokens: IntValue<'ctx>, d: u32) -> Res<()> {
        let b = &self.b;
        let row_vectors = d / 8;
        let v4 = self.ctx.i32_type().vec_type(4);
        let first_token = b.build_int_add(b.build_int_mul(self.i64(at.plane)?, self.i64(tokens)?, "")?, self.i64(b.build_int_mul(at.block, self.i32(TILE as i64), "")?)?, "")?;
        let first = b.build_int_mul(first_token, self.ctx.i64_type().const_int(d as u64, false), "")?;
        let mut loaded = Vec::new();
        for j in 0..TILE as u32 * row_vectors / COMPRESS_THREADS {
            let v = b.build_int_add(self.tid, self.i32((j * COMPRESS_THREADS) as i64), "")?;
            let token = b.build_int_unsigned_div(v, self.i32(row_vectors as i64), "")?;
            let col = b.build_int_mul(b.build_int_unsigned_rem(v, self.i32(row_vectors as i64), "")?, self.i32(8), "")?;
            let element = b.build_int_add(b.build_int_mul(token, self.i32(d as i64), "")?, col, "")?;
            let value = self.load(v4.into(), self.at(x, b.build_int_add(first, self.i64(element)?, "")?, 2)?, 16)?;
            loaded.push((b.build_int_add(b.build_int_mul(token, self.i32(pitch(d) as i64), "")?, col, "")?, value));
        }
        for (at, value) in loaded {
            self.store(self.at(tile, self.i64(at)?, 2)?, value, 16)?;
        }
        self.barrier()
    }

    /// This thread's half of its token in the staged block, as value pairs (element `2i` in the
    /// low half of pair `i`): token `16·warp + lane % 16`, channels from `(lane / 16)·D/2`. The
    /// two halves of a token are lanes `l` and `l ^ 16` of one warp. Also the shared element
    /// index they were read from.
    fn half_token(&self, tile: PointerValue<'ctx>, d: u32) -> Res<(IntValue<'ctx>, Vec<IntValue<'ctx>>)> {
        let b = &self.b;
        let (lane, warp) = self.lane_and_warp()?;
        let token = b.build_int_add(b.build_int_mul(warp, self.i32(16), "")?, b.build_and(lane, self.i32(15), "")?, "")?;
        let half = b.build_right_shift(lane, self.i32(4), false, "")?;
        let start = b.build_int_add(b.build_int_mul(token, self.i32(pitch(d) as i64), "")?, b.build_int_mul(half, self.i32(d as i64 / 2), "")?, "")?;
        let v4 = self.ctx.i32_type().vec_type(4);
        let mut pairs = Vec::new();
        for j in 0..d / 16 {
            let at = b.build_int_add(start, self.i32(8 * j as i64), "")?;
            let v = self.load(v4.into(), self.at(tile, self.i64(at)?, 2)?, 16)?.into_vector_value();
            for i in 0..4 {
                pairs.push(b.build_extract_element(v, self.i32(i), "")?.into_int_value());
            }
        }
        Ok((start, pairs))
    }

    /// The token's threshold (`kth_smallest_bits` of its magnitudes and `rank`) from the
    /// magnitude pairs of this thread's half (`half_token`), the same in both halves' lanes.
    ///
    /// Bit 15 is never set (magnitudes are below 0x8000, so all D are below it and D >= rank).
    /// Bits 14..1 compare `m >> 1` with `candidate >> 1` (equivalent for an even candidate) as
    /// f16 bits: below 0x4000 they are finite, non-negative f16s, which order as their bits
    /// do, two per instruction. Bit 0 compares exactly, with packed integer subtraction.
    fn threshold(&self, mags: &[IntValue<'ctx>], rank: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let b = &self.b;
        let halved: Vec<_> = mags.iter().map(|&m| b.build_and(b.build_right_shift(m, self.i32(1), false, "")?, self.i32(both(0x3fff)), "")).collect::<Result<_, _>>()?;
        let token_total = |count: IntValue<'ctx>| -> Res<IntValue<'ctx>> { Ok(b.build_int_add(count, self.shuffle_xor(count, 16)?, "")?) };
        let mut t = self.i32(0);
        for bit in (1..15).rev() {
            let candidate = b.build_or(t, self.i32(1 << bit), "")?;
            let c2 = b.build_int_mul(b.build_right_shift(candidate, self.i32(1), false, "")?, self.i32(both(1)), "")?;
            // The comparisons' 1.0s summed as f16 on the FMA pipe (the search fills the ALU
            // with the comparisons alone), in four chains rather than one long one; the first
            // starts at 1024 in both halves. Each half sums at most D/2 ones: exact.
            let mut acc: Vec<IntValue<'ctx>> = Vec::with_capacity(4);
            for (i, &h) in halved.iter().enumerate() {
                let one = self.asm(ONE_BELOW, &[h, c2])?;
                match (acc.get(i % 4), i) {
                    (Some(&a), _) => acc[i % 4] = self.asm(ADD_F16X2, &[a, one])?,
                    (None, 0) => acc.push(self.asm(ADD_F16X2, &[self.i32(both(F16_1024)), one])?),
                    (None, _) => acc.push(one),
                }
            }
            let sum = acc.iter().skip(1).try_fold(acc[0], |a, &s| self.asm(ADD_F16X2, &[a, s]))?;
            let below = token_total(self.halves_counted(sum)?)?;
            t = b.build_select(b.build_int_compare(IntPredicate::SLT, below, rank, "")?, candidate, t, "")?.into_int_value();
        }
        let candidate = b.build_or(t, self.i32(1), "")?;
        let at_least = self.at_least(mags, candidate)?;
        let mut kept = self.i32(0);
        for m in at_least {
            let n = self.call("llvm.ctpop", &[self.ctx.i32_type().into()], &[m.into()])?.into_int_value();
            kept = b.build_int_add(kept, n, "")?;
        }
        let below = token_total(b.build_int_sub(self.i32(2 * mags.len() as i64), kept, "")?)?;
        Ok(b.build_select(b.build_int_compare(IntPredicate::SLT, below, rank, "")?, candidate, t, "")?.into_int_value())
    }

    /// `n_lo + n_hi` from the f16x2 `sum` = (1024 + n_lo, 1024 + n_hi): the halves' low ten
    /// bits, added by one multiply into the high half.
    fn halves_counted(&self, sum: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let b = &self.b;
        let counts = b.build_and(sum, self.i32(both(0x3ff)), "")?;
        Ok(b.build_right_shift(b.build_int_mul(counts, self.i32(both(1)), "")?, self.i32(16), false, "")?)
    }

    /// Per magnitude pair (15-bit halves), bits 15 and 31 set where the half is `>= t`:
    /// `(m | 0x8000) - t` stays in its half and keeps bit 15 exactly then.
    fn at_least(&self, mags: &[IntValue<'ctx>], t: IntValue<'ctx>) -> Res<Vec<IntValue<'ctx>>> {
        let b = &self.b;
        let t2 = b.build_int_mul(t, self.i32(both(1)), "")?;
        mags.iter()
            .map(|&m| {
                let diff = b.build_int_sub(b.build_or(m, self.i32(both(0x8000)), "")?, t2, "")?;
                Ok(b.build_and(diff, self.i32(both(0x8000)), "")?)
            })
            .collect()
    }

    /// Per magnitude pair, bits 15 and 31 set where the rule keeps the element
    /// (`format::prune::keeps_bits`): its magnitude is at least `t` or above `infinity` (NaN),
    /// and not zero (a kept ±0 is left out of the format anyway).
    fn kept(&self, mags: &[IntValue<'ctx>], t: IntValue<'ctx>, infinity: IntValue<'ctx>) -> Res<Vec<IntValue<'ctx>>> {
        let b = &self.b;
        let at_least = self.at_least(mags, t)?;
        // m + (0x7fff - infinity) reaches bit 15 iff m > infinity: at most 0x7fff + 0x3ff, so
        // nothing carries out of the half.
        let nan_add = b.build_int_mul(b.build_int_sub(self.i32(0x7fff), infinity, "")?, self.i32(both(1)), "")?;
        mags.iter()
            .zip(at_least)
            .map(|(&m, ge)| {
                // m + 0x7fff reaches bit 15 iff m is not zero, without carrying out of its half.
                let nonzero = b.build_int_add(m, self.i32(both(0x7fff)), "")?;
                let kept = b.build_or(ge, b.build_int_add(m, nan_add, "")?, "")?;
                Ok(b.build_and(b.build_and(kept, nonzero, "")?, self.i32(both(0x8000)), "")?)
            })
            .collect()
    }

    /// This thread's kept elements as bitmap bits: element `k` of its half token at bit
    /// `63 - (k + half·D/2) % 64`, so that a V tile's bitmap is its threads' bits ORed.
    fn row_bits(&self, kept: &[IntValue<'ctx>], d: u32) -> Res<IntValue<'ctx>> {
        let b = &self.b;
        let i64t = self.ctx.i64_type();
        let mut bits = i64t.const_zero();
        for (i, &kp) in kept.iter().enumerate() {
            // Element 2i (bit 15) above element 2i + 1 (bit 31).
            let pair = b.build_or(b.build_and(b.build_right_shift(kp, self.i32(14), false, "")?, self.i32(2), "")?, b.build_right_shift(kp, self.i32(31), false, "")?, "")?;
            let pair = b.build_left_shift(b.build_int_z_extend(pair, i64t, "")?, i64t.const_int(62 - 2 * i as u64, false), "")?;
            bits = b.build_or(bits, pair, "")?;
        }
        if d == TILE as u32 {
            let half = b.build_right_shift(self.tid, self.i32(4), false, "")?;
            let shift = b.build_int_mul(b.build_and(half, self.i32(1), "")?, self.i32(32), "")?;
            bits = b.build_right_shift(bits, b.build_int_z_extend(shift, i64t, "")?, false, "")?;
        }
        Ok(bits)
    }

    /// `v` (i64) from lane `lane ^ mask`.
    fn shuffle_xor64(&self, v: IntValue<'ctx>, mask: i64) -> Res<IntValue<'ctx>> {
        let b = &self.b;
        let (i32t, i64t) = (self.ctx.i32_type(), self.ctx.i64_type());
        let lo = self.shuffle_xor(b.build_int_truncate(v, i32t, "")?, mask)?;
        let hi = self.shuffle_xor(b.build_int_truncate(b.build_right_shift(v, i64t.const_int(32, false), false, "")?, i32t, "")?, mask)?;
        let hi = b.build_left_shift(b.build_int_z_extend(hi, i64t, "")?, i64t.const_int(32, false), "")?;
        Ok(b.build_or(hi, b.build_int_z_extend(lo, i64t, "")?, "")?)
    }

    /// `pairs` with the elements `kept` leaves out zeroed.
    fn masked(&self, pairs: &[IntValue<'ctx>], kept: &[IntValue<'ctx>]) -> Res<Vec<IntValue<'ctx>>> {
        let b = &self.b;
        pairs
            .iter()
            .zip(kept)
            .map(|(&p, &kp)| {
                let mask = b.build_int_mul(b.build_right_shift(kp, self.i32(15), false, "")?, self.i32(0xffff), "")?;
                Ok(b.build_and(p, mask, "")?)
            })
            .collect()
    }

    /// Where tile `u`'s element `i` lies in the staged block: `base + i·stride` (elements). K
    /// (order 0): token `i` of channel `u`; V (order 1): channel `64·(u / 64) + i` of token
    /// `u % 64` (`BitmapCache::element`).
    fn tile_walk(&self, order: IntValue<'ctx>, u: IntValue<'ctx>, d: u32) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
        let b = &self.b;
        let values = b.build_int_compare(IntPredicate::NE, order, self.i32(0), "")?;
        let t64 = self.i32(TILE as i64);
        let strip = b.build_int_mul(b.build_int_unsigned_div(u, t64, "")?, t64, "")?;
        let v_base = b.build_int_add(b.build_int_mul(b.build_int_unsigned_rem(u, t64, "")?, self.i32(pitch(d) as i64), "")?, strip, "")?;
        let base = b.build_select(values, v_base, u, "")?.into_int_value();
        let stride = b.build_select(values, self.i32(1), self.i32(pitch(d) as i64), "")?.into_int_value();
        Ok((base, stride))
    }

    fn load_u16(&self, tile: PointerValue<'ctx>, at: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        Ok(self.load(self.ctx.i16_type().into(), self.at(tile, self.i64(at)?, 2)?, 2)?.into_int_value())
    }

    /// The K bitmap of channel `u` of the pruned block: token `i` (nonzero) is bit `63 - i`.
    fn column_bitmap(&self, tile: PointerValue<'ctx>, u: IntValue<'ctx>, d: u32) -> Res<IntValue<'ctx>> {
        let b = &self.b;
        let i64t = self.ctx.i64_type();
        let mut bitmap = i64t.const_zero();
        for i in 0..TILE as i64 {
            let v = self.load_u16(tile, b.build_int_add(u, self.i32(i * pitch(d) as i64), "")?)?;
            let magnitude = b.build_and(v, self.ctx.i16_type().const_int(0x7fff, false), "")?;
            let set = b.build_int_compare(IntPredicate::NE, magnitude, self.ctx.i16_type().const_zero(), "")?;
            let bit = b.build_select(set, i64t.const_int(1 << (63 - i), false), i64t.const_zero(), "")?.into_int_value();
            bitmap = b.build_or(bitmap, bit, "")?;
        }
        Ok(bitmap)
    }

    /// The exclusive prefix sum of `v` over the CTA's `warps` warps, and the CTA's total, through
    /// `scratch` (`warps` shared i32s, free again when this returns).
    fn cta_scan(&mut self, v: IntValue<'ctx>, warps: u32, scratch: PointerValue<'ctx>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
        let (lane, warp) = self.lane_and_warp()?;
        let mut inclusive = v;
        for delta in [1, 2, 4, 8, 16] {
            let up = self.call("llvm.nvvm.shfl.sync.up.i32", &[], &[self.i32(-1).into(), inclusive.into(), self.i32(delta).into(), self.i32(0).into()])?.into_int_value();
            let has = self.b.build_int_compare(IntPredicate::UGE, lane, self.i32(delta), "")?;
            let sum = self.b.build_int_add(inclusive, up, "")?;
            inclusive = self.b.build_select(has, sum, inclusive, "")?.into_int_value();
        }
        let last = self.b.build_int_compare(IntPredicate::EQ, lane, self.i32(31), "")?;
        self.when(last, |k| k.store(k.at(scratch, k.i64(warp)?, 4)?, inclusive, 4))?;
        self.barrier()?;
        let (mut before, mut total) = (self.i32(0), self.i32(0));
        for w in 0..warps {
            let s = self.load(self.ctx.i32_type().into(), self.at(scratch, self.ctx.i64_type().const_int(w as u64, false), 4)?, 4)?.into_int_value();
            let earlier = self.b.build_int_compare(IntPredicate::ULT, self.i32(w as i64), warp, "")?;
            before = self.b.build_int_add(before, self.b.build_select(earlier, s, self.i32(0), "")?.into_int_value(), "")?;
            total = self.b.build_int_add(total, s, "")?;
        }
        self.barrier()?;
        Ok((self.b.build_int_sub(self.b.build_int_add(before, inclusive, "")?, v, "")?, total))
    }

    /// `(count + 7) / 8`: a tile's values padded to 16-byte units.
    fn units(&self, bitmap: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let count = self.call("llvm.ctpop", &[self.ctx.i64_type().into()], &[bitmap.into()])?.into_int_value();
        let count = self.b.build_int_truncate(count, self.ctx.i32_type(), "")?;
        Ok(self.b.build_right_shift(self.b.build_int_add(count, self.i32(7), "")?, self.i32(3), false, "")?)
    }
}

/// Block `ctaid.x` of plane `ctaid.y`, this thread's tile `u` (< D) in the plane's tiles, the
/// plane's tile count, the blocks per plane and the block's index over all planes.
struct Place<'ctx> {
    plane: IntValue<'ctx>,
    block: IntValue<'ctx>,
    tile: IntValue<'ctx>,
    tiles: IntValue<'ctx>,
    blocks: IntValue<'ctx>,
    linear: IntValue<'ctx>,
}

fn place<'ctx>(k: &Kernel<'ctx, '_>, tokens: IntValue<'ctx>, d: u32) -> Res<Place<'ctx>> {
    let block = sreg(k.module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.x")?;
    let plane = sreg(k.module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.y")?;
    let tile = k.b.build_int_add(k.b.build_int_mul(block, k.i32(d as i64), "")?, k.tid, "")?;
    let blocks = k.b.build_int_unsigned_div(tokens, k.i32(TILE as i64), "")?;
    let tiles = k.b.build_int_mul(blocks, k.i32(d as i64), "")?;
    let linear = k.b.build_int_add(k.b.build_int_mul(plane, blocks, "")?, block, "")?;
    Ok(Place { plane, block, tile, tiles, blocks, linear })
}

/// Index `i` (i32) of an i32 array as i64.
fn i32_at<'ctx>(k: &Kernel<'ctx, '_>, base: PointerValue<'ctx>, i: IntValue<'ctx>) -> Res<PointerValue<'ctx>> {
    k.at(base, k.i64(i)?, 4)
}

fn prune<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, d: u32) -> Res<()> {
    let names = names(d);
    let mut k = Kernel::new(ctx, module, &names[0], &PRUNE_PARAMS, &|n| ["x", "bitmaps", "block_units"].contains(&n), COMPRESS_THREADS)?;
    let (x, bitmaps, block_units) = (k.param(0)?.into_pointer_value(), k.param(1)?.into_pointer_value(), k.param(2)?.into_pointer_value());
    let (tokens, rank, order) = (k.param(3)?.into_int_value(), k.param(4)?.into_int_value(), k.param(5)?.into_int_value());
    let infinity = k.param(6)?.into_int_value();
    let tile = k.shared("tile", TILE as u32 * pitch(d), 2);
    let sums = k.shared("sums", COMPRESS_THREADS / 32, 4);
    let p = place(&k, tokens, d)?;
    k.stage_block(x, tile, &p, tokens, d)?;
    let (start, pairs) = k.half_token(tile, d)?;
    let mags: Vec<_> = pairs.iter().map(|&v| k.b.build_and(v, k.i32(both(0x7fff)), "")).collect::<Result<_, _>>()?;
    let t = k.threshold(&mags, rank)?;
    let kept = k.kept(&mags, t, infinity)?;
    let out = BlockOut { bitmaps, block_units, sums };
    let values = k.b.build_int_compare(IntPredicate::NE, order, k.i32(0), "")?;
    // V: a thread's half token is a V tile (D = 128) or half of one (D = 64, whose bits the
    // first half's lane gathers): its bitmap needs nothing from the other threads.
    k.when(values, |k| {
        let row = k.row_bits(&kept, d)?;
        let (lane, warp) = k.lane_and_warp()?;
        let token = k.b.build_int_add(k.b.build_int_mul(warp, k.i32(16), "")?, k.b.build_and(lane, k.i32(15), "")?, "")?;
        let half = k.b.build_right_shift(lane, k.i32(4), false, "")?;
        let (bitmap, owner, u) = if d == TILE as u32 {
            let bitmap = k.b.build_or(row, k.shuffle_xor64(row, 16)?, "")?;
            (bitmap, k.b.build_int_compare(IntPredicate::EQ, half, k.i32(0), "")?, token)
        } else {
            (row, ctx.bool_type().const_all_ones(), k.b.build_int_add(k.b.build_int_mul(half, k.i32(TILE as i64), "")?, token, "")?)
        };
        finish_block(k, &out, &p, (bitmap, owner, u), d)
    })?;
    // K: a tile is a channel over the block's tokens, gathered from the pruned block.
    let keys = k.b.build_not(values, "")?;
    k.when(keys, |k| {
        for (j, quad) in k.masked(&pairs, &kept)?.chunks(4).enumerate() {
            let mut v = ctx.i32_type().vec_type(4).get_undef();
            for (i, &p) in quad.iter().enumerate() {
                v = k.b.build_insert_element(v, p, k.i32(i as i64), "")?;
            }
            let at = k.b.build_int_add(start, k.i32(8 * j as i64), "")?;
            k.store(k.at(tile, k.i64(at)?, 2)?, v, 16)?;
        }
        k.barrier()?;
        let owner = k.b.build_int_compare(IntPredicate::ULT, k.tid, k.i32(d as i64), "")?;
        // Threads past D (at D = 64) read a column inside the block too, and drop it.
        let u = k.b.build_and(k.tid, k.i32(d as i64 - 1), "")?;
        let bitmap = k.column_bitmap(tile, u, d)?;
        finish_block(k, &out, &p, (bitmap, owner, k.tid), d)
    })?;
    k.b.build_return(None)?;
    Ok(())
}

/// Where the pruning entry's results go.
struct BlockOut<'ctx> {
    bitmaps: PointerValue<'ctx>,
    block_units: PointerValue<'ctx>,
    /// One shared i32 per warp.
    sums: PointerValue<'ctx>,
}

/// Writes the bitmap of the block's tile `u` where `owner`, and the block's padded units.
fn finish_block<'ctx>(k: &mut Kernel<'ctx, '_>, out: &BlockOut<'ctx>, p: &Place<'ctx>, (bitmap, owner, u): (IntValue<'ctx>, IntValue<'ctx>, IntValue<'ctx>), d: u32) -> Res<()> {
    let bitmap = k.b.build_select(owner, bitmap, k.ctx.i64_type().const_zero(), "")?.into_int_value();
    k.when(owner, |k| {
        let tile = k.b.build_int_add(k.b.build_int_mul(p.block, k.i32(d as i64), "")?, u, "")?;
        let at = k.b.build_int_add(k.b.build_int_mul(k.i64(p.plane)?, k.i64(p.tiles)?, "")?, k.i64(tile)?, "")?;
        k.store(k.at(out.bitmaps, at, 8)?, bitmap, 8)
    })?;
    let units = k.warp_sum(k.units(bitmap)?)?;
    let (lane, warp) = k.lane_and_warp()?;
    let first_lane = k.b.build_int_compare(IntPredicate::EQ, lane, k.i32(0), "")?;
    k.when(first_lane, |k| k.store(i32_at(k, out.sums, warp)?, units, 4))?;
    k.barrier()?;
    let first = k.b.build_int_compare(IntPredicate::EQ, k.tid, k.i32(0), "")?;
    k.when(first, |k| {
        let mut total = k.i32(0);
        for w in 0..COMPRESS_THREADS as i64 / 32 {
            let s = k.load(k.ctx.i32_type().into(), i32_at(k, out.sums, k.i32(w))?, 4)?.into_int_value();
            total = k.b.build_int_add(total, s, "")?;
        }
        k.store(i32_at(k, out.block_units, p.linear)?, total, 4)
    })
}

fn scan<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>) -> Res<()> {
    let mut k = Kernel::new(ctx, module, "mustafar_scan", &SCAN_PARAMS, &|n| ["block_units", "block_start"].contains(&n), SCAN_THREADS)?;
    let (units, starts) = (k.param(0)?.into_pointer_value(), k.param(1)?.into_pointer_value());
    let blocks = k.param(2)?.into_int_value();
    let scratch = k.shared("warps", SCAN_THREADS / 32, 4);
    let per_round = (SCAN_THREADS * SCAN_PER_THREAD) as i64;
    let rounds = k.b.build_int_unsigned_div(k.b.build_int_add(blocks, k.i32(per_round - 1), "")?, k.i32(per_round), "")?;
    let last = k.b.build_int_sub(blocks, k.i32(1), "")?;
    let carry = counted_loop(&mut k, rounds, &[ctx.i32_type().const_zero().into()], |k, round, carried| {
        let carry = carried[0].into_int_value();
        let first = k.b.build_int_add(k.b.build_int_mul(round, k.i32(per_round), "")?, k.b.build_int_mul(k.tid, k.i32(SCAN_PER_THREAD as i64), "")?, "")?;
        let mut mine = Vec::new();
        for j in 0..SCAN_PER_THREAD as i64 {
            let i = k.b.build_int_add(first, k.i32(j), "")?;
            let inside = k.b.build_int_compare(IntPredicate::ULT, i, blocks, "")?;
            // Past the end: a clamped (harmless) load, counted as zero.
            let clamped = k.b.build_select(inside, i, last, "")?.into_int_value();
            let v = k.load(k.ctx.i32_type().into(), i32_at(k, units, clamped)?, 4)?.into_int_value();
            mine.push((i, inside, k.b.build_select(inside, v, k.i32(0), "")?.into_int_value()));
        }
        let sum = mine.iter().try_fold(k.i32(0), |s, &(_, _, v)| k.b.build_int_add(s, v, ""))?;
        let (before, total) = k.cta_scan(sum, SCAN_THREADS / 32, scratch)?;
        let mut running = k.b.build_int_add(carry, before, "")?;
        for (i, inside, v) in mine {
            let at = running;
            k.when(inside, |k| k.store(i32_at(k, starts, i)?, at, 4))?;
            running = k.b.build_int_add(running, v, "")?;
        }
        Ok(vec![k.b.build_int_add(carry, total, "")?.into()])
    })?[0]
        .into_int_value();
    let first = k.b.build_int_compare(IntPredicate::EQ, k.tid, k.i32(0), "")?;
    k.when(first, |k| k.store(i32_at(k, starts, blocks)?, carry, 4))?;
    k.b.build_return(None)?;
    Ok(())
}

/// The scatter's pointer parameters.
struct ScatterOut<'ctx> {
    offsets: PointerValue<'ctx>,
    head_base: PointerValue<'ctx>,
    totals: PointerValue<'ctx>,
    values: PointerValue<'ctx>,
}

fn scatter<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, d: u32) -> Res<()> {
    let names = names(d);
    let pointers = ["x", "bitmaps", "block_start", "offsets", "head_base", "totals", "values"];
    let mut k = Kernel::new(ctx, module, &names[2], &SCATTER_PARAMS, &|n| pointers.contains(&n), COMPRESS_THREADS)?;
    let ptr = |i| -> Res<PointerValue<'ctx>> { Ok(k.param(i)?.into_pointer_value()) };
    let (x, bitmaps, block_start) = (ptr(0)?, ptr(1)?, ptr(2)?);
    let out = ScatterOut { offsets: ptr(3)?, head_base: ptr(4)?, totals: ptr(5)?, values: ptr(6)? };
    let (tokens, order) = (k.param(7)?.into_int_value(), k.param(8)?.into_int_value());
    let tile = k.shared("tile", TILE as u32 * pitch(d), 2);
    let staging = k.shared("staging", TILE as u32 * d, 2);
    let scratch = k.shared("warps", COMPRESS_THREADS / 32, 4);
    let p = place(&k, tokens, d)?;
    k.stage_block(x, tile, &p, tokens, d)?;
    let i32t = ctx.i32_type();
    let start_of = |k: &Kernel<'ctx, '_>, b: IntValue<'ctx>| -> Res<IntValue<'ctx>> { Ok(k.load(i32t.into(), i32_at(k, block_start, b)?, 4)?.into_int_value()) };
    let start = start_of(&k, p.linear)?;
    let plane_start = start_of(&k, k.b.build_int_mul(p.plane, p.blocks, "")?)?;
    let owner = k.b.build_int_compare(IntPredicate::ULT, k.tid, k.i32(d as i64), "")?;
    let tile_at = k.b.build_int_add(k.b.build_int_mul(k.i64(p.plane)?, k.i64(p.tiles)?, "")?, k.i64(p.tile)?, "")?;
    // Threads past D own no tile: they read tile 0's bitmap and count nothing.
    let own_at = k.b.build_select(owner, tile_at, ctx.i64_type().const_zero(), "")?.into_int_value();
    let bitmap = k.load(ctx.i64_type().into(), k.at(bitmaps, own_at, 8)?, 8)?.into_int_value();
    let bitmap = k.b.build_select(owner, bitmap, ctx.i64_type().const_zero(), "")?.into_int_value();
    let units = k.units(bitmap)?;
    let (before, total) = k.cta_scan(units, COMPRESS_THREADS / 32, scratch)?;
    let row = k.b.build_int_mul(k.i64(p.plane)?, k.i64(k.b.build_int_add(p.tiles, k.i32(1), "")?)?, "")?;
    k.when(owner, |k| {
        // Plane-relative, in value pairs (4 per unit).
        let local = k.b.build_int_add(k.b.build_int_sub(start, plane_start, "")?, before, "")?;
        let at = k.b.build_int_add(row, k.i64(p.tile)?, "")?;
        k.store(k.at(out.offsets, at, 4)?, k.b.build_int_mul(local, k.i32(4), "")?, 4)?;
        pack_tile(k, (tile, staging), order, bitmap, (before, units), d)
    })?;
    k.barrier()?;
    write_block(&mut k, staging, out.values, start, total)?;
    let first = k.b.build_int_compare(IntPredicate::EQ, k.tid, k.i32(0), "")?;
    let plane_head = k.b.build_and(first, k.b.build_int_compare(IntPredicate::EQ, p.block, k.i32(0), "")?, "")?;
    k.when(plane_head, |k| k.store(i32_at(k, out.head_base, p.plane)?, plane_start, 4))?;
    let last_block = k.b.build_int_compare(IntPredicate::EQ, p.block, k.b.build_int_sub(p.blocks, k.i32(1), "")?, "")?;
    let plane_tail = k.b.build_and(first, last_block, "")?;
    k.when(plane_tail, |k| {
        let end = start_of(k, k.b.build_int_add(p.linear, k.i32(1), "")?)?;
        let pairs = k.b.build_int_mul(k.b.build_int_sub(end, plane_start, "")?, k.i32(4), "")?;
        k.store(k.at(out.offsets, k.b.build_int_add(row, k.i64(p.tiles)?, "")?, 4)?, pairs, 4)?;
        k.store(i32_at(k, out.totals, p.plane)?, pairs, 4)?;
        let planes = sreg(k.module, &k.b, "llvm.nvvm.read.ptx.sreg.nctaid.y")?;
        let last_plane = k.b.build_int_compare(IntPredicate::EQ, p.plane, k.b.build_int_sub(planes, k.i32(1), "")?, "")?;
        // The decode kernel's zero-size copies may address the 16-byte unit past the last value.
        k.when(last_plane, |k| {
            let at = k.b.build_int_mul(k.i64(end)?, ctx.i64_type().const_int(8, false), "")?;
            k.store(k.at(out.values, at, 2)?, ctx.i32_type().vec_type(4).const_zero(), 16)
        })
    })?;
    k.b.build_return(None)?;
    Ok(())
}

/// Packs tile `u = tid`'s kept elements (the set bits of `bitmap`, in element order) from the
/// staged block into `staging` from unit `before` on, zeros after them to `units` units.
fn pack_tile<'ctx>(k: &mut Kernel<'ctx, '_>, (tile, staging): (PointerValue<'ctx>, PointerValue<'ctx>), order: IntValue<'ctx>, bitmap: IntValue<'ctx>, (before, units): (IntValue<'ctx>, IntValue<'ctx>), d: u32) -> Res<()> {
    let i64t = k.ctx.i64_type();
    let (base, stride) = k.tile_walk(order, k.tid, d)?;
    let first = k.b.build_int_mul(before, k.i32(8), "")?;
    let count = k.b.build_int_truncate(k.call("llvm.ctpop", &[i64t.into()], &[bitmap.into()])?.into_int_value(), k.ctx.i32_type(), "")?;
    // One iteration per set bit: the highest left is the next element.
    counted_loop(k, count, &[bitmap.into()], |k, n, left| {
        let left = left[0].into_int_value();
        let lead = k.call("llvm.ctlz", &[i64t.into()], &[left.into(), k.ctx.bool_type().const_zero().into()])?.into_int_value();
        let i = k.b.build_int_truncate(lead, k.ctx.i32_type(), "")?;
        let v = k.load_u16(tile, k.b.build_int_add(base, k.b.build_int_mul(i, stride, "")?, "")?)?;
        k.store(k.at(staging, k.i64(k.b.build_int_add(first, n, "")?)?, 2)?, v, 2)?;
        let bit = k.b.build_right_shift(i64t.const_int(1 << 63, false), lead, false, "")?;
        Ok(vec![k.b.build_xor(left, bit, "")?.into()])
    })?;
    let padding = k.b.build_int_sub(k.b.build_int_mul(units, k.i32(8), "")?, count, "")?;
    let after = k.b.build_int_add(first, count, "")?;
    counted_loop(k, padding, &[], |k, n, _| {
        k.store(k.at(staging, k.i64(k.b.build_int_add(after, n, "")?)?, 2)?, k.ctx.i16_type().const_zero(), 2)?;
        Ok(vec![])
    })?;
    Ok(())
}

/// The block's `total` packed units from `staging` to `values` from unit `start` on, one
/// 16-byte unit per thread and round.
fn write_block<'ctx>(k: &mut Kernel<'ctx, '_>, staging: PointerValue<'ctx>, values: PointerValue<'ctx>, start: IntValue<'ctx>, total: IntValue<'ctx>) -> Res<()> {
    let threads = COMPRESS_THREADS as i64;
    let rounds = k.b.build_int_unsigned_div(k.b.build_int_add(total, k.i32(threads - 1), "")?, k.i32(threads), "")?;
    let v4 = k.ctx.i32_type().vec_type(4);
    counted_loop(k, rounds, &[], |k, round, _| {
        let unit = k.b.build_int_add(k.b.build_int_mul(round, k.i32(threads), "")?, k.tid, "")?;
        let inside = k.b.build_int_compare(IntPredicate::ULT, unit, total, "")?;
        k.when(inside, |k| {
            let v = k.load(v4.into(), k.at(staging, k.i64(unit)?, 16)?, 16)?;
            let at = k.b.build_int_add(k.i64(start)?, k.i64(unit)?, "")?;
            k.store(k.at(values, at, 16)?, v, 16)
        })?;
        Ok(vec![])
    })?;
    Ok(())
}

/// The three entries for `head_dim` (64 or 128: two threads per token of a 64-token block,
/// one thread per tile).
pub fn lower<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, head_dim: u32) -> Res<()> {
    if !head_dim.is_multiple_of(TILE as u32) || head_dim > COMPRESS_THREADS {
        return Err(CodegenError::Unsupported(format!("GPU compression for head_dim {head_dim}: 64 or 128 only")));
    }
    prune(ctx, module, head_dim)?;
    scan(ctx, module)?;
    scatter(ctx, module, head_dim)
}
