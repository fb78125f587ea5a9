//! The lowering context: builder, kernel parameters, the lane's coordinates, and the
//! environment mapping tile-IR variables and fragments to SSA values. Structured control flow
//! (`For`, `If`) carries every fragment through phis, so each statement lowering can treat
//! fragments as plain values.

use std::cell::RefCell;
use std::collections::HashMap;

use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::types::BasicTypeEnum;
use inkwell::values::{BasicValue, BasicValueEnum, FloatValue, FunctionValue, IntValue, PointerValue};
use inkwell::{AddressSpace, IntPredicate};

use super::carried::LoopFrame;
use super::mma::Int32Products;
use super::select::EstimateVote;
use super::intrinsics;
use crate::CodegenError;
use crate::ir::{BinOp, CopyEngine, Expr, MmaEngine, Program, Stmt, Table, Var};

pub type Res<T> = Result<T, CodegenError>;

/// Address spaces of the NVPTX backend.
pub const GLOBAL: u16 = 1;
pub const SHARED: u16 = 3;

pub struct Params<'ctx> {
    pub q: PointerValue<'ctx>,
    pub k: PointerValue<'ctx>,
    pub v: PointerValue<'ctx>,
    pub o: PointerValue<'ctx>,
    pub lse: PointerValue<'ctx>,
    /// The softmax scale as passed, and times log2(e) (the online softmax works in base 2).
    pub scale: FloatValue<'ctx>,
    pub scale_log2: FloatValue<'ctx>,
    /// The int32 launch tables, for programs that read them (`TABLE_PARAMS`).
    pub tables: HashMap<Table, PointerValue<'ctx>>,
    /// K's and V's bitmap-compressed caches, for kernels that read them (`BITMAP_PARAMS`).
    pub caches: Option<[CacheParams<'ctx>; 2]>,
    /// A low-bit selection's q_scale, k_scale, qmk and qk_mean (`SCALE_PARAMS`).
    pub scales: Option<[PointerValue<'ctx>; 4]>,
}

/// The arrays of one bitmap-compressed cache (`crate::format::BitmapCache`).
#[derive(Clone, Copy)]
pub struct CacheParams<'ctx> {
    /// u64 per tile.
    pub bitmaps: PointerValue<'ctx>,
    /// i32 per tile plus one, per plane: tile starts in value pairs.
    pub offsets: PointerValue<'ctx>,
    /// The packed 16-bit values.
    pub values: PointerValue<'ctx>,
    /// i32 per plane: where its values start, in 16-byte units.
    pub head_base: PointerValue<'ctx>,
}

/// The thread's place in the CTA, in the terms of the mma fragment layouts.
pub struct Lane<'ctx> {
    pub tid: IntValue<'ctx>,
    pub warp: IntValue<'ctx>,
    pub lane: IntValue<'ctx>,
    /// `lane / 4`: the fragment row within an 8-row group.
    pub g: IntValue<'ctx>,
    /// `lane % 4`: the column pair within an n8 tile.
    pub t: IntValue<'ctx>,
}

/// A load of `ty` from `ptr` with the alignment the address is known to have.
pub fn load_aligned<'ctx>(b: &Builder<'ctx>, ty: BasicTypeEnum<'ctx>, ptr: PointerValue<'ctx>, align: u32) -> Res<BasicValueEnum<'ctx>> {
    let v = b.build_load(ty, ptr, "")?;
    if let Some(i) = v.as_instruction_value() {
        i.set_alignment(align).map_err(|e| CodegenError::Llvm(e.to_string()))?;
    }
    Ok(v)
}

/// A function under construction, for code that builds its own loops.
pub trait Blocks<'ctx> {
    fn context(&self) -> &'ctx Context;
    fn builder(&self) -> &Builder<'ctx>;
    fn function(&self) -> FunctionValue<'ctx>;
}

