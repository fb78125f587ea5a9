//! Emitting an expression once per row, column or tile instead of once per use. Masks and
//! token maps are evaluated for every element or 16-byte chunk a lane handles; the parts that
//! depend on the row only (a query's window bounds), the column only (a key's coordinates) or
//! neither (the KV tile's origin) are emitted at their first use and reused, which keeps a 2-D
//! or 3-D window's index arithmetic from multiplying the IR LLVM has to optimise.

use std::collections::HashMap;

use inkwell::values::IntValue;

use super::lower::{Lowerer, Res};
use crate::ir::{BinOp, Expr, Var};

/// Values already emitted: of neither `Row` nor `Col`, of the current row, of each column.
/// A value is reused wherever it is looked up again, so its first emission must dominate every
/// later lookup: a `Memo` lives within one straight-line stretch (a mask's elements, a store's
/// rows), and where an emission may sit inside an `if_then` (a copy's last, partial chunk
/// iteration) nothing looks the memo up after it.
#[derive(Default)]
pub struct Memo<'ctx> {
    invariant: HashMap<Expr, IntValue<'ctx>>,
    row: HashMap<Expr, IntValue<'ctx>>,
    col: HashMap<usize, HashMap<Expr, IntValue<'ctx>>>,
    /// `Row` takes only a lane's fragment rows, which differ by multiples of 8 (`local_row`).
    lane_rows: bool,
}

impl<'ctx> Memo<'ctx> {
    /// A memo whose rows are one lane's fragment rows: `Row % m` for `m` dividing 8 is then the
    /// same on every row, so a neighborhood window's inner-axis bounds are emitted once per
    /// mask rather than once per row.
    pub fn lane_rows() -> Memo<'ctx> {
        Memo { lane_rows: true, ..Memo::default() }
    }

    /// `Row` is about to be bound to another value.
    pub fn next_row(&mut self) {
        self.row.clear();
    }

    /// Whether `e`'s value may differ between two rows of this memo.
    pub fn per_row(&self, e: &Expr) -> bool {
        match e {
            Expr::Bin(BinOp::Rem, a, m) if self.lane_rows && **a == Expr::Var(Var::Row) => {
                !matches!(**m, Expr::Const(m) if m > 0 && 8 % m == 0)
            }
            Expr::Const(_) => false,
            Expr::Var(v) => *v == Var::Row,
            Expr::Bin(_, a, b) => self.per_row(a) || self.per_row(b),
            Expr::Load(_, index) => self.per_row(index),
        }
    }

    /// Where `e`'s value is kept (nowhere when it depends on both row and column).
    fn slot(&mut self, e: &Expr, col: usize) -> Option<&mut HashMap<Expr, IntValue<'ctx>>> {
        match (self.per_row(e), e.uses(Var::Col)) {
            (false, false) => Some(&mut self.invariant),
            (true, false) => Some(&mut self.row),
            (false, true) => Some(self.col.entry(col).or_default()),
            (true, true) => None,
        }
    }
}

impl<'ctx> Lowerer<'ctx, '_> {
    /// `expr(e)` with `Row`/`Col` bound in `vars`, where `col` names the current column.
    pub fn expr_memo(&self, e: &Expr, col: usize, memo: &mut Memo<'ctx>) -> Res<IntValue<'ctx>> {
        if let Some(v) = memo.slot(e, col).and_then(|c| c.get(e)) {
            return Ok(*v);
        }
        let v = match e {
            Expr::Bin(op, a, b) => match self.carried_division(*op, a, b)? {
                Some(v) => v,
                None => {
                    let (a, b) = (self.expr_memo(a, col, memo)?, self.expr_memo(b, col, memo)?);
                    self.bin(*op, a, b)?
                }
            },
            Expr::Load(table, index) => {
                let index = self.expr_memo(index, col, memo)?;
                self.load_table(*table, index)?
            }
            leaf => self.leaf(leaf)?,
        };
        if let Some(c) = memo.slot(e, col) {
            c.insert(e.clone(), v);
        }
        Ok(v)
    }
}
