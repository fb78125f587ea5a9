//! SALE's int8 quantization of Q and K on the GPU (seeds.md §2.2): the values
//! `format::smoothed::SmoothedInt8` defines, its codes and scales bit for bit given the means.
//! One module per head dim D holds these entries, over `planes × tokens × D` 16-bit values
//! (`{dt}`: bf16 or f16):
//!
//! 1. `sale_colsum_{dt}_d{D}`, one CTA per (chunk of `chunk` tokens, plane): warp w sums the
//!    chunk's tokens w, w + 4, ... (lane l holds channels l·D/32 ..), the four warps' sums are
//!    added in shared memory, and the chunk's column sums go to `partial` (`[planes, chunks, D]`);
//! 2. `sale_mean_d{D}`, one CTA per plane: each channel's chunk sums in order, over the tokens.
//!    Fixed orders rather than atomics: the means, hence every code, are the same on every run.
//! 3. `sale_quant_q_{dt}_d{D}` and `sale_quant_k_{dt}_d{D}`: one warp per scale group. It reads
//!    the group's rows twice, for max |x − mean| and then for the codes (the second time mostly
//!    from L1), and writes each row's scale; Q's entry also writes `q_i · k̄` of the query's KV
//!    head (so K's means come first), K's entry `q̄_h · Ks_j` for every query head h of the KV
//!    head. Group (s, k) holds rows `span·s + 8a + (k << pair) + c` for
//!    a < span/8, c < 2^pair: Q has span 16 and pair 0 (rows r and r + 8 of 16), K span `block`
//!    and pair 1 (the keys t with (t mod 8)/2 = k), the groupings of `format::int4::Grouping`.
//!
//! A warp always reads and writes whole rows, D/32 contiguous values a lane: coalesced.

use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::types::VectorType;
use inkwell::values::{BasicValueEnum, FloatValue, IntValue, PointerValue, VectorValue};
use inkwell::{FloatPredicate, IntPredicate};
use tessera_desc::Dtype;

use super::kernel::sreg;
use super::lower::{Res, counted_loop};
use super::standalone::Standalone;
use crate::CodegenError;
use crate::format::lowbit::LowBit;

/// Threads per CTA of every entry: 4 warps.
pub const QUANT_THREADS: u32 = 128;
const WARPS: i64 = QUANT_THREADS as i64 / 32;

/// Parameters of `sale_colsum_{dt}_d{D}`: the values, the column sums out (`[planes, chunks,
/// D]` f32, chunks = the grid's x extent), tokens per plane, tokens per chunk.
pub const COLSUM_PARAMS: [&str; 4] = ["x", "partial", "tokens", "chunk"];
/// Parameters of `sale_mean_d{D}`: the column sums, the means out (`[planes, D]` f32), tokens
/// per plane, chunks per plane.
pub const MEAN_PARAMS: [&str; 4] = ["partial", "mean", "tokens", "chunks"];
/// Parameters of `sale_quant_q_{dt}_d{D}`: Q, its means, the codes (i8, as Q) and per-row
/// scales (`[planes, tokens]` f32) out, K's means and each query's `q_i · k̄` out (`[planes,
/// tokens]` f32), tokens per plane, the GQA group, scale groups per CTA.
pub const QUANT_Q_PARAMS: [&str; 9] = ["x", "mean", "codes", "scales", "k_mean", "qk_mean", "tokens", "group", "groups_per_cta"];
/// Parameters of `sale_quant_k_{dt}_d{D}`: as `QUANT_Q_PARAMS` for K, with Q's means and the
/// correction out (`[planes · group, tokens]` f32) after the scales, and after the tokens the
/// block (keys per KV tile, a multiple of 8) and the GQA group.
pub const QUANT_K_PARAMS: [&str; 10] = ["x", "mean", "codes", "scales", "q_mean", "qmk", "tokens", "block", "group", "groups_per_cta"];

const POINTERS: [&str; 9] = ["x", "partial", "mean", "codes", "scales", "q_mean", "qmk", "k_mean", "qk_mean"];

/// The entries' names for `dtype` and `head_dim`: column sums, means, Q's codes, K's codes.
pub fn names(dtype: Dtype, head_dim: u32) -> [String; 4] {
    [
        format!("sale_colsum_{dtype}_d{head_dim}"),
        format!("sale_mean_d{head_dim}"),
        format!("sale_quant_q_{dtype}_d{head_dim}"),
        format!("sale_quant_k_{dtype}_d{head_dim}"),
    ]
}

