//! The decode program of a `visit = dense`, `load = bitmap(k, v)` kernel: one new query token
//! per head attends to a Mustafar cache, the bitmap-compressed region (`Compressed` tokens per
//! KV head) followed by the dense recent window (`SeqKv` tokens, the `k`/`v` tensors).
//!
//! - **GQA packing.** The query heads of one KV group share a query tile: row `r` of a warp's
//!   rows is query head `kv_head·group + r`. The program sees Q (and O, LSE) as `[batch,
//!   kv_heads, group, head_dim]`, which is the same memory as `[batch, heads, 1, head_dim]`:
//!   launches pass `heads = kv_heads` and `seq_q = group` (see [`DecodeSizes`]). Rows past the
//!   group are zero-filled and never stored.
//! - **The warps split the keys** (`Program::key_parts`): a group of 4 heads fills a quarter of
//!   one warp's 16 rows, so rather than give the other warps nothing to multiply, every warp
//!   holds the whole group and multiplies its own part of each KV tile (16 of 64 keys). At the
//!   end the warps' partial states are folded into warp 0's (`Stmt::MergeParts`), which
//!   stores the split's result.
//! - **Split-KV (flash-decoding).** Grid axis x splits each plane's compressed tiles into
//!   `Splits` contiguous ranges, so that batch 1 still fills the GPU. Each CTA writes its
//!   normalised partial output (f32) and LSE to a workspace (`Tensor::OSplit`/`LseSplit`); the
//!   module's merge entry combines them (`llvm::merge`, `interp::merge_splits`, both with
//!   `semantics::softmax::merge_weight`). A merge in the same kernel would need a grid-wide
//!   "last CTA" counter and its fence; the second launch costs a few µs and keeps both simple.
//! - **Compressed tiles are staged** (`Staged`): bitmaps and offsets, then packed values, are
//!   copied with `cp.async` steps ahead and expanded into a dense tile at their step, so
//!   inside the loop no thread waits on memory beyond L1 (the plane's value base, one word).
//! - **The dense window** is read by the last split after its compressed tiles, with plain
//!   `cp.async` tiles and a column mask on the ragged last tile, so every split but the last
//!   streams compressed bytes only. Its stages lie over the staged values' bytes.

use tessera_desc::{Config, KernelDesc, Load, Visit};

use super::from_desc::{BUF_K, BUF_Q, BUF_V, FRAG_L, FRAG_M, FRAG_O, FRAG_S, attend_values, buffers, finish, kv_step, scores, shared_op, start};
use super::{BufId, CopyEngine, Expr, Form, Frag, FragId, FragKind, GlobalTile, Locals, Operand, Operands, Part, Program, Shared, Stmt, Tensor, Var};
use crate::format::TileOrder;

/// A decode launch's sizes in the program's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeSizes {
    pub batch: usize,
    /// Query heads and KV heads of the model; `heads` is a multiple of `kv_heads`.
    pub heads: usize,
    pub kv_heads: usize,
    /// Compressed tokens per KV head (a multiple of the program's `block_kv`).
    pub compressed: usize,
    /// Dense window tokens per KV head.
    pub window: usize,
    pub splits: usize,
}

impl DecodeSizes {
    /// Query heads per KV head: the rows of a query tile that are real.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads.max(1)
    }

    /// Checks the sizes against a decode program, so that a bad launch is an error, not a
    /// kernel reading out of bounds.
    pub fn check(&self, program: &Program) -> Result<(), String> {
        let (bq, bkv) = (
            program.rows_per_part() as usize,
            program.config.block_kv() as usize,
        );
        if self.batch == 0
            || self.kv_heads == 0
            || self.heads == 0
            || !self.heads.is_multiple_of(self.kv_heads)
        {
            return Err(format!(
                "batch {}, heads {}, kv_heads {}: all must be positive and heads a multiple of kv_heads",
                self.batch, self.heads, self.kv_heads
            ));
        }
        if self.group() > bq {
            return Err(format!(
                "{} query heads per KV head do not fit the kernel's {bq} query rows per warp",
                self.group()
            ));
        }
        if !self.compressed.is_multiple_of(bkv) {
            return Err(format!(
                "{} compressed tokens are not a multiple of the kernel's KV tile ({bkv})",
                self.compressed
            ));
        }
        if self.compressed + self.window == 0 {
            return Err("the cache holds no tokens".into());
        }
        if self.splits == 0 || self.splits > 65535 {
            return Err(format!("splits = {} must be from 1 to 65535", self.splits));
        }
        // Token and tile indices within a plane are i32 in the kernel (addresses are i64).
        let d = program.head_dim as usize;
        for (what, n) in [
            ("batch", self.batch),
            ("heads", self.heads),
            ("compressed tokens", self.compressed),
            ("window tokens", self.window),
        ] {
            if n.saturating_mul(d) > i32::MAX as usize {
                return Err(format!(
                    "{what} = {n} overflows the kernel's 32-bit indices"
                ));
            }
        }
        Ok(())
    }
}

