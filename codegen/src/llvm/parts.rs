//! `Stmt::MergeParts`: the warps that split a decode kernel's keys (`Program::key_parts`) fold
//! their partial softmax states into warp 0's. Every warp's fragments have the same layout over
//! its own copy of the query rows, so lane `l`'s register `i` is the same (row, column) in every
//! warp: warps 1.. store theirs lane-minor in the `Form::Partials` scratch (a warp's 32 lanes
//! write 32 consecutive words), and after a barrier warp 0 reads them back at its own lane and
//! register and folds them in part order, as `interp` does. A lane's `l` is its partial sum of
//! the row (`softmax`), which folds the same way, being linear.

use inkwell::IntPredicate;
use inkwell::values::{BasicValue, FloatValue, IntValue};

use super::arith::Emit;
use super::lower::{Lowerer, Res, load_aligned};
use crate::CodegenError;
use crate::ir::{BufId, Expr, FragId};
use crate::semantics::softmax;

/// Where the parts' registers lie: the scratch's byte offset, and each fragment's first word
/// (a lane's registers of O, then m, then l).
struct Scratch<'ctx> {
    base: IntValue<'ctx>,
    words: usize,
    firsts: [(FragId, usize); 3],
}

impl Scratch<'_> {
    /// The word of register `r` of fragment `f`.
    fn word(&self, f: FragId, r: usize) -> Res<usize> {
        let (_, first) = self.firsts.iter().find(|(g, _)| *g == f).ok_or_else(|| CodegenError::Ir("merge_parts: a register outside the scratch".into()))?;
        Ok(first + r)
    }
}

impl<'ctx> Lowerer<'ctx, '_> {
    pub fn merge_parts(&mut self, o: FragId, m: FragId, l: FragId, scratch: BufId) -> Res<()> {
        let parts = self.program.key_parts;
        let lens = [o, m, l].map(|f| self.frags[f.0].len());
        let firsts = [(o, 0), (m, lens[0]), (l, lens[0] + lens[1])];
        let words = lens.iter().sum();
        let sb = self.program.shared(scratch);
        if parts < 2 || sb.rows != parts - 1 || sb.cols != 32 * words as u32 {
            return Err(CodegenError::Ir(format!("{}: {}x{} words do not hold {parts} parts of {words} registers", sb.name, sb.rows, sb.cols)));
        }
        let at = Scratch { base: self.stage_base(scratch, &Expr::from(0))?, words, firsts };
        let first = self.b.build_int_compare(IntPredicate::EQ, self.lane.warp, self.i32(0), "")?;
        let others = self.b.build_not(first, "")?;
        self.if_then(others, |w| {
            for (f, start) in at.firsts {
                for r in 0..w.frags[f.0].len() {
                    let ptr = w.byte_ptr(w.smem, w.part_word(&at, w.lane.warp, start + r)?)?;
                    w.b.build_store(ptr, w.frags[f.0][r])?.set_alignment(4).map_err(|e| CodegenError::Llvm(e.to_string()))?;
                }
            }
            Ok(())
        })?;
        self.barrier()?;
        self.if_then(first, |w| w.fold_parts((o, m, l), &at))
    }

    /// Byte offset of register `i` of part `part` (from 1) for this lane.
    fn part_word(&self, at: &Scratch<'ctx>, part: IntValue<'ctx>, i: usize) -> Res<IntValue<'ctx>> {
        let b = &self.b;
        let row = b.build_int_mul(b.build_int_sub(part, self.i32(1), "")?, self.i32(at.words as i64), "")?;
        let word = b.build_int_add(b.build_int_mul(b.build_int_add(row, self.i32(i as i64), "")?, self.i32(32), "")?, self.lane.lane, "")?;
        Ok(b.build_int_add(at.base, b.build_int_mul(word, self.i32(4), "")?, "")?)
    }

    /// Register `r` of fragment `f` in every part: warp 0's own, then the others' from the scratch.
    fn parts_of(&self, at: &Scratch<'ctx>, (f, r): (FragId, usize)) -> Res<Vec<FloatValue<'ctx>>> {
        let i = at.word(f, r)?;
        let mut out = vec![self.frags[f.0][r].into_float_value()];
        for part in 1..self.program.key_parts {
            let ptr = self.byte_ptr(self.smem, self.part_word(at, self.i32(part as i64), i)?)?;
            out.push(load_aligned(&self.b, self.ctx.f32_type().into(), ptr, 4)?.into_float_value());
        }
        Ok(out)
    }

    /// Warp 0's side: each row's largest max, its parts' weights, and `l`, `o` folded with them.
    fn fold_parts(&mut self, (o, m, l): (FragId, FragId, FragId), at: &Scratch<'ctx>) -> Res<()> {
        let d = self.program.frag(o).cols;
        let (mut new_o, mut new_m, mut new_l) = (self.frags[o.0].clone(), self.frags[m.0].clone(), self.frags[l.0].clone());
        for stat in 0..new_m.len() {
            let (slab, h) = ((stat / 2) as u32, (stat % 2) as u32);
            let maxima = self.parts_of(at, (m, stat))?;
            let sums = self.parts_of(at, (l, stat))?;
            let mut outs = Vec::new();
            for nt in 0..d / 8 {
                for j in 0..2 {
                    let i = self.acc_index(d, slab, nt, 2 * h + j);
                    outs.push((i, self.parts_of(at, (o, i))?));
                }
            }
            let mut e = Emit::new(self);
            let (max, weights) = softmax::part_weights(&mut e, &maxima, self.params.scale_log2);
            new_m[stat] = max.as_basic_value_enum();
            new_l[stat] = softmax::weighted_sum(&mut e, &sums, &weights).as_basic_value_enum();
            for (i, xs) in outs {
                new_o[i] = softmax::weighted_sum(&mut e, &xs, &weights).as_basic_value_enum();
            }
            e.finish()?;
        }
        (self.frags[o.0], self.frags[m.0], self.frags[l.0]) = (new_o, new_m, new_l);
        Ok(())
    }
}
