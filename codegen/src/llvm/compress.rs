//! Mustafar's pruning and compression on the GPU (seeds.md §1.2-1.3), written straight into
//! the bitmap format of `format::bitmap`, bit for bit as `BitmapCache::compress` of
//! `format::cache::prune_bits` writes it (the authors' rule, `PruneRule::KthSmallest`). One
//! entry, `mustafar_compress_d{D}`, over `planes × tokens × head_dim` 16-bit values (f16 or
//! bf16 alike: only the magnitude order of the bits and the zero test matter), one CTA per
//! 64-token block, that reads the input once:
//!
//! 1. the CTA takes a ticket, which names its block (in order over all planes), and stages the
//!    block in shared memory with 16-byte loads; two threads per token find its threshold
//!    (`format::prune::kth_smallest_bits`, searched on f16x2 pairs), and thread `u` writes the
//!    bitmap of the block's tile `u` (K: 64 tokens of channel `u`; V: 64 channels of one token);
//! 2. it publishes its padded value count (16-byte units) and packs each tile's kept values and
//!    padding from the staged block into shared memory;
//! 3. a decoupled look-back over the blocks before it (Merrill & Garland, "Single-pass Parallel
//!    Prefix Scan with Decoupled Look-back", 2016; `flag`) finds where its values start;
//! 4. it writes its run of values with 16-byte stores and its tiles' offsets, and, where it is
//!    a plane's first or last block, the head base, the plane's total, and after the last value
//!    the zeros that the decode kernel's zero-size copies may address.

use inkwell::IntPredicate;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::types::{BasicMetadataTypeEnum, BasicType, BasicTypeEnum};
use inkwell::values::{BasicMetadataValueEnum, BasicValueEnum, IntValue, PointerValue};

use super::kernel::sreg;
use super::lower::{Res, counted_loop};
use super::standalone::Standalone;
use crate::CodegenError;
use crate::format::bitmap::TILE;

/// Threads per CTA: 4 warps, one thread per tile of a 64-token block at head_dim 128 and two
/// per token.
pub const COMPRESS_THREADS: u32 = 128;
/// Parameters of `mustafar_compress_d{D}`, launched with one CTA per 64-token block of every
/// plane (a 1-D grid): the values `[planes, tokens, D]`; the format's bitmaps, offsets, head
/// bases and values out; each plane's value pairs out; the look-back's words (`flag`: one per
/// block, then one per plane) and the ticket counter (one u32, zero before the first launch;
/// the launch leaves it zero); tokens per plane, the authors' rank `k`, the tile order (0: K
/// tiles along tokens, 1: V tiles along channels), the element type's +inf bits (magnitudes
/// above are NaN, which the rule keeps whatever the threshold: `format::prune::keeps_bits`),
/// and the launch's epoch (`flag`, not 0).
pub const COMPRESS_PARAMS: [&str; 13] = ["x", "bitmaps", "offsets", "head_base", "totals", "values", "flags", "ticket", "tokens", "rank", "order", "infinity", "epoch"];

/// The look-back's words: a launch's `epoch` in bits 63..32, a status in bits 31..30 and a
/// count of 16-byte units in bits 29..0, published with one 64-bit store and read with one
/// 64-bit load.
///
/// Memory ordering. Blocks tell each other nothing but these words (and the ticket counter,
/// `take_ticket`, whose relaxed atomic add needs no order: a ticket only names a block): a
/// block never reads another block's bitmaps, offsets or values, and no two blocks write the
/// same element of them, so no word guards other data and no fence is needed to make data
/// visible before a word (what the launch writes is read after it ends). What is needed:
/// - the status and its count arrive together: they share one naturally aligned 64-bit word,
///   written and read only by strong (relaxed, GPU-scope) 64-bit accesses to exactly those 8
///   bytes, which PTX's memory model calls morally strong to each other and performs with
///   single-copy atomicity: a reader sees a word whole, old or new;
/// - a waiting block sees a published word eventually, and reads it again on every try: the
///   accesses are `ld/st.relaxed.gpu` (strong at GPU scope, so they are served coherently by
///   L2 rather than a stale L1 line) in `volatile` inline PTX, which LLVM neither hoists out of
///   the wait nor merges;
/// - a block's two words come in order: both are stores of one thread to one location, which
///   coherence keeps in program order; a reader that still sees the aggregate after the prefix
///   was stored reads a true count all the same, only a longer way.
///
/// The epoch makes reuse of the words need no clearing launch: a word of an earlier launch
/// (another epoch) reads as not published. The runtime gives each launch the next epoch and
/// clears the words only when the epochs wrap (and a fresh buffer's zeros are epoch 0, never a
/// launch's).
mod flag {
    /// Bits of the count. Counts are at most the units of every value kept over all planes,
    /// below 2^29 (the runtime's layout bound: value pairs, four per unit, fit in i32).
    pub const VALUE_BITS: u32 = 30;
    pub const VALUE_MASK: i64 = (1 << VALUE_BITS) - 1;
    /// Nothing published in this epoch.
    pub const NONE: i64 = 0;
    /// The block's own units.
    pub const AGGREGATE: i64 = 1;
    /// The units of every block up to this one, inclusive; a plane's word: before the plane.
    pub const PREFIX: i64 = 2;
}