/// The query rows of a decode config, which must hold a KV head's GQA group: one warp's, since
/// every warp holds the whole group (the warps split the keys, `Program::rows_per_part`).
pub fn query_rows(cfg: &Config) -> u32 {
    cfg.block_q() / key_parts(cfg)
}

/// The parts a decode program splits each KV tile's keys into: one per warp.
fn key_parts(cfg: &Config) -> u32 {
    cfg.warps.max(1)
}

pub fn build(desc: &KernelDesc, cfg: &Config) -> Result<Program, String> {
    if desc.visit != Visit::Dense
        || desc.load != Load::Bitmap(tessera_desc::BitmapLoad { k: true, v: true })
    {
        return Err(format!(
            "a decode program needs visit = dense and load = bitmap(k, v); `{}` has visit = {}, load = {}",
            desc.name,
            desc.visit.name(),
            desc.load
        ));
    }
    let (bq, bkv, d, parts) = (cfg.block_q(), cfg.block_kv() as i32, desc.head_dim, key_parts(cfg));
    if !bq.is_multiple_of(16 * parts) || !(bkv as u32).is_multiple_of(16 * parts) {
        return Err(format!("a decode program splits its keys over its {parts} warps: block_q = {bq} and block_kv = {bkv} must be multiples of {}", 16 * parts));
    }
    let part = |p: Part| if parts > 1 { p } else { Part::Whole };
    let mut locals = Locals::default();
    let [split, head, batch, tiles, per_split, begin, end, j, w] = [
        "split",
        "kv_head",
        "batch",
        "tiles",
        "per_split",
        "begin",
        "end",
        "j",
        "w",
    ]
    .map(|n| locals.fresh(n));
    let (mut shared, mut frags) = buffers(bq, bkv as u32, d, parts);
    let staged = Staged::add(&mut shared, bkv as u32, d, cfg.stages, [part(Part::Cols), part(Part::Rows)]);

    // Query rows are the group's heads (`seq_q` = group); outputs go to split `split`'s rows.
    let plane = |tensor, token: Expr, valid: Expr| GlobalTile {
        tensor,
        batch: batch.into(),
        head: head.into(),
        token,
        valid,
    };
    // Slab `s` of warp `w` (tile rows `(s·warps + w)·16 ..`) is rows `s·16 ..` of part `w`.
    let row = || Expr::var(Var::Row);
    let query_row = || row().div(16 * parts as i32).mul(16).add(row().rem(16));
    let real_row = || query_row().lt(Var::SeqQ);
    // Only part 0's rows hold the merged result.
    let stored_row = || real_row().and(row().div(16).rem(parts as i32).lt(1));
    let split_row = || Expr::var(split).mul(Var::SeqQ).add(query_row());
    // Compressed tiles are whole: `check` makes `Compressed` a multiple of the KV tile.
    let compressed = |tensor, t: Expr| plane(tensor, t.mul(bkv).add(row()), 1.into());
    let window_token = || Expr::var(w).mul(bkv).add(row());
    let dense = |tensor| {
        (
            plane(tensor, window_token(), window_token().lt(Var::SeqKv)),
            CopyEngine::CpAsync,
        )
    };
    let window_keep = Expr::var(w).mul(bkv).add(Var::Col).lt(Var::SeqKv);
    let window_partial = Expr::var(Var::SeqKv).lt(Expr::var(w).add(1).mul(bkv));

    let mut body = vec![
        Stmt::Let {
            var: split,
            value: Var::Cta(0).into(),
        },
        Stmt::Let {
            var: head,
            value: Var::Cta(1).into(),
        },
        Stmt::Let {
            var: batch,
            value: Var::Cta(2).into(),
        },
        Stmt::Let {
            var: tiles,
            value: Expr::var(Var::Compressed).div(bkv),
        },
        Stmt::Let {
            var: per_split,
            value: Expr::var(tiles)
                .add(Expr::var(Var::Splits).sub(1))
                .div(Var::Splits),
        },
        Stmt::Let {
            var: begin,
            value: Expr::var(split).mul(per_split).min(tiles),
        },
        Stmt::Let {
            var: end,
            value: Expr::var(begin).add(per_split).min(tiles),
        },
    ];
    body.extend(start(plane(Tensor::Q, query_row(), real_row())));
    // Where the warps split the keys, each over one 16-row slab, Q's A fragments are loaded
    // once, so that no KV step reads Q from shared memory again (shared traffic bounds the
    // step, BENCHMARKS.md). A single warp expands four bitmap tiles a step, and a warp of two
    // slabs holds twice the fragments: both spill with Q held as well.
    let q_frag = (parts > 1 && bq == 16 * parts).then(|| {
        frags.push(Frag { name: "Qa", cols: d, kind: FragKind::Operand });
        FragId(frags.len() - 1)
    });
    if let Some(frag) = q_frag {
        body.extend([Stmt::Wait { pending: 0 }, Stmt::Barrier, Stmt::LoadOperand { frag, src: BUF_Q }]);
    }
    body.extend(staged.compressed_loop(j, begin.into(), end.into(), &compressed));
    // Not needed for correctness (the loop body ends with a barrier, and an empty loop reads
    // nothing), but it keeps the window loop's first copies, into the staged values' bytes,
    // visibly after every read of them; it runs once per CTA.
    body.push(Stmt::Barrier);
    let last_split = Expr::var(Var::Splits).sub(1).le(split);
    body.push(Stmt::For {
        var: w,
        begin: 0.into(),
        end: Expr::var(Var::SeqKv).ceil_div(bkv).mul(last_split),
        stages: cfg.stages,
        body: kv_step(
            dense(Tensor::K),
            dense(Tensor::V),
            Some(Stmt::Mask {
                frag: FRAG_S,
                keep: window_keep,
                when: window_partial,
            }),
            part(Part::Rows),
        ),
    });
    let body = match q_frag {
        Some(frag) => crate::passes::rewrite(body, &mut |s| {
            Ok(vec![match s {
                Stmt::Mma { acc, a: Operand::Shared { buf: BUF_Q, .. }, b, engine } => Stmt::Mma { acc, a: Operand::Frag(frag), b, engine },
                other => other,
            }])
        })?,
        None => body,
    };
    let mut program = Program {
        name: desc.name.to_string(),
        dtype: desc.dtype,
        operands: Operands::Dtype,
        head_dim: d,
        config: *cfg,
        grid: [Var::Splits.into(), Var::Heads.into(), Var::Batch.into()],
        shared,
        frags,
        body,
        locals,
        min_ctas_per_sm: 1,
        key_parts: parts,
    };
    if parts > 1 {
        let registers: u32 = [FRAG_O, FRAG_M, FRAG_L].iter().map(|&f| program.frag_registers(program.frag(f).kind, program.frag(f).cols)).sum();
        program.shared.push(Shared {
            form: Form::Partials,
            // After both loops nothing reads the loops' buffers: from the window's K stages on
            // (which the staged K values lie over too), the scratch may run on over V's, the
            // metadata and the dense tiles where it is larger (128 rows, or one stage).
            overlay: Some(BUF_K),
            ..Shared::tile("Parts", parts - 1, 32 * registers)
        });
        let scratch = BufId(program.shared.len() - 1);
        // The pipelined window loop leaves its last tile's reads of Ks unfenced.
        program.body.extend([Stmt::Barrier, Stmt::MergeParts { o: FRAG_O, m: FRAG_M, l: FRAG_L, scratch }]);
    }
    program.body.extend(finish(
        plane(Tensor::OSplit, split_row(), stored_row()),
        plane(Tensor::LseSplit, split_row(), stored_row()),
    ));
    Ok(program)
}

