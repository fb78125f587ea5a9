//! Visit-set lowering: `VisitTiles` becomes a loop over exactly the KV tiles the query tile can
//! see, and `VisitMask` becomes an element mask applied only on tiles that are partly visible.

use tessera_desc::Visit;

use super::window::AxisRule;
use crate::ir::{Expr, Program, Stmt, Var};

/// Query `row` sees key `col` (bottom-right aligned causal: `col <= row + seq_kv - seq_q`).
pub fn keep(visit: Visit) -> Result<Expr, String> {
    let in_bounds = Expr::var(Var::Col).lt(Var::SeqKv);
    Ok(match visit {
        Visit::Dense => in_bounds,
        Visit::Causal => in_bounds.and(Expr::var(Var::Col).le(causal_limit(Var::Row.into()))),
        Visit::Window(_) => in_bounds.and(line(visit)?.allowed(Var::Row.into(), Var::Col.into())),
        _ => return Err(unsupported(visit)),
    })
}

/// The rule of a 1-D window over the token sequence (queries and keys are the same tokens).
fn line(visit: Visit) -> Result<AxisRule, String> {
    match visit {
        Visit::Window(w) if w.dims == 1 => Ok(AxisRule { axis: w.axes[0], extent: Var::SeqKv.into() }),
        Visit::Window(w) => Err(format!(
            "{}-D windows are not lowered by this version of tessera-codegen (1-D only)",
            w.dims
        )),
        _ => Err(unsupported(visit)),
    }
}

/// The last real query row of the tile starting at `q0`.
fn last_row(q0: &Expr, block_q: u32) -> Expr {
    q0.clone().add(block_q as i32).min(Var::SeqQ).sub(1)
}

/// The last key a query row may see under the causal rule.
fn causal_limit(row: Expr) -> Expr {
    row.add(Var::SeqKv).sub(Var::SeqQ)
}

/// KV tiles `begin..end` that rows `q0..q0 + block_q` can see.
pub fn tile_range(visit: Visit, q0: &Expr, block_q: u32, block_kv: u32) -> Result<(Expr, Expr), String> {
    let all = Expr::var(Var::SeqKv).ceil_div(block_kv as i32);
    Ok(match visit {
        Visit::Dense => (0.into(), all),
        Visit::Causal => {
            // Keys below the last real row's limit; padding rows past seq_q ask for nothing.
            let rows_end = q0.clone().add(block_q as i32).min(Var::SeqQ);
            let keys = causal_limit(rows_end).max(0);
            (0.into(), keys.ceil_div(block_kv as i32).min(all))
        }
        Visit::Window(_) => {
            let (begin, end) = line(visit)?.key_span(q0, &last_row(q0, block_q));
            (begin.div(block_kv as i32), end.ceil_div(block_kv as i32).min(all))
        }
        _ => return Err(unsupported(visit)),
    })
}

/// Tile `j` needs the element mask iff some (row, key) pair in it is not visible.
pub fn tile_is_partial(visit: Visit, q0: &Expr, j: &Expr, block_q: u32, block_kv: u32) -> Result<Expr, String> {
    let tile_end = j.clone().add(1).mul(block_kv as i32);
    let past_end = Expr::var(Var::SeqKv).lt(tile_end.clone());
    Ok(match visit {
        Visit::Dense => past_end,
        // The tile's first row has the tightest causal limit.
        Visit::Causal => past_end.or(causal_limit(q0.clone()).lt(tile_end.sub(1))),
        Visit::Window(w) if w.axes[0].dilation > 1 => {
            // Dilation groups interleave, so every tile mixes visible and hidden keys.
            Expr::Const(1)
        }
        Visit::Window(_) => {
            // Windows move right with the query: the tile is inside every row's window iff it
            // starts after the last row's window start and ends before the first row's end.
            let rule = line(visit)?;
            let lg = Expr::var(Var::SeqKv);
            let latest_start = rule.start(&last_row(q0, block_q), &lg);
            let earliest_end = rule.end(q0, &lg);
            let tile_start = j.clone().mul(block_kv as i32);
            past_end.or(tile_start.lt(latest_start)).or(earliest_end.lt(tile_end))
        }
        _ => return Err(unsupported(visit)),
    })
}

fn unsupported(visit: Visit) -> String {
    format!("visit set `{}` is not supported by this version of tessera-codegen", visit.name())
}

pub fn lower(mut program: Program) -> Result<Program, String> {
    let (bq, bkv, stages) = (program.config.block_q(), program.config.block_kv(), program.config.stages);
    let body = std::mem::take(&mut program.body);
    program.body = crate::passes::rewrite(body, &mut |stmt| match stmt {
        Stmt::VisitTiles { visit, var, row0, body } => lower_visit(visit, var, &row0, body, bq, bkv, stages),
        other => Ok(vec![other]),
    })?;
    Ok(program)
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
    let (keep, when) = (keep(visit)?, tile_is_partial(visit, q0, &j, bq, bkv)?);
    let body = crate::passes::rewrite(body, &mut |s| match s {
        Stmt::VisitMask { frag, row0, col0 } => {
            Ok(vec![Stmt::Mask { frag, row0, col0, keep: keep.clone(), when: when.clone() }])
        }
        other => Ok(vec![other]),
    })?;
    let (begin, end) = tile_range(visit, q0, bq, bkv)?;
    Ok(vec![Stmt::For { var, begin, end, stages, body }])
}