/// Elements per row of the shared `[64][D]` block: 8 past D keeps rows 16-byte aligned for
/// vector accesses while 8 consecutive rows start 4 banks apart, so that a quarter warp reading
/// one 16-byte vector from each of 8 rows (the threshold search, V bitmaps) hits 32 banks.
fn pitch(d: u32) -> u32 {
    d + 8
}

/// CTAs per SM the registers are budgeted for. The kernel waits on memory (its block's loads,
/// its look-back) between stretches of arithmetic, so more resident CTAs hide more of it: at
/// D = 128, as many as an H100's shared memory holds (6 of 35 KB, in 80 registers without
/// spills, where the registers left to themselves, 96, allowed 5). At D = 64 the registers
/// left to themselves (62) allow 8 of the 12 that shared memory holds; a budget of 10 (48
/// registers without spills; 12 spill) is left for a timing to decide. Chosen from ptxas's
/// reports, not yet from GPU timings.
fn resident_ctas(d: u32) -> u32 {
    if d == TILE as u32 { 1 } else { 6 }
}

/// The entry's name for `head_dim`.
pub fn name(head_dim: u32) -> String {
    format!("mustafar_compress_d{head_dim}")
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
            // starts at 1024 in both halves. Each half sums at most D/4 ones (one per pair of the
            // thread's half token), far below 1024: exact.
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

    /// A tile's kept values (its bitmap's set bits), and `(count + 7) / 8`: them padded to
    /// 16-byte units.
    fn kept_units(&self, bitmap: IntValue<'ctx>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
        let count = self.call("llvm.ctpop", &[self.ctx.i64_type().into()], &[bitmap.into()])?.into_int_value();
        let count = self.b.build_int_truncate(count, self.ctx.i32_type(), "")?;
        Ok((count, self.b.build_right_shift(self.b.build_int_add(count, self.i32(7), "")?, self.i32(3), false, "")?))
    }
}

