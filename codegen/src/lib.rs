//! Codegen: kernel description → tile IR → passes → LLVM IR → PTX, plus a CPU interpreter of the
//! tile IR, a float64 reference, and the tools that check PTX without a GPU.

pub mod canon;
pub mod interp;
pub mod ir;
pub mod passes;
pub mod ptxas;
pub mod reference;
pub mod semantics;

use tessera_desc::{Config, KernelDesc};

/// The tile program of a kernel at a config, after every pass: what the interpreter runs and
/// the LLVM lowering consumes.
pub fn tile_program(desc: &KernelDesc, cfg: &Config) -> Result<ir::Program, String> {
    desc.check_config(cfg).map_err(|e| e.to_string())?;
    passes::run_all(ir::from_desc::build(desc, cfg))
}
