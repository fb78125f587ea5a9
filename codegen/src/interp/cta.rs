//! One CTA's execution.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{Launch, Output, SelectRows};
use crate::format::{BitmapCache, TileOrder};
use crate::ir::{BufId, CopyEngine, Expr, FragId, GlobalTile, Operand, Operands, Part, Program, Stmt, Tensor, Var};
use crate::semantics::{Arith, F32, round_to, select, softmax};

struct PendingCopy {
    buf: BufId,
    stage: usize,
    data: Vec<f32>,
}

pub struct Cta<'a> {
    program: &'a Program,
    launch: &'a Launch<'a>,
    /// A selection program's per-token inputs (`Tensor::Theta`, and a low-bit one's scales).
    rows: SelectRows<'a>,
    vars: HashMap<Var, i32>,
    /// Per buffer: `stages × rows × cols`, NaN until a copy lands.
    shared: Vec<Vec<f32>>,
    /// Per fragment: `block_q × cols`.
    frags: Vec<Vec<f32>>,
    open_group: Vec<PendingCopy>,
    groups: VecDeque<Vec<PendingCopy>>,
    /// Stages read since the last barrier: a copy into one of them races with slower warps.
    read_since_barrier: HashSet<(BufId, usize)>,
    /// Stages whose copy landed in this thread but no barrier has published yet.
    unpublished: HashSet<(BufId, usize)>,
}

impl<'a> Cta<'a> {
    pub fn new(program: &'a Program, launch: &'a Launch<'a>, rows: SelectRows<'a>, vars: HashMap<Var, i32>) -> Self {
        let bq = program.config.block_q() as usize;
        Cta {
            program,
            launch,
            rows,
            vars,
            shared: program
                .shared
                .iter()
                .map(|b| vec![f32::NAN; (b.stages * b.rows * b.cols) as usize])
                .collect(),
            frags: program.frags.iter().map(|f| vec![f32::NAN; bq * f.cols as usize]).collect(),
            open_group: Vec::new(),
            groups: VecDeque::new(),
            read_since_barrier: HashSet::new(),
            unpublished: HashSet::new(),
        }
    }

    pub fn run(mut self, out: &mut Output) -> Result<(), String> {
        let body = &self.program.body;
        self.block(body, out)
    }

    fn eval(&self, e: &Expr) -> Result<i32, String> {
        self.eval_in(e, &|v| self.vars.get(&v).copied())
    }

    /// `e` with variables from `lookup` and the launch's tables, which `interp::run` checked
    /// against the launch (an index out of bounds is still an error, not a panic).
    fn eval_in(&self, e: &Expr, lookup: &dyn Fn(Var) -> Option<i32>) -> Result<i32, String> {
        let blocks = self.launch.blocks;
        e.eval_with(lookup, &|t, at| blocks.ok_or_else(|| format!("no {} passed", t.name()))?.read(t, at))
    }

