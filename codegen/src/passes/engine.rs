//! Instruction selection for tile products: the config's instruction family, checked against
//! the target, decides which tensor-core instruction each `Mma` uses. Runs last, after the
//! program's shape is final; the interpreter ignores the choice (both compute the same product
//! in f32).

use tessera_desc::Mma;

use crate::Target;
use crate::ir::{MmaEngine, Program, Stmt};

/// wgmma's canonical layout has 128-byte block rows: 64 16-bit elements, 128 int8 codes.
pub const WGMMA_BLOCK_BYTES: u32 = 128;

pub fn select(mut program: Program, target: Target) -> Result<Program, String> {
    let engine = match program.config.mma {
        Mma::Sync => return Ok(program),
        Mma::Wgmma if program.key_parts > 1 => return Err("mma = wgmma multiplies a warpgroup's rows by one B: warps that split the keys need mma.sync".into()),
        Mma::Wgmma if target.mma_families().contains(&Mma::Wgmma) => MmaEngine::Wgmma,
        Mma::Wgmma => return Err(format!("mma = wgmma needs sm_90a (Hopper); {target} has mma.sync only")),
    };
    // wgmma descriptors read the canonical 128-byte-swizzle layout: whole 128-byte block rows.
    let block_cols = WGMMA_BLOCK_BYTES / program.elem_bytes();
    if let Some(buf) = program.shared.iter().find(|b| !b.cols.is_multiple_of(block_cols)) {
        return Err(format!(
            "mma = wgmma reads tiles in 128-byte rows; {} has {} columns of {} bytes",
            buf.name,
            buf.cols,
            program.elem_bytes()
        ));
    }
    for buf in &mut program.shared {
        buf.block_cols = block_cols;
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
