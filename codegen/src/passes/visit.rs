//! Visit-set lowering: `VisitTiles` becomes a loop over exactly the KV tiles the query tile can
//! see, and `VisitMask` becomes an element mask applied only on tiles that are partly visible.

use tessera_desc::Visit;

use crate::ir::{Expr, Program, Stmt, Var};

/// Query `row` sees key `col` (bottom-right aligned causal: `col <= row + seq_kv - seq_q`).
pub fn keep(visit: Visit) -> Result<Expr, String> {
    let in_bounds = Expr::var(Var::Col).lt(Var::SeqKv);
    Ok(match visit {
        Visit::Dense => in_bounds,
        Visit::Causal => in_bounds.and(Expr::var(Var::Col).le(causal_limit(Var::Row.into()))),
        _ => return Err(unsupported(visit)),
    })
}

/// The last key a query row may see under the causal rule.
fn causal_limit(row: Expr) -> Expr {
    row.add(Var::SeqKv).sub(Var::SeqQ)
}

/// KV tiles `0..end` that rows `q0..q0 + block_q` can see.
pub fn tile_end(visit: Visit, q0: &Expr, block_q: u32, block_kv: u32) -> Result<Expr, String> {
    let all = Expr::var(Var::SeqKv).ceil_div(block_kv as i32);
    Ok(match visit {
        Visit::Dense => all,
        Visit::Causal => {
            // Keys below the last real row's limit; padding rows past seq_q ask for nothing.
            let rows_end = q0.clone().add(block_q as i32).min(Var::SeqQ);
            let keys = causal_limit(rows_end).max(0);
            keys.ceil_div(block_kv as i32).min(all)
        }
        _ => return Err(unsupported(visit)),
    })
}

/// Tile `j` needs the element mask iff some (row, key) pair in it is not visible.
pub fn tile_is_partial(visit: Visit, q0: &Expr, j: &Expr, block_kv: u32) -> Result<Expr, String> {
    let tile_end = j.clone().add(1).mul(block_kv as i32);
    let past_end = Expr::var(Var::SeqKv).lt(tile_end.clone());
    Ok(match visit {
        Visit::Dense => past_end,
        // The tile's first row has the tightest causal limit.
        Visit::Causal => past_end.or(causal_limit(q0.clone()).lt(tile_end.sub(1))),
        _ => return Err(unsupported(visit)),
    })
}

fn unsupported(visit: Visit) -> String {
    format!("visit set `{}` is not supported by this version of tessera-codegen", visit.name())
}

pub fn lower(mut program: Program) -> Result<Program, String> {
    let (bq, bkv, stages) = (program.config.block_q, program.config.block_kv, program.config.stages);
    let mut error = None;
    let body = std::mem::take(&mut program.body);
    program.body = crate::passes::rewrite(body, &mut |stmt| match stmt {
        Stmt::VisitTiles { visit, var, row0, body } => {
            let lowered = lower_visit(visit, var, &row0, body, bq, bkv, stages);
            lowered.unwrap_or_else(|e| {
                error = Some(e);
                Vec::new()
            })
        }
        other => vec![other],
    });
    match error {
        Some(e) => Err(e),
        None => Ok(program),
    }
}

fn lower_visit(
    visit: Visit,
    var: Var,
    q0: &Expr,
    body: Vec<Stmt>,
    bq: u32,
    bkv: u32,
    stages: u32,
) -> Result<Vec<Stmt>, String> {
    let j = Expr::var(var);
    let (keep, when) = (keep(visit)?, tile_is_partial(visit, q0, &j, bkv)?);
    let body = crate::passes::rewrite(body, &mut |s| match s {
        Stmt::VisitMask { frag, row0, col0 } => {
            vec![Stmt::Mask { frag, row0, col0, keep: keep.clone(), when: when.clone() }]
        }
        other => vec![other],
    });
    let end = tile_end(visit, q0, bq, bkv)?;
    Ok(vec![Stmt::For { var, begin: 0.into(), end, stages, body }])
}
