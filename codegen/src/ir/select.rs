//! The block-selection program of a block-sparse kernel (`visit = blocks(..)`): SALE's choice of
//! the KV tiles each query tile keeps (seeds.md §2.1–2.3), made on the GPU from exact scores or
//! from SALE's low-bit estimate of them.
//!
//! SALE keeps a block when some causally visible element (i, j) of it has
//! `exp(ŝ_ij − m_i) / l_i ≥ τ`, with m_i, l_i the max and sum of row i over the always-kept
//! (forced) keys; that is `ŝ_ij ≥ LSE_i + ln τ` with LSE_i the natural-log LSE of row i over the
//! forced keys. The LSE comes from the block-sparse kernel run on the forced map; the caller
//! turns it into the per-row threshold θ_i = LSE_i + ln τ_h (`Tensor::Theta`, f32), so the program
//! needs neither τ nor the forced rule:
//!
//! - per (batch, head, query tile): load Q and the tile's θ rows (rows past `seq_q` get +inf,
//!   so padding never votes), turned once into thresholds on the raw scores
//!   (`Stmt::Threshold`: θ / scale, less the row's bias), so that each score element costs one
//!   `max` in the vote;
//! - for every causally visible KV tile (the `Visit::Causal` loop, K only): `S = Q·Kᵀ`, the
//!   causal mask (-inf on hidden elements), then `kept = any(max_row S ≥ threshold_row)` and one
//!   int32 store of `kept` to the output map `[batch · heads, q_tiles, kv_tiles]`.
//!
//! With `Scores::Int8`, Q and K are SALE's int8 codes of the mean-smoothed queries and keys
//! (fragment-grouped scales, expanded to one per token) and S their int32 dot products, which
//! `Stmt::Dequantize` turns into `sq_i·sk_j·S_ij + q̄·(k_j − k̄)` (one fma per element). The
//! estimate of q_i·k_j adds `q_i·k̄`, which undoes the key smoothing so that θ from the forced
//! pass over the unsmoothed keys applies as it is; being per row, it is subtracted from the
//! row's threshold instead.
//!
//! Forced tiles are voted like any other (their flag is what the scores say); the caller ORs in
//! the forced map (`sale_lists` on the GPU). Tiles past a query tile's causal range are not
//! written.

use tessera_desc::{Config, KernelDesc, Load, Mma, Visit};

use super::from_desc::{FRAG_S, QueryTile, load_q, qk_buffers, scores_frag, scores_step};
use super::geometry::TileBox;
use super::{CopyEngine, Expr, Frag, FragId, FragKind, Locals, Operands, Part, Program, Stmt, Tensor, Var};

/// The θ rows of the query tile, and a low-bit selection's row scales and shifts.
const FRAG_THETA: FragId = FragId(1);
const FRAG_Q_SCALE: FragId = FragId(2);
const FRAG_QK_MEAN: FragId = FragId(3);

/// The 32-bit registers of an SM (every target's), and the budget a selection thread needs.
const REGISTERS_PER_SM: u32 = 65_536;
const SELECT_REGISTERS: u32 = 128;

/// Where a selection's scores come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scores {
    /// Q·Kᵀ in the kernel's element type.
    Exact,
    /// SALE's estimate from int8 codes (the low-bit format Hopper multiplies natively).
    Int8,
}

