//! The textual form of a tile program (`tessera emit --stage ir`).

use std::fmt::{self, Display, Formatter};

use super::{Expr, FragKind, GlobalTile, Operand, Part, Program, Stmt};

impl Display for Program {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "kernel {} ({}, head_dim {}) block_q={} block_kv={} warps={} stages={}",
            self.name, self.dtype, self.head_dim, c.block_q(), c.block_kv(), c.warps, c.stages
        )?;
        let [x, y, z] = &self.grid;
        writeln!(f, "  grid ({x}, {y}, {z}) threads {}", self.threads())?;
        if self.key_parts > 1 {
            writeln!(f, "  keys split over {} warps, {} query rows each", self.key_parts, self.rows_per_part())?;
        }
        for b in &self.shared {
            let at = b.offset.map(|o| format!(" @{o}")).unwrap_or_default();
            let blocks = if b.block_cols == b.cols { String::new() } else { format!(" in {}-column blocks", b.block_cols) };
            let form = match b.form {
                crate::ir::Form::Tile => String::new(),
                crate::ir::Form::Values => " packed values".to_string(),
                crate::ir::Form::Meta => " bitmaps and offsets".to_string(),
                crate::ir::Form::Partials => " words of partial softmax states".to_string(),
            };
            let overlay = b.overlay.map(|u| format!(" over {}", self.shared(u).name)).unwrap_or_default();
            let elem = if b.form == crate::ir::Form::Partials { "f32".to_string() } else { self.dtype.to_string() };
            writeln!(f, "  shared {}: {}x{} {elem}{form} x{}{blocks}{at}{overlay}", b.name, b.rows, b.cols, b.stages)?;
        }
        for fr in &self.frags {
            let kind = match fr.kind {
                FragKind::Acc => "f32 acc".to_string(),
                FragKind::Operand => format!("{} operand", self.dtype),
                FragKind::RowStat => "f32 per row".to_string(),
            };
            writeln!(f, "  frag {}: {}x{} {kind}", fr.name, self.config.block_q(), fr.cols)?;
        }
        let printer = Printer { program: self };
        for s in &self.body {
            printer.stmt(f, s, 1)?;
        }
        Ok(())
    }
}

struct Printer<'a> {
    program: &'a Program,
}