impl<'ctx> Blocks<'ctx> for Lowerer<'ctx, '_> {
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

/// `for i in 0..n` over loop-carried values `init` (i32 `n`; in a `Lowerer`, no fragment may
/// change inside); returns their values at the exit.
pub fn counted_loop<'ctx, C: Blocks<'ctx>>(
    cx: &mut C,
    n: IntValue<'ctx>,
    init: &[BasicValueEnum<'ctx>],
    mut body: impl FnMut(&mut C, IntValue<'ctx>, &[BasicValueEnum<'ctx>]) -> Res<Vec<BasicValueEnum<'ctx>>>,
) -> Res<Vec<BasicValueEnum<'ctx>>> {
    let block = |cx: &C, name| cx.context().append_basic_block(cx.function(), name);
    let here = |cx: &C| cx.builder().get_insert_block().ok_or_else(|| CodegenError::Llvm("builder has no block".into()));
    let pre = here(cx)?;
    let (header, body_bb, exit) = (block(cx, "cloop"), block(cx, "cbody"), block(cx, "endcloop"));
    let b = cx.builder();
    b.build_unconditional_branch(header)?;
    b.position_at_end(header);
    let i = b.build_phi(n.get_type(), "")?;
    let mut phis = Vec::new();
    for v in init {
        let phi = b.build_phi(v.get_type(), "")?;
        phi.add_incoming(&[(v, pre)]);
        phis.push(phi);
    }
    let iv = i.as_basic_value().into_int_value();
    let carried: Vec<_> = phis.iter().map(|p| p.as_basic_value()).collect();
    let go = b.build_int_compare(IntPredicate::SLT, iv, n, "")?;
    b.build_conditional_branch(go, body_bb, exit)?;
    b.position_at_end(body_bb);
    let next = body(cx, iv, &carried)?;
    let latch = here(cx)?;
    let b = cx.builder();
    let inc = b.build_int_add(iv, iv.get_type().const_int(1, false), "")?;
    b.build_unconditional_branch(header)?;
    i.add_incoming(&[(&iv.get_type().const_zero(), pre), (&inc, latch)]);
    for (phi, v) in phis.iter().zip(&next) {
        phi.add_incoming(&[(v, latch)]);
    }
    b.position_at_end(exit);
    Ok(carried)
}

pub struct Lowerer<'ctx, 'a> {
    pub ctx: &'ctx Context,
    pub module: &'a Module<'ctx>,
    pub b: Builder<'ctx>,
    pub func: FunctionValue<'ctx>,
    pub program: &'a Program,
    pub params: Params<'ctx>,
    pub lane: Lane<'ctx>,
    pub smem: PointerValue<'ctx>,
    pub vars: HashMap<Var, IntValue<'ctx>>,
    /// Per fragment, this lane's registers (see `Program::frag_registers`).
    pub frags: Vec<Vec<BasicValueEnum<'ctx>>>,
    /// Whether products read shared memory through the async proxy (wgmma), so that copies
    /// that land must be fenced for it.
    pub async_proxy_reads: bool,
    /// The loops being lowered, innermost last (`carried`).
    pub loops: RefCell<Vec<LoopFrame<'ctx>>>,
}

