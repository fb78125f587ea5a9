//! Passes over the tile IR, in pipeline order. Each takes a program and returns a program that
//! the interpreter can still run, so each pass is tested by running before and after it.

pub mod pipeline;
pub mod smem;
pub mod visit;
pub mod window;

use crate::ir::Program;

/// The standard pass order from `ir::from_desc::build` to a program ready to lower.
pub fn run_all(program: Program) -> Result<Program, String> {
    let program = visit::lower(program)?;
    let program = pipeline::pipeline(program)?;
    Ok(smem::place(program))
}

/// Rewrites every statement list of `body`, depth first, with `f`.
pub(crate) fn rewrite(body: Vec<crate::ir::Stmt>, f: &mut dyn FnMut(crate::ir::Stmt) -> Vec<crate::ir::Stmt>) -> Vec<crate::ir::Stmt> {
    use crate::ir::Stmt;
    body.into_iter()
        .flat_map(|stmt| {
            let stmt = match stmt {
                Stmt::For { var, begin, end, stages, body } => {
                    Stmt::For { var, begin, end, stages, body: rewrite(body, f) }
                }
                Stmt::If { cond, body } => Stmt::If { cond, body: rewrite(body, f) },
                Stmt::VisitTiles { visit, var, row0, body } => {
                    Stmt::VisitTiles { visit, var, row0, body: rewrite(body, f) }
                }
                other => other,
            };
            f(stmt)
        })
        .collect()
}
