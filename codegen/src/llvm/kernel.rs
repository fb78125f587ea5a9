//! The kernel function: signature (see `KERNEL_PARAMS`), launch bounds, the lane's coordinates,
//! the dynamic shared memory, and the environment the statement lowering starts from.

use std::collections::HashMap;

use inkwell::attributes::AttributeLoc;
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::values::{BasicValue, IntValue};
use inkwell::AddressSpace;

use super::lower::{CacheParams, GLOBAL, Lane, Lowerer, Params, Res, SHARED};
use crate::ir::{MmaEngine, Program, Stmt, Var};

/// `ptx_kernel` calling convention: the function becomes a `.entry`.
const PTX_KERNEL: u32 = 71;

/// A kernel entry named `name` with parameters `names` (pointers in the global space, marked
/// `noalias`, where `pointer` says so; i32 otherwise, except `scale`, f32), `threads` per CTA,
/// registers budgeted for `min_ctas` resident CTAs per SM.
pub fn entry<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, name: &str, names: &[&str], pointer: &dyn Fn(&str) -> bool, (threads, min_ctas): (u32, u32)) -> Res<inkwell::values::FunctionValue<'ctx>> {
    let gptr = ctx.ptr_type(AddressSpace::from(GLOBAL));
    let types: Vec<inkwell::types::BasicMetadataTypeEnum> = names
        .iter()
        .map(|&n| if pointer(n) { gptr.into() } else if n == "scale" { ctx.f32_type().into() } else { ctx.i32_type().into() })
        .collect();
    let func = module.add_function(name, ctx.void_type().fn_type(&types, false), None);
    func.set_call_conventions(PTX_KERNEL);
    func.add_attribute(AttributeLoc::Function, ctx.create_string_attribute("nvvm.maxntid", &threads.to_string()));
    // With only `.maxntid`, ptxas picks a register budget for its own occupancy guess and spills
    // to meet it (96 registers on sm_80 for d=64); the CTA's shared memory already bounds
    // occupancy, so kernels ask for one resident CTA and let the registers follow the code,
    // unless their program asks for more.
    func.add_attribute(AttributeLoc::Function, ctx.create_string_attribute("nvvm.minctasm", &min_ctas.to_string()));
    let noalias = ctx.create_enum_attribute(inkwell::attributes::Attribute::get_named_enum_kind_id("noalias"), 0);
    // Launch tables are only read: `readonly` with `noalias` lets the backend use the
    // non-coherent cache (`ld.global.nc`) for them.
    let readonly = ctx.create_enum_attribute(inkwell::attributes::Attribute::get_named_enum_kind_id("readonly"), 0);
    for (i, &name) in names.iter().enumerate() {
        let p = func.get_nth_param(i as u32).ok_or_else(|| crate::CodegenError::Llvm("missing param".into()))?;
        p.set_name(name);
        if pointer(name) {
            func.add_attribute(AttributeLoc::Param(i as u32), noalias);
        }
        if super::TABLE_PARAMS.contains(&name) {
            func.add_attribute(AttributeLoc::Param(i as u32), readonly);
        }
    }
    Ok(func)
}

/// A special register (`llvm.nvvm.read.ptx.sreg.*`).
pub fn sreg<'ctx>(module: &Module<'ctx>, b: &inkwell::builder::Builder<'ctx>, name: &str) -> Res<IntValue<'ctx>> {
    let f = super::intrinsics::declare(module, name, &[])?;
    match b.build_call(f, &[], "")?.try_as_basic_value() {
        inkwell::values::ValueKind::Basic(v) => Ok(v.into_int_value()),
        _ => Err(crate::CodegenError::Llvm(format!("{name} returned no value"))),
    }
}

