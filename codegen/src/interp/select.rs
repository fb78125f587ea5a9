//! Running a block-selection program (`ir::select`): the launch plus the per-row thresholds θ
//! (and, for a low-bit selection, the codes' scales and corrections), giving the int32 block
//! map the program writes.

use super::{Launch, run_with};
use crate::ir::Program;

/// A map entry the program did not write (a tile past its query tile's causal range).
pub const UNWRITTEN: i32 = i32::MIN;

/// Runs `program` (a selection program) on `launch` with thresholds `theta`
/// (`[batch, heads, seq_q]`, f32); returns the map `[batch · heads, q_tiles, kv_tiles]`: 1 where
/// some visible element of the tile reaches its row's θ, 0 where none does, `UNWRITTEN` on the
/// tiles the program does not visit.
pub fn select(program: &Program, launch: &Launch, theta: &[f32]) -> Result<Vec<i32>, String> {
    run_select(program, launch, SelectRows { theta, low_bit: None })
}

/// `select` for a low-bit selection program (`Operands::Int8`): `launch.q` and `launch.k`
/// hold the codes (integers in [-127, 127]) and `scales` their scales and corrections.
pub fn select_low_bit(program: &Program, launch: &Launch, theta: &[f32], scales: LowBitRows) -> Result<Vec<i32>, String> {
    run_select(program, launch, SelectRows { theta, low_bit: Some(scales) })
}

/// The per-token inputs of a selection program beyond q and k.
#[derive(Clone, Copy, Default)]
pub struct SelectRows<'a> {
    /// `[batch, heads, seq_q]`.
    pub theta: &'a [f32],
    pub low_bit: Option<LowBitRows<'a>>,
}

/// A low-bit selection's per-token scales and corrections (`Tensor::QScale` ...), f32.
#[derive(Clone, Copy)]
pub struct LowBitRows<'a> {
    /// `[batch, heads, seq_q]`: each query row's code scale.
    pub q_scale: &'a [f32],
    /// `[batch, kv_heads, seq_kv]`: each key's code scale.
    pub k_scale: &'a [f32],
    /// `[batch, heads, seq_kv]`: `q̄_h · (k_j − k̄)`.
    pub qmk: &'a [f32],
    /// `[batch, heads, seq_q]`: `q_i · k̄`.
    pub qk_mean: &'a [f32],
}

fn run_select(program: &Program, launch: &Launch, rows: SelectRows) -> Result<Vec<i32>, String> {
    if !program.writes_map() || !program.reads_rows() {
        return Err(format!("`{}` is not a selection program (it writes no block map)", program.name));
    }
    // The causal mask hides elements as -inf; a scale that is not positive would turn them
    // into votes (or NaN).
    if !(launch.scale.is_finite() && launch.scale > 0.0) {
        return Err(format!("scale {} must be finite and positive", launch.scale));
    }
    Ok(run_with(program, launch, rows)?.kept)
}