/// The accesses blocks reach each other through (`flag`).
impl<'ctx> Kernel<'ctx, '_> {
    /// A PTX memory access as `volatile` inline PTX with a memory clobber: LLVM keeps every one,
    /// in program order with the other memory accesses. Pointers go in as 64-bit integers.
    fn memory_asm(&self, text: &str, constraints: &str, ret: Option<BasicTypeEnum<'ctx>>, args: &[BasicValueEnum<'ctx>]) -> Res<Option<IntValue<'ctx>>> {
        let params: Vec<BasicMetadataTypeEnum<'ctx>> = args.iter().map(|a| a.get_type().into()).collect();
        let fn_ty = match ret {
            Some(t) => t.fn_type(&params, false),
            None => self.ctx.void_type().fn_type(&params, false),
        };
        let asm = self.ctx.create_inline_asm(fn_ty, text.to_string(), format!("{constraints},~{{memory}}"), true, false, None, false);
        let args: Vec<BasicMetadataValueEnum<'ctx>> = args.iter().map(|&a| a.into()).collect();
        let call = self.b.build_indirect_call(fn_ty, asm, &args, "")?;
        Ok(match call.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Some(v.into_int_value()),
            _ => None,
        })
    }

    fn address(&self, p: PointerValue<'ctx>) -> Res<BasicValueEnum<'ctx>> {
        Ok(self.b.build_ptr_to_int(p, self.ctx.i64_type(), "")?.into())
    }

    fn load_relaxed(&self, p: PointerValue<'ctx>) -> Res<IntValue<'ctx>> {
        let loaded = self.memory_asm("ld.relaxed.gpu.global.b64 $0, [$1];", "=l,l", Some(self.ctx.i64_type().into()), &[self.address(p)?])?;
        loaded.ok_or_else(|| CodegenError::Llvm("a relaxed load returned no value".into()))
    }

    /// `v` (i64 or i32) stored at `p`.
    fn store_relaxed(&self, p: PointerValue<'ctx>, v: IntValue<'ctx>) -> Res<()> {
        let (width, constraint) = if v.get_type().get_bit_width() == 64 { ("b64", "l") } else { ("b32", "r") };
        self.memory_asm(&format!("st.relaxed.gpu.global.{width} [$0], $1;"), &format!("l,{constraint}"), None, &[self.address(p)?, v.into()])?;
        Ok(())
    }

    /// The u32 at `p` before adding 1 to it.
    fn take_one(&self, p: PointerValue<'ctx>) -> Res<IntValue<'ctx>> {
        let old = self.memory_asm("atom.relaxed.gpu.global.add.u32 $0, [$1], 1;", "=r,l", Some(self.ctx.i32_type().into()), &[self.address(p)?])?;
        old.ok_or_else(|| CodegenError::Llvm("an atomic add returned no value".into()))
    }

    /// The lanes of the warp where `pred` holds, as bits.
    fn ballot(&self, pred: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        Ok(self.call("llvm.nvvm.vote.ballot.sync", &[], &[self.i32(-1).into(), pred.into()])?.into_int_value())
    }

    /// `epoch`'s word of `status` and `count` (`flag`).
    fn flag_word(&self, epoch: IntValue<'ctx>, status: i64, count: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let (b, i64t) = (&self.b, self.ctx.i64_type());
        let high = b.build_left_shift(self.i64(epoch)?, i64t.const_int(32, false), "")?;
        let low = b.build_or(self.i64(count)?, i64t.const_int((status << flag::VALUE_BITS) as u64, false), "")?;
        Ok(b.build_or(high, low, "")?)
    }

    /// A word's status and count, its status `NONE` unless it is of `epoch`.
    fn read_flag(&self, word: IntValue<'ctx>, epoch: IntValue<'ctx>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
        let (b, i32t, i64t) = (&self.b, self.ctx.i32_type(), self.ctx.i64_type());
        let word_epoch = b.build_int_truncate(b.build_right_shift(word, i64t.const_int(32, false), false, "")?, i32t, "")?;
        let low = b.build_int_truncate(word, i32t, "")?;
        let status = b.build_right_shift(low, self.i32(flag::VALUE_BITS as i64), false, "")?;
        let current = b.build_int_compare(IntPredicate::EQ, word_epoch, epoch, "")?;
        let status = b.build_select(current, status, self.i32(flag::NONE), "")?.into_int_value();
        Ok((status, b.build_and(low, self.i32(flag::VALUE_MASK), "")?))
    }
}

/// Runs `body` until it says not to go `again`, each run from the values the last one returned
/// (`init` first); the last run's values.
fn repeat<'ctx>(
    k: &mut Kernel<'ctx, '_>,
    init: &[BasicValueEnum<'ctx>],
    mut body: impl FnMut(&mut Kernel<'ctx, '_>, &[BasicValueEnum<'ctx>]) -> Res<(IntValue<'ctx>, Vec<BasicValueEnum<'ctx>>)>,
) -> Res<Vec<BasicValueEnum<'ctx>>> {
    let here = |k: &Kernel<'ctx, '_>| k.b.get_insert_block().ok_or_else(|| CodegenError::Llvm("builder has no block".into()));
    let pre = here(k)?;
    let (top, exit) = (k.ctx.append_basic_block(k.func, "repeat"), k.ctx.append_basic_block(k.func, "endrepeat"));
    k.b.build_unconditional_branch(top)?;
    k.b.position_at_end(top);
    let phis = init
        .iter()
        .map(|v| {
            let phi = k.b.build_phi(v.get_type(), "")?;
            phi.add_incoming(&[(v, pre)]);
            Ok(phi)
        })
        .collect::<Res<Vec<_>>>()?;
    let carried: Vec<_> = phis.iter().map(|p| p.as_basic_value()).collect();
    let (again, next) = body(k, &carried)?;
    let latch = here(k)?;
    for (phi, v) in phis.iter().zip(&next) {
        phi.add_incoming(&[(v, latch)]);
    }
    k.b.build_conditional_branch(again, top, exit)?;
    k.b.position_at_end(exit);
    Ok(next)
}

/// Block `block` of plane `plane` (from the CTA's ticket `linear`, its index over all planes),
/// the plane's tile count, blocks per plane, and blocks over all planes (the launch's CTAs).
struct Place<'ctx> {
    plane: IntValue<'ctx>,
    block: IntValue<'ctx>,
    tiles: IntValue<'ctx>,
    blocks: IntValue<'ctx>,
    linear: IntValue<'ctx>,
    ctas: IntValue<'ctx>,
}

fn place<'ctx>(k: &Kernel<'ctx, '_>, (linear, ctas): (IntValue<'ctx>, IntValue<'ctx>), tokens: IntValue<'ctx>, d: u32) -> Res<Place<'ctx>> {
    let blocks = k.b.build_int_unsigned_div(tokens, k.i32(TILE as i64), "")?;
    let plane = k.b.build_int_unsigned_div(linear, blocks, "")?;
    let block = k.b.build_int_unsigned_rem(linear, blocks, "")?;
    let tiles = k.b.build_int_mul(blocks, k.i32(d as i64), "")?;
    Ok(Place { plane, block, tiles, blocks, linear, ctas })
}

