//! The small entries around SALE's selection program (`ir::select`) that turn its votes into a
//! block-sparse kernel's lists on the GPU, so that no block map crosses to the host (at 128K
//! tokens and 32 heads it has 2.7·10⁸ tiles):
//!
//! - `sale_theta`: the per-row thresholds `θ = LSE + ln τ_h` the selection compares scores
//!   with, from the LSE of the forced-only pass (`log_tau` holds ln τ per query head, -inf for a
//!   head that runs dense, so that every visible element votes);
//! - `sale_forced_lists` and `sale_lists`: one warp per (plane, query tile) row writes the row's
//!   kept KV tiles in ascending order and their count, as `format::BlockLists` lays them out.
//!   A tile is kept when it is causally visible and forced (sink, causal diagonal, or the
//!   segment-aligned local window: `reference::sale::forced_map`'s rule) or, in `sale_lists`,
//!   voted for in the selection's map. Lanes take 32 tiles at a time; a ballot and a population
//!   count give each kept tile its place, so rows come out sorted without a second pass.

use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::values::IntValue;
use inkwell::IntPredicate;

use super::kernel::sreg;
use super::lower::{Res, counted_loop};
use super::standalone::Standalone;

/// Threads per CTA of every entry; `sale_lists` gives each warp one row.
pub const SALE_THREADS: u32 = 128;
/// Parameters of `sale_theta`: the forced pass's LSE (`[planes, rows]` f32, natural log), ln τ
/// per query head (f32), θ out (as the LSE), rows per plane, query heads, and the element count
/// (`planes · rows`).
pub const THETA_PARAMS: [&str; 6] = ["lse", "log_tau", "theta", "rows", "heads", "total"];
/// Parameters of `sale_lists`: the selection's map (`[planes, q_tiles, kv_tiles]` int32, read
/// only where causally visible), the lists and counts out, then the rows (`planes · q_tiles`),
/// query tiles per plane, KV tiles per row, the tokens, the tile sizes, and the forced rule in
/// KV tiles: sink tiles, the local window's minimum, the segment.
pub const LISTS_PARAMS: [&str; 12] =
    ["map", "list", "count", "rows", "q_tiles", "kv_tiles", "seq", "block_q", "block_kv", "sink", "local", "segment"];

/// The entries' names: θ, the forced-only lists, the selected lists.
pub const NAMES: [&str; 3] = ["sale_theta", "sale_forced_lists", "sale_lists"];

type Kernel<'ctx, 'a> = Standalone<'ctx, 'a>;

fn theta<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>) -> Res<()> {
    let mut k = Kernel::new(ctx, module, NAMES[0], &THETA_PARAMS, &|n| ["lse", "log_tau", "theta"].contains(&n), SALE_THREADS)?;
    let (lse, log_tau, theta) = (k.param(0)?.into_pointer_value(), k.param(1)?.into_pointer_value(), k.param(2)?.into_pointer_value());
    let (rows, heads, total) = (k.param(3)?.into_int_value(), k.param(4)?.into_int_value(), k.param(5)?.into_int_value());
    let cta = sreg(module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.x")?;
    let i = k.b.build_int_add(k.b.build_int_mul(cta, k.i32(SALE_THREADS as i64), "")?, k.tid, "")?;
    let inside = k.b.build_int_compare(IntPredicate::ULT, i, total, "")?;
    k.when(inside, |k| {
        let f32t = k.ctx.f32_type();
        let head = k.b.build_int_unsigned_rem(k.b.build_int_unsigned_div(i, rows, "")?, heads, "")?;
        let l = k.load(f32t.into(), k.at(lse, k.i64(i)?, 4)?, 4)?.into_float_value();
        let t = k.load(f32t.into(), k.at(log_tau, k.i64(head)?, 4)?, 4)?.into_float_value();
        k.store(k.at(theta, k.i64(i)?, 4)?, k.b.build_float_add(l, t, "")?, 4)
    })?;
    k.b.build_return(None)?;
    Ok(())
}

/// The unsigned minimum and maximum.
fn umin<'ctx>(k: &Kernel<'ctx, '_>, a: IntValue<'ctx>, b: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
    Ok(k.b.build_select(k.b.build_int_compare(IntPredicate::ULT, a, b, "")?, a, b, "")?.into_int_value())
}

