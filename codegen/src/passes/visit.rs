//! Visit-set lowering: `VisitTiles` becomes a loop over exactly the KV tiles the query tile can
//! see, and `VisitMask` becomes an element mask applied only on tiles that are partly visible.
//!
//! Tiles are boxes of the token grid (`ir::geometry`). On a line (dense, causal, 1-D windows)
//! the loop runs over a range of tiles; over a 2-D/3-D grid it runs over the box of KV tiles
//! that the query box's windows touch, flattened row-major so that one loop (and one software
//! pipeline) covers it.
//!
//! A block-sparse visit (`Visit::Blocks`) loops over its query tile's row of the launch's block
//! map instead: `for i in 0..kv_count[row]`, KV tile `kv_list[row · kv_tiles + i]`. The tile is a
//! table read inside an ordinary expression, so the pipelining pass prefetches tile `i + S - 1`
//! by the same substitution as on a range, and the masks are those of a causal (or dense) visit
//! evaluated on whichever tile the list names.

use tessera_desc::{Config, Visit, Window};

use super::window::AxisRule;
use crate::ir::geometry::TileBox;
use crate::ir::{Expr, Locals, Program, Stmt, Table, Var};

/// The query tile's and the current KV tile's geometry inside a `VisitTiles`.
struct Tiles {
    visit: Visit,
    q: TileBox,
    kv: TileBox,
    q_origin: Vec<Expr>,
    kv_origin: Vec<Expr>,
}

impl Tiles {
    fn new(visit: Visit, cfg: &Config, q_origin: Vec<Expr>) -> Tiles {
        let kv = TileBox::keys(visit, cfg);
        let kv_origin = kv.visit_origin();
        Tiles { visit, q: TileBox::queries(visit, cfg), kv, q_origin, kv_origin }
    }

    fn rule(&self, w: &Window, a: usize) -> AxisRule {
        AxisRule { axis: w.axes[a], extent: self.kv.extents[a].clone() }
    }

    /// The element masks, as (keep, when) pairs: one per axis of a window (each on the tiles
    /// partly outside along its axis, so a tile cut along one axis pays for that axis's test
    /// alone), one for other visits.
    fn masks(&self) -> Result<Vec<(Expr, Expr)>, String> {
        Ok(match self.visit {
            Visit::Window(w) => (0..self.kv.dims).map(|a| (self.axis_keep(&w, a), self.axis_partial(&w, a))).collect(),
            _ => vec![(self.keep()?, self.partial()?)],
        })
    }

    /// Query `Row` sees key `Col` (tile-local indices; bottom-right aligned causal:
    /// `key <= query + seq_kv - seq_q`), for visits other than windows.
    fn keep(&self) -> Result<Expr, String> {
        let (row, col) = (Expr::var(Var::Row), Expr::var(Var::Col));
        let in_grid = self.kv.valid(&self.kv_origin, col.clone());
        Ok(match self.visit {
            Visit::Dense => in_grid,
            Visit::Causal => self.causal_keep(in_grid, row, col),
            Visit::Blocks(b) if b.causal => self.causal_keep(in_grid, row, col),
            Visit::Blocks(_) => in_grid,
            _ => return Err(unsupported(self.visit)),
        })
    }

    /// Query `Row` sees key `Col` along axis `a` of a window, the key inside the grid there.
    fn axis_keep(&self, w: &Window, a: usize) -> Expr {
        let (row, col) = (Expr::var(Var::Row), Expr::var(Var::Col));
        let q = self.q.coord(&self.q_origin, a, row);
        let k = self.kv.coord(&self.kv_origin, a, col);
        k.clone().lt(self.kv.extents[a].clone()).and(self.rule(w, a).allowed(q, k))
    }

    fn causal_keep(&self, in_grid: Expr, row: Expr, col: Expr) -> Expr {
        let (q, k) = (self.q.token(&self.q_origin, row), self.kv.token(&self.kv_origin, col));
        in_grid.and(k.le(causal_limit(q)))
    }