/// Index `i` (i32) of an i32 array as i64.
fn i32_at<'ctx>(k: &Kernel<'ctx, '_>, base: PointerValue<'ctx>, i: IntValue<'ctx>) -> Res<PointerValue<'ctx>> {
    k.at(base, k.i64(i)?, 4)
}

/// The CTA's shared arrays.
struct Shared<'ctx> {
    /// The staged block, `[64][pitch]` 16-bit.
    tile: PointerValue<'ctx>,
    /// The block's packed values, `[64·D]` 16-bit.
    staging: PointerValue<'ctx>,
    /// The block's tile bitmaps, `[D]` u64, from the threads that find them to the tiles' threads.
    bitmaps: PointerValue<'ctx>,
    /// One i32 per warp, for `cta_scan`.
    warps: PointerValue<'ctx>,
    /// What one thread tells the others (`Said`).
    said: PointerValue<'ctx>,
}

/// The i32s of `Shared::said`.
#[derive(Clone, Copy)]
enum Said {
    Ticket = 0,
    Start = 1,
    PlaneStart = 2,
}

impl<'ctx> Shared<'ctx> {
    fn new(k: &Kernel<'ctx, '_>, d: u32) -> Shared<'ctx> {
        Shared {
            tile: k.shared("tile", TILE as u32 * pitch(d), 2),
            staging: k.shared("staging", TILE as u32 * d, 2),
            bitmaps: k.shared("bitmaps", d, 8),
            warps: k.shared("warps", COMPRESS_THREADS / 32, 4),
            said: k.shared("said", 3, 4),
        }
    }

    fn said(&self, k: &Kernel<'ctx, '_>, what: Said) -> Res<PointerValue<'ctx>> {
        i32_at(k, self.said, k.i32(what as i64))
    }
}

/// The look-back's words and this launch's epoch.
struct Chain<'ctx> {
    flags: PointerValue<'ctx>,
    epoch: IntValue<'ctx>,
}

/// The format's arrays.
struct Format<'ctx> {
    bitmaps: PointerValue<'ctx>,
    offsets: PointerValue<'ctx>,
    head_base: PointerValue<'ctx>,
    totals: PointerValue<'ctx>,
    values: PointerValue<'ctx>,
}

fn compress<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, d: u32) -> Res<()> {
    let pointers = &COMPRESS_PARAMS[..8];
    let mut k = Kernel::resident(ctx, module, &name(d), &COMPRESS_PARAMS, &|n| pointers.contains(&n), (COMPRESS_THREADS, resident_ctas(d)))?;
    let ptr = |i| -> Res<PointerValue<'ctx>> { Ok(k.param(i)?.into_pointer_value()) };
    let x = ptr(0)?;
    let out = Format { bitmaps: ptr(1)?, offsets: ptr(2)?, head_base: ptr(3)?, totals: ptr(4)?, values: ptr(5)? };
    let (flags, ticket) = (ptr(6)?, ptr(7)?);
    let int = |i| -> Res<IntValue<'ctx>> { Ok(k.param(i)?.into_int_value()) };
    let (tokens, rank, order, infinity, epoch) = (int(8)?, int(9)?, int(10)?, int(11)?, int(12)?);
    let chain = Chain { flags, epoch };
    let sh = Shared::new(&k, d);
    let ctas = sreg(k.module, &k.b, "llvm.nvvm.read.ptx.sreg.nctaid.x")?;
    let linear = take_ticket(&mut k, ticket, ctas, &sh)?;
    let p = place(&k, (linear, ctas), tokens, d)?;
    k.stage_block(x, sh.tile, &p, tokens, d)?;
    let bitmap = block_bitmaps(&mut k, &sh, order, (rank, infinity), d)?;
    let owner = k.b.build_int_compare(IntPredicate::ULT, k.tid, k.i32(d as i64), "")?;
    let tile = k.b.build_int_add(k.b.build_int_mul(p.block, k.i32(d as i64), "")?, k.tid, "")?;
    k.when(owner, |k| {
        let at = k.b.build_int_add(k.b.build_int_mul(k.i64(p.plane)?, k.i64(p.tiles)?, "")?, k.i64(tile)?, "")?;
        k.store(k.at(out.bitmaps, at, 8)?, bitmap, 8)
    })?;
    let (count, units) = k.kept_units(bitmap)?;
    let (before, total) = k.cta_scan(units, COMPRESS_THREADS / 32, sh.warps)?;
    // Published before the packing, so that the blocks after this one can look past it as soon
    // as possible.
    let first = k.b.build_int_compare(IntPredicate::EQ, k.tid, k.i32(0), "")?;
    k.when(first, |k| k.store_relaxed(k.at(chain.flags, k.i64(p.linear)?, 8)?, k.flag_word(chain.epoch, flag::AGGREGATE, total)?))?;
    k.when(owner, |k| pack_tile(k, (sh.tile, sh.staging), order, bitmap, (before, count, units), d))?;
    let (start, plane_start) = block_start(&mut k, &chain, &p, total, &sh)?;
    let row = k.b.build_int_mul(k.i64(p.plane)?, k.i64(k.b.build_int_add(p.tiles, k.i32(1), "")?)?, "")?;
    k.when(owner, |k| {
        // Plane-relative, in value pairs (4 per unit).
        let local = k.b.build_int_add(k.b.build_int_sub(start, plane_start, "")?, before, "")?;
        let at = k.b.build_int_add(row, k.i64(tile)?, "")?;
        k.store(k.at(out.offsets, at, 4)?, k.b.build_int_mul(local, k.i32(4), "")?, 4)
    })?;
    write_block(&mut k, sh.staging, out.values, start, total)?;
    plane_ends(&mut k, &out, &p, (start, total, plane_start), row)?;
    k.b.build_return(None)?;
    Ok(())
}

