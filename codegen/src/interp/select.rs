//! Running a block-selection program (`ir::select`): the launch plus the per-row thresholds θ,
//! giving the int32 block map the program writes.

use super::{Launch, run_with};
use crate::ir::Program;

/// A map entry the program did not write (a tile past its query tile's causal range).
pub const UNWRITTEN: i32 = i32::MIN;

/// Runs `program` (a selection program) on `launch` with thresholds `theta`
/// (`[batch, heads, seq_q]`, f32); returns the map `[batch · heads, q_tiles, kv_tiles]`: 1 where
/// some visible element of the tile reaches its row's θ, 0 where none does, `UNWRITTEN` on the
/// tiles the program does not visit.
pub fn select(program: &Program, launch: &Launch, theta: &[f32]) -> Result<Vec<i32>, String> {
    if !program.writes_map() || !program.reads_rows() {
        return Err(format!("`{}` is not a selection program (it writes no block map)", program.name));
    }
    // The causal mask hides elements as -inf; a scale that is not positive would turn them
    // into votes (or NaN).
    if !(launch.scale.is_finite() && launch.scale > 0.0) {
        return Err(format!("scale {} must be finite and positive", launch.scale));
    }
    Ok(run_with(program, launch, theta)?.kept)
}
