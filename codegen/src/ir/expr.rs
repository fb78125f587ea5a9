//! Scalar index expressions: tile bounds, loop ranges, zero-fill limits and mask predicates.
//! The interpreter evaluates them and the LLVM lowering emits them, so both read one definition.
//!
//! Besides arithmetic, an expression may read one int32 from a read-only launch table
//! (`Expr::Load`): a block-sparse kernel's KV tile is an entry of its query tile's list. Tables
//! are never written by the kernel, so a read is as pure as arithmetic, and passes may move,
//! duplicate or substitute into it like any other expression.

use std::fmt;

/// A named scalar: a kernel parameter, a CTA coordinate, a loop variable or a `let`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Var {
    Batch,
    SeqQ,
    SeqKv,
    Heads,
    KvHeads,
    /// Tokens per plane of a bitmap-compressed K/V cache (a multiple of 64); a decode kernel's
    /// dense window (`SeqKv` tokens) follows them.
    Compressed,
    /// CTAs a split-KV kernel splits each plane's keys over (gridDim.x).
    Splits,
    /// blockIdx.x/y/z.
    Cta(u8),
    /// Extent of grid axis 0/1/2 of a neighborhood kernel's tokens (a launch size).
    Grid(u8),
    /// Coordinate, in tiles, of the KV tile the visit loop is on along an axis; the body of a
    /// `VisitTiles` uses it and `passes::visit` replaces it with the loop's own index arithmetic.
    KvTile(u8),
    /// The tile-local row of a tile (in token maps), or the tile-local query row / key column of
    /// one score element (in mask predicates).
    Row,
    Col,
    /// The thread's lane in its warp (only in the lowering's own address expressions).
    Lane,
    /// A loop variable or `let` binding, numbered by the program builder.
    Local(u32, &'static str),
}

/// Read-only int32 tables a launch passes, each a kernel parameter after `KERNEL_PARAMS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `[batch, heads, q_tiles, kv_tiles]`: per query tile, the ascending indices of the KV tiles
    /// its block map keeps, in the row's first `count` entries.
    KvList,
    /// `[batch, heads, q_tiles]`: how many entries of each `KvList` row are kept tiles.
    KvCount,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::KvList, Table::KvCount];

    pub fn name(self) -> &'static str {
        match self {
            Table::KvList => "kv_list",
            Table::KvCount => "kv_count",
        }
    }
}

/// Binary operators on i32 values; comparisons and logic give 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    /// Division of non-negative values (the builders only divide counts and indices).
    Div,
    Rem,
    Min,
    Max,
    Lt,
    Le,
    And,
    Or,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    Const(i32),
    Var(Var),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// The entry of a launch table at a flat index (in bounds by the launch's checks and the
    /// program's loop bounds; the interpreter reports one that is not).
    Load(Table, Box<Expr>),
}

// `add`, `mul`, ... build folded expression trees from anything `Into<Expr>` (a `Var`, an
// `i32`); the operator traits would hide that they build IR rather than compute.
#[allow(clippy::should_implement_trait)]
impl Expr {
    pub fn var(v: Var) -> Expr {
        Expr::Var(v)
    }

    /// Builds `a op b`, folding constants and identities (`x + 0`, `x * 1`, `x / 1`) so that
    /// printed programs and the IR handed to LLVM stay small.
    fn bin(op: BinOp, a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
        let (a, b) = (a.into(), b.into());
        if let (Expr::Const(x), Expr::Const(y)) = (&a, &b)
            && let Ok(v) = apply(op, *x, *y)
        {
            return Expr::Const(v);
        }
        match (op, a, b) {
            (BinOp::Add | BinOp::Sub, a, Expr::Const(0)) | (BinOp::Mul | BinOp::Div, a, Expr::Const(1)) => a,
            (BinOp::Add, Expr::Const(0), b) | (BinOp::Mul, Expr::Const(1), b) => b,
            (op, a, b) => Expr::Bin(op, Box::new(a), Box::new(b)),
        }
    }