/// The CTA's ticket, in every thread: the number of CTAs of this launch that took one before
/// it. Blocks are named by tickets rather than `ctaid` so that every block before this one has
/// started (it took its ticket first) and will publish its count without waiting on anything:
/// waiting on it cannot deadlock, whatever order the hardware starts CTAs in. The last CTA to
/// take one sets the counter back to zero for the next launch (every other CTA has taken its
/// ticket by then, and the next launch on the stream starts after this one ends).
fn take_ticket<'ctx>(k: &mut Kernel<'ctx, '_>, counter: PointerValue<'ctx>, ctas: IntValue<'ctx>, sh: &Shared<'ctx>) -> Res<IntValue<'ctx>> {
    let first = k.b.build_int_compare(IntPredicate::EQ, k.tid, k.i32(0), "")?;
    k.when(first, |k| {
        let ticket = k.take_one(counter)?;
        let last = k.b.build_int_compare(IntPredicate::EQ, ticket, k.b.build_int_sub(ctas, k.i32(1), "")?, "")?;
        k.when(last, |k| k.store_relaxed(counter, k.i32(0)))?;
        k.store(sh.said(k, Said::Ticket)?, ticket, 4)
    })?;
    k.barrier()?;
    Ok(k.load(k.ctx.i32_type().into(), sh.said(k, Said::Ticket)?, 4)?.into_int_value())
}

