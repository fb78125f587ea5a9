//! The `semantics::Arith` backend that emits LLVM instructions, so the softmax formulas the
//! interpreter runs are the ones the kernel runs.

use inkwell::FloatPredicate;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::values::{FloatValue, IntValue};

use super::lower::{Lowerer, Res};
use crate::semantics::Arith;

/// Builder failures are latched and reported by `finish`, since the formulas are written
/// against an infallible interface.
pub struct Emit<'l, 'ctx> {
    ctx: &'ctx Context,
    module: &'l Module<'ctx>,
    b: &'l Builder<'ctx>,
    error: Option<crate::CodegenError>,
}

impl<'l, 'ctx> Emit<'l, 'ctx> {
    pub fn new(l: &'l Lowerer<'ctx, '_>) -> Self {
        Self::on(l.ctx, l.module, &l.b)
    }

    /// Emits at `b`'s position in a function of `module`.
    pub fn on(ctx: &'ctx Context, module: &'l Module<'ctx>, b: &'l Builder<'ctx>) -> Self {
        Emit { ctx, module, b, error: None }
    }

    pub fn finish(self) -> Res<()> {
        self.error.map_or(Ok(()), Err)
    }

    fn latch<T>(&mut self, r: Res<T>, fallback: T) -> T {
        r.unwrap_or_else(|e| {
            self.error.get_or_insert(e);
            fallback
        })
    }

    fn float<E: Into<crate::CodegenError>>(&mut self, r: Result<FloatValue<'ctx>, E>) -> FloatValue<'ctx> {
        let undef = self.ctx.f32_type().get_undef();
        self.latch(r.map_err(Into::into), undef)
    }

    fn intrinsic(&mut self, name: &str, overloaded: bool, args: &[FloatValue<'ctx>]) -> FloatValue<'ctx> {
        let f32t = self.ctx.f32_type().into();
        let overloads: &[_] = if overloaded { &[f32t] } else { &[] };
        let args: Vec<_> = args.iter().map(|a| (*a).into()).collect();
        let r = super::intrinsics::declare(self.module, name, overloads).and_then(|f| {
            match self.b.build_call(f, &args, "")?.try_as_basic_value() {
                inkwell::values::ValueKind::Basic(v) => Ok(v.into_float_value()),
                _ => Err(crate::CodegenError::Llvm(format!("{name} returned no value"))),
            }
        });
        self.float(r)
    }

    /// An ordered compare (false when either operand is NaN).
    fn compare(&mut self, predicate: FloatPredicate, a: FloatValue<'ctx>, b: FloatValue<'ctx>) -> IntValue<'ctx> {
        let r = self.b.build_float_compare(predicate, a, b, "").map_err(Into::into);
        let f = self.ctx.bool_type().const_zero();
        self.latch(r, f)
    }
}

impl<'ctx> Arith for Emit<'_, 'ctx> {
    type F = FloatValue<'ctx>;
    type B = IntValue<'ctx>;

    fn constant(&mut self, v: f32) -> Self::F {
        self.ctx.f32_type().const_float(v as f64)
    }
    fn add(&mut self, a: Self::F, b: Self::F) -> Self::F {
        let r = self.b.build_float_add(a, b, "");
        self.float(r)
    }
    fn sub(&mut self, a: Self::F, b: Self::F) -> Self::F {
        let r = self.b.build_float_sub(a, b, "");
        self.float(r)
    }
    fn mul(&mut self, a: Self::F, b: Self::F) -> Self::F {
        let r = self.b.build_float_mul(a, b, "");
        self.float(r)
    }
    fn div(&mut self, a: Self::F, b: Self::F) -> Self::F {
        let r = self.b.build_float_div(a, b, "");
        self.float(r)
    }
    fn fma(&mut self, a: Self::F, b: Self::F, c: Self::F) -> Self::F {
        self.intrinsic("llvm.fma", true, &[a, b, c])
    }
    fn max(&mut self, a: Self::F, b: Self::F) -> Self::F {
        // maxnum, like f32::max: a NaN operand yields the other one.
        self.intrinsic("llvm.maxnum", true, &[a, b])
    }
    fn exp2(&mut self, a: Self::F) -> Self::F {
        self.intrinsic("llvm.nvvm.ex2.approx.ftz", true, &[a])
    }
    fn log2(&mut self, a: Self::F) -> Self::F {
        self.intrinsic("llvm.nvvm.lg2.approx.ftz.f", false, &[a])
    }
    fn eq(&mut self, a: Self::F, b: Self::F) -> Self::B {
        self.compare(FloatPredicate::OEQ, a, b)
    }
    fn gt(&mut self, a: Self::F, b: Self::F) -> Self::B {
        self.compare(FloatPredicate::OGT, a, b)
    }
    fn ge(&mut self, a: Self::F, b: Self::F) -> Self::B {
        self.compare(FloatPredicate::OGE, a, b)
    }
    fn select(&mut self, c: Self::B, a: Self::F, b: Self::F) -> Self::F {
        let r = self.b.build_select(c, a, b, "").map(|v| v.into_float_value());
        self.float(r)
    }
}