    pub fn add(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::Add, self, b)
    }
    pub fn sub(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::Sub, self, b)
    }
    pub fn mul(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::Mul, self, b)
    }
    pub fn div(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::Div, self, b)
    }
    pub fn rem(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::Rem, self, b)
    }
    pub fn min(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::Min, self, b)
    }
    pub fn max(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::Max, self, b)
    }
    pub fn lt(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::Lt, self, b)
    }
    pub fn le(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::Le, self, b)
    }
    pub fn and(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::And, self, b)
    }
    pub fn or(self, b: impl Into<Expr>) -> Expr {
        Expr::bin(BinOp::Or, self, b)
    }
    /// ceil(self / b) for non-negative self and positive b.
    pub fn ceil_div(self, b: i32) -> Expr {
        self.add(b - 1).div(b)
    }

    /// `table[index]`.
    pub fn load(table: Table, index: Expr) -> Expr {
        Expr::Load(table, Box::new(index))
    }

    /// Evaluates with `lookup` giving each variable's value, in a context without tables.
    /// Errors name the variable that is unbound or the division by zero, so a malformed program
    /// is reported, not executed.
    pub fn eval(&self, lookup: &dyn Fn(Var) -> Option<i32>) -> Result<i32, String> {
        self.eval_with(lookup, &|t, _| Err(format!("no table {} in this context", t.name())))
    }

    /// Evaluates with variables from `lookup` and table entries from `table` (which reports an
    /// index out of its bounds).
    pub fn eval_with(
        &self,
        lookup: &dyn Fn(Var) -> Option<i32>,
        table: &dyn Fn(Table, i32) -> Result<i32, String>,
    ) -> Result<i32, String> {
        Ok(match self {
            Expr::Const(c) => *c,
            Expr::Var(v) => lookup(*v).ok_or_else(|| format!("unbound variable {v}"))?,
            Expr::Bin(op, a, b) => {
                let (a, b) = (a.eval_with(lookup, table)?, b.eval_with(lookup, table)?);
                apply(*op, a, b)?
            }
            Expr::Load(t, index) => table(*t, index.eval_with(lookup, table)?)?,
        })
    }

    /// Whether `var` occurs in the expression.
    pub fn uses(&self, var: Var) -> bool {
        match self {
            Expr::Const(_) => false,
            Expr::Var(v) => *v == var,
            Expr::Bin(_, a, b) => a.uses(var) || b.uses(var),
            Expr::Load(_, index) => index.uses(var),
        }
    }

    /// Whether the expression reads a launch table.
    pub fn reads_table(&self) -> bool {
        match self {
            Expr::Const(_) | Expr::Var(_) => false,
            Expr::Bin(_, a, b) => a.reads_table() || b.reads_table(),
            Expr::Load(..) => true,
        }
    }

    /// Replaces every use of `var` with `with`.
    pub fn subst(&self, var: Var, with: &Expr) -> Expr {
        match self {
            Expr::Var(v) if *v == var => with.clone(),
            Expr::Const(_) | Expr::Var(_) => self.clone(),
            Expr::Bin(op, a, b) => Expr::bin(*op, a.subst(var, with), b.subst(var, with)),
            Expr::Load(t, index) => Expr::load(*t, index.subst(var, with)),
        }
    }
}

/// The semantics of each operator on i32; the lowering emits the matching LLVM instruction
/// (`sdiv`/`srem` agree with these on the non-negative operands the builders produce).
pub fn apply(op: BinOp, a: i32, b: i32) -> Result<i32, String> {
    Ok(match op {
        BinOp::Add => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::Div | BinOp::Rem if b == 0 => return Err(format!("division by zero ({a} / 0)")),
        BinOp::Div => a / b,
        BinOp::Rem => a % b,
        BinOp::Min => a.min(b),
        BinOp::Max => a.max(b),
        BinOp::Lt => (a < b) as i32,
        BinOp::Le => (a <= b) as i32,
        BinOp::And => (a != 0 && b != 0) as i32,
        BinOp::Or => (a != 0 || b != 0) as i32,
    })
}

