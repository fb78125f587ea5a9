//! Codegen: kernel description → tile IR → passes → LLVM IR → PTX, plus a CPU interpreter of the
//! tile IR, a float64 reference, and the tools that check PTX without a GPU.

pub mod canon;
pub mod cost;
pub mod format;
mod error;
pub mod interp;
pub mod ir;
mod llvm;
pub mod passes;
pub mod ptxas;
pub mod reference;
pub mod semantics;
mod target;

pub use error::CodegenError;
pub use llvm::{
    COLSUM_PARAMS, COMPRESS_PARAMS, COMPRESS_THREADS, KERNEL_PARAMS, LISTS_PARAMS, MEAN_PARAMS, QMK_PAD, QUANT_K_PARAMS, QUANT_Q_PARAMS,
    QUANT_THREADS, SALE_ENTRIES, SALE_THREADS, SCALE_PARAMS, TABLE_PARAMS, THETA_PARAMS, compress_entry, kernel_params, quantize_entries,
};
pub use target::Target;
use tessera_desc::{Config, KernelDesc};

/// A hash of this crate's source, for keys of caches that hold generated code.
pub const FINGERPRINT: &str = env!("TESSERA_CODEGEN_FINGERPRINT");

/// What `emit` produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The tile program after every pass.
    Ir,
    /// Optimised LLVM IR.
    Llvm,
    Ptx,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Ir, Stage::Llvm, Stage::Ptx];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Ir => "ir",
            Stage::Llvm => "llvm",
            Stage::Ptx => "ptx",
        }
    }

    pub fn parse(name: &str) -> Option<Stage> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The tile program of a kernel at a config, after every pass: what the interpreter runs and
/// the LLVM lowering consumes.
pub fn tile_program(desc: &KernelDesc, cfg: &Config) -> Result<ir::Program, CodegenError> {
    desc.check_config(cfg)?;
    passes::run_all(ir::from_desc::build(desc, cfg)).map_err(CodegenError::Ir)
}

/// The decode program of a `visit = dense`, `load = bitmap(k, v)` kernel (`ir::decode`): one
/// query token per head against a Mustafar cache, split over CTAs, after every pass.
pub fn decode_program(desc: &KernelDesc, cfg: &Config) -> Result<ir::Program, CodegenError> {
    desc.check_config(cfg)?;
    passes::run_all(ir::decode::build(desc, cfg).map_err(CodegenError::Ir)?).map_err(CodegenError::Ir)
}

/// The block-selection program of a block-sparse kernel (`ir::select`): SALE's kept flag per
/// visible tile from `scores` (exact, or the int8 estimate) and per-row thresholds, after
/// every pass.
pub fn select_program(desc: &KernelDesc, cfg: &Config, scores: ir::select::Scores) -> Result<ir::Program, CodegenError> {
    desc.check_config(cfg)?;
    passes::run_all(ir::select::build(desc, cfg, scores).map_err(CodegenError::Ir)?).map_err(CodegenError::Ir)
}

/// The program a kernel is lowered from: a bitmap-load kernel is a decode kernel (the
/// prefill-shaped program of `tile_program` reads bitmap tiles only in the interpreter).
pub fn kernel_program(desc: &KernelDesc, cfg: &Config) -> Result<ir::Program, CodegenError> {
    if let tessera_desc::Load::Bitmap(_) = desc.load { decode_program(desc, cfg) } else { tile_program(desc, cfg) }
}

/// The program that the lowering for `target` consumes: `kernel_program` with the target's
/// instructions selected.
pub fn target_program(desc: &KernelDesc, cfg: &Config, target: Target) -> Result<ir::Program, CodegenError> {
    passes::engine::select(kernel_program(desc, cfg)?, target).map_err(CodegenError::Ir)
}

/// The text of one stage of a kernel at a config, for a target.
pub fn emit(desc: &KernelDesc, cfg: &Config, target: Target, stage: Stage) -> Result<String, CodegenError> {
    let program = target_program(desc, cfg, target)?;
    match stage {
        Stage::Ir => Ok(program.to_string()),
        Stage::Llvm => llvm::compile(&program, target, llvm::Output::LlvmIr),
        Stage::Ptx => llvm::compile(&program, target, llvm::Output::Ptx),
    }
}

/// The merge entry's name of a split-KV decode kernel (`kernel_program` of a bitmap-load
/// kernel), in the same module as its decode entry.
pub fn merge_entry_name(desc: &KernelDesc) -> String {
    llvm::merge_name(desc.name)
}

/// PTX of Mustafar's GPU pruning + compression for `head_dim` (entry `compress_entry`).
pub fn compress_ptx(head_dim: u32, target: Target) -> Result<String, CodegenError> {
    llvm::compile_compress(head_dim, target)
}

/// PTX of the entries that turn SALE's selection votes into block lists on the GPU
/// (`SALE_ENTRIES`: thresholds, forced-only lists, selected lists).
pub fn sale_ptx(target: Target) -> Result<String, CodegenError> {
    llvm::compile_sale(target)
}

/// PTX of SALE's int8 quantization of Q and K for `head_dim`, bf16 and f16 (entries
/// `quantize_entries`; the values `format::smoothed::SmoothedInt8` defines).
pub fn quantize_ptx(head_dim: u32, target: Target) -> Result<String, CodegenError> {
    llvm::compile_quantize(head_dim, target)
}

/// The PTX of a tile program built by hand or by one of the builders (`select_program`, ...),
/// for `target`.
pub fn compile_program(program: &ir::Program, target: Target) -> Result<String, CodegenError> {
    llvm::compile(program, target, llvm::Output::Ptx)
}

/// The PTX entry point's name for a kernel: its name, so one module per (kernel, config).
pub fn entry_name(desc: &KernelDesc) -> &'static str {
    desc.name
}
