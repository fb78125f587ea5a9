//! Lowering of a tile program to LLVM IR for the NVPTX backend, and PTX emission.

mod arith;
mod compress;
mod bitmap;
mod copy;
mod intrinsics;
mod kernel;
mod layout;
mod lower;
mod memo;
mod merge;
pub use merge::name as merge_name;
mod mma;
mod parts;
mod quantize;
mod sale;
mod carried;
mod select;
mod softmax;
mod standalone;
mod store;
mod wgmma;

use std::sync::Once;

use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{CodeModel, FileType, InitializationConfig, RelocMode, TargetTriple};

use crate::{CodegenError, Target, ir::Program};

/// Kernel parameters in launch order: five device pointers (q, k, v, o: element type; lse: f32,
/// null when not requested), four i32 sizes, the f32 softmax scale, and the i32 grid extents of
/// a neighborhood kernel's tokens (`seq_q = seq_kv = grid_x·grid_y·grid_z`; unused otherwise).
pub const KERNEL_PARAMS: [&str; 13] = [
    "q", "k", "v", "o", "lse", "seq_q", "seq_kv", "heads", "kv_heads", "scale", "grid_x", "grid_y", "grid_z",
];

/// Parameters after `KERNEL_PARAMS` of a kernel that reads bitmap-compressed caches
/// (`crate::format::BitmapCache`'s arrays for K, then for V, as device pointers, each values
/// array followed by 16 readable bytes, which a zero-size copy of an empty last tile addresses; then the
/// i32 compressed tokens per plane). Such a kernel is a decode kernel (`ir::decode`): `heads` is
/// `kv_heads`, `seq_q` the GQA group, `seq_kv` the dense window's tokens, `o`/`lse` the split
/// workspace, and the grid's x extent the number of splits.
pub const BITMAP_PARAMS: [&str; 9] = [
    "k_bitmaps", "k_offsets", "k_values", "k_head_base", "v_bitmaps", "v_offsets", "v_values", "v_head_base", "compressed",
];

pub use sale::{LISTS_PARAMS, NAMES as SALE_ENTRIES, SALE_THREADS, THETA_PARAMS};
pub use compress::{COMPRESS_PARAMS, COMPRESS_THREADS, name as compress_entry};
pub use quantize::{COLSUM_PARAMS, MEAN_PARAMS, QUANT_K_PARAMS, QUANT_Q_PARAMS, QUANT_THREADS, names as quantize_entries};

/// Parameters of a decode kernel's merge entry (`<name>_merge`, see `merge`): the split
/// workspace, the output (`[batch, heads, 1, head_dim]` of the element type) and LSE (f32,
/// null when not requested), the number of splits and the GQA group.
pub const MERGE_PARAMS: [&str; 6] = ["o_split", "lse_split", "o", "lse", "splits", "group"];
/// Parameters after `KERNEL_PARAMS` (and `BITMAP_PARAMS`, if any) of a kernel that reads
/// launch tables (a block-sparse visit): int32 device pointers, in `ir::Table::ALL` order.
/// Other kernels keep their parameters, so their launches do not change.
pub const TABLE_PARAMS: [&str; 2] = ["kv_list", "kv_count"];

/// Parameters after `KERNEL_PARAMS` of a low-bit selection program (`ir::Operands::Int8`,
/// whose q and k are int8 codes): f32 device pointers to the scales and corrections of
/// `ir::Tensor::{QScale, KScale, Qmk, QkMean}`, in that order. `qmk` is read up to `block_kv - 1`
/// elements past its last token (a tile's columns without bounds checks), so its allocation
/// extends that far (`QMK_PAD`).
pub const SCALE_PARAMS: [&str; 4] = ["q_scale", "k_scale", "qmk", "qk_mean"];

/// The elements past its end that a `qmk` allocation must have: the largest KV tile, less one.
pub const QMK_PAD: usize = 255;

/// The parameter names of `program`'s attention kernel, in launch order.
pub fn kernel_params(program: &Program) -> Vec<&'static str> {
    let bitmaps = if program.reads_bitmaps() { &BITMAP_PARAMS[..] } else { &[] };
    let tables = if program.reads_tables() { &TABLE_PARAMS[..] } else { &[] };
    let scales = if program.reads_scales() { &SCALE_PARAMS[..] } else { &[] };
    KERNEL_PARAMS.iter().chain(bitmaps).chain(tables).chain(scales).copied().collect()
}

/// The IR passes before the NVPTX backend, chosen by the module's size. `default<O3>` gives the
/// fastest kernels (on an H100 the dense D=128 winner ran 5.7% faster than with the lean list),
/// but its time grows faster than linearly with the fully unrolled tile code: past
/// `O3_MAX_INSTRUCTIONS` it alone would exceed the 100 ms codegen budget per config on a 2-core
/// CPU. Larger modules get the lean list: redundancy removal and hoisting of address arithmetic
/// out of the KV loop, which ptxas cannot do across the loop as well, and nothing else.
const O3_MAX_INSTRUCTIONS: usize = 5300;
const O3: &str = "default<O3>";
// `no-verify-fixpoint`: a second InstCombine round may still find work on large modules, and
// the verifying variant aborts the process (LLVM_ERROR) when it does.
const LEAN: &str = "function(early-cse,instcombine<no-verify-fixpoint>,simplifycfg,loop-mssa(licm),early-cse,instcombine<no-verify-fixpoint>)";