type Kernel<'ctx, 'a> = Standalone<'ctx, 'a>;

/// The entry's parameter `name` of `params`.
fn param<'ctx>(k: &Kernel<'ctx, '_>, params: &[&str], name: &str) -> Res<BasicValueEnum<'ctx>> {
    let i = params.iter().position(|&p| p == name).ok_or_else(|| CodegenError::Llvm(format!("no parameter {name}")))?;
    k.param(i as u32)
}

fn warp_and_lane<'ctx>(k: &Kernel<'ctx, '_>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
    Ok((k.b.build_right_shift(k.tid, k.i32(5), false, "")?, k.b.build_and(k.tid, k.i32(31), "")?))
}

/// `a · b + c` in i64 from i32 operands (element indices outgrow i32).
fn mad64<'ctx>(k: &Kernel<'ctx, '_>, a: IntValue<'ctx>, b: IntValue<'ctx>, c: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
    Ok(k.b.build_int_add(k.b.build_int_mul(k.i64(a)?, k.i64(b)?, "")?, k.i64(c)?, "")?)
}

fn smin<'ctx>(k: &Kernel<'ctx, '_>, a: IntValue<'ctx>, b: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
    Ok(k.call("llvm.smin", &[k.ctx.i32_type().into()], &[a.into(), b.into()])?.into_int_value())
}

fn smax<'ctx>(k: &Kernel<'ctx, '_>, a: IntValue<'ctx>, b: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
    Ok(k.call("llvm.smax", &[k.ctx.i32_type().into()], &[a.into(), b.into()])?.into_int_value())
}

/// `llvm.maxnum` (f32::max: a NaN operand yields the other one), as `lowbit::quantize` folds.
fn fmax<'ctx>(k: &Kernel<'ctx, '_>, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> Res<FloatValue<'ctx>> {
    Ok(k.call("llvm.maxnum", &[k.ctx.f32_type().into()], &[a.into(), b.into()])?.into_float_value())
}

/// `x[0] + x[1] + ...` in order (not from a zero, which `-0.0` keeps from folding away).
fn sum<'ctx>(k: &Kernel<'ctx, '_>, x: &[FloatValue<'ctx>]) -> Res<FloatValue<'ctx>> {
    x[1..].iter().try_fold(x[0], |acc, &v| Ok(k.b.build_float_add(acc, v, "")?))
}

/// The lane's values of element `first` (i64) on, one vector load of `ty`, aligned to the whole
/// vector: device allocations start on 256 bytes, and rows hold whole vectors.
fn load_vector<'ctx>(k: &Kernel<'ctx, '_>, base: PointerValue<'ctx>, first: IntValue<'ctx>, ty: VectorType<'ctx>, elem_bytes: u32) -> Res<Vec<BasicValueEnum<'ctx>>> {
    let v = k.load(ty.into(), k.at(base, first, elem_bytes as u64)?, elem_bytes * ty.get_size())?.into_vector_value();
    (0..ty.get_size()).map(|i| Ok(k.b.build_extract_element(v, k.i32(i as i64), "")?)).collect()
}

fn vector<'ctx>(k: &Kernel<'ctx, '_>, values: &[BasicValueEnum<'ctx>]) -> Res<VectorValue<'ctx>> {
    let mut v = match values[0] {
        BasicValueEnum::IntValue(i) => i.get_type().vec_type(values.len() as u32).get_undef(),
        BasicValueEnum::FloatValue(f) => f.get_type().vec_type(values.len() as u32).get_undef(),
        _ => return Err(CodegenError::Llvm("vector of a non-scalar".into())),
    };
    for (i, &x) in values.iter().enumerate() {
        v = k.b.build_insert_element(v, x, k.i32(i as i64), "")?;
    }
    Ok(v)
}

