//! Instruction selection for tile products: the config's instruction family, checked against
//! the target, decides which tensor-core instruction each `Mma` uses. Runs last, after the
//! program's shape is final; the interpreter ignores the choice (both compute the same product
//! in f32).

use tessera_desc::Mma;

use crate::Target;
use crate::ir::{MmaEngine, Program, Stmt};

/// 64 16-bit elements: 128-byte block rows.
pub const WGMMA_BLOCK_COLS: u32 = 64;

pub fn select(mut program: Program, target: Target) -> Result<Program, String> {
    let engine = match program.config.mma {
        Mma::Sync => return Ok(program),
        Mma::Wgmma if target.mma_families().contains(&Mma::Wgmma) => MmaEngine::Wgmma,
        Mma::Wgmma => return Err(format!("mma = wgmma needs sm_90a (Hopper); {target} has mma.sync only")),
    };
    // wgmma descriptors read the canonical 128-byte-swizzle layout.
    for buf in &mut program.shared {
        buf.block_cols = WGMMA_BLOCK_COLS;
    }
    let body = std::mem::take(&mut program.body);
    program.body = crate::passes::rewrite(body, &mut |stmt| {
        Ok(vec![match stmt {
            Stmt::Mma { acc, a, b, .. } => Stmt::Mma { acc, a, b, engine },
            other => other,
        }])
    })?;
    Ok(program)
}