    fn block(&mut self, body: &[Stmt], out: &mut Output) -> Result<(), String> {
        for s in body {
            self.stmt(s, out)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt, out: &mut Output) -> Result<(), String> {
        match s {
            Stmt::Let { var, value } => {
                let v = self.eval(value)?;
                self.vars.insert(*var, v);
            }
            Stmt::Copy { dst, stage, src, engine } => self.copy(*dst, stage, src, *engine)?,
            Stmt::CopyValues { dst, stage, meta, meta_stage, src, order } => {
                // The values are found with the tile's offsets: they must be there.
                self.read_shared(*meta, meta_stage)?;
                self.copy(*dst, stage, src, CopyEngine::Bitmap(*order))?
            }
            Stmt::Expand { dst, src, stage, meta, meta_stage, order } => self.expand(*dst, (*src, stage), (*meta, meta_stage), *order)?,
            Stmt::Commit => {
                let group = std::mem::take(&mut self.open_group);
                self.groups.push_back(group);
            }
            Stmt::Wait { pending } => {
                while self.groups.len() > *pending as usize {
                    for c in self.groups.pop_front().unwrap_or_default() {
                        let n = c.data.len();
                        self.shared[c.buf.0][c.stage * n..(c.stage + 1) * n].copy_from_slice(&c.data);
                        self.clobber_overlays(c.buf);
                        self.unpublished.insert((c.buf, c.stage));
                    }
                }
            }
            Stmt::Barrier => self.barrier(),
            Stmt::Fill { frag, value } => self.frags[frag.0].fill(*value),
            Stmt::LoadOperand { frag, src } => {
                let (id, off) = self.read_shared(*src, &Expr::from(0))?;
                let n = self.frags[frag.0].len();
                self.frags[frag.0] = self.shared[id][off..off + n].to_vec();
            }
            Stmt::Mma { acc, a, b, .. } => self.mma(*acc, a, b)?,
            Stmt::Mask { frag, keep, when } => {
                if self.eval(when)? != 0 {
                    self.mask(*frag, keep)?;
                }
            }
            Stmt::Softmax { s, p, m, l, o } => self.softmax(*s, *p, *m, *l, *o),
            Stmt::MergeParts { o, m, l, scratch } => self.merge_parts(*o, *m, *l, *scratch)?,
            Stmt::Normalize { o, l } => {
                let cols = self.program.frag(*o).cols as usize;
                for r in 0..self.program.config.block_q() as usize {
                    let inv = softmax::inverse_sum(&mut F32, self.frags[l.0][r]);
                    self.frags[o.0][r * cols..(r + 1) * cols].iter_mut().for_each(|x| *x *= inv);
                }
            }
            Stmt::Store { frag, dst } => self.store(*frag, dst, out)?,
            Stmt::StoreLse { m, l, dst } => self.store_lse(*m, *l, dst, out)?,
            Stmt::LoadRows { frag, src, pad } => self.load_rows(*frag, src, *pad)?,
            Stmt::Vote { var, s, rows } => {
                let v = self.vote(*s, *rows);
                self.vars.insert(*var, v);
            }
            Stmt::Dequantize { s, row_scale, col_scale, col_bias } => self.dequantize(*s, *row_scale, col_scale, col_bias)?,
            Stmt::Threshold { rows, bias } => {
                for r in 0..self.program.config.block_q() as usize {
                    let b = bias.map_or(0.0, |b| self.frags[b.0][r]);
                    let t = &mut self.frags[rows.0][r];
                    *t = select::threshold(&mut F32, *t, self.launch.scale, b);
                }
            }
            Stmt::StoreMap { index, value } => {
                let (at, v) = (self.eval(index)?, self.eval(value)?);
                let len = out.kept.len();
                let slot = usize::try_from(at).ok().and_then(|at| out.kept.get_mut(at));
                *slot.ok_or_else(|| format!("map[{at}] is outside the output map of {len} entries"))? = v;
            }
            Stmt::For { var, begin, end, body, .. } => {
                let (begin, end) = (self.eval(begin)?, self.eval(end)?);
                for i in begin..end {
                    self.vars.insert(*var, i);
                    self.block(body, out)?;
                }
            }
            Stmt::If { cond, body } => {
                if self.eval(cond)? != 0 {
                    self.block(body, out)?;
                }
            }
            Stmt::VisitTiles { .. } | Stmt::VisitMask { .. } => {
                return Err("visit placeholders must be lowered by passes::visit first".into());
            }
        }
        Ok(())
    }

    fn stage(&self, buf: BufId, stage: &Expr) -> Result<usize, String> {
        let s = self.eval(stage)?;
        let b = self.program.shared(buf);
        usize::try_from(s)
            .ok()
            .filter(|&s| s < b.stages as usize)
            .ok_or_else(|| format!("stage {s} of {} is out of range (stages: {})", b.name, b.stages))
    }

    /// Which global tensor, its heads and rows.
    fn tensor(&self, t: Tensor) -> (&'a [f32], usize, usize) {
        let l = self.launch;
        match t {
            Tensor::Q => (l.q, l.heads, l.seq_q),
            Tensor::K => (l.k, l.kv_heads, l.seq_kv),
            Tensor::V => (l.v, l.kv_heads, l.seq_kv),
            Tensor::O | Tensor::Lse => (&[], l.heads, l.seq_q),
            Tensor::OSplit | Tensor::LseSplit => (&[], l.heads, l.seq_q * l.splits),
            Tensor::Theta => (self.rows.theta, l.heads, l.seq_q),
            Tensor::QScale => (self.rows.low_bit.map_or(&[], |s| s.q_scale), l.heads, l.seq_q),
            Tensor::KScale => (self.rows.low_bit.map_or(&[], |s| s.k_scale), l.kv_heads, l.seq_kv),
            Tensor::Qmk => (self.rows.low_bit.map_or(&[], |s| s.qmk), l.heads, l.seq_kv),
            Tensor::QkMean => (self.rows.low_bit.map_or(&[], |s| s.qk_mean), l.heads, l.seq_q),
        }
    }

    /// Checks (batch, head) against the tensor and returns its plane: `batch · heads + head`.
    fn plane(&self, t: &GlobalTile) -> Result<usize, String> {
        let (_, heads, _) = self.tensor(t.tensor);
        let (b, h) = (self.eval(&t.batch)?, self.eval(&t.head)?);
        if b < 0 || b as usize >= self.launch.batch || h < 0 || h as usize >= heads {
            return Err(format!("{}[{b}, {h}] is out of bounds", t.tensor.name()));
        }
        Ok(b as usize * heads + h as usize)
    }

    /// The offset of the first row of the tile's (batch, head) plane.
    fn base(&self, t: &GlobalTile, row_elems: usize) -> Result<usize, String> {
        Ok(self.plane(t)? * self.tensor(t.tensor).2 * row_elems)
    }

    /// The token of tile row `r`, or `None` when the row lies outside the grid; a valid row's
    /// token must lie inside the tensor (of `tokens` tokens).
    fn token(&self, t: &GlobalTile, r: usize, tokens: usize) -> Result<Option<usize>, String> {
        let row = |v: Var| if v == Var::Row { Some(r as i32) } else { self.vars.get(&v).copied() };
        if self.eval_in(&t.valid, &row)? == 0 {
            return Ok(None);
        }
        let token = self.eval_in(&t.token, &row)?;
        if token < 0 || token as usize >= tokens {
            return Err(format!("{} row {r} is token {token}, outside its {tokens} tokens", t.tensor.name()));
        }
        Ok(Some(token as usize))
    }

    fn copy(&mut self, dst: BufId, stage: &Expr, src: &GlobalTile, engine: CopyEngine) -> Result<(), String> {
        let stage = self.stage(dst, stage)?;
        if self.raced(dst, stage) {
            return Err(format!(
                "copy into {}[{stage}] races with reads of it since the last barrier",
                self.program.shared(dst).name
            ));
        }
        let b = self.program.shared(dst);
        let (rows, cols) = (b.rows as usize, b.cols as usize);
        let (data, _, _) = self.tensor(src.tensor);
        let base = self.base(src, cols)?;
        let mut tile = vec![0.0; rows * cols];
        let plane = self.plane(src)?;
        let tokens = match engine {
            CopyEngine::CpAsync => self.tensor(src.tensor).2,
            CopyEngine::Bitmap(_) | CopyEngine::BitmapMeta => self.launch.compressed,
        };
        for r in 0..rows {
            if let Some(token) = self.token(src, r, tokens)? {
                let row = &mut tile[r * cols..(r + 1) * cols];
                match engine {
                    CopyEngine::CpAsync => {
                        let at = base + token * cols;
                        for (t, &x) in row.iter_mut().zip(&data[at..at + cols]) {
                            *t = match self.program.operands {
                                Operands::Dtype => round_to(self.program.dtype, x),
                                // What an int8 store of the code holds.
                                Operands::Int8 => x.round_ties_even().clamp(-128.0, 127.0),
                            };
                        }
                    }
                    CopyEngine::Bitmap(order) => self.decode_row(src, order, plane, token, row)?,
                    // What the bytes say is the kernel's business; that they landed before a
                    // `CopyValues` or `Expand` reads them is checked here.
                    CopyEngine::BitmapMeta => {}
                }
            }
        }
        self.open_group.push(PendingCopy { buf: dst, stage, data: tile });
        Ok(())
    }

    /// One token's row of a K/V tile read from its bitmap-compressed cache element by element
    /// (`BitmapCache::locate` and `value_index`, which the kernel's expansion agrees with);
    /// pruned elements are 0.
    fn decode_row(&self, src: &GlobalTile, order: TileOrder, plane: usize, token: usize, row: &mut [f32]) -> Result<(), String> {
        let cache = match src.tensor {
            Tensor::K => self.launch.k_bitmap,
            Tensor::V => self.launch.v_bitmap,
            _ => None,
        }
        .ok_or_else(|| format!("{} is read as a bitmap cache, but the launch passed none", src.tensor.name()))?;
        if cache.order != order {
            return Err(format!("{} bitmap cache is in {:?} order, the kernel reads {order:?}", src.tensor.name(), cache.order));
        }
        for (channel, out) in row.iter_mut().enumerate() {
            let at = BitmapCache::locate(order, cache.head_dim, token, channel).and_then(|(t, i)| cache.value_index(plane, t, i));
            *out = at.map_or(0.0, |at| crate::format::to_f32(cache.dtype, cache.values[at]));
        }
        Ok(())
    }

    /// Whether `(a, sa)` and `(b, sb)` share bytes: where `passes::smem` placed both, whether
    /// the stages' byte ranges meet; before that, the same stage, or any stages of two buffers
    /// one of which lies over the other, or both over a third (`Shared::overlay`).
    fn shares_bytes(&self, (a, sa): (BufId, usize), (b, sb): (BufId, usize)) -> bool {
        let elem = self.program.elem_bytes();
        let range = |x: BufId, s: usize| {
            let buf = &self.program.shared[x.0];
            let len = buf.stage_bytes(elem) as usize;
            buf.offset.map(|at| at as usize + s * len..at as usize + (s + 1) * len)
        };
        if let (Some(x), Some(y)) = (range(a, sa), range(b, sb)) {
            return x.start < y.end && y.start < x.end;
        }
        let under = |x: BufId| self.program.shared[x.0].overlay.unwrap_or(x);
        if a == b { sa == sb } else { under(a) == under(b) }
    }

    /// Whether writing `buf[stage]` now races with a read since the last barrier.
    fn raced(&self, buf: BufId, stage: usize) -> bool {
        self.read_since_barrier.iter().any(|&r| self.shares_bytes(r, (buf, stage)))
    }

    /// A write landed in `buf[stage]`: what any buffer sharing its bytes held is gone (NaN, so
    /// that a program reading it there computes NaN here, as it would read garbage on a GPU).
    fn clobber_overlays(&mut self, buf: BufId) {
        let stages = |x: BufId| 0..self.program.shared[x.0].stages as usize;
        for other in 0..self.shared.len() {
            let o = BufId(other);
            if o != buf && stages(o).any(|so| stages(buf).any(|sb| self.shares_bytes((o, so), (buf, sb)))) {
                self.shared[other].fill(f32::NAN);
            }
        }
    }

    /// `Stmt::Expand`: the staged tile `src` into the one-stage tile `dst`, transposed in
    /// `Keys` order (each 64-element bitmap tile, a column of the tile, becomes a row).
    fn expand(&mut self, dst: BufId, (src, stage): (BufId, &Expr), (meta, meta_stage): (BufId, &Expr), order: TileOrder) -> Result<(), String> {
        self.read_shared(meta, meta_stage)?;
        let (id, off) = self.read_shared(src, stage)?;
        let (s, t) = (self.program.shared(src), self.program.shared(dst));
        let (rows, cols) = (s.rows as usize, s.cols as usize);
        let transpose = order == TileOrder::Keys;
        let shape = if transpose { (s.cols, s.rows) } else { (s.rows, s.cols) };
        if (t.rows, t.cols) != shape || t.stages != 1 {
            return Err(format!("{} ({}x{}) cannot hold {} expanded in {order:?} order", t.name, t.rows, t.cols, s.name));
        }
        if self.raced(dst, 0) {
            return Err(format!("expanding into {} races with reads of it since the last barrier", t.name));
        }
        let tile = self.shared[id][off..off + rows * cols].to_vec();
        for r in 0..rows {
            for c in 0..cols {
                let at = if transpose { c * rows + r } else { r * cols + c };
                self.shared[dst.0][at] = tile[r * cols + c];
            }
        }
        self.clobber_overlays(dst);
        self.unpublished.insert((dst, 0));
        Ok(())
    }

    /// Reads a shared stage for an mma operand, checking that its data is there for every warp.
    fn read_shared(&mut self, buf: BufId, stage: &Expr) -> Result<(usize, usize), String> {
        let stage = self.stage(buf, stage)?;
        let name = self.program.shared(buf).name;
        let in_flight = self.open_group.iter().chain(self.groups.iter().flatten());
        if in_flight.into_iter().any(|c| self.shares_bytes((c.buf, c.stage), (buf, stage))) {
            return Err(format!("{name}[{stage}] is read before its async copy was waited for"));
        }
        if self.unpublished.iter().any(|&u| self.shares_bytes(u, (buf, stage))) {
            return Err(format!("{name}[{stage}] is read before a barrier published its copy"));
        }
        self.read_since_barrier.insert((buf, stage));
        let b = self.program.shared(buf);
        Ok((buf.0, stage * (b.rows * b.cols) as usize))
    }

    fn mma(&mut self, acc: FragId, a: &Operand, b: &Operand) -> Result<(), String> {
        let bq = self.program.config.block_q() as usize;
        let n = self.program.frag(acc).cols as usize;
        // A as (values, offset, k): row-major [bq][k].
        let (a_vals, k) = match a {
            Operand::Shared { buf, stage, kn: false, part: Part::Whole } => {
                let (id, off) = self.read_shared(*buf, stage)?;
                let cols = self.program.shared(*buf).cols as usize;
                (self.shared[id][off..off + bq * cols].to_vec(), cols)
            }
            Operand::Frag(id) => (self.frags[id.0].clone(), self.program.frag(*id).cols as usize),
            Operand::Shared { .. } => return Err("A operand must be a whole [m][k] tile".into()),
        };
        // B as a row-major [k][n] copy; row r of A multiplies its warp's part (`Part`).
        let Operand::Shared { buf, stage, kn, part } = b else {
            return Err("B operand must be in shared memory".into());
        };
        let (id, off) = self.read_shared(*buf, stage)?;
        let sb = self.program.shared(*buf);
        let (rows, cols) = (sb.rows as usize, sb.cols as usize);
        let parts = self.program.key_parts as usize;
        let (part_rows, part_cols) = self.program.part_dims(*buf, *part);
        let (part_rows, part_cols) = (part_rows as usize, part_cols as usize);
        let (bk, bn) = if *kn { (part_rows, part_cols) } else { (part_cols, part_rows) };
        if bk != k || bn != n || (*part != Part::Whole && parts * part_rows * part_cols != rows * cols) {
            return Err(format!("mma shapes disagree: A is {bq}x{k}, B ({part:?} of {rows}x{cols}) is {bk}x{bn}, acc has {n} cols"));
        }
        let src = &self.shared[id][off..off + rows * cols];
        let mut out = self.frags[acc.0].clone();
        for r in 0..bq {
            let (r0, c0) = match part {
                Part::Whole => (0, 0),
                Part::Rows => (self.key_part(r) * part_rows, 0),
                Part::Cols => (0, self.key_part(r) * part_cols),
            };
            let at = |kk: usize, nn: usize| {
                let (tr, tc) = if *kn { (kk, nn) } else { (nn, kk) };
                src[(r0 + tr) * cols + c0 + tc]
            };
            for c in 0..n {
                let mut sum = out[r * n + c];
                for kk in 0..k {
                    sum += a_vals[r * k + kk] * at(kk, c);
                }
                out[r * n + c] = sum;
            }
        }
        self.frags[acc.0] = out;
        Ok(())
    }

    fn barrier(&mut self) {
        self.read_since_barrier.clear();
        self.unpublished.clear();
    }

    /// `Stmt::MergeParts`: the other parts' rows `r + 16·w` of part 0's row `r` (slab `s` of
    /// warp `w` is tile rows `(s·warps + w)·16 ..`), folded in part order, as the kernel does.
    fn merge_parts(&mut self, o: FragId, m: FragId, l: FragId, scratch: BufId) -> Result<(), String> {
        if self.raced(scratch, 0) {
            return Err(format!("writing the partial states to {} races with reads of it since the last barrier", self.program.shared(scratch).name));
        }
        let in_flight = self.open_group.iter().chain(self.groups.iter().flatten());
        if in_flight.into_iter().any(|c| self.shares_bytes((c.buf, c.stage), (scratch, 0))) {
            return Err(format!("writing the partial states to {} races with an async copy into its bytes", self.program.shared(scratch).name));
        }
        self.clobber_overlays(scratch);
        self.barrier();
        self.read_since_barrier.insert((scratch, 0));
        let a = &mut F32;
        let scale_log2 = self.launch.scale * std::f32::consts::LOG2_E;
        let d = self.program.frag(o).cols as usize;
        let parts = self.program.key_parts as usize;
        let firsts: Vec<usize> = (0..self.program.config.block_q() as usize).filter(|&r| self.key_part(r) == 0).collect();
        for r in firsts {
            let rows: Vec<usize> = (0..parts).map(|w| r + 16 * w).collect();
            let of = |frag: &[f32], col: usize, width: usize| -> Vec<f32> { rows.iter().map(|&row| frag[row * width + col]).collect() };
            let (max, weights) = softmax::part_weights(a, &of(&self.frags[m.0], 0, 1), scale_log2);
            let sum = softmax::weighted_sum(a, &of(&self.frags[l.0], 0, 1), &weights);
            for c in 0..d {
                self.frags[o.0][r * d + c] = softmax::weighted_sum(a, &of(&self.frags[o.0], c, d), &weights);
            }
            (self.frags[m.0][r], self.frags[l.0][r]) = (max, sum);
        }
        Ok(())
    }

    /// The key part (`Program::key_parts`) that tile row `r` multiplies: its warp's, where the
    /// warps split the keys (slab `s` of warp `w` is rows `(s·warps + w)·16 ..`), else the only one.
    fn key_part(&self, r: usize) -> usize {
        (r / 16) % self.program.key_parts as usize
    }

    fn mask(&mut self, frag: FragId, keep: &Expr) -> Result<(), String> {
        let cols = self.program.frag(frag).cols as usize;
        for r in 0..self.program.config.block_q() as usize {
            let first = self.key_part(r) * cols;
            for c in 0..cols {
                let visible = self.eval_in(keep, &|v| match v {
                    Var::Row => Some(r as i32),
                    Var::Col => Some((first + c) as i32),
                    other => self.vars.get(&other).copied(),
                })?;
                if visible == 0 {
                    self.frags[frag.0][r * cols + c] = f32::NEG_INFINITY;
                }
            }
        }
        Ok(())
    }

    fn softmax(&mut self, s: FragId, p: FragId, m: FragId, l: FragId, o: FragId) {
        let a = &mut F32;
        let scale_log2 = self.launch.scale * std::f32::consts::LOG2_E;
        let n = self.program.frag(s).cols as usize;
        let d = self.program.frag(o).cols as usize;
        for r in 0..self.program.config.block_q() as usize {
            let row = &self.frags[s.0][r * n..(r + 1) * n];
            let tile_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let re = softmax::rescale(a, self.frags[m.0][r], tile_max, scale_log2);
            let probs: Vec<f32> =
                row.iter().map(|&x| softmax::prob(a, x, re.shift, scale_log2)).collect();
            let sum: f32 = probs.iter().sum();
            self.frags[l.0][r] = softmax::running_sum(a, self.frags[l.0][r], re.alpha, sum);
            self.frags[m.0][r] = re.m;
            self.frags[o.0][r * d..(r + 1) * d].iter_mut().for_each(|x| *x *= re.alpha);
            for (dst, x) in self.frags[p.0][r * n..(r + 1) * n].iter_mut().zip(probs) {
                *dst = round_to(self.program.dtype, x);
            }
        }
    }

    fn store(&mut self, frag: FragId, dst: &GlobalTile, out: &mut Output) -> Result<(), String> {
        let cols = self.program.frag(frag).cols as usize;
        let base = self.base(dst, cols)?;
        let tokens = self.tensor(dst.tensor).2;
        // Split-KV partial outputs stay f32 until they are merged.
        let (target, dtype) = match dst.tensor {
            Tensor::OSplit => (&mut out.o_split, None),
            _ => (&mut out.o, Some(self.program.dtype)),
        };
        for r in 0..self.program.config.block_q() as usize {
            if let Some(token) = self.token(dst, r, tokens)? {
                let at = base + token * cols;
                for (o, &x) in target[at..at + cols].iter_mut().zip(&self.frags[frag.0][r * cols..]) {
                    *o = dtype.map_or(x, |dt| round_to(dt, x));
                }
            }
        }
        Ok(())
    }

    fn store_lse(&mut self, m: FragId, l: FragId, dst: &GlobalTile, out: &mut Output) -> Result<(), String> {
        let scale_log2 = self.launch.scale * std::f32::consts::LOG2_E;
        let base = self.base(dst, 1)?;
        let tokens = self.tensor(dst.tensor).2;
        let target = if dst.tensor == Tensor::LseSplit { &mut out.lse_split } else { &mut out.lse };
        for r in 0..self.program.config.block_q() as usize {
            if let Some(token) = self.token(dst, r, tokens)? {
                target[base + token] =
                    softmax::lse(&mut F32, self.frags[m.0][r], self.frags[l.0][r], scale_log2);
            }
        }
        Ok(())
    }

    fn load_rows(&mut self, frag: FragId, src: &GlobalTile, pad: f32) -> Result<(), String> {
        let (data, _, tokens) = self.tensor(src.tensor);
        let base = self.base(src, 1)?;
        for r in 0..self.program.config.block_q() as usize {
            let value = match self.token(src, r, tokens)? {
                Some(token) => *data.get(base + token).ok_or_else(|| format!("{} has no row {}", src.tensor.name(), base + token))?,
                None => pad,
            };
            self.frags[frag.0][r] = value;
        }
        Ok(())
    }

    /// One f32 per column of a `cols`-column fragment from `src` (whose row is the column), 0
    /// for columns outside it.
    fn load_cols(&self, src: &GlobalTile, cols: usize) -> Result<Vec<f32>, String> {
        let (data, _, tokens) = self.tensor(src.tensor);
        let base = self.base(src, 1)?;
        (0..cols)
            .map(|c| match self.token(src, c, tokens)? {
                Some(token) => data.get(base + token).copied().ok_or_else(|| format!("{} has no row {}", src.tensor.name(), base + token)),
                None => Ok(0.0),
            })
            .collect()
    }

    fn dequantize(&mut self, s: FragId, row_scale: FragId, col_scale: &GlobalTile, col_bias: &GlobalTile) -> Result<(), String> {
        let n = self.program.frag(s).cols as usize;
        let (scale, bias) = (self.load_cols(col_scale, n)?, self.load_cols(col_bias, n)?);
        for r in 0..self.program.config.block_q() as usize {
            let rs = self.frags[row_scale.0][r];
            for c in 0..n {
                let x = &mut self.frags[s.0][r * n + c];
                let pair = select::pair_scale(&mut F32, rs, scale[(c % 8) & !1]);
                *x = select::estimate(&mut F32, *x, pair, bias[c]);
            }
        }
        Ok(())
    }

    /// 1 iff some row's maximum score reaches its threshold, as the kernel decides.
    fn vote(&self, s: FragId, rows: FragId) -> i32 {
        let n = self.program.frag(s).cols as usize;
        let scores = &self.frags[s.0];
        let passes = self.frags[rows.0].iter().enumerate().take(self.program.config.block_q() as usize).any(|(r, &threshold)| {
            let row_max = scores[r * n..(r + 1) * n].iter().fold(f32::NEG_INFINITY, |m, &x| Arith::max(&mut F32, m, x));
            select::passes(&mut F32, row_max, threshold)
        });
        passes as i32
    }
}
