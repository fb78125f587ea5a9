//! A kernel entry built directly, outside a tile program (the decode merge, the compression
//! entries): the builder positioned in the entry block, the thread index, and the few
//! operations such entries are written with.

use inkwell::AddressSpace;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::types::BasicTypeEnum;
use inkwell::values::{BasicValue, BasicValueEnum, FunctionValue, IntValue, PointerValue};

use super::kernel::{entry, sreg};
use super::lower::{Blocks, Res, SHARED, load_aligned};
use crate::CodegenError;

pub struct Standalone<'ctx, 'a> {
    pub ctx: &'ctx Context,
    pub module: &'a Module<'ctx>,
    pub b: Builder<'ctx>,
    pub func: FunctionValue<'ctx>,
    /// `tid.x`.
    pub tid: IntValue<'ctx>,
}

impl<'ctx> Blocks<'ctx> for Standalone<'ctx, '_> {
    fn context(&self) -> &'ctx Context {
        self.ctx
    }
    fn builder(&self) -> &Builder<'ctx> {
        &self.b
    }
    fn function(&self) -> FunctionValue<'ctx> {
        self.func
    }
}

impl<'ctx, 'a> Standalone<'ctx, 'a> {
    /// Entry `name` with parameters `params` (`pointer` says which are global pointers),
    /// `threads` per CTA.
    pub fn new(ctx: &'ctx Context, module: &'a Module<'ctx>, name: &str, params: &[&str], pointer: &dyn Fn(&str) -> bool, threads: u32) -> Res<Self> {
        Self::resident(ctx, module, name, params, pointer, (threads, 1))
    }

    /// As `new`, with registers budgeted for `min_ctas` resident CTAs per SM.
    pub fn resident(ctx: &'ctx Context, module: &'a Module<'ctx>, name: &str, params: &[&str], pointer: &dyn Fn(&str) -> bool, (threads, min_ctas): (u32, u32)) -> Res<Self> {
        let func = entry(ctx, module, name, params, pointer, (threads, min_ctas))?;
        let b = ctx.create_builder();
        b.position_at_end(ctx.append_basic_block(func, "entry"));
        let tid = sreg(module, &b, "llvm.nvvm.read.ptx.sreg.tid.x")?;
        Ok(Standalone { ctx, module, b, func, tid })
    }

    pub fn param(&self, i: u32) -> Res<BasicValueEnum<'ctx>> {
        self.func.get_nth_param(i).ok_or_else(|| CodegenError::Llvm("missing param".into()))
    }

    pub fn i32(&self, v: i64) -> IntValue<'ctx> {
        self.ctx.i32_type().const_int(v as u64, true)
    }

    /// An i32 index zero-extended to i64.
    pub fn i64(&self, v: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        Ok(self.b.build_int_z_extend(v, self.ctx.i64_type(), "")?)
    }

    /// Element `index` (i64) of `elem_bytes`-byte elements from `base`.
    pub fn at(&self, base: PointerValue<'ctx>, index: IntValue<'ctx>, elem_bytes: u64) -> Res<PointerValue<'ctx>> {
        let off = self.b.build_int_mul(index, self.ctx.i64_type().const_int(elem_bytes, false), "")?;
        // SAFETY of the GEP: indices stay inside the buffers the launch checked.
        Ok(unsafe { self.b.build_in_bounds_gep(self.ctx.i8_type(), base, &[off], "")? })
    }

    pub fn load(&self, ty: BasicTypeEnum<'ctx>, p: PointerValue<'ctx>, align: u32) -> Res<BasicValueEnum<'ctx>> {
        load_aligned(&self.b, ty, p, align)
    }

    pub fn store(&self, p: PointerValue<'ctx>, v: impl BasicValue<'ctx>, align: u32) -> Res<()> {
        self.b.build_store(p, v)?.set_alignment(align).map_err(|e| CodegenError::Llvm(e.to_string()))
    }

    /// Calls an intrinsic that returns a value (declared, and its name checked, on first use).
    pub fn call(&self, name: &str, overloads: &[BasicTypeEnum<'ctx>], args: &[BasicValueEnum<'ctx>]) -> Res<BasicValueEnum<'ctx>> {
        let f = super::intrinsics::declare(self.module, name, overloads)?;
        let args: Vec<_> = args.iter().map(|a| (*a).into()).collect();
        match self.b.build_call(f, &args, "")?.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Ok(v),
            _ => Err(CodegenError::Llvm(format!("{name} returned no value"))),
        }
    }

    /// A CTA-wide shared array of `len` `elem_bytes`-byte elements, private to this entry.
    pub fn shared(&self, name: &str, len: u32, elem_bytes: u32) -> PointerValue<'ctx> {
        let ty = self.ctx.i8_type().array_type(len * elem_bytes);
        let g = self.module.add_global(ty, Some(AddressSpace::from(SHARED)), &format!("{}_{name}", self.func.get_name().to_string_lossy()));
        g.set_linkage(Linkage::Internal);
        g.set_initializer(&ty.get_undef());
        g.set_alignment(16);
        g.as_pointer_value()
    }

    /// `v` (i32 or f32) combined over the warp's 32 lanes by `op`, in every lane (a butterfly).
    pub fn warp_reduce(
        &self,
        mut v: BasicValueEnum<'ctx>,
        op: impl Fn(&Self, BasicValueEnum<'ctx>, BasicValueEnum<'ctx>) -> Res<BasicValueEnum<'ctx>>,
    ) -> Res<BasicValueEnum<'ctx>> {
        let shuffle = if v.is_float_value() { "llvm.nvvm.shfl.sync.bfly.f32" } else { "llvm.nvvm.shfl.sync.bfly.i32" };
        for offset in [16, 8, 4, 2, 1] {
            let other = self.call(shuffle, &[], &[self.i32(-1).into(), v, self.i32(offset).into(), self.i32(0x1f).into()])?;
            v = op(self, v, other)?;
        }
        Ok(v)
    }

    pub fn barrier(&self) -> Res<()> {
        let f = super::intrinsics::declare(self.module, "llvm.nvvm.barrier.cta.sync.aligned.all", &[])?;
        self.b.build_call(f, &[self.i32(0).into()], "")?;
        Ok(())
    }

    /// Runs `then` where `cond` holds.
    pub fn when(&mut self, cond: IntValue<'ctx>, then: impl FnOnce(&mut Self) -> Res<()>) -> Res<()> {
        let (yes, done) = (self.ctx.append_basic_block(self.func, "then"), self.ctx.append_basic_block(self.func, "endif"));
        self.b.build_conditional_branch(cond, yes, done)?;
        self.b.position_at_end(yes);
        then(self)?;
        self.b.build_unconditional_branch(done)?;
        self.b.position_at_end(done);
        Ok(())
    }
}