pub fn build(desc: &KernelDesc, cfg: &Config, scores: Scores) -> Result<Program, String> {
    let causal = match (desc.visit, desc.load) {
        (Visit::Blocks(b), Load::Dense) => b.causal,
        _ => {
            return Err(format!(
                "a selection program is made for a block-sparse kernel with dense loads; `{}` has visit = {}, load = {}",
                desc.name,
                desc.visit.name(),
                desc.load
            ));
        }
    };
    // The selection visits every tile the map could keep: the causal (or dense) range.
    let visit = if causal { Visit::Causal } else { Visit::Dense };
    let (bq, bkv, d) = (cfg.block_q(), cfg.block_kv(), desc.head_dim);
    let (q_box, kv_box) = (TileBox::queries(visit, cfg), TileBox::keys(visit, cfg));
    let mut locals = Locals::default();
    let (qt, mut body) = QueryTile::bind(&q_box, &mut locals);
    let (map_row, j, kept) = (locals.fresh("map_row"), locals.fresh("j"), locals.fresh("kept"));

    let kv_origin = kv_box.visit_origin();
    let k = qt.tile(Tensor::K, qt.kv_head, &kv_box, &kv_origin);
    let mut step = scores_step((k, CopyEngine::CpAsync), Vec::new(), None, Part::Whole);
    if scores == Scores::Int8 {
        step.push(Stmt::Dequantize {
            s: FRAG_S,
            row_scale: FRAG_Q_SCALE,
            col_scale: qt.tile(Tensor::KScale, qt.kv_head, &kv_box, &kv_origin),
            col_bias: qt.tile(Tensor::Qmk, qt.head, &kv_box, &kv_origin),
        });
    }
    step.extend([
        Stmt::VisitMask { frag: FRAG_S },
        Stmt::Vote { var: kept, s: FRAG_S, rows: FRAG_THETA },
        Stmt::StoreMap { index: Expr::var(map_row).mul(kv_box.count(0)).add(Var::KvTile(0)), value: kept.into() },
        // The next iteration's copy overwrites Ks: every warp must be done reading it.
        Stmt::Barrier,
    ]);

    body.push(Stmt::Let { var: map_row, value: qt.plane().mul(q_box.count(0)).add(qt.q_tile) });
    body.extend(load_q(qt.tile(Tensor::Q, qt.head, &q_box, &qt.origin)));
    body.push(Stmt::LoadRows {
        frag: FRAG_THETA,
        src: qt.tile(Tensor::Theta, qt.head, &q_box, &qt.origin),
        pad: f32::INFINITY,
    });
    let mut frags = vec![scores_frag(bkv), Frag { name: "theta", cols: 1, kind: FragKind::RowStat }];
    if scores == Scores::Int8 {
        for (frag, tensor, name) in [(FRAG_Q_SCALE, Tensor::QScale, "q_scale"), (FRAG_QK_MEAN, Tensor::QkMean, "qk_mean")] {
            body.push(Stmt::LoadRows { frag, src: qt.tile(tensor, qt.head, &q_box, &qt.origin), pad: 0.0 });
            frags.push(Frag { name, cols: 1, kind: FragKind::RowStat });
        }
    }
    body.push(Stmt::Threshold { rows: FRAG_THETA, bias: (scores == Scores::Int8).then_some(FRAG_QK_MEAN) });
    body.push(Stmt::VisitTiles { visit, var: j, plane: qt.plane(), q_origin: qt.origin.clone(), body: step });

    let (suffix, operands) = match scores {
        Scores::Exact => ("select", Operands::Dtype),
        Scores::Int8 => ("estimate_int8", Operands::Int8),
    };
    Ok(Program {
        name: format!("{}_{suffix}", desc.name),
        dtype: desc.dtype,
        operands,
        head_dim: d,
        config: *cfg,
        grid: [q_box.total(), Var::Heads.into(), Var::Batch.into()],
        shared: qk_buffers(bq, bkv, d),
        frags,
        body,
        locals,
        // One CTA-wide vote per tile leaves a CTA waiting at every tile, and a warp's tile is
        // one long dependent chain: residents overlap those waits. Four 4-warp CTAs (two of 8
        // warps) fit 128 registers a thread, where ptxas picks 196 for the 128×64 int8 wgmma
        // selection and spills nothing at 128 (nor any config of the catalog's space; the
        // 8-warp ones use fewer anyway, and the exact 128×64 one, which shared memory holds
        // to 3 CTAs, 120). Wider KV tiles hold more scores and column values per thread (64×128
        // int8 spills 92 bytes at 168), and mma.sync's int8 fragments spill at 168 on sm_80:
        // those keep ptxas's own budget.
        min_ctas_per_sm: match cfg.mma {
            Mma::Wgmma if cfg.block_kv() <= 64 => (REGISTERS_PER_SM / (cfg.threads() * SELECT_REGISTERS)).clamp(1, 4),
            _ => 1,
        },
        key_parts: 1,
    })
}

#[cfg(test)]
mod tests {
    use tessera_desc::{Blocks, Config, Dtype, Estimate, KernelDesc, Layout, Load, Param, Schedule, Visit};

    use crate::Target;

    #[test]
    fn the_lowering_votes_with_one_cta_reduction() {
        let desc = KernelDesc {
            name: "t",
            head_dim: 64,
            dtype: Dtype::Bf16,
            layout: Layout::Bhsd,
            visit: Visit::Blocks(Blocks { causal: true, estimate: Estimate::SALE }),
            load: Load::Dense,
            schedule: Schedule::line(Param::Fixed(64), Param::Fixed(32), Param::Fixed(4), Param::Fixed(2)),
        };
        let program = crate::select_program(&desc, &Config::line(64, 32, 4, 2), super::Scores::Exact).unwrap();
        for target in Target::ALL {
            let ptx = crate::llvm::compile(&program, target, crate::llvm::Output::Ptx).unwrap();
            // The vote is one CTA-wide OR reduction; thresholds come in through the lse slot.
            for piece in ["bar.red.or.pred", "st.global.b32", "ld.global.nc.b32"] {
                assert!(ptx.contains(piece), "{target}: no {piece}");
            }
            assert!(!ptx.contains("ldmatrix.sync.aligned.m8n8.x4.trans"), "{target}: no V operand in a selection");
        }
    }
}