/// The buffers of the compressed tokens' loop. Each KV step's compressed K and V travel in
/// three hops, so that no thread waits on DRAM in the loop: their bitmaps and value
/// offsets (`Meta`) are copied `2(S-1)` steps ahead, their packed values (`Values`, found
/// with those offsets) `S-1` steps ahead, and at its step each is expanded into a dense tile
/// that the products read: K as `Kᵀ` (a bitmap tile of K is 64 tokens of one channel, one row
/// of `Kᵀ`), V as itself. A value copy needs its offsets published by an earlier wait and
/// barrier; with `S-2` groups left in flight at each step's wait, offsets issued `2(S-1)`
/// steps ahead are the latest that have landed when their values are issued.
struct Staged {
    stages: u32,
    meta: [BufId; 2],
    values: [BufId; 2],
    dense: [BufId; 2],
    /// The warps' parts of the dense Kᵀ (its columns are tokens) and V (rows).
    parts: [Part; 2],
}

impl Staged {
    fn add(shared: &mut Vec<Shared>, bkv: u32, d: u32, stages: u32, parts: [Part; 2]) -> Staged {
        let lead = stages - 1;
        let mut add = |s: Shared| {
            shared.push(s);
            BufId(shared.len() - 1)
        };
        let staged = |name, form, stages, overlay| Shared { form, stages, overlay, ..Shared::tile(name, bkv, d) };
        Staged {
            stages,
            meta: [
                add(staged("Kmeta", Form::Meta, 2 * lead + 1, None)),
                add(staged("Vmeta", Form::Meta, 2 * lead + 1, None)),
            ],
            // The values are placed under the dense window's K and V stages, which have the
            // same bytes (`passes::pipeline` gives those `stages` stages too).
            values: [
                add(staged("Kpacked", Form::Values, stages, Some(BUF_K))),
                add(staged("Vpacked", Form::Values, stages, Some(BUF_V))),
            ],
            // V is expanded after the scores have read Kᵀ, into the same bytes: a CTA small
            // enough for two per SM, so that one's products overlap the other's expansion.
            dense: {
                let kt = add(Shared::tile("Kt", d, bkv));
                [kt, add(Shared { overlay: Some(kt), ..Shared::tile("Vd", bkv, d) })]
            },
            parts,
        }
    }

