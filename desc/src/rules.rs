//! What a valid description is. The macro reports these messages at the user's tokens; the CLI
//! and runtime report them for configs given at run time. One source, so the two never disagree.

/// `mma.sync.m16n8k16`: a warp computes 16 query rows at a time, keys and head dims in steps of 16
/// (ldmatrix.x4 loads two 8-wide n-tiles at once).
pub const MMA_M: u32 = 16;
pub const MMA_N: u32 = 16;
pub const MMA_K: u32 = 16;

/// Head dims the lowering supports: rows of 64 or 128 elements fill whole 128-byte swizzle atoms.
pub const SUPPORTED_HEAD_DIMS: &[u32] = &[64, 128];
pub const MAX_WARPS: u32 = 8;
pub const MAX_STAGES: u32 = 4;
const MAX_BLOCK: u32 = 256;

pub fn check_head_dim(d: u32) -> Result<(), String> {
    if SUPPORTED_HEAD_DIMS.contains(&d) {
        Ok(())
    } else {
        Err(format!("unsupported head_dim {d}: supported are {SUPPORTED_HEAD_DIMS:?}"))
    }
}

fn check_block(what: &str, v: u32, step: u32, step_name: &str) -> Result<(), String> {
    if v == 0 || !v.is_multiple_of(step) {
        return Err(format!("{what} = {v} is not a positive multiple of {step} ({step_name})"));
    }
    if v > MAX_BLOCK {
        return Err(format!("{what} = {v} is larger than {MAX_BLOCK}"));
    }
    Ok(())
}

pub fn check_block_q(v: u32) -> Result<(), String> {
    check_block("block_q", v, MMA_M, "the mma m16n8k16 row count")
}

pub fn check_block_kv(v: u32) -> Result<(), String> {
    check_block("block_kv", v, MMA_N, "two mma n8 tiles, one ldmatrix.x4")
}

pub fn check_warps(v: u32) -> Result<(), String> {
    if v.is_power_of_two() && v <= MAX_WARPS {
        Ok(())
    } else {
        Err(format!("warps = {v} must be a power of two from 1 to {MAX_WARPS}"))
    }
}

/// wgmma is issued by whole warpgroups of 4 warps, and reads its operands in the layout TMA
/// writes; bitmap loads (Mustafar's decode, which is bound by memory, not by the products)
/// decode into the mma.sync layout.
pub fn check_mma(mma: crate::Mma, warps: u32, load: &crate::Load) -> Result<(), String> {
    match mma {
        crate::Mma::Wgmma if !warps.is_multiple_of(4) => {
            Err(format!("mma = wgmma needs whole warpgroups of 4 warps, not warps = {warps}"))
        }
        crate::Mma::Wgmma if matches!(load, crate::Load::Bitmap(_)) => {
            Err("mma = wgmma is not for bitmap loads: decode kernels use mma.sync".to_string())
        }
        _ => Ok(()),
    }
}

pub fn check_stages(v: u32) -> Result<(), String> {
    if (1..=MAX_STAGES).contains(&v) {
        Ok(())
    } else {
        Err(format!("stages = {v} must be between 1 and {MAX_STAGES}"))
    }
}

/// A neighborhood's own rules; those involving the grid's extents (`size·dilation <= extent`)
/// can only be checked at launch (`check_window_extents`).
pub fn check_window(w: &crate::Window) -> Result<(), String> {
    if w.dims == 0 || w.dims > crate::Window::MAX_DIMS {
        return Err(format!("a window has 1 to 3 axes, not {}", w.dims));
    }
    for (i, a) in w.axes().iter().enumerate() {
        if a.size == 0 || a.dilation == 0 || a.stride == 0 {
            return Err(format!("axis {i}: window size, dilation and stride must be at least 1"));
        }
        if a.stride > a.size {
            return Err(format!(
                "axis {i}: stride {} is larger than the window size {}",
                a.stride, a.size
            ));
        }
    }
    Ok(())
}

/// Launch-time rules of a neighborhood over a grid of `extents`.
pub fn check_window_extents(w: &crate::Window, extents: &[usize]) -> Result<(), String> {
    if extents.len() != w.dims as usize {
        return Err(format!("a {}-D window needs {} grid extents, got {}", w.dims, w.dims, extents.len()));
    }
    for (i, (a, &l)) in w.axes().iter().zip(extents).enumerate() {
        let span = a.size as usize * a.dilation as usize;
        if l == 0 || span > l {
            return Err(format!(
                "axis {i}: window {} × dilation {} = {span} does not fit in the extent {l}",
                a.size, a.dilation
            ));
        }
    }
    Ok(())
}