    /// KV tiles `begin..end` along each axis that the query tile can see.
    fn ranges(&self) -> Result<Vec<(Expr, Expr)>, String> {
        let bkv = self.kv.shape[0] as i32;
        Ok(match self.visit {
            Visit::Dense => vec![(0.into(), self.kv.count(0))],
            Visit::Causal => {
                // Keys below the last real row's limit; padding rows past seq_q ask for nothing.
                let rows_end = self.q.last(&self.q_origin, 0).add(1);
                let keys = causal_limit(rows_end).max(0);
                vec![(0.into(), keys.ceil_div(bkv).min(self.kv.count(0)))]
            }
            Visit::Window(w) => (0..self.kv.dims)
                .map(|a| self.rule(&w, a).tile_span(a, &self.kv, &self.q_origin[a], &self.q.last(&self.q_origin, a)))
                .collect(),
            _ => return Err(unsupported(self.visit)),
        })
    }

    /// The current KV tile needs the element mask iff some (row, key) pair in it is not visible
    /// (for visits other than windows; a box of keys is inside every query's window iff it is
    /// along each axis, `axis_partial`).
    fn partial(&self) -> Result<Expr, String> {
        let tile_end = |a: usize| self.kv_origin[a].clone().add(self.kv.shape[a] as i32);
        let past_end = |a: usize| self.kv.extents[a].clone().lt(tile_end(a));
        Ok(match self.visit {
            Visit::Dense => past_end(0),
            // The tile's first row has the tightest causal limit.
            Visit::Causal => past_end(0).or(causal_limit(self.q_origin[0].clone()).lt(tile_end(0).sub(1))),
            // A listed tile may lie anywhere, the diagonal and past it included: the same test.
            Visit::Blocks(b) if b.causal => {
                past_end(0).or(causal_limit(self.q_origin[0].clone()).lt(tile_end(0).sub(1)))
            }
            Visit::Blocks(_) => past_end(0),
            _ => return Err(unsupported(self.visit)),
        })
    }

    /// Windows move right with the query: the KV tile is inside every row's window iff it
    /// starts after the last row's window start and ends before the first row's end, and lies
    /// inside the axis. In positions of the query tile's dilation group (the KV tile's too:
    /// `tile_span` visits no other group), which are the coordinates on an undilated axis.
    fn axis_partial(&self, w: &Window, a: usize) -> Expr {
        let (rule, d) = (self.rule(w, a), w.axes[a].dilation as i32);
        let position = |x: Expr| if d == 1 { x } else { x.div(d) };
        let group_len = if d == 1 { self.kv.extents[a].clone() } else { rule.group_len(self.q_origin[a].clone().rem(d)) };
        let start = position(self.kv_origin[a].clone());
        let end = start.clone().add(self.kv.shape[a] as i32);
        let past_end = group_len.clone().lt(end.clone());
        let latest_start = rule.start(&position(self.q.last(&self.q_origin, a)), &group_len);
        let earliest_end = rule.end(&position(self.q_origin[a].clone()), &group_len);
        past_end.or(start.lt(latest_start)).or(earliest_end.lt(end))
    }
}

/// The last key a query token may see under the causal rule.
fn causal_limit(q: Expr) -> Expr {
    q.add(Var::SeqKv).sub(Var::SeqQ)
}

fn unsupported(visit: Visit) -> String {
    format!("visit set `{}` is not supported by this version of tessera-codegen", visit.name())
}

pub fn lower(mut program: Program) -> Result<Program, String> {
    let cfg = program.config;
    let body = std::mem::take(&mut program.body);
    let mut locals = std::mem::take(&mut program.locals);
    program.body = crate::passes::rewrite(body, &mut |stmt| match stmt {
        Stmt::VisitTiles { visit: visit @ Visit::Blocks(_), var, plane, q_origin, body } => {
            lower_blocks(Tiles::new(visit, &cfg, q_origin), var, plane, body, cfg.stages, &mut locals)
        }
        Stmt::VisitTiles { visit, var, q_origin, body, .. } => {
            lower_visit(Tiles::new(visit, &cfg, q_origin), var, body, cfg.stages, &mut locals)
        }
        other => Ok(vec![other]),
    })?;
    program.locals = locals;
    Ok(program)
}