    /// The loop over compressed KV tiles `begin..end` (`j`), `tile(tensor, t)` being tile `t`.
    fn compressed_loop(&self, j: Var, begin: Expr, end: Expr, tile: &dyn Fn(Tensor, Expr) -> GlobalTile) -> Vec<Stmt> {
        let (s, lead) = (self.stages as i32, self.stages as i32 - 1);
        let (meta_lead, slots) = (2 * lead, 2 * lead + 1);
        let orders = [TileOrder::Keys, TileOrder::Values];
        let tensors = [Tensor::K, Tensor::V];
        // K's and V's copies of tile `t`, if it is in the split's range.
        let if_in_range = |t: &Expr, copy: &dyn Fn(usize) -> Stmt| Stmt::If { cond: t.clone().lt(end.clone()), body: (0..2).map(copy).collect() };
        let meta_copies = |t: Expr, slot: Expr| {
            if_in_range(&t, &|i| Stmt::Copy { dst: self.meta[i], stage: slot.clone(), src: tile(tensors[i], t.clone()), engine: CopyEngine::BitmapMeta })
        };
        let value_copies = |t: Expr, stage: Expr, slot: Expr| {
            if_in_range(&t, &|i| Stmt::CopyValues {
                dst: self.values[i],
                stage: stage.clone(),
                meta: self.meta[i],
                meta_stage: slot.clone(),
                src: tile(tensors[i], t.clone()),
                order: orders[i],
            })
        };
        let step = |k: i32| Expr::var(j).sub(begin.clone()).add(k);
        let ahead = |k: i32| Expr::var(j).add(k);

        let mut out = Vec::new();
        for k in 0..meta_lead {
            out.push(meta_copies(begin.clone().add(k), k.into()));
            out.push(Stmt::Commit);
        }
        if meta_lead > 0 {
            out.extend([Stmt::Wait { pending: 0 }, Stmt::Barrier]);
        }
        for k in 0..lead {
            out.push(value_copies(begin.clone().add(k), k.into(), k.into()));
            out.push(Stmt::Commit);
        }
        let mut body = Vec::new();
        if lead == 0 {
            // One stage: each step's offsets, then its values, then its expansion, in turn.
            body.extend([meta_copies(ahead(0), 0.into()), Stmt::Commit, Stmt::Wait { pending: 0 }, Stmt::Barrier]);
            body.extend([value_copies(ahead(0), 0.into(), 0.into()), Stmt::Commit, Stmt::Wait { pending: 0 }, Stmt::Barrier]);
        } else {
            body.extend([
                Stmt::Wait { pending: (s - 2) as u32 },
                Stmt::Barrier,
                meta_copies(ahead(meta_lead), step(meta_lead).rem(slots)),
                value_copies(ahead(lead), step(lead).rem(s), step(lead).rem(slots)),
                Stmt::Commit,
            ]);
        }
        let expand = |i: usize| Stmt::Expand {
            dst: self.dense[i],
            src: self.values[i],
            stage: step(0).rem(s),
            meta: self.meta[i],
            meta_stage: step(0).rem(slots),
            order: orders[i],
        };
        body.extend([expand(0), Stmt::Barrier]);
        body.extend(scores(shared_op(self.dense[0], true, self.parts[0]), None));
        // The softmax before V's expansion: its packed P holds half the registers of S there.
        let [softmax, product] = attend_values(shared_op(self.dense[1], true, self.parts[1]));
        // Vd lies over Kt: every warp must be done reading Kt.
        body.extend([softmax, Stmt::Barrier, expand(1), Stmt::Barrier, product]);
        // Not needed for correctness (the next step writes shared memory only after a barrier),
        // but faster with it: without it, and with a one-XOR slot address, the kernel was
        // 4-6% slower (BENCHMARKS.md, session 7).
        body.push(Stmt::Barrier);
        out.push(Stmt::For { var: j, begin, end, stages: 1, body });
        out
    }
}