impl From<i32> for Expr {
    fn from(c: i32) -> Expr {
        Expr::Const(c)
    }
}

impl From<Var> for Expr {
    fn from(v: Var) -> Expr {
        Expr::Var(v)
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Batch => f.write_str("batch"),
            Var::SeqQ => f.write_str("seq_q"),
            Var::SeqKv => f.write_str("seq_kv"),
            Var::Heads => f.write_str("heads"),
            Var::KvHeads => f.write_str("kv_heads"),
            Var::Compressed => f.write_str("compressed"),
            Var::Splits => f.write_str("splits"),
            Var::Cta(axis) => write!(f, "cta.{}", ["x", "y", "z"][*axis as usize % 3]),
            Var::Grid(axis) => write!(f, "grid_{}", ["x", "y", "z"][*axis as usize % 3]),
            Var::KvTile(axis) => write!(f, "kv_tile.{axis}"),
            Var::Row => f.write_str("row"),
            Var::Lane => f.write_str("lane"),
            Var::Col => f.write_str("col"),
            Var::Local(id, name) => write!(f, "%{name}{id}"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Const(c) => write!(f, "{c}"),
            Expr::Var(v) => write!(f, "{v}"),
            Expr::Load(t, index) => write!(f, "{}[{index}]", t.name()),
            Expr::Bin(op, a, b) => {
                let sym = match op {
                    BinOp::Add => "+",
                    BinOp::Sub => "-",
                    BinOp::Mul => "*",
                    BinOp::Div => "/",
                    BinOp::Rem => "%",
                    BinOp::Lt => "<",
                    BinOp::Le => "<=",
                    BinOp::And => "&&",
                    BinOp::Or => "||",
                    BinOp::Min => return write!(f, "min({a}, {b})"),
                    BinOp::Max => return write!(f, "max({a}, {b})"),
                };
                write!(f, "({a} {sym} {b})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_and_print() {
        let e = Expr::var(Var::SeqKv).ceil_div(64).min(Expr::var(Var::Row).add(1));
        let v = e.eval(&|v| match v {
            Var::SeqKv => Some(130),
            Var::Row => Some(1),
            _ => None,
        });
        assert_eq!(v, Ok(2));
        assert_eq!(e.to_string(), "min(((seq_kv + 63) / 64), (row + 1))");
    }

    #[test]
    fn loads_read_tables_and_substitute_inside() {
        let i = Var::Local(1, "i");
        let e = Expr::load(Table::KvList, Expr::var(i).add(4)).mul(32);
        let shifted = e.subst(i, &Expr::var(i).add(1));
        assert_eq!(shifted.to_string(), "(kv_list[((%i1 + 1) + 4)] * 32)");
        assert!(shifted.uses(i) && shifted.reads_table() && !Expr::var(i).reads_table());
        let list = [0, 3, 5, 7, 9, 11];
        let table = |t: Table, at: i32| match t {
            Table::KvList => list.get(at as usize).copied().ok_or_else(|| format!("kv_list[{at}] is out of bounds")),
            Table::KvCount => Err("no count".into()),
        };
        let lookup = |v: Var| (v == i).then_some(0);
        assert_eq!(shifted.eval_with(&lookup, &table), Ok(11 * 32));
        assert!(e.subst(i, &Expr::Const(9)).eval_with(&lookup, &table).is_err());
        // Without tables, a load is an error rather than a guess.
        assert!(e.eval(&lookup).is_err());
    }

    #[test]
    fn errors_are_reported() {
        assert!(Expr::var(Var::SeqQ).eval(&|_| None).is_err());
        assert!(Expr::Const(1).div(0).eval(&|_| None).is_err());
    }
}
