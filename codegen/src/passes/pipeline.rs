//! Software pipelining of a tile loop's loads over `stages` shared-memory buffers.
//!
//! Input (from `ir::from_desc`): `for j { copies of tile j; commit; wait 0; barrier; compute;
//! barrier }`, correct but with every load exposed. Output, for S stages: a prologue that issues
//! tiles `begin..begin+S-1`, then per iteration `wait S-2; barrier; issue tile j+S-1; commit;
//! compute on stage (j-begin) % S`. Groups are committed even when empty so that the
//! `wait S-2` count stays uniform in the tail; the barrier at the top of iteration j both
//! publishes tile j and proves every warp finished reading the stage that tile j+S-1 overwrites.

use crate::ir::{BufId, Expr, Operand, Program, Stmt, Var};

pub fn pipeline(mut program: Program) -> Result<Program, String> {
    let mut staged: Vec<(BufId, u32)> = Vec::new();
    let body = std::mem::take(&mut program.body);
    program.body = crate::passes::rewrite(body, &mut |stmt| match stmt {
        Stmt::For { var, begin, end, stages, body } if stages > 1 => {
            let (stmts, bufs) = pipeline_loop(var, begin, end, stages, body)?;
            staged.extend(bufs.into_iter().map(|b| (b, stages)));
            Ok(stmts)
        }
        other => Ok(vec![other]),
    })?;
    for (buf, stages) in staged {
        program.shared[buf.0].stages = stages;
    }
    Ok(program)
}

/// Splits the loop body into its loads (copies before the first wait) and its compute.
fn split_loads(body: Vec<Stmt>) -> Result<(Vec<Stmt>, Vec<Stmt>), String> {
    let shape_error = || {
        "pipeline: loop body must start with `copy..; commit; wait 0; barrier` and end with \
         `barrier`"
            .to_string()
    };
    let n_copies = body.iter().take_while(|s| matches!(s, Stmt::Copy { .. })).count();
    let sync = body.get(n_copies..n_copies + 3).ok_or_else(shape_error)?;
    if n_copies == 0
        || !matches!(sync, [Stmt::Commit, Stmt::Wait { pending: 0 }, Stmt::Barrier])
        || !matches!(body.last(), Some(Stmt::Barrier))
    {
        return Err(shape_error());
    }
    let mut body = body;
    body.pop();
    let compute = body.split_off(n_copies + 3);
    body.truncate(n_copies);
    Ok((body, compute))
}

fn pipeline_loop(
    var: Var,
    begin: Expr,
    end: Expr,
    stages: u32,
    body: Vec<Stmt>,
) -> Result<(Vec<Stmt>, Vec<BufId>), String> {
    let (loads, compute) = split_loads(body)?;
    let s = stages as i32;
    let bufs: Vec<BufId> = loads
        .iter()
        .filter_map(|l| match l {
            Stmt::Copy { dst, .. } => Some(*dst),
            _ => None,
        })
        .collect();
    // The loads of tile `tile` into `stage`.
    let issue = |tile: Expr, stage: Expr| -> Vec<Stmt> {
        loads
            .iter()
            .map(|l| match l {
                Stmt::Copy { dst, src, engine, .. } => {
                    Stmt::Copy { dst: *dst, stage: stage.clone(), src: src.subst(var, &tile), engine: *engine }
                }
                other => other.clone(),
            })
            .collect()
    };

    let mut out = Vec::new();
    for k in 0..s - 1 {
        let tile = begin.clone().add(k);
        out.push(Stmt::If { cond: tile.clone().lt(end.clone()), body: issue(tile, k.into()) });
        out.push(Stmt::Commit);
    }

    let j = Expr::var(var);
    let ahead = j.clone().add(s - 1);
    let ahead_stage = j.clone().sub(begin.clone()).add(s - 1).rem(s);
    let stage = j.clone().sub(begin.clone()).rem(s);
    let mut loop_body = vec![
        Stmt::Wait { pending: stages - 2 },
        Stmt::Barrier,
        Stmt::If { cond: ahead.clone().lt(end.clone()), body: issue(ahead, ahead_stage) },
        Stmt::Commit,
    ];
    loop_body.extend(compute.into_iter().map(|st| restage(st, &bufs, &stage)));
    out.push(Stmt::For { var, begin, end, stages: 1, body: loop_body });
    Ok((out, bufs))
}

/// Points reads of the pipelined buffers at this iteration's stage.
fn restage(stmt: Stmt, bufs: &[BufId], stage: &Expr) -> Stmt {
    let fix = |op: Operand| match op {
        Operand::Shared { buf, kn, part, .. } if bufs.contains(&buf) => {
            Operand::Shared { buf, stage: stage.clone(), kn, part }
        }
        other => other,
    };
    match stmt {
        Stmt::Mma { acc, a, b, engine } => Stmt::Mma { acc, a: fix(a), b: fix(b), engine },
        Stmt::If { cond, body } => {
            Stmt::If { cond, body: body.into_iter().map(|s| restage(s, bufs, stage)).collect() }
        }
        other => other,
    }
}