/// Prunes the staged block and finds its tile bitmaps: this thread's tile's (tile `tid` of the
/// block; zero past D), in every thread. K leaves the pruned block in `sh.tile`; V leaves the
/// block as it was (its values are taken by the bitmaps).
fn block_bitmaps<'ctx>(k: &mut Kernel<'ctx, '_>, sh: &Shared<'ctx>, order: IntValue<'ctx>, (rank, infinity): (IntValue<'ctx>, IntValue<'ctx>), d: u32) -> Res<IntValue<'ctx>> {
    let (start, pairs) = k.half_token(sh.tile, d)?;
    let mags: Vec<_> = pairs.iter().map(|&v| k.b.build_and(v, k.i32(both(0x7fff)), "")).collect::<Result<_, _>>()?;
    let t = k.threshold(&mags, rank)?;
    let kept = k.kept(&mags, t, infinity)?;
    let share = |k: &mut Kernel<'ctx, '_>, (bitmap, owner, u): (IntValue<'ctx>, IntValue<'ctx>, IntValue<'ctx>)| k.when(owner, |k| k.store(k.at(sh.bitmaps, k.i64(u)?, 8)?, bitmap, 8));
    let values = k.b.build_int_compare(IntPredicate::NE, order, k.i32(0), "")?;
    // V: a thread's half token is a V tile (D = 128) or half of one (D = 64, whose bits the
    // first half's lane gathers): its bitmap needs nothing from the other threads.
    k.when(values, |k| {
        let row = k.row_bits(&kept, d)?;
        let (lane, warp) = k.lane_and_warp()?;
        let token = k.b.build_int_add(k.b.build_int_mul(warp, k.i32(16), "")?, k.b.build_and(lane, k.i32(15), "")?, "")?;
        let half = k.b.build_right_shift(lane, k.i32(4), false, "")?;
        if d == TILE as u32 {
            let bitmap = k.b.build_or(row, k.shuffle_xor64(row, 16)?, "")?;
            share(k, (bitmap, k.b.build_int_compare(IntPredicate::EQ, half, k.i32(0), "")?, token))
        } else {
            share(k, (row, k.ctx.bool_type().const_all_ones(), k.b.build_int_add(k.b.build_int_mul(half, k.i32(TILE as i64), "")?, token, "")?))
        }
    })?;
    // K: a tile is a channel over the block's tokens, gathered from the pruned block.
    let keys = k.b.build_not(values, "")?;
    k.when(keys, |k| {
        for (j, quad) in k.masked(&pairs, &kept)?.chunks(4).enumerate() {
            let mut v = k.ctx.i32_type().vec_type(4).get_undef();
            for (i, &p) in quad.iter().enumerate() {
                v = k.b.build_insert_element(v, p, k.i32(i as i64), "")?;
            }
            let at = k.b.build_int_add(start, k.i32(8 * j as i64), "")?;
            k.store(k.at(sh.tile, k.i64(at)?, 2)?, v, 16)?;
        }
        k.barrier()?;
        let owner = k.b.build_int_compare(IntPredicate::ULT, k.tid, k.i32(d as i64), "")?;
        // Threads past D (at D = 64) read a column inside the block too, and drop it.
        let bitmap = k.column_bitmap(sh.tile, k.b.build_and(k.tid, k.i32(d as i64 - 1), "")?, d)?;
        share(k, (bitmap, owner, k.tid))
    })?;
    k.barrier()?;
    let owner = k.b.build_int_compare(IntPredicate::ULT, k.tid, k.i32(d as i64), "")?;
    let own = k.b.build_and(k.tid, k.i32(d as i64 - 1), "")?;
    let bitmap = k.load(k.ctx.i64_type().into(), k.at(sh.bitmaps, k.i64(own)?, 8)?, 8)?.into_int_value();
    Ok(k.b.build_select(owner, bitmap, k.ctx.i64_type().const_zero(), "")?.into_int_value())
}

/// Where the block's values start and where its plane's do (16-byte units over all planes), in
/// every thread: warp 0 looks back over the blocks before it and publishes the block's
/// inclusive prefix; a plane's first block publishes the plane's start, which the plane's other
/// blocks wait for (it started before them: see `take_ticket`).
fn block_start<'ctx>(k: &mut Kernel<'ctx, '_>, chain: &Chain<'ctx>, p: &Place<'ctx>, total: IntValue<'ctx>, sh: &Shared<'ctx>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
    let (lane, warp) = k.lane_and_warp()?;
    let warp0 = k.b.build_int_compare(IntPredicate::EQ, warp, k.i32(0), "")?;
    k.when(warp0, |k| {
        let start = look_back(k, chain, p.linear)?;
        let lane0 = k.b.build_int_compare(IntPredicate::EQ, lane, k.i32(0), "")?;
        k.when(lane0, |k| {
            let inclusive = k.b.build_int_add(start, total, "")?;
            k.store_relaxed(k.at(chain.flags, k.i64(p.linear)?, 8)?, k.flag_word(chain.epoch, flag::PREFIX, inclusive)?)?;
            k.store(sh.said(k, Said::Start)?, start, 4)
        })?;
        // The planes' words follow the blocks'.
        let plane_word = k.at(chain.flags, k.i64(k.b.build_int_add(p.ctas, p.plane, "")?)?, 8)?;
        let heads = k.b.build_int_compare(IntPredicate::EQ, p.block, k.i32(0), "")?;
        k.when(k.b.build_and(heads, lane0, "")?, |k| {
            k.store_relaxed(plane_word, k.flag_word(chain.epoch, flag::PREFIX, start)?)?;
            k.store(sh.said(k, Said::PlaneStart)?, start, 4)
        })?;
        k.when(k.b.build_not(heads, "")?, |k| {
            let plane_start = wait_for(k, chain, plane_word, k.ctx.bool_type().const_all_ones())?.0;
            k.when(lane0, |k| k.store(sh.said(k, Said::PlaneStart)?, plane_start, 4))
        })
    })?;
    k.barrier()?;
    let said = |k: &Kernel<'ctx, '_>, what| -> Res<IntValue<'ctx>> { Ok(k.load(k.ctx.i32_type().into(), sh.said(k, what)?, 4)?.into_int_value()) };
    Ok((said(k, Said::Start)?, said(k, Said::PlaneStart)?))
}