impl<'ctx, 'a> Lowerer<'ctx, 'a> {
    pub fn i32(&self, v: i64) -> IntValue<'ctx> {
        self.ctx.i32_type().const_int(v as u64, true)
    }

    pub fn f32(&self, v: f32) -> FloatValue<'ctx> {
        self.ctx.f32_type().const_float(v as f64)
    }

    /// Calls an intrinsic, declaring it (and checking its name) on first use.
    pub fn call(
        &self,
        name: &str,
        overloads: &[BasicTypeEnum<'ctx>],
        args: &[BasicValueEnum<'ctx>],
    ) -> Res<Option<BasicValueEnum<'ctx>>> {
        let f = intrinsics::declare(self.module, name, overloads)?;
        let args: Vec<_> = args.iter().map(|a| (*a).into()).collect();
        let site = self.b.build_call(f, &args, "")?;
        Ok(match site.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Some(v),
            inkwell::values::ValueKind::Instruction(_) => None,
        })
    }

    pub fn call_value(
        &self,
        name: &str,
        overloads: &[BasicTypeEnum<'ctx>],
        args: &[BasicValueEnum<'ctx>],
    ) -> Res<BasicValueEnum<'ctx>> {
        self.call(name, overloads, args)?
            .ok_or_else(|| CodegenError::Llvm(format!("{name} returned no value")))
    }

    /// Warps split the query tile in 16-row slabs; a warp owns `slabs()` of them.
    pub fn slabs(&self) -> u32 {
        self.program.slabs()
    }

    /// The CTA-local first row of this warp's `slab`: slab s of warp w is rows
    /// `(s·warps + w)·16 ..` (16 rows).
    pub fn slab_row(&self, slab: u32) -> Res<IntValue<'ctx>> {
        let slab_base = self.i32((slab * self.program.config.warps * 16) as i64);
        let warp_rows = self.b.build_int_mul(self.lane.warp, self.i32(16), "")?;
        Ok(self.b.build_int_add(slab_base, warp_rows, "")?)
    }

    /// The CTA-local row of `slab`, row-half `h` (0: row g, 1: row g+8) for this lane.
    pub fn local_row(&self, slab: u32, h: u32) -> Res<IntValue<'ctx>> {
        let base = self.b.build_int_add(self.slab_row(slab)?, self.i32(8 * h as i64), "")?;
        Ok(self.b.build_int_add(base, self.lane.g, "")?)
    }

    pub fn expr(&self, e: &Expr) -> Res<IntValue<'ctx>> {
        match e {
            Expr::Bin(op, a, b) => match self.carried_division(*op, a, b)? {
                Some(v) => Ok(v),
                None => self.bin(*op, self.expr(a)?, self.expr(b)?),
            },
            Expr::Load(table, index) => self.load_table(*table, self.expr(index)?),
            leaf => self.leaf(leaf),
        }
    }

    /// `table[index]`, the semantics of `Expr::Load`: an int32 read from global memory. The
    /// parameter is `noalias readonly`, so the backend may read it through the non-coherent
    /// cache (`ld.global.nc`).
    pub fn load_table(&self, table: Table, index: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let base = *self
            .params
            .tables
            .get(&table)
            .ok_or_else(|| CodegenError::Ir(format!("table {} is not a parameter of this kernel", table.name())))?;
        // In 64 bits: a table may hold up to 2^31 entries, 4 bytes each.
        let i64t = self.ctx.i64_type();
        let index = self.b.build_int_s_extend(index, i64t, "")?;
        let bytes = self.b.build_int_mul(index, i64t.const_int(4, false), "")?;
        let ptr = self.byte_ptr(base, bytes)?;
        Ok(self.b.build_load(self.ctx.i32_type(), ptr, table.name())?.into_int_value())
    }

    /// A constant or a bound variable.
    pub fn leaf(&self, e: &Expr) -> Res<IntValue<'ctx>> {
        Ok(match e {
            Expr::Const(c) => self.i32(*c as i64),
            Expr::Var(v) => *self
                .vars
                .get(v)
                .ok_or_else(|| CodegenError::Ir(format!("variable {v} is not bound here")))?,
            Expr::Bin(..) | Expr::Load(..) => return Err(CodegenError::Ir(format!("{e} is not a leaf"))),
        })
    }

    /// One operator on emitted operands, with the semantics of `ir::expr::apply`.
    pub fn bin(&self, op: BinOp, a: IntValue<'ctx>, b: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let bd = &self.b;
        let bool_to_i32 = |p: IntValue<'ctx>| bd.build_int_z_extend(p, self.ctx.i32_type(), "");
        let truthy = |x: IntValue<'ctx>| bd.build_int_compare(IntPredicate::NE, x, self.i32(0), "");
        Ok(match op {
            BinOp::Add => bd.build_int_add(a, b, "")?,
            BinOp::Sub => bd.build_int_sub(a, b, "")?,
            BinOp::Mul => bd.build_int_mul(a, b, "")?,
            BinOp::Div => bd.build_int_signed_div(a, b, "")?,
            BinOp::Rem => bd.build_int_signed_rem(a, b, "")?,
            BinOp::Min | BinOp::Max => {
                let pred = if op == BinOp::Min { IntPredicate::SLT } else { IntPredicate::SGT };
                let c = bd.build_int_compare(pred, a, b, "")?;
                bd.build_select(c, a, b, "")?.into_int_value()
            }
            BinOp::Lt => bool_to_i32(bd.build_int_compare(IntPredicate::SLT, a, b, "")?)?,
            BinOp::Le => bool_to_i32(bd.build_int_compare(IntPredicate::SLE, a, b, "")?)?,
            BinOp::And => bool_to_i32(bd.build_and(truthy(a)?, truthy(b)?, "")?)?,
            BinOp::Or => bool_to_i32(bd.build_or(truthy(a)?, truthy(b)?, "")?)?,
        })
    }

    /// An expression as an i1 condition.
    pub fn cond(&self, e: &Expr) -> Res<IntValue<'ctx>> {
        let v = self.expr(e)?;
        Ok(self.b.build_int_compare(IntPredicate::NE, v, self.i32(0), "")?)
    }

    pub fn block(&mut self, body: &[Stmt]) -> Res<()> {
        let mut rest = body;
        while let Some(s) = rest.first() {
            if let Some((vote, n)) = EstimateVote::after_product(rest) {
                self.estimate_vote(&rest[0], &vote)?;
                rest = &rest[n..];
            } else {
                self.stmt(s)?;
                rest = &rest[1..];
            }
        }
        Ok(())
    }

    /// A `Stmt::Mma`, with its int32 products where its operands are int8 codes.
    pub(super) fn product(&mut self, s: &Stmt) -> Res<Int32Products<'ctx>> {
        match s {
            Stmt::Mma { acc, a, b, engine: MmaEngine::MmaSync } => self.mma(*acc, a, b),
            Stmt::Mma { acc, a, b, engine: MmaEngine::Wgmma } => self.wgmma(*acc, a, b),
            other => Err(CodegenError::Ir(format!("not a product: {other:?}"))),
        }
    }

    pub(super) fn stmt(&mut self, s: &Stmt) -> Res<()> {
        match s {
            Stmt::Let { var, value } => {
                let v = self.expr(value)?;
                self.vars.insert(*var, v);
            }
            Stmt::Copy { dst, stage, src, engine: CopyEngine::CpAsync } => self.copy(*dst, stage, src)?,
            Stmt::Copy { engine: CopyEngine::Bitmap(_), .. } => {
                return Err(CodegenError::Ir(
                    "a bitmap copy decoded in one step is the interpreter's; kernels stage compressed tiles (ir::decode)".into(),
                ));
            }
            Stmt::Copy { dst, stage, src, engine: CopyEngine::BitmapMeta } => self.copy_meta(*dst, stage, src)?,
            Stmt::CopyValues { dst, stage, meta, meta_stage, src, .. } => self.copy_values(*dst, stage, (*meta, meta_stage), src)?,
            Stmt::Expand { dst, src, stage, meta, meta_stage, order } => self.expand(*dst, (*src, stage), (*meta, meta_stage), *order)?,
            Stmt::Commit => {
                self.call("llvm.nvvm.cp.async.commit.group", &[], &[])?;
            }
            Stmt::Wait { pending } => {
                let n = self.i32(*pending as i64).into();
                self.call("llvm.nvvm.cp.async.wait.group", &[], &[n])?;
                if self.async_proxy_reads {
                    self.fence_async_proxy()?;
                }
            }
            Stmt::Barrier => self.barrier()?,
            Stmt::LoadOperand { frag, src } => self.load_operand(*frag, *src)?,
            Stmt::Fill { frag, value } => {
                let v = self.f32(*value).as_basic_value_enum();
                self.frags[frag.0].iter_mut().for_each(|x| *x = v);
            }
            Stmt::Mma { .. } => {
                self.product(s)?;
            }
            Stmt::Mask { frag, keep, when } => {
                let when = self.cond(when)?;
                self.if_then(when, |l| l.mask(*frag, keep))?;
            }
            Stmt::Softmax { s, p, m, l, o } => self.softmax(*s, *p, *m, *l, *o)?,
            Stmt::MergeParts { o, m, l, scratch } => self.merge_parts(*o, *m, *l, *scratch)?,
            Stmt::Normalize { o, l } => self.normalize(*o, *l)?,
            Stmt::Store { frag, dst } => self.store(*frag, dst)?,
            Stmt::StoreLse { m, l, dst } => self.store_lse(*m, *l, dst)?,
            Stmt::For { var, begin, end, body, .. } => self.for_loop(*var, begin, end, body)?,
            Stmt::If { cond, body } => {
                let c = self.cond(cond)?;
                self.if_then(c, |l| l.block(body))?;
            }
            Stmt::VisitTiles { .. } | Stmt::VisitMask { .. } => {
                return Err(CodegenError::Ir("visit placeholders reached the lowering".into()));
            }
            Stmt::LoadRows { frag, src, pad } => self.load_rows(*frag, src, *pad)?,
            Stmt::Vote { var, s, rows } => {
                let kept = self.vote(*s, *rows)?;
                self.vars.insert(*var, kept);
            }
            Stmt::StoreMap { index, value } => self.store_map(index, value)?,
            Stmt::Dequantize { s, row_scale, col_scale, col_bias } => self.dequantize(*s, *row_scale, col_scale, col_bias)?,
            Stmt::Threshold { rows, bias } => self.threshold(*rows, *bias)?,
        }
        Ok(())
    }

    pub fn barrier(&self) -> Res<()> {
        let zero = self.i32(0).into();
        self.call("llvm.nvvm.barrier.cta.sync.aligned.all", &[], &[zero])?;
        Ok(())
    }

    fn append_block(&self, name: &str) -> BasicBlock<'ctx> {
        self.ctx.append_basic_block(self.func, name)
    }

    fn current_block(&self) -> Res<BasicBlock<'ctx>> {
        self.b.get_insert_block().ok_or_else(|| CodegenError::Llvm("builder has no block".into()))
    }

    /// Runs `then` under `cond`; fragments it changes are merged with phis. Variables bound
    /// inside stay inside.
    pub fn if_then(&mut self, cond: IntValue<'ctx>, then: impl FnOnce(&mut Self) -> Res<()>) -> Res<()> {
        self.guarded(cond, |l| then(l).map(|()| Vec::new())).map(|_| ())
    }

    /// As `if_then`, with the value `then` returns, or `otherwise` where `cond` is false.
    pub fn if_then_value(
        &mut self,
        cond: IntValue<'ctx>,
        otherwise: IntValue<'ctx>,
        then: impl FnOnce(&mut Self) -> Res<IntValue<'ctx>>,
    ) -> Res<IntValue<'ctx>> {
        let merged = self.guarded(cond, |l| Ok(vec![(otherwise, then(l)?)]))?;
        merged.first().copied().ok_or_else(|| CodegenError::Llvm("a guarded value was not merged".into()))
    }

    /// The branch of `if_then`: `then` returns pairs (value where `cond` is false, value it
    /// computed), each merged with a phi.
    fn guarded(
        &mut self,
        cond: IntValue<'ctx>,
        then: impl FnOnce(&mut Self) -> Res<Vec<(IntValue<'ctx>, IntValue<'ctx>)>>,
    ) -> Res<Vec<IntValue<'ctx>>> {
        let entry = self.current_block()?;
        let (then_bb, merge_bb) = (self.append_block("then"), self.append_block("endif"));
        self.b.build_conditional_branch(cond, then_bb, merge_bb)?;
        self.b.position_at_end(then_bb);
        let (vars, before) = (self.vars.clone(), self.frags.clone());
        let values = then(self)?;
        let then_end = self.current_block()?;
        self.b.build_unconditional_branch(merge_bb)?;
        self.b.position_at_end(merge_bb);
        self.vars = vars;
        for (f, regs) in self.frags.iter_mut().enumerate() {
            for (i, reg) in regs.iter_mut().enumerate() {
                let old = before[f][i];
                if *reg != old {
                    let phi = self.b.build_phi(old.get_type(), "")?;
                    phi.add_incoming(&[(&old, entry), (&*reg, then_end)]);
                    *reg = phi.as_basic_value();
                }
            }
        }
        values
            .into_iter()
            .map(|(otherwise, value)| {
                let phi = self.b.build_phi(value.get_type(), "")?;
                phi.add_incoming(&[(&otherwise, entry), (&value, then_end)]);
                Ok(phi.as_basic_value().into_int_value())
            })
            .collect()
    }

    /// `for var in begin..end`, every fragment carried through a phi.
    fn for_loop(&mut self, var: Var, begin: &Expr, end: &Expr, body: &[Stmt]) -> Res<()> {
        let (begin, end) = (self.expr(begin)?, self.expr(end)?);
        let pre = self.current_block()?;
        let (header, body_bb, exit) =
            (self.append_block("loop"), self.append_block("body"), self.append_block("endloop"));
        self.b.build_unconditional_branch(header)?;
        self.b.position_at_end(header);
        let j = self.b.build_phi(self.ctx.i32_type(), "")?;
        let mut phis = Vec::new();
        for regs in &mut self.frags {
            let mut row = Vec::new();
            for reg in regs.iter_mut() {
                let phi = self.b.build_phi(reg.get_type(), "")?;
                phi.add_incoming(&[(&*reg, pre)]);
                *reg = phi.as_basic_value();
                row.push(phi);
            }
            phis.push(row);
        }
        let jv = j.as_basic_value().into_int_value();
        let go = self.b.build_int_compare(IntPredicate::SLT, jv, end, "")?;
        self.b.build_conditional_branch(go, body_bb, exit)?;

        self.b.position_at_end(body_bb);
        let vars = self.vars.clone();
        self.loops.borrow_mut().push(LoopFrame::new(var, begin, pre, header, vars.clone()));
        self.vars.insert(var, jv);
        self.block(body)?;
        let frame = self.loops.borrow_mut().pop().ok_or_else(|| CodegenError::Ir("loop frames out of step".into()))?;
        self.close_divisions(&frame)?;
        let next = self.b.build_int_add(jv, self.i32(1), "")?;
        let latch = self.current_block()?;
        self.b.build_unconditional_branch(header)?;
        j.add_incoming(&[(&begin, pre), (&next, latch)]);
        for (f, row) in phis.iter().enumerate() {
            for (i, phi) in row.iter().enumerate() {
                phi.add_incoming(&[(&self.frags[f][i], latch)]);
                self.frags[f][i] = phi.as_basic_value();
            }
        }
        self.vars = vars;
        self.b.position_at_end(exit);
        Ok(())
    }

    /// A pointer `bytes` past `base` in address space `space`.
    pub fn byte_ptr(&self, base: PointerValue<'ctx>, bytes: IntValue<'ctx>) -> Res<PointerValue<'ctx>> {
        // SAFETY of the GEP: offsets are computed from the tile bounds the passes checked; an
        // out-of-tile offset would be a codegen bug, not UB reachable from user input.
        Ok(unsafe { self.b.build_in_bounds_gep(self.ctx.i8_type(), base, &[bytes], "")? })
    }

    /// As `byte_ptr`, for an address that may lie outside its allocation because nothing
    /// dereferences it there (a zero-size copy's source): not `inbounds`, so not poison.
    pub fn byte_ptr_anywhere(&self, base: PointerValue<'ctx>, bytes: IntValue<'ctx>) -> Res<PointerValue<'ctx>> {
        // SAFETY of the GEP: a plain GEP is defined for any offset; only a dereference of the
        // result needs it inside the allocation, and the copies that read guarantee that.
        Ok(unsafe { self.b.build_gep(self.ctx.i8_type(), base, &[bytes], "")? })
    }

    pub fn ptr_type(&self, space: u16) -> BasicTypeEnum<'ctx> {
        self.ctx.ptr_type(AddressSpace::from(space)).into()
    }
}