/// The lane's channels `lane·D/32 ..` of row `row` (i64, counted over all planes), as f32.
fn load_row<'ctx>(k: &Kernel<'ctx, '_>, x: PointerValue<'ctx>, row: IntValue<'ctx>, lane: IntValue<'ctx>, dtype: Dtype, d: u32) -> Res<Vec<FloatValue<'ctx>>> {
    let n = d / 32;
    let first = k.b.build_int_add(k.b.build_int_mul(row, k.ctx.i64_type().const_int(d as u64, false), "")?, k.i64(k.b.build_int_mul(lane, k.i32(n as i64), "")?)?, "")?;
    let (f32t, i32t) = (k.ctx.f32_type(), k.ctx.i32_type());
    load_vector(k, x, first, k.ctx.i16_type().vec_type(n), 2)?
        .into_iter()
        .map(|bits| {
            let bits = bits.into_int_value();
            Ok(match dtype {
                Dtype::F16 => k.b.build_float_ext(k.b.build_bit_cast(bits, k.ctx.f16_type(), "")?.into_float_value(), f32t, "")?,
                // bf16 is the top half of an f32.
                _ => k.b.build_bit_cast(k.b.build_left_shift(k.b.build_int_z_extend(bits, i32t, "")?, k.i32(16), "")?, f32t, "")?.into_float_value(),
            })
        })
        .collect()
}

/// The lane's `D/32` f32 channels of row `row` (i32) of a `[rows, D]` f32 array.
fn load_f32_row<'ctx>(k: &Kernel<'ctx, '_>, base: PointerValue<'ctx>, row: IntValue<'ctx>, lane: IntValue<'ctx>, d: u32) -> Res<Vec<FloatValue<'ctx>>> {
    let n = d / 32;
    let first = mad64(k, row, k.i32(d as i64), k.b.build_int_mul(lane, k.i32(n as i64), "")?)?;
    Ok(load_vector(k, base, first, k.ctx.f32_type().vec_type(n), 4)?.into_iter().map(|v| v.into_float_value()).collect())
}

/// Runs `body(c)` for every channel c < D, one a thread.
fn per_channel<'ctx>(k: &mut Kernel<'ctx, '_>, d: u32, mut body: impl FnMut(&mut Kernel<'ctx, '_>, IntValue<'ctx>) -> Res<()>) -> Res<()> {
    for rep in 0..d.div_ceil(QUANT_THREADS) {
        let c = k.b.build_int_add(k.tid, k.i32((rep * QUANT_THREADS) as i64), "")?;
        let inside = k.b.build_int_compare(IntPredicate::ULT, c, k.i32(d as i64), "")?;
        k.when(inside, |k| body(k, c))?;
    }
    Ok(())
}