fn lists<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>, name: &str, votes: bool) -> Res<()> {
    let mut k = Kernel::new(ctx, module, name, &LISTS_PARAMS, &|n| ["map", "list", "count"].contains(&n), SALE_THREADS)?;
    let ptr = |k: &Kernel<'ctx, '_>, i| k.param(i).map(|p| p.into_pointer_value());
    let int = |k: &Kernel<'ctx, '_>, i| k.param(i).map(|p| p.into_int_value());
    let (map, list, count) = (ptr(&k, 0)?, ptr(&k, 1)?, ptr(&k, 2)?);
    let [rows, q_tiles, kv_tiles, seq, block_q, block_kv, sink, local, segment] =
        [3, 4, 5, 6, 7, 8, 9, 10, 11].map(|i| int(&k, i));
    let (rows, q_tiles, kv_tiles, seq, block_q, block_kv) = (rows?, q_tiles?, kv_tiles?, seq?, block_q?, block_kv?);
    let (sink, local, segment) = (sink?, local?, segment?);
    let cta = sreg(module, &k.b, "llvm.nvvm.read.ptx.sreg.ctaid.x")?;
    let lane = k.b.build_and(k.tid, k.i32(31), "")?;
    let warp = k.b.build_right_shift(k.tid, k.i32(5), false, "")?;
    let row = k.b.build_int_add(k.b.build_int_mul(cta, k.i32((SALE_THREADS / 32) as i64), "")?, warp, "")?;
    // Whole warps drop out together, so the ballots below see all 32 lanes.
    let inside = k.b.build_int_compare(IntPredicate::ULT, row, rows, "")?;
    k.when(inside, |k| {
        let b = &k.b;
        let qt = b.build_int_unsigned_rem(row, q_tiles, "")?;
        // Visible tiles: those holding a key at or before the tile's last query.
        let q_end = umin(k, b.build_int_mul(b.build_int_add(qt, k.i32(1), "")?, block_q, "")?, seq)?;
        let visible = b.build_int_unsigned_div(b.build_int_add(q_end, b.build_int_sub(block_kv, k.i32(1), "")?, "")?, block_kv, "")?;
        // The local window: at least `local` tiles, grown until the middle between the sinks
        // and it splits into whole segments; all but the sinks when there is no room.
        let room = b.build_int_sub(visible, umin(k, sink, visible)?, "")?;
        let grown = b.build_int_add(local, b.build_int_unsigned_rem(b.build_int_sub(room, umin(k, local, room)?, "")?, segment, "")?, "")?;
        let n_local = b.build_select(b.build_int_compare(IntPredicate::ULT, room, local, "")?, room, grown, "")?.into_int_value();
        let q_start = b.build_int_mul(qt, block_q, "")?;
        let row_base = b.build_int_mul(k.i64(row)?, k.i64(kv_tiles)?, "")?;
        let lanes_below = sreg(k.module, &k.b, "llvm.nvvm.read.ptx.sreg.lanemask.lt")?;
        let chunks = k.b.build_right_shift(k.b.build_int_add(visible, k.i32(31), "")?, k.i32(5), false, "")?;
        let kept = counted_loop(k, chunks, &[k.i32(0).into()], |k, c, acc| {
            let b = &k.b;
            let kb = b.build_int_add(b.build_left_shift(c, k.i32(5), "")?, lane, "")?;
            let shown = b.build_int_compare(IntPredicate::ULT, kb, visible, "")?;
            let tile_end = b.build_int_mul(b.build_int_add(kb, k.i32(1), "")?, block_kv, "")?;
            let forced = [
                b.build_int_compare(IntPredicate::ULT, kb, sink, "")?,
                b.build_int_compare(IntPredicate::UGT, tile_end, q_start, "")?,
                b.build_int_compare(IntPredicate::UGE, b.build_int_add(kb, n_local, "")?, visible, "")?,
            ];
            let mut keep = b.build_or(b.build_or(forced[0], forced[1], "")?, forced[2], "")?;
            if votes {
                // Clamped into the row's visible tiles (all written by the selection), so that
                // lanes past the end read in bounds; their flag is masked off below.
                let at = umin(k, kb, k.b.build_int_sub(visible, k.i32(1), "")?)?;
                let p = k.at(map, k.b.build_int_add(row_base, k.i64(at)?, "")?, 4)?;
                let vote = k.load(k.ctx.i32_type().into(), p, 4)?.into_int_value();
                let voted = k.b.build_int_compare(IntPredicate::NE, vote, k.i32(0), "")?;
                keep = k.b.build_or(keep, voted, "")?;
            }
            let keep = k.b.build_and(keep, shown, "")?;
            let ballot = k.call("llvm.nvvm.vote.ballot.sync", &[], &[k.i32(-1).into(), keep.into()])?.into_int_value();
            let popc = |k: &Kernel<'ctx, '_>, v| k.call("llvm.ctpop", &[k.ctx.i32_type().into()], &[v]).map(|v| v.into_int_value());
            let before = popc(k, k.b.build_and(ballot, lanes_below, "")?.into())?;
            let at = k.b.build_int_add(acc[0].into_int_value(), before, "")?;
            k.when(keep, |k| k.store(k.at(list, k.b.build_int_add(row_base, k.i64(at)?, "")?, 4)?, kb, 4))?;
            Ok(vec![k.b.build_int_add(acc[0].into_int_value(), popc(k, ballot.into())?, "")?.into()])
        })?[0]
            .into_int_value();
        let first = k.b.build_int_compare(IntPredicate::EQ, lane, k.i32(0), "")?;
        k.when(first, |k| k.store(k.at(count, k.i64(row)?, 4)?, kept, 4))
    })?;
    k.b.build_return(None)?;
    Ok(())
}

pub fn lower<'ctx>(ctx: &'ctx Context, module: &Module<'ctx>) -> Res<()> {
    theta(ctx, module)?;
    lists(ctx, module, NAMES[1], false)?;
    lists(ctx, module, NAMES[2], true)
}