/// Bitmap tiles hold 64 consecutive tokens (K) or channels (V): a KV tile must be whole bitmap
/// tiles of consecutive tokens, so a bitmap load reads tokens on a line (not a 2-D/3-D grid's
/// boxes), and it must compress something.
pub fn check_load(load: &crate::Load, visit: &crate::Visit, kv_tile: &[u32; 3]) -> Result<(), String> {
    let crate::Load::Bitmap(b) = load else { return Ok(()) };
    if !b.k && !b.v {
        return Err("a bitmap load needs `k`, `v` or both".into());
    }
    if visit.grid_dims() > 1 {
        return Err(format!(
            "a bitmap load reads runs of consecutive tokens; a {}-D window's KV tiles are boxes of its grid",
            visit.grid_dims()
        ));
    }
    if kv_tile[1..] != [1, 1] || !kv_tile[0].is_multiple_of(64) {
        return Err(format!(
            "a bitmap load reads KV tiles of whole 64-token bitmap tiles: block_kv = {} is not a multiple of 64",
            kv_tile.iter().fold(1u32, |n, &e| n.saturating_mul(e))
        ));
    }
    Ok(())
}

/// A block-sparse visit's estimate: bits the estimation kernel has a product for, and a local
/// window of whole KV tiles (the map's blocks are the tiles, so the window is a block count).
pub fn check_blocks(visit: &crate::Visit, kv_tile: &[u32; 3]) -> Result<(), String> {
    let crate::Visit::Blocks(b) = visit else { return Ok(()) };
    let e = &b.estimate;
    if !crate::Estimate::BITS.contains(&e.bits) {
        return Err(format!("an estimate of {} bits is not supported (4 or 8)", e.bits));
    }
    let block_kv = kv_tile.iter().fold(1u32, |n, &x| n.saturating_mul(x));
    if block_kv == 0 || !e.local.is_multiple_of(block_kv) {
        return Err(format!(
            "the estimate's local window of {} tokens is not whole KV tiles of block_kv = {block_kv}",
            e.local
        ));
    }
    Ok(())
}

/// Tiles are boxes of the kernel's grid: only a window over N axes has tiles over N axes.
pub fn check_tile_axes(visit: &crate::Visit, q_tile: &[u32; 3], kv_tile: &[u32; 3]) -> Result<(), String> {
    let dims = visit.grid_dims();
    for (name, tile) in [("query", q_tile), ("KV", kv_tile)] {
        if let Some(a) = (dims..3).find(|&a| tile[a] != 1) {
            return Err(format!(
                "the {name} tile spans grid axis {a}, but the kernel's tokens form a {dims}-D grid"
            ));
        }
        if tile.contains(&0) {
            return Err(format!("the {name} tile has an axis of extent 0"));
        }
    }
    Ok(())
}

/// Rules that tie parameters together: each warp owns whole 16-row slabs of the query tile.
pub fn check_combination(block_q: u32, warps: u32) -> Result<(), String> {
    if block_q.is_multiple_of(MMA_M * warps) {
        Ok(())
    } else {
        Err(format!(
            "block_q = {block_q} does not split into 16-row slabs over {warps} warps \
             (needs a multiple of {})",
            MMA_M * warps
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_must_be_mma_multiples() {
        assert!(check_block_q(64).is_ok());
        assert!(check_block_q(24).is_err());
        assert!(check_block_q(0).is_err());
        assert!(check_block_kv(512).is_err());
    }

    #[test]
    fn block_visits_need_whole_local_tiles_and_known_bits() {
        use crate::{Blocks, Estimate, Visit};
        let visit = |bits, local| Visit::Blocks(Blocks { causal: true, estimate: Estimate { bits, sink: 1, local } });
        assert!(check_blocks(&visit(4, 128), &[32, 1, 1]).is_ok());
        assert!(check_blocks(&visit(8, 0), &[64, 1, 1]).is_ok());
        assert!(check_blocks(&visit(4, 128), &[96, 1, 1]).is_err());
        assert!(check_blocks(&visit(2, 128), &[32, 1, 1]).is_err());
        assert!(check_blocks(&Visit::Causal, &[96, 1, 1]).is_ok());
    }

    #[test]
    fn warps_split_query_rows() {
        assert!(check_combination(64, 4).is_ok());
        assert!(check_combination(64, 8).is_err());
        assert!(check_warps(3).is_err());
        assert!(check_stages(0).is_err());
    }
}