fn colsum<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, dtype: Dtype, d: u32) -> Res<()> {
    let mut k = Kernel::new(ctx, module, &names(dtype, d)[0], &COLSUM_PARAMS, &|n| POINTERS.contains(&n), QUANT_THREADS)?;
    let p = |k: &Kernel<'ctx, '_>, name| param(k, &COLSUM_PARAMS, name);
    let (x, partial) = (p(&k, "x")?.into_pointer_value(), p(&k, "partial")?.into_pointer_value());
    let (tokens, chunk) = (p(&k, "tokens")?.into_int_value(), p(&k, "chunk")?.into_int_value());
    let index = sreg(module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.x")?;
    let plane = sreg(module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.y")?;
    let chunks = sreg(module, &k.b, "llvm.nvvm.read.ptx.sreg.nctaid.x")?;
    let (warp, lane) = warp_and_lane(&k)?;
    let start = k.b.build_int_mul(index, chunk, "")?;
    let len = smin(&k, chunk, k.b.build_int_sub(tokens, start, "")?)?;
    // Tokens w, w + 4, ... of the chunk (at least one token, so the count is not negative).
    let rows = k.b.build_right_shift(k.b.build_int_add(k.b.build_int_sub(len, warp, "")?, k.i32(WARPS - 1), "")?, k.i32(2), false, "")?;
    let first = k.b.build_int_add(start, warp, "")?;
    let zero = ctx.f32_type().const_zero();
    let sums = counted_loop(&mut k, rows, &vec![zero.into(); (d / 32) as usize], |k, i, acc| {
        let t = k.b.build_int_add(first, k.b.build_int_mul(i, k.i32(WARPS), "")?, "")?;
        let values = load_row(k, x, mad64(k, plane, tokens, t)?, lane, dtype, d)?;
        acc.iter().zip(values).map(|(a, v)| Ok(k.b.build_float_add(a.into_float_value(), v, "")?.into())).collect()
    })?;
    let smem = k.shared("sums", WARPS as u32 * d, 4);
    let at = k.b.build_int_add(k.b.build_int_mul(warp, k.i32(d as i64), "")?, k.b.build_int_mul(lane, k.i32((d / 32) as i64), "")?, "")?;
    // The shared array is 16-byte aligned: claim no more for D = 256's two-vector store.
    k.store(k.at(smem, k.i64(at)?, 4)?, vector(&k, &sums)?, (4 * (d / 32)).min(16))?;
    k.barrier()?;
    per_channel(&mut k, d, |k, c| {
        let mut sums = Vec::new();
        for w in 0..WARPS {
            let at = k.b.build_int_add(c, k.i32(w * d as i64), "")?;
            sums.push(k.load(ctx.f32_type().into(), k.at(smem, k.i64(at)?, 4)?, 4)?.into_float_value());
        }
        let total = sum(k, &sums)?;
        let row = mad64(k, plane, chunks, index)?;
        let at = k.b.build_int_add(k.b.build_int_mul(row, ctx.i64_type().const_int(d as u64, false), "")?, k.i64(c)?, "")?;
        k.store(k.at(partial, at, 4)?, total, 4)
    })?;
    k.b.build_return(None)?;
    Ok(())
}

fn mean<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, d: u32) -> Res<()> {
    let mut k = Kernel::new(ctx, module, &names(Dtype::Bf16, d)[1], &MEAN_PARAMS, &|n| POINTERS.contains(&n), QUANT_THREADS)?;
    let p = |k: &Kernel<'ctx, '_>, name| param(k, &MEAN_PARAMS, name);
    let (partial, mean) = (p(&k, "partial")?.into_pointer_value(), p(&k, "mean")?.into_pointer_value());
    let (tokens, chunks) = (p(&k, "tokens")?.into_int_value(), p(&k, "chunks")?.into_int_value());
    let plane = sreg(module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.x")?;
    per_channel(&mut k, d, |k, c| {
        let zero = ctx.f32_type().const_zero();
        let sum = counted_loop(k, chunks, &[zero.into()], |k, i, acc| {
            let row = mad64(k, plane, chunks, i)?;
            let at = k.b.build_int_add(k.b.build_int_mul(row, ctx.i64_type().const_int(d as u64, false), "")?, k.i64(c)?, "")?;
            let s = k.load(ctx.f32_type().into(), k.at(partial, at, 4)?, 4)?.into_float_value();
            Ok(vec![k.b.build_float_add(acc[0].into_float_value(), s, "")?.into()])
        })?[0]
            .into_float_value();
        let m = k.b.build_float_div(sum, k.b.build_signed_int_to_float(tokens, ctx.f32_type(), "")?, "")?;
        k.store(k.at(mean, mad64(k, plane, k.i32(d as i64), c)?, 4)?, m, 4)
    })?;
    k.b.build_return(None)?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Query,
    Key,
}

/// Q's or K's codes, scales and (K) correction: one warp per scale group, see the module doc.
fn quant<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, dtype: Dtype, d: u32, side: Side) -> Res<()> {
    let names = names(dtype, d);
    let (name, params) = match side {
        Side::Query => (&names[2], &QUANT_Q_PARAMS[..]),
        Side::Key => (&names[3], &QUANT_K_PARAMS[..]),
    };
    let mut k = Kernel::new(ctx, module, name, params, &|n| POINTERS.contains(&n), QUANT_THREADS)?;
    let ptr = |k: &Kernel<'ctx, '_>, name| param(k, params, name).map(|v| v.into_pointer_value());
    let int = |k: &Kernel<'ctx, '_>, name| param(k, params, name).map(|v| v.into_int_value());
    let (x, mean, codes, scales) = (ptr(&k, "x")?, ptr(&k, "mean")?, ptr(&k, "codes")?, ptr(&k, "scales")?);
    let (tokens, per_cta) = (int(&k, "tokens")?, int(&k, "groups_per_cta")?);
    let (pair, span, correction, shift) = match side {
        Side::Query => (0, k.i32(16), None, Some((ptr(&k, "k_mean")?, ptr(&k, "qk_mean")?, int(&k, "group")?))),
        Side::Key => (1, int(&k, "block")?, Some((ptr(&k, "q_mean")?, ptr(&k, "qmk")?, int(&k, "group")?)), None),
    };
    let (f32t, n) = (ctx.f32_type(), d / 32);
    let per_span = 8 >> pair;
    let members = k.b.build_right_shift(span, k.i32(3 - pair), false, "")?;
    let index = sreg(module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.x")?;
    let plane = sreg(module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.y")?;
    let (warp, lane) = warp_and_lane(&k)?;
    let spans = k.b.build_int_unsigned_div(k.b.build_int_sub(k.b.build_int_add(tokens, span, "")?, k.i32(1), "")?, span, "")?;
    let total = k.b.build_int_mul(spans, k.i32(per_span), "")?;
    let first = k.b.build_int_mul(index, per_cta, "")?;
    let here = smin(&k, per_cta, k.b.build_int_sub(total, first, "")?)?;
    // Groups w, w + 4, ... of the CTA's (at least one group, so the count is not negative).
    let groups = k.b.build_right_shift(k.b.build_int_add(k.b.build_int_sub(here, warp, "")?, k.i32(WARPS - 1), "")?, k.i32(2), false, "")?;
    let mean_lane = load_f32_row(&k, mean, plane, lane, d)?;
    // A query plane's KV head: query planes are KV planes × group.
    let shift = match shift {
        Some((k_mean, qk_mean, group)) => Some((load_f32_row(&k, k_mean, k.b.build_int_unsigned_div(plane, group, "")?, lane, d)?, qk_mean)),
        None => None,
    };
    let is_lane0 = k.b.build_int_compare(IntPredicate::EQ, lane, k.i32(0), "")?;
    let top = f32t.const_float(LowBit::Int8.max() as f64);
    counted_loop(&mut k, groups, &[], |k, i, _| {
        let g = k.b.build_int_add(k.b.build_int_add(first, warp, "")?, k.b.build_int_mul(i, k.i32(WARPS), "")?, "")?;
        let s = k.b.build_right_shift(g, k.i32(3 - pair), false, "")?;
        let lead = k.b.build_left_shift(k.b.build_and(g, k.i32(per_span - 1), "")?, k.i32(pair), "")?;
        let base = k.b.build_int_add(k.b.build_int_mul(s, span, "")?, lead, "")?;
        // Members past the last token: whole strides of 8 rows, then up to 2^pair in the last.
        let rest = k.b.build_int_sub(tokens, base, "")?;
        let whole = k.b.build_left_shift(k.b.build_right_shift(rest, k.i32(3), true, "")?, k.i32(pair), "")?;
        let part = smin(k, k.i32(1 << pair), k.b.build_and(rest, k.i32(7), "")?)?;
        let count = smin(k, members, k.b.build_int_add(whole, part, "")?)?;
        let positive = k.b.build_int_compare(IntPredicate::SGT, rest, k.i32(0), "")?;
        let count = k.b.build_select(positive, count, k.i32(0), "")?.into_int_value();
        let row_of = |k: &Kernel<'ctx, '_>, j: IntValue<'ctx>| -> Res<IntValue<'ctx>> {
            let stride = k.b.build_left_shift(k.b.build_right_shift(j, k.i32(pair), false, "")?, k.i32(3), "")?;
            let within = k.b.build_and(j, k.i32((1 << pair) - 1), "")?;
            Ok(k.b.build_int_add(base, k.b.build_int_add(stride, within, "")?, "")?)
        };
        // One f32 subtraction from the 16-bit value, as `int4::subtract_mean`.
        let smoothed = |k: &Kernel<'ctx, '_>, row: IntValue<'ctx>| -> Res<Vec<FloatValue<'ctx>>> {
            let values = load_row(k, x, mad64(k, plane, tokens, row)?, lane, dtype, d)?;
            values.iter().zip(&mean_lane).map(|(&v, &m)| Ok(k.b.build_float_sub(v, m, "")?)).collect()
        };
        let zero = f32t.const_zero();
        let lane_max = counted_loop(k, count, &[zero.into()], |k, j, acc| {
            let mut m = acc[0].into_float_value();
            for v in smoothed(k, row_of(k, j)?)? {
                let a = k.call("llvm.fabs", &[f32t.into()], &[v.into()])?.into_float_value();
                m = fmax(k, m, a)?;
            }
            Ok(vec![m.into()])
        })?[0];
        let m = k.warp_reduce(lane_max, |k, a, b| Ok(fmax(k, a.into_float_value(), b.into_float_value())?.into()))?.into_float_value();
        // As `lowbit::quantize`: the scale max/127, codes x · (127/max) (0 for a zero max).
        let scale = k.b.build_float_div(m, top, "")?;
        let nonzero = k.b.build_float_compare(FloatPredicate::OGT, m, zero, "")?;
        let inverse = k.b.build_select(nonzero, k.b.build_float_div(top, m, "")?, zero, "")?.into_float_value();
        counted_loop(k, count, &[], |k, j, _| {
            let row = row_of(k, j)?;
            let at = mad64(k, plane, tokens, row)?;
            let raw = load_row(k, x, at, lane, dtype, d)?;
            let values: Vec<FloatValue<'ctx>> = raw.iter().zip(&mean_lane).map(|(&v, &m)| k.b.build_float_sub(v, m, "")).collect::<Result<_, _>>()?;
            let mut bytes = Vec::new();
            for &v in &values {
                // cvt.rni: round half to even, saturating (NaN to 0); then onto [-127, 127].
                let code = k.call("llvm.nvvm.f2i.rn", &[], &[k.b.build_float_mul(v, inverse, "")?.into()])?.into_int_value();
                let code = smax(k, smin(k, code, k.i32(127))?, k.i32(-127))?;
                bytes.push(k.b.build_int_truncate(code, ctx.i8_type(), "")?.into());
            }
            let first = k.b.build_int_add(k.b.build_int_mul(at, ctx.i64_type().const_int(d as u64, false), "")?, k.i64(k.b.build_int_mul(lane, k.i32(n as i64), "")?)?, "")?;
            k.store(k.at(codes, first, 1)?, vector(k, &bytes)?, n)?;
            k.when(is_lane0, |k| k.store(k.at(scales, at, 4)?, scale, 4))?;
            let add = |k: &Kernel<'ctx, '_>, a: BasicValueEnum<'ctx>, b: BasicValueEnum<'ctx>| Ok(k.b.build_float_add(a.into_float_value(), b.into_float_value(), "")?.into());
            if let Some((k_mean, qk_mean)) = &shift {
                // q_i · k̄ from the unsmoothed values, as `int4::correction` of them.
                let products = raw.iter().zip(k_mean).map(|(&v, &m)| k.b.build_float_mul(m, v, "")).collect::<Result<Vec<_>, _>>()?;
                let dot = k.warp_reduce(sum(k, &products)?.into(), add)?;
                k.when(is_lane0, |k| k.store(k.at(*qk_mean, at, 4)?, dot, 4))?;
            }
            if let Some((q_mean, qmk, group)) = correction {
                counted_loop(k, group, &[], |k, h, _| {
                    let head = k.b.build_int_add(k.b.build_int_mul(plane, group, "")?, h, "")?;
                    let products = load_f32_row(k, q_mean, head, lane, d)?.into_iter().zip(&values).map(|(qm, &v)| k.b.build_float_mul(qm, v, "")).collect::<Result<Vec<_>, _>>()?;
                    let dot = k.warp_reduce(sum(k, &products)?.into(), add)?;
                    let at = mad64(k, head, tokens, row)?;
                    k.when(is_lane0, |k| k.store(k.at(qmk, at, 4)?, dot, 4))?;
                    Ok(vec![])
                })?;
            }
            Ok(vec![])
        })?;
        Ok(vec![])
    })?;
    k.b.build_return(None)?;
    Ok(())
}

/// The entries for `head_dim` (32, 64, 128 or 256: a lane's channels are one vector load),
/// both dtypes.
pub fn lower<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, head_dim: u32) -> Res<()> {
    if !matches!(head_dim, 32 | 64 | 128 | 256) {
        return Err(CodegenError::Unsupported(format!("GPU quantization for head_dim {head_dim}: 32, 64, 128 or 256 only")));
    }
    mean(ctx, module, head_dim)?;
    for dtype in Dtype::ALL {
        colsum(ctx, module, dtype, head_dim)?;
        quant(ctx, module, dtype, head_dim, Side::Query)?;
        quant(ctx, module, dtype, head_dim, Side::Key)?;
    }
    Ok(())
}