impl Printer<'_> {
    fn operand(&self, op: &Operand) -> String {
        match op {
            Operand::Shared { buf, stage, kn, part } => {
                let t = if *kn { "" } else { "ᵀ" };
                let part = match part {
                    Part::Whole => "",
                    Part::Rows => " (warp's rows)",
                    Part::Cols => " (warp's columns)",
                };
                format!("{}[{stage}]{t}{part}", self.program.shared(*buf).name)
            }
            Operand::Frag(id) => self.program.frag(*id).name.to_string(),
        }
    }

    fn tile(&self, t: &GlobalTile) -> String {
        format!("{}[{}, {}, row -> {} if {}]", t.tensor.name(), t.batch, t.head, t.token, t.valid)
    }

    fn block(&self, f: &mut Formatter<'_>, body: &[Stmt], depth: usize) -> fmt::Result {
        writeln!(f, " {{")?;
        for s in body {
            self.stmt(f, s, depth + 1)?;
        }
        writeln!(f, "{}}}", "  ".repeat(depth))
    }

    fn stmt(&self, f: &mut Formatter<'_>, s: &Stmt, depth: usize) -> fmt::Result {
        let pad = "  ".repeat(depth);
        let p = self.program;
        let frag = |id| p.frag(id).name;
        match s {
            Stmt::Let { var, value } => writeln!(f, "{pad}let {var} = {value}"),
            Stmt::Copy { dst, stage, src, engine } => writeln!(
                f,
                "{pad}copy.{engine:?} {}[{stage}] <- {}",
                p.shared(*dst).name,
                self.tile(src)
            ),
            Stmt::CopyValues { dst, stage, meta, meta_stage, src, order } => writeln!(
                f,
                "{pad}copy.values.{order:?} {}[{stage}] <- {} by {}[{meta_stage}]",
                p.shared(*dst).name,
                self.tile(src),
                p.shared(*meta).name
            ),
            Stmt::Expand { dst, src, stage, meta, meta_stage, order } => writeln!(
                f,
                "{pad}expand.{order:?} {} <- {}[{stage}] by {}[{meta_stage}]",
                p.shared(*dst).name,
                p.shared(*src).name,
                p.shared(*meta).name
            ),
            Stmt::Commit => writeln!(f, "{pad}commit"),
            Stmt::Wait { pending } => writeln!(f, "{pad}wait pending<={pending}"),
            Stmt::Barrier => writeln!(f, "{pad}barrier"),
            Stmt::Fill { frag: id, value } => writeln!(f, "{pad}fill {} = {value}", frag(*id)),
            Stmt::LoadOperand { frag: id, src } => writeln!(f, "{pad}load_operand {} <- {}[0]", frag(*id), p.shared(*src).name),
            Stmt::Mma { acc, a, b, engine } => writeln!(
                f,
                "{pad}mma.{engine:?} {} += {} · {}",
                frag(*acc),
                self.operand(a),
                self.operand(b)
            ),
            Stmt::VisitMask { frag: id } => writeln!(f, "{pad}visit_mask {}", frag(*id)),
            Stmt::Mask { frag: id, keep, when } => {
                writeln!(f, "{pad}mask {} keep {keep} when {when}", frag(*id))
            }
            Stmt::Softmax { s, p: pr, m, l, o } => writeln!(
                f,
                "{pad}softmax {} -> {} (max {}, sum {}, rescale {})",
                frag(*s),
                frag(*pr),
                frag(*m),
                frag(*l),
                frag(*o)
            ),
            Stmt::MergeParts { o, m, l, scratch } => writeln!(
                f,
                "{pad}merge_parts ({}, {}, {}) through {}",
                frag(*o),
                frag(*m),
                frag(*l),
                p.shared(*scratch).name
            ),
            Stmt::Normalize { o, l } => writeln!(f, "{pad}normalize {} by {}", frag(*o), frag(*l)),
            Stmt::Store { frag: id, dst } => {
                writeln!(f, "{pad}store {} -> {}", frag(*id), self.tile(dst))
            }
            Stmt::StoreLse { m, l, dst } => {
                writeln!(f, "{pad}store_lse ({}, {}) -> {}", frag(*m), frag(*l), self.tile(dst))
            }
            Stmt::LoadRows { frag: id, src, pad: fill } => {
                writeln!(f, "{pad}load_rows {} <- {} else {fill}", frag(*id), self.tile(src))
            }
            Stmt::Threshold { rows, bias } => match bias {
                Some(b) => writeln!(f, "{pad}threshold {} = {0} / scale - {}", frag(*rows), frag(*b)),
                None => writeln!(f, "{pad}threshold {} = {0} / scale", frag(*rows)),
            },
            Stmt::Vote { var, s, rows } => {
                writeln!(f, "{pad}let {var} = any(max({} per row) >= {})", frag(*s), frag(*rows))
            }
            Stmt::StoreMap { index, value } => writeln!(f, "{pad}store_map map[{index}] = {value}"),
            Stmt::Dequantize { s, row_scale, col_scale, col_bias } => writeln!(
                f,
                "{pad}dequantize {} = fma({0}, {} * {}, {})",
                frag(*s),
                frag(*row_scale),
                self.tile(col_scale),
                self.tile(col_bias)
            ),
            Stmt::VisitTiles { visit, var, plane, q_origin, body } => {
                let origin: Vec<String> = q_origin.iter().map(Expr::to_string).collect();
                write!(f, "{pad}visit {} {var} for the query tile at ({}) of plane {plane}", visit.name(), origin.join(", "))?;
                self.block(f, body, depth)
            }
            Stmt::For { var, begin, end, stages, body } => {
                let st = if *stages > 1 { format!(" pipelined({stages})") } else { String::new() };
                write!(f, "{pad}for {var} in {begin}..{end}{st}")?;
                self.block(f, body, depth)
            }
            Stmt::If { cond, body } => {
                write!(f, "{pad}if {cond}")?;
                self.block(f, body, depth)
            }
        }
    }
}
