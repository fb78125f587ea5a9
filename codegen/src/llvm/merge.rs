//! The merge entry of a split-KV decode kernel (`<name>_merge`, parameters `MERGE_PARAMS`):
//! one CTA per output row (batch × query head, which is also the packed row `plane · group +
//! r` of the decode program), one thread per channel pair. Each thread walks the splits in
//! order with the weights of `semantics::softmax::merge_weight`, as `interp::merge_splits` does.

use inkwell::IntPredicate;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::values::IntValue;

use super::MERGE_PARAMS;
use super::arith::Emit;
use super::kernel::sreg;
use super::lower::{Res, counted_loop};
use super::standalone::Standalone;
use super::softmax::pack;
use crate::ir::Program;
use crate::semantics::{Arith, softmax};

type Merge<'ctx, 'a> = Standalone<'ctx, 'a>;

/// The merge entry's name for a decode kernel's entry `name`.
pub fn name(kernel: &str) -> String {
    format!("{kernel}_merge")
}

pub fn lower<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, program: &Program) -> Res<()> {
    let d = program.head_dim;
    let m = &mut Merge::new(ctx, module, &name(&program.name), &MERGE_PARAMS, &|n| !matches!(n, "splits" | "group"), d / 2)?;
    let ptr = |m: &Merge<'ctx, '_>, i: u32| m.param(i).map(|p| p.into_pointer_value());
    let (o_split, lse_split, o, lse) = (ptr(m, 0)?, ptr(m, 1)?, ptr(m, 2)?, ptr(m, 3)?);
    let (splits, group) = (m.param(4)?.into_int_value(), m.param(5)?.into_int_value());
    let (i64t, f32t) = (ctx.i64_type(), ctx.f32_type());
    let tid = m.tid;
    let row = sreg(module, &m.b, "llvm.nvvm.read.ptx.sreg.ctaid.x")?;
    let plane = m.b.build_int_unsigned_div(row, group, "")?;
    let r = m.b.build_int_unsigned_rem(row, group, "")?;
    let widen = |m: &Merge<'ctx, '_>, v: IntValue<'ctx>| m.b.build_int_z_extend(v, i64t, "");
    // Row of split `s` in the workspace `[planes, splits, group]`.
    let split_row = |m: &Merge<'ctx, '_>, s: IntValue<'ctx>| -> Res<IntValue<'ctx>> {
        let at =
            m.b.build_int_add(m.b.build_int_mul(plane, splits, "")?, s, "")?;
        let at = m.b.build_int_add(
            m.b.build_int_mul(widen(m, at)?, widen(m, group)?, "")?,
            widen(m, r)?,
            "",
        )?;
        Ok(at)
    };
    let channel = widen(
        m,
        m.b.build_int_mul(tid, ctx.i32_type().const_int(2, false), "")?,
    )?;
    let element = |m: &Merge<'ctx, '_>, row: IntValue<'ctx>| {
        m.b.build_int_add(
            m.b.build_int_mul(row, i64t.const_int(d as u64, false), "")?,
            channel,
            "",
        )
    };

    let neg_inf = f32t.const_float(f64::NEG_INFINITY);
    let max = counted_loop(m, splits, &[neg_inf.into()], |m, s, c| {
        let lse_s = m
            .load(f32t.into(), m.at(lse_split, split_row(m, s)?, 4)?, 4)?
            .into_float_value();
        let mut e = Emit::on(m.ctx, m.module, &m.b);
        let max = e.max(c[0].into_float_value(), lse_s);
        e.finish()?;
        Ok(vec![max.into()])
    })?[0]
        .into_float_value();
    let zero = f32t.const_zero();
    let acc = counted_loop(
        m,
        splits,
        &[zero.into(), zero.into(), zero.into()],
        |m, s, c| {
            let at = split_row(m, s)?;
            let lse_s = m
                .load(f32t.into(), m.at(lse_split, at, 4)?, 4)?
                .into_float_value();
            let pair = m
                .load(
                    f32t.vec_type(2).into(),
                    m.at(o_split, element(m, at)?, 4)?,
                    8,
                )?
                .into_vector_value();
            let half = |i: u64| {
                m.b.build_extract_element(pair, i64t.const_int(i, false), "")
                    .map(|v| v.into_float_value())
            };
            let (lo, hi) = (half(0)?, half(1)?);
            let mut e = Emit::on(m.ctx, m.module, &m.b);
            let w = softmax::merge_weight(&mut e, lse_s, max);
            let sum = e.add(c[0].into_float_value(), w);
            let lo = e.fma(w, lo, c[1].into_float_value());
            let hi = e.fma(w, hi, c[2].into_float_value());
            e.finish()?;
            Ok(vec![sum.into(), lo.into(), hi.into()])
        },
    )?;
    let (sum, lo, hi) = (
        acc[0].into_float_value(),
        acc[1].into_float_value(),
        acc[2].into_float_value(),
    );
    let mut e = Emit::on(m.ctx, m.module, &m.b);
    let inv = softmax::inverse_sum(&mut e, sum);
    let (lo, hi) = (e.mul(lo, inv), e.mul(hi, inv));
    let merged_lse = softmax::merge_lse(&mut e, max, sum);
    e.finish()?;
    let packed = pack(module, &m.b, program.dtype, lo, hi)?;
    let out = m.at(o, element(m, widen(m, row)?)?, program.dtype.bytes() as u64)?;
    m.store(out, packed, 4)?;

    // The LSE, when requested: one thread per row.
    let requested = m.b.build_is_not_null(lse, "")?;
    let first = m.b.build_int_compare(IntPredicate::EQ, tid, ctx.i32_type().const_zero(), "")?;
    let go = m.b.build_and(requested, first, "")?;
    m.when(go, |m| m.store(m.at(lse, widen(m, row)?, 4)?, merged_lse, 4))?;
    m.b.build_return(None)?;
    Ok(())
}