/// The units of every block before block `linear`, in every lane of the (whole) warp: lane `l`
/// reads the word of block `end - 1 - l`, 32 blocks a round from `end = linear` down, until a
/// round holds a prefix; the nearest prefix and the aggregates after it are summed. Lanes
/// before block 0 read a prefix of 0 units, so the look-back ends there at the latest.
fn look_back<'ctx>(k: &mut Kernel<'ctx, '_>, chain: &Chain<'ctx>, linear: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
    let (lane, _) = k.lane_and_warp()?;
    let i32t = k.ctx.i32_type();
    let done = repeat(k, &[linear.into(), i32t.const_zero().into()], |k, carried| {
        let (end, sum) = (carried[0].into_int_value(), carried[1].into_int_value());
        let block = k.b.build_int_sub(k.b.build_int_sub(end, k.i32(1), "")?, lane, "")?;
        let exists = k.b.build_int_compare(IntPredicate::SGE, block, k.i32(0), "")?;
        let word = k.at(chain.flags, k.i64(k.b.build_select(exists, block, k.i32(0), "")?.into_int_value())?, 8)?;
        let (count, nearest) = wait_for(k, chain, word, exists)?;
        let counted = k.b.build_int_compare(IntPredicate::ULE, lane, nearest, "")?;
        let round = k.warp_sum(k.b.build_select(counted, count, k.i32(0), "")?.into_int_value())?;
        let again = k.b.build_int_compare(IntPredicate::EQ, nearest, k.i32(32), "")?;
        Ok((again, vec![k.b.build_int_sub(end, k.i32(32), "")?.into(), k.b.build_int_add(sum, round, "")?.into()]))
    })?;
    Ok(done[1].into_int_value())
}

/// Reads the words at `word` (one per lane) until the lanes up to the nearest prefix have all
/// been published in this epoch, every lane if none is a prefix (the lanes past it are not
/// needed, so the warp does not wait for them); lanes where `exists` is false read a prefix of
/// 0 units instead. Returns the lane's count and the nearest prefix's lane (32 where none), the
/// same in every lane of the (whole) warp.
fn wait_for<'ctx>(k: &mut Kernel<'ctx, '_>, chain: &Chain<'ctx>, word: PointerValue<'ctx>, exists: IntValue<'ctx>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
    let nothing_before = k.flag_word(chain.epoch, flag::PREFIX, k.i32(0))?;
    let i32t = k.ctx.i32_type();
    let read = repeat(k, &[i32t.const_zero().into(), i32t.const_zero().into()], |k, _| {
        let w = k.b.build_select(exists, k.load_relaxed(word)?, nothing_before, "")?.into_int_value();
        let (status, count) = k.read_flag(w, chain.epoch)?;
        // Lowest set lane, 32 where none.
        let lowest = |k: &Kernel<'ctx, '_>, status_is: i64| -> Res<IntValue<'ctx>> {
            let lanes = k.ballot(k.b.build_int_compare(IntPredicate::EQ, status, k.i32(status_is), "")?)?;
            Ok(k.call("llvm.cttz", &[i32t.into()], &[lanes.into(), k.ctx.bool_type().const_zero().into()])?.into_int_value())
        };
        let (waiting, nearest) = (lowest(k, flag::NONE)?, lowest(k, flag::PREFIX)?);
        let again = k.b.build_int_compare(IntPredicate::ULT, waiting, nearest, "")?;
        Ok((again, vec![count.into(), nearest.into()]))
    })?;
    Ok((read[0].into_int_value(), read[1].into_int_value()))
}

/// What a plane's first and last blocks write besides their values: the head base; the plane's
/// end offset and total; after the last plane's last value, the 16-byte unit of zeros that the
/// decode kernel's zero-size copies may address.
fn plane_ends<'ctx>(k: &mut Kernel<'ctx, '_>, out: &Format<'ctx>, p: &Place<'ctx>, (start, total, plane_start): (IntValue<'ctx>, IntValue<'ctx>, IntValue<'ctx>), row: IntValue<'ctx>) -> Res<()> {
    let first = k.b.build_int_compare(IntPredicate::EQ, k.tid, k.i32(0), "")?;
    let plane_head = k.b.build_and(first, k.b.build_int_compare(IntPredicate::EQ, p.block, k.i32(0), "")?, "")?;
    k.when(plane_head, |k| k.store(i32_at(k, out.head_base, p.plane)?, plane_start, 4))?;
    let last_block = k.b.build_int_compare(IntPredicate::EQ, p.block, k.b.build_int_sub(p.blocks, k.i32(1), "")?, "")?;
    k.when(k.b.build_and(first, last_block, "")?, |k| {
        let end = k.b.build_int_add(start, total, "")?;
        let pairs = k.b.build_int_mul(k.b.build_int_sub(end, plane_start, "")?, k.i32(4), "")?;
        k.store(k.at(out.offsets, k.b.build_int_add(row, k.i64(p.tiles)?, "")?, 4)?, pairs, 4)?;
        k.store(i32_at(k, out.totals, p.plane)?, pairs, 4)?;
        let last = k.b.build_int_compare(IntPredicate::EQ, p.linear, k.b.build_int_sub(p.ctas, k.i32(1), "")?, "")?;
        k.when(last, |k| {
            let at = k.b.build_int_mul(k.i64(end)?, k.ctx.i64_type().const_int(8, false), "")?;
            k.store(k.at(out.values, at, 2)?, k.ctx.i32_type().vec_type(4).const_zero(), 16)
        })
    })
}

