//! Strength reduction of a loop counter's divisions: a box of KV tiles is visited by one
//! flattened loop whose tile coordinates are `j / n` and `j % n` (`passes::visit`), and the
//! prefetch's `(j + S - 1) / n`; `n` is fixed for the loop but known only at run time, so each
//! would be a full integer division per iteration. Instead the quotient and remainder of `j`
//! are carried through the loop (one compare and two selects per iteration) and those of
//! `j + c` stepped from them. Like every IR division (`ir::expr::apply`), these divide
//! non-negative values: a loop counter from a non-negative start.

use std::collections::HashMap;

use inkwell::IntPredicate;
use inkwell::basic_block::BasicBlock;
use inkwell::values::{IntValue, PhiValue};

use super::lower::{Lowerer, Res};
use crate::CodegenError;
use crate::ir::{BinOp, Expr, Var};

/// A loop being lowered, and the divisions of its counter carried so far.
pub struct LoopFrame<'ctx> {
    var: Var,
    begin: IntValue<'ctx>,
    preheader: BasicBlock<'ctx>,
    header: BasicBlock<'ctx>,
    /// The variables bound before the loop, with their values then: a divisor reading only
    /// these, still bound to the same values, is loop-invariant and can be emitted before it.
    outer: HashMap<Var, IntValue<'ctx>>,
    divisions: Vec<Carried<'ctx>>,
}

/// `j / divisor` and `j % divisor` for the loop's counter `j`.
struct Carried<'ctx> {
    divisor: Expr,
    n: IntValue<'ctx>,
    q: PhiValue<'ctx>,
    r: PhiValue<'ctx>,
}

impl<'ctx> LoopFrame<'ctx> {
    pub fn new(var: Var, begin: IntValue<'ctx>, preheader: BasicBlock<'ctx>, header: BasicBlock<'ctx>, outer: HashMap<Var, IntValue<'ctx>>) -> Self {
        LoopFrame { var, begin, preheader, header, outer, divisions: Vec::new() }
    }
}

impl<'ctx> Lowerer<'ctx, '_> {
    /// `a op b` for `a` the innermost loop's counter plus a constant `c ≥ 0` and `b` fixed in
    /// the loop: stepped `c` times from the carried quotient and remainder. None otherwise.
    pub fn carried_division(&self, op: BinOp, a: &Expr, b: &Expr) -> Res<Option<IntValue<'ctx>>> {
        if !matches!(op, BinOp::Div | BinOp::Rem) {
            return Ok(None);
        }
        // Short borrows: emitting a divisor's value may look at the frames again.
        let (c, found, begin, preheader, header) = {
            let loops = self.loops.borrow();
            let Some(frame) = loops.last() else { return Ok(None) };
            let c = match a {
                Expr::Var(v) if *v == frame.var => 0,
                Expr::Bin(BinOp::Add, x, y) => match (&**x, &**y) {
                    (Expr::Var(v), Expr::Const(c)) | (Expr::Const(c), Expr::Var(v)) if *v == frame.var && (0..=4).contains(c) => *c,
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            };
            // A constant divisor is a shift or a multiply already.
            if matches!(b, Expr::Const(_)) || !invariant(b, &frame.outer, &self.vars) {
                return Ok(None);
            }
            let found = frame.divisions.iter().find(|d| d.divisor == *b).map(|d| (d.q, d.r, d.n));
            (c, found, frame.begin, frame.preheader, frame.header)
        };
        let (q, r, n) = match found {
            Some(d) => d,
            None => {
                let d = self.start_division(b, begin, preheader, header)?;
                let parts = (d.q, d.r, d.n);
                let mut loops = self.loops.borrow_mut();
                loops.last_mut().ok_or_else(|| CodegenError::Ir("loop frames out of step".into()))?.divisions.push(d);
                parts
            }
        };
        let (mut q, mut r) = (q.as_basic_value().into_int_value(), r.as_basic_value().into_int_value());
        for _ in 0..c {
            (q, r) = self.step_division(q, r, n)?;
        }
        Ok(Some(if op == BinOp::Div { q } else { r }))
    }

    /// Emits `begin / n` and `begin % n` before the loop and their phis at its head.
    fn start_division(&self, divisor: &Expr, begin: IntValue<'ctx>, preheader: BasicBlock<'ctx>, header: BasicBlock<'ctx>) -> Res<Carried<'ctx>> {
        let here = self.b.get_insert_block().ok_or_else(|| CodegenError::Llvm("builder has no block".into()))?;
        let entry = preheader.get_terminator().ok_or_else(|| CodegenError::Llvm("loop preheader without a branch".into()))?;
        self.b.position_before(&entry);
        let n = self.expr(divisor)?;
        // Divided before the loop, where n may be 0 (a loop that does not run); LLVM may assume
        // a divisor is not 0, so divide by 1 then.
        let zero = self.b.build_int_compare(IntPredicate::EQ, n, self.i32(0), "")?;
        let safe = self.b.build_select(zero, self.i32(1), n, "")?.into_int_value();
        let (q0, r0) = (self.bin(BinOp::Div, begin, safe)?, self.bin(BinOp::Rem, begin, safe)?);
        match header.get_first_instruction() {
            Some(first) => self.b.position_before(&first),
            None => self.b.position_at_end(header),
        }
        let i32t = self.ctx.i32_type();
        let (q, r) = (self.b.build_phi(i32t, "")?, self.b.build_phi(i32t, "")?);
        q.add_incoming(&[(&q0, preheader)]);
        r.add_incoming(&[(&r0, preheader)]);
        // The lowering only ever appends to its current block, so its end is where it was.
        self.b.position_at_end(here);
        Ok(Carried { divisor: divisor.clone(), n, q, r })
    }

    /// The quotient and remainder of the next counter value (`r < n`).
    fn step_division(&self, q: IntValue<'ctx>, r: IntValue<'ctx>, n: IntValue<'ctx>) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
        let next = self.b.build_int_add(r, self.i32(1), "")?;
        let wrap = self.b.build_int_compare(IntPredicate::EQ, next, n, "")?;
        let r = self.b.build_select(wrap, self.i32(0), next, "")?.into_int_value();
        let q = self.b.build_int_add(q, self.b.build_int_z_extend(wrap, self.ctx.i32_type(), "")?, "")?;
        Ok((q, r))
    }

    /// Closes the innermost loop's carried divisions at its latch (the current block).
    pub fn close_divisions(&self, frame: &LoopFrame<'ctx>) -> Res<()> {
        let latch = self.b.get_insert_block().ok_or_else(|| CodegenError::Llvm("builder has no block".into()))?;
        for d in &frame.divisions {
            let (q, r) = self.step_division(d.q.as_basic_value().into_int_value(), d.r.as_basic_value().into_int_value(), d.n)?;
            d.q.add_incoming(&[(&q, latch)]);
            d.r.add_incoming(&[(&r, latch)]);
        }
        Ok(())
    }
}

/// Whether `e` reads only variables bound before the loop and still bound to those values in
/// `vars` (and no table, which a loop may index by its counter).
fn invariant<'ctx>(e: &Expr, outer: &HashMap<Var, IntValue<'ctx>>, vars: &HashMap<Var, IntValue<'ctx>>) -> bool {
    match e {
        Expr::Const(_) => true,
        Expr::Var(v) => outer.get(v).is_some_and(|x| vars.get(v) == Some(x)),
        Expr::Bin(_, a, b) => invariant(a, outer, vars) && invariant(b, outer, vars),
        Expr::Load(..) => false,
    }
}