fn passes(module: &inkwell::module::Module<'_>) -> &'static str {
    let instructions: usize = module
        .get_functions()
        .flat_map(|f| f.get_basic_block_iter())
        .map(|b| b.get_instructions().count())
        .sum();
    if instructions <= O3_MAX_INSTRUCTIONS { O3 } else { LEAN }
}

/// 32-bit shared-memory pointers: every ldmatrix/cp.async address the loop keeps live costs one
/// register instead of two. LLVM only offers this as a command-line option, read when the
/// target machine computes its data layout, so it is set once before the first one is made.
///
/// `-disable-lsr`: loop strength reduction turned the pipeline's `(j - begin) % stages` stage
/// offsets into extra induction variables, costing up to 40 registers with 3 stages and a third
/// of the backend's time; ptxas derives the addresses as well without them.
fn set_backend_options() {
    let args = [c"tessera".as_ptr(), c"-nvptx-short-ptr".as_ptr(), c"-disable-lsr".as_ptr()];
    // SAFETY: valid NUL-terminated strings, a null overview; called once (under `Once`)
    // before any target machine exists, as LLVM requires of option parsing.
    unsafe { llvm_sys::support::LLVMParseCommandLineOptions(args.len() as i32, args.as_ptr(), std::ptr::null()) };
}

/// What to hand back: printing a large module's IR costs a noticeable share of codegen time,
/// so it is printed only when asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Output {
    LlvmIr,
    Ptx,
}

pub fn compile(program: &Program, target: Target, output: Output) -> Result<String, CodegenError> {
    // wgmma modules take the lean list at any size: `default<O3>` spent 5× the lean list's
    // time on them (58 vs 11 ms for dense d128 128×64, 4 warps, on the 2-core build machine,
    // where the backend takes another 50), which put the 4-warp wgmma twins over the 100 ms
    // codegen budget; what O3 buys them on a GPU is not measured.
    let wgmma = program.any_stmt(&|s| matches!(s, crate::ir::Stmt::Mma { engine: crate::ir::MmaEngine::Wgmma, .. }));
    compile_module(&program.name, target, output, wgmma, |ctx, module| {
        kernel::lower(ctx, module, program)?;
        if program.splits_keys() {
            merge::lower(ctx, module, program)?;
        }
        Ok(())
    })
}

/// The PTX of the Mustafar compression kernel for `head_dim` (`compress`).
pub fn compile_compress(head_dim: u32, target: Target) -> Result<String, CodegenError> {
    compile_module("mustafar_compress", target, Output::Ptx, false, |ctx, module| compress::lower(ctx, module, head_dim))
}

/// The PTX of SALE's threshold and list entries (`sale`).
pub fn compile_sale(target: Target) -> Result<String, CodegenError> {
    compile_module("sale_select", target, Output::Ptx, false, sale::lower)
}

/// The PTX of SALE's int8 quantization kernels for `head_dim` (`quantize`), both dtypes.
pub fn compile_quantize(head_dim: u32, target: Target) -> Result<String, CodegenError> {
    compile_module("sale_quantize", target, Output::Ptx, false, |ctx, module| quantize::lower(ctx, module, head_dim))
}

/// A module built by `build`, verified, optimised (with the lean pass list if `lean`, else by
/// its size) and printed for `target`.
fn compile_module(
    name: &str,
    target: Target,
    output: Output,
    lean: bool,
    build: impl for<'ctx> FnOnce(&'ctx Context, &inkwell::module::Module<'ctx>) -> Result<(), CodegenError>,
) -> Result<String, CodegenError> {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        inkwell::targets::Target::initialize_nvptx(&InitializationConfig::default());
        set_backend_options();
    });
    let llvm = |e: inkwell::support::LLVMString| CodegenError::Llvm(e.to_string());

    let ctx = Context::create();
    let module = ctx.create_module(name);
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

    build(&ctx, &module)?;
    module.verify().map_err(llvm)?;
    let passes = if lean { LEAN } else { passes(&module) };
    module.run_passes(passes, &machine, PassBuilderOptions::create()).map_err(llvm)?;
    if output == Output::LlvmIr {
        return Ok(module.print_to_string().to_string());
    }
    let ptx = machine.write_to_memory_buffer(&module, FileType::Assembly).map_err(llvm)?;
    Ok(String::from_utf8_lossy(ptx.as_slice()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_desc::{Config, Dtype, KernelDesc, Layout, Load, Param, Schedule, Visit};

    /// The measured dense D=128 winner (and catalog default) keeps `default<O3>`, which ran it
    /// 5-8% faster on an H100 than the lean list: a lowering change that grows its module past
    /// the threshold must be a conscious decision.
    #[test]
    fn the_dense_winner_gets_o3() {
        let desc = KernelDesc {
            name: "t",
            head_dim: 128,
            dtype: Dtype::Bf16,
            layout: Layout::Bhsd,
            visit: Visit::Dense,
            load: Load::Dense,
            schedule: Schedule::line(Param::Fixed(128), Param::Fixed(64), Param::Fixed(4), Param::Fixed(2)),
        };
        let program = crate::tile_program(&desc, &Config::line(128, 64, 4, 2)).unwrap();
        let ctx = Context::create();
        let module = ctx.create_module("t");
        kernel::lower(&ctx, &module, &program).unwrap();
        assert_eq!(passes(&module), O3);
    }
}
