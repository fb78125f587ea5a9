//! Codegen: kernel description → tile IR → passes → LLVM IR → PTX, plus a CPU interpreter of the
//! tile IR, a float64 reference, and the tools that check PTX without a GPU.

pub mod canon;
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
pub use llvm::{KERNEL_PARAMS, TABLE_PARAMS, kernel_params};
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

/// The tile program that the lowering for `target` consumes: `tile_program` with the target's
/// instructions selected.
pub fn target_program(desc: &KernelDesc, cfg: &Config, target: Target) -> Result<ir::Program, CodegenError> {
    passes::engine::select(tile_program(desc, cfg)?, target).map_err(CodegenError::Ir)
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

/// The PTX entry point's name for a kernel: its name, so one module per (kernel, config).
pub fn entry_name(desc: &KernelDesc) -> &'static str {
    desc.name
}
