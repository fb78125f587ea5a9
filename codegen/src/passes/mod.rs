//! Passes over the tile IR, in pipeline order. Each takes a program and returns a program that
//! the interpreter can still run, so each pass is tested by running before and after it.

pub mod engine;
pub mod pipeline;
pub mod smem;
pub mod visit;
pub mod window;

use crate::ir::{Program, Stmt};

/// The standard pass order from `ir::from_desc::build` to a program ready to lower.
pub fn run_all(program: Program) -> Result<Program, String> {
    let program = visit::lower(program)?;
    let program = pipeline::pipeline(program)?;
    Ok(smem::place(program))
}

/// Rewrites every statement list of `body`, depth first, with `f`; the first error stops it.
pub(crate) fn rewrite(body: Vec<Stmt>, f: &mut dyn FnMut(Stmt) -> Result<Vec<Stmt>, String>) -> Result<Vec<Stmt>, String> {
    let mut out = Vec::with_capacity(body.len());
    for stmt in body {
        let stmt = match stmt {
            Stmt::For { var, begin, end, stages, body } => {
                Stmt::For { var, begin, end, stages, body: rewrite(body, f)? }
            }
            Stmt::If { cond, body } => Stmt::If { cond, body: rewrite(body, f)? },
            Stmt::VisitTiles { visit, var, plane, q_origin, body } => {
                Stmt::VisitTiles { visit, var, plane, q_origin, body: rewrite(body, f)? }
            }
            other => other,
        };
        out.extend(f(stmt)?);
    }
    Ok(out)
}