/// Replaces the visit mask of `body` with the element masks of the visit set (`Tiles::masks`).
fn mask(tiles: &Tiles, body: Vec<Stmt>) -> Result<Vec<Stmt>, String> {
    let masks = tiles.masks()?;
    crate::passes::rewrite(body, &mut |s| match s {
        Stmt::VisitMask { frag } => Ok(masks.iter().map(|(keep, when)| Stmt::Mask { frag, keep: keep.clone(), when: when.clone() }).collect()),
        other => Ok(vec![other]),
    })
}

/// The loop over the query tile's row of the block map: `kv_count[row]` iterations, iteration
/// `i` on KV tile `kv_list[row · kv_tiles + i]`, where `row` is the query tile's index among all
/// query tiles of all planes (`codegen::format::blocks` has the layout).
fn lower_blocks(tiles: Tiles, var: Var, plane: Expr, body: Vec<Stmt>, stages: u32, locals: &mut Locals) -> Result<Vec<Stmt>, String> {
    let body = mask(&tiles, body)?;
    let (row, base, count) = (locals.fresh("map_row"), locals.fresh("list_base"), locals.fresh("kept"));
    let q_tile = tiles.q_origin[0].clone().div(tiles.q.shape[0] as i32);
    let tile = Expr::load(Table::KvList, Expr::var(base).add(var));
    let body = body.iter().map(|s| s.subst(Var::KvTile(0), &tile)).collect();
    Ok(vec![
        Stmt::Let { var: row, value: plane.mul(tiles.q.count(0)).add(q_tile) },
        Stmt::Let { var: base, value: Expr::var(row).mul(tiles.kv.count(0)) },
        // Read once: the pipeline's prefetch guards compare with the loop's end every iteration.
        Stmt::Let { var: count, value: Expr::load(Table::KvCount, row.into()) },
        Stmt::For { var, begin: 0.into(), end: count.into(), stages, body },
    ])
}

fn lower_visit(tiles: Tiles, var: Var, body: Vec<Stmt>, stages: u32, locals: &mut Locals) -> Result<Vec<Stmt>, String> {
    let body = mask(&tiles, body)?;
    let mut ranges = tiles.ranges()?;
    let j = Expr::var(var);
    if let [(begin, end)] = ranges.as_slice() {
        let body = body.iter().map(|s| s.subst(Var::KvTile(0), &j)).collect();
        return Ok(vec![Stmt::For { var, begin: begin.clone(), end: end.clone(), stages, body }]);
    }
    // A box of tiles: loop j over 0..∏ counts, with tile coordinate `begin + (j / inner) % count`.
    let mut out = Vec::new();
    let mut coords = Vec::new();
    let mut inner: Option<Expr> = None;
    for (a, (begin, end)) in ranges.drain(..).enumerate().rev() {
        let (b, n) = (locals.fresh("kv_begin"), locals.fresh("kv_count"));
        out.push(Stmt::Let { var: b, value: begin.clone() });
        out.push(Stmt::Let { var: n, value: end.sub(begin).max(0) });
        let mut index = inner.clone().map_or(j.clone(), |i| j.clone().div(i));
        if a > 0 {
            index = index.rem(Expr::var(n));
        }
        coords.push((a, Expr::var(b).add(index)));
        inner = Some(inner.map_or(Expr::var(n), |i| i.mul(Expr::var(n))));
    }
    let total = inner.unwrap_or(Expr::Const(0));
    let body = body
        .iter()
        .map(|s| coords.iter().fold(s.clone(), |s, (a, c)| s.subst(Var::KvTile(*a as u8), c)))
        .collect();
    out.push(Stmt::For { var, begin: 0.into(), end: total, stages, body });
    Ok(out)
}