pub fn lower<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, program: &Program) -> Res<()> {
    let i32t = ctx.i32_type();
    let bitmaps = program.reads_bitmaps();
    let names = super::kernel_params(program);
    let is_pointer = |n: &str| {
        let i = names.iter().position(|&m| m == n).unwrap_or(0);
        i < 5 || (i >= super::KERNEL_PARAMS.len() && n != "compressed")
    };
    let func = entry(ctx, module, &program.name, &names, &is_pointer, (program.threads(), program.min_ctas_per_sm))?;
    let smem = module.add_global(ctx.i8_type().array_type(0), Some(AddressSpace::from(SHARED)), "smem");
    smem.set_linkage(Linkage::External);
    // wgmma descriptors and TMA's 128-byte swizzle assume tiles start on 1024-byte boundaries
    // (`passes::smem` aligns offsets; this aligns the base).
    smem.set_alignment(1024);

    let b = ctx.create_builder();
    b.position_at_end(ctx.append_basic_block(func, "entry"));
    let param = |i: u32| func.get_nth_param(i).ok_or_else(|| crate::CodegenError::Llvm("missing param".into()));
    let ptr = |i: u32| param(i).map(|p| p.into_pointer_value());
    let int = |i: u32| param(i).map(|p| p.into_int_value());
    let sreg = |name: &str| sreg(module, &b, name);
    let tid = sreg("llvm.nvvm.read.ptx.sreg.tid.x")?;
    let lane = b.build_and(tid, i32t.const_int(31, false), "lane")?;
    let lane = Lane {
        tid,
        warp: b.build_right_shift(tid, i32t.const_int(5, false), false, "warp")?,
        lane,
        g: b.build_right_shift(lane, i32t.const_int(2, false), false, "g")?,
        t: b.build_and(lane, i32t.const_int(3, false), "t")?,
    };
    let scale = param(9)?.into_float_value();
    let log2e = ctx.f32_type().const_float(std::f64::consts::LOG2_E);
    let scale_log2 = b.build_float_mul(scale, log2e, "scale_log2")?;
    let mut vars: HashMap<Var, IntValue<'ctx>> = [
        (Var::Lane, lane.lane),
        (Var::SeqQ, int(5)?),
        (Var::SeqKv, int(6)?),
        (Var::Heads, int(7)?),
        (Var::KvHeads, int(8)?),
        (Var::Grid(0), int(10)?),
        (Var::Grid(1), int(11)?),
        (Var::Grid(2), int(12)?),
        (Var::Cta(0), sreg("llvm.nvvm.read.ptx.sreg.ctaid.x")?),
        (Var::Cta(1), sreg("llvm.nvvm.read.ptx.sreg.ctaid.y")?),
        (Var::Cta(2), sreg("llvm.nvvm.read.ptx.sreg.ctaid.z")?),
        (Var::Batch, sreg("llvm.nvvm.read.ptx.sreg.nctaid.z")?),
        (Var::Splits, sreg("llvm.nvvm.read.ptx.sreg.nctaid.x")?),
    ]
    .into_iter()
    .collect();
    let mut tables = HashMap::new();
    for table in crate::ir::Table::ALL {
        if let Some(i) = names.iter().position(|&n| n == table.name()) {
            tables.insert(table, ptr(i as u32)?);
        }
    }
    let caches = if bitmaps {
        let n = super::KERNEL_PARAMS.len() as u32;
        let cache = |at: u32| -> Res<CacheParams<'ctx>> {
            Ok(CacheParams { bitmaps: ptr(at)?, offsets: ptr(at + 1)?, values: ptr(at + 2)?, head_base: ptr(at + 3)? })
        };
        vars.insert(Var::Compressed, int(n + 8)?);
        Some([cache(n)?, cache(n + 4)?])
    } else {
        None
    };
    let scales = match names.iter().position(|&n| n == super::SCALE_PARAMS[0]) {
        Some(at) => Some([ptr(at as u32)?, ptr(at as u32 + 1)?, ptr(at as u32 + 2)?, ptr(at as u32 + 3)?]),
        None => None,
    };
    let params = Params { q: ptr(0)?, k: ptr(1)?, v: ptr(2)?, o: ptr(3)?, lse: ptr(4)?, scale, scale_log2, caches, tables, scales };

    let mut l = Lowerer {
        ctx,
        module,
        b,
        func,
        program,
        params,
        lane,
        smem: smem.as_pointer_value(),
        vars,
        frags: Vec::new(),
        async_proxy_reads: uses_wgmma(&program.body),
        loops: Default::default(),
    };
    l.frags = program
        .frags
        .iter()
        .map(|f| {
            let ty: inkwell::types::BasicTypeEnum = match f.kind {
                crate::ir::FragKind::Operand => i32t.into(),
                _ => ctx.f32_type().into(),
            };
            vec![undef(ty); program.frag_registers(f.kind, f.cols) as usize]
        })
        .collect();
    l.block(&program.body)?;
    l.b.build_return(None)?;
    Ok(())
}

fn uses_wgmma(body: &[Stmt]) -> bool {
    body.iter().any(|s| match s {
        Stmt::Mma { engine, .. } => *engine == MmaEngine::Wgmma,
        Stmt::For { body, .. } | Stmt::If { body, .. } | Stmt::VisitTiles { body, .. } => uses_wgmma(body),
        _ => false,
    })
}

fn undef(ty: inkwell::types::BasicTypeEnum<'_>) -> inkwell::values::BasicValueEnum<'_> {
    match ty {
        inkwell::types::BasicTypeEnum::IntType(t) => t.get_undef().as_basic_value_enum(),
        inkwell::types::BasicTypeEnum::FloatType(t) => t.get_undef().as_basic_value_enum(),
        other => other.const_zero(),
    }
}
