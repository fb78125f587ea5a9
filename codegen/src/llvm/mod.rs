//! Lowering of a tile program to LLVM IR for the NVPTX backend, and PTX emission.

mod arith;
mod copy;
mod intrinsics;
mod kernel;
mod layout;
mod lower;
mod mma;
mod softmax;
mod store;

use std::sync::Once;

use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{CodeModel, FileType, InitializationConfig, RelocMode, TargetTriple};

use crate::{CodegenError, Target, ir::Program};

/// Kernel parameters in launch order: five device pointers (q, k, v, o: element type; lse: f32,
/// null when not requested), four i32 sizes, and the f32 softmax scale.
pub const KERNEL_PARAMS: [&str; 10] =
    ["q", "k", "v", "o", "lse", "seq_q", "seq_kv", "heads", "kv_heads", "scale"];

/// 32-bit shared-memory pointers: every ldmatrix/cp.async address the loop keeps live costs one
/// register instead of two. LLVM only offers this as a command-line option, read when the
/// target machine computes its data layout, so it is set once before the first one is made.
fn use_short_shared_pointers() {
    let args = [c"tessera".as_ptr(), c"-nvptx-short-ptr".as_ptr()];
    // SAFETY: two valid NUL-terminated strings, a null overview; called once (under `Once`)
    // before any target machine exists, as LLVM requires of option parsing.
    unsafe { llvm_sys::support::LLVMParseCommandLineOptions(2, args.as_ptr(), std::ptr::null()) };
}

/// What to hand back: printing a large module's IR costs a noticeable share of codegen time,
/// so it is printed only when asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Output {
    LlvmIr,
    Ptx,
}

pub fn compile(program: &Program, target: Target, output: Output) -> Result<String, CodegenError> {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        inkwell::targets::Target::initialize_nvptx(&InitializationConfig::default());
        use_short_shared_pointers();
    });
    let llvm = |e: inkwell::support::LLVMString| CodegenError::Llvm(e.to_string());

    let ctx = Context::create();
    let module = ctx.create_module(&program.name);
    let triple = TargetTriple::create("nvptx64-nvidia-cuda");
    let machine = inkwell::targets::Target::from_triple(&triple)
        .map_err(llvm)?
        .create_target_machine(
            &triple,
            target.name(),
            target.ptx_feature(),
            OptimizationLevel::Aggressive,
            RelocMode::Default,
            CodeModel::Default,
        )
        .ok_or_else(|| CodegenError::Llvm(format!("no NVPTX target machine for {target}")))?;
    module.set_triple(&triple);
    module.set_data_layout(&machine.get_target_data().get_data_layout());

    kernel::lower(&ctx, &module, program)?;
    module.verify().map_err(llvm)?;
    module.run_passes("default<O3>", &machine, PassBuilderOptions::create()).map_err(llvm)?;
    if output == Output::LlvmIr {
        return Ok(module.print_to_string().to_string());
    }
    let ptx = machine.write_to_memory_buffer(&module, FileType::Assembly).map_err(llvm)?;
    Ok(String::from_utf8_lossy(ptx.as_slice()).into_owned())
}