/// Packs tile `u = tid`'s kept elements (the set bits of `bitmap`, in element order) from the
/// staged block into `staging` from unit `before` on (`count` of them), zeros after them to
/// `units` units.
fn pack_tile<'ctx>(k: &mut Kernel<'ctx, '_>, (tile, staging): (PointerValue<'ctx>, PointerValue<'ctx>), order: IntValue<'ctx>, bitmap: IntValue<'ctx>, (before, count, units): (IntValue<'ctx>, IntValue<'ctx>, IntValue<'ctx>), d: u32) -> Res<()> {
    let i64t = k.ctx.i64_type();
    let (base, stride) = k.tile_walk(order, k.tid, d)?;
    let first = k.b.build_int_mul(before, k.i32(8), "")?;
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

/// The entry for `head_dim` (64 or 128: two threads per token of a 64-token block, one thread
/// per tile).
pub fn lower<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, head_dim: u32) -> Res<()> {
    if !head_dim.is_multiple_of(TILE as u32) || head_dim > COMPRESS_THREADS {
        return Err(CodegenError::Unsupported(format!("GPU compression for head_dim {head_dim}: 64 or 128 only")));
    }
    compress(ctx, module, head_dim)
}

#[cfg(test)]
mod tests {
    use super::flag::*;
    use proptest::prelude::*;

    /// `flag_word`.
    fn word(epoch: u32, status: i64, count: u32) -> u64 {
        ((epoch as u64) << 32) | ((status as u64) << VALUE_BITS) | count as u64
    }

    /// `read_flag`.
    fn read(word: u64, epoch: u32) -> (i64, u32) {
        let status = if (word >> 32) as u32 == epoch { (word as u32 >> VALUE_BITS) as i64 } else { NONE };
        (status, word as u32 & VALUE_MASK as u32)
    }

    /// `look_back` over `words` for block `linear`, or `None` where the warp would still be
    /// waiting (a word of its round not published in `epoch`).
    fn look_back(words: &[u64], linear: usize, epoch: u32) -> Option<u32> {
        let (mut end, mut sum) = (linear as i64, 0);
        loop {
            let lanes: Vec<(i64, u32)> = (0..32).map(|lane| end - 1 - lane).map(|b| if b >= 0 { read(words[b as usize], epoch) } else { (PREFIX, 0) }).collect();
            let lowest = |status| lanes.iter().enumerate().fold(0u32, |bits, (lane, &(s, _))| bits | (((s == status) as u32) << lane)).trailing_zeros();
            let nearest = lowest(PREFIX);
            if lowest(NONE) < nearest {
                return None;
            }
            sum += lanes.iter().take(nearest as usize + 1).map(|&(_, c)| c).sum::<u32>();
            end -= 32;
            if nearest < 32 {
                return Some(sum);
            }
        }
    }

    #[test]
    fn words_read_back_only_in_their_epoch() {
        let max = VALUE_MASK as u32 >> 1;
        for (status, count) in [(AGGREGATE, 0), (PREFIX, 1), (AGGREGATE, max), (PREFIX, max)] {
            for epoch in [1, 2, u32::MAX] {
                assert_eq!(read(word(epoch, status, count), epoch), (status, count));
                assert_eq!(read(word(epoch, status, count), epoch.wrapping_add(1)).0, NONE);
            }
        }
        // A fresh buffer's zeros are epoch 0's, which no launch has.
        assert_eq!(read(0, 1).0, NONE);
    }

    proptest! {
        /// Whatever each block before has published (its aggregate, its inclusive prefix, or
        /// nothing yet in this epoch: a word of an earlier one), the look-back finds the units
        /// before the block or waits; it waits only on a block that has not published, and not
        /// at all once every block before has.
        #[test]
        fn the_look_back_sums_the_blocks_before(units in proptest::collection::vec(0u32..=64, 1..200), states in proptest::collection::vec(0u8..3, 200), at in 0usize..200) {
            let (epoch, linear) = (7, at % units.len());
            let before = |b: usize| units[..b].iter().sum::<u32>();
            let words: Vec<u64> = (0..units.len())
                .map(|b| match states[b] {
                    0 => word(epoch - 1, PREFIX, 12345),
                    1 => word(epoch, AGGREGATE, units[b]),
                    _ => word(epoch, PREFIX, before(b + 1)),
                })
                .collect();
            match look_back(&words, linear, epoch) {
                Some(sum) => prop_assert_eq!(sum, before(linear)),
                None => prop_assert!(states[..linear].contains(&0)),
            }
            let published: Vec<u64> = (0..units.len()).map(|b| if states[b] == 0 { word(epoch, AGGREGATE, units[b]) } else { words[b] }).collect();
            prop_assert_eq!(look_back(&published, linear, epoch), Some(before(linear)));
        }
    }
}
