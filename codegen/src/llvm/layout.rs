//! Where data sits: which row and 16-byte chunk each lane
//! hands to `ldmatrix.x4` so that the registers it gets back are the `mma.m16n8k16` operand
//! fragments (PTX ISA §9.7.14.5.8 and §9.7.14.5.15). The tests replay ldmatrix on a matrix of
//! known values and compare with the fragment definitions, so a wrong address fails here
//! rather than as wrong numbers on a GPU.

use crate::ir::{Expr, Var};

/// Bytes of a block row of the wgmma layout (`passes::engine::WGMMA_BLOCK_BYTES`).
///
/// A shared tile is stored as column blocks of `block_cols` elements (`ir::Shared`), each block
/// `rows × block_cols` elements, and within a block row chunk `c` sits at chunk
/// `(c & !7) | ((c & 7) ^ (r % 8))`: the XOR keeps ldmatrix's eight row reads of one 16-byte
/// column on eight different bank groups. With 128-byte block rows this is the canonical
/// 128-byte-swizzle layout that TMA (`SWIZZLE_128B`) writes and wgmma descriptors read (PTX ISA
/// §9.7.15.5.1.2: 8-row × 128-byte atoms). `Lowerer::chunk_offset` emits it; `tests::chunk_offset`
/// is the same formula, checked here.
pub const BLOCK_ROW_BYTES: u32 = 128;

/// How row `r` permutes the chunks of a block row of `block_chunks` 16-byte chunks: chunk `c`
/// sits at `c ^ ((r >> shift) & mask)` among them. 128-byte block rows (and wider) XOR with
/// `r % 8`; narrower ones (int8 codes of 64 channels: 64 bytes) with `(r / 2) % 4`, so that
/// eight consecutive rows still cover the eight 16-byte bank groups. Row bases that are
/// multiples of 8 drop out of both, which ldmatrix's per-lane addressing relies on. Returns
/// (shift, mask).
pub fn row_swizzle(block_chunks: u32) -> (u32, u32) {
    let chunks = block_chunks.clamp(1, 8);
    ((8 / chunks).trailing_zeros(), chunks - 1)
}

/// The tile row and chunk that `lane` addresses in `ldmatrix.x4`, relative to the operand's
/// first row and chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LdmatrixRole {
    /// A operand 16×16 from a row-major `[m][k]` tile: matrices (rows 0-7, k 0-7),
    /// (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) → a0a1, a2a3, a4a5, a6a7.
    A,
    /// B operands of two n8 tiles from an `[n][k]` tile (K in Q·Kᵀ): registers come back as
    /// (tile 0: b0b1, b2b3), (tile 1: b0b1, b2b3).
    BNk,
    /// B operands of two n8 tiles from a `[k][n]` tile (V in P·V), read with `.trans`.
    BKn,
}

impl LdmatrixRole {
    /// (row, chunk) as expressions of `Var::Lane`: the lowering emits them, the tests evaluate.
    pub fn lane_offset(self) -> (Expr, Expr) {
        let lane = || Expr::var(Var::Lane);
        match self {
            // Matrices 0-3 are (rows 0-7 | 8-15) × (chunk 0 | 1), rows first. For V this is
            // (k 0-7 | 8-15) × (n 0-7 | 8-15), which `.trans` turns into b0b1, b2b3 of two tiles.
            LdmatrixRole::A | LdmatrixRole::BKn => (lane().rem(16), lane().div(16)),
            // Matrices 0-3 are (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
            LdmatrixRole::BNk => (lane().rem(8).add(lane().div(16).mul(8)), lane().div(8).rem(2)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Elements per 16-byte chunk (bf16/f16).
    const CHUNK_ELEMS: u32 = 8;

    /// ldmatrix.x4 semantics: lane `l` receives, in register j, row `l/4` (columns 2(l%4),
    /// 2(l%4)+1) of matrix j, whose row r starts at the address lane 8j + r gave; with `.trans`
    /// it receives column `l/4` (rows 2(l%4), 2(l%4)+1) instead.
    fn ldmatrix(tile: &dyn Fn(u32, u32) -> u32, role: LdmatrixRole, trans: bool) -> Vec<[(u32, u32); 4]> {
        let (row, chunk) = role.lane_offset();
        let at = |e: &Expr, lane: u32| e.eval(&|v| (v == Var::Lane).then_some(lane as i32)).unwrap() as u32;
        let addr = |lane: u32| (at(&row, lane), at(&chunk, lane));
        (0..32)
            .map(|l| {
                let mut regs = [(0, 0); 4];
                for (j, reg) in regs.iter_mut().enumerate() {
                    let (g, t) = (l / 4, l % 4);
                    let elem = |r: u32, c: u32| {
                        let (row, chunk) = addr(8 * j as u32 + r);
                        tile(row, chunk * CHUNK_ELEMS + c)
                    };
                    *reg = if trans {
                        (elem(2 * t, g), elem(2 * t + 1, g))
                    } else {
                        (elem(g, 2 * t), elem(g, 2 * t + 1))
                    };
                }
                regs
            })
            .collect()
    }

    /// Encodes (row, col) so each element is identifiable.
    fn id(row: u32, col: u32) -> u32 {
        row * 1000 + col
    }

    /// The lowering's placement (`Lowerer::chunk_offset`), in chunks of 16 bytes.
    fn chunk_offset(rows: u32, block_chunks: u32, row: u32, chunk: u32) -> u32 {
        let (block, within) = (chunk / block_chunks, chunk % block_chunks);
        let (shift, mask) = row_swizzle(block_chunks);
        let pitch = block_chunks * 16;
        block * rows * pitch + row * pitch + ((within & !mask) | ((within & mask) ^ ((row >> shift) & mask))) * 16
    }

    /// Every chunk of a tile has its own place inside the tile, and the eight rows of one
    /// column that an ldmatrix phase reads fall on eight different 16-byte bank groups: for
    /// 128-byte block rows of 16-bit values, wider tiles in blocks, and 64-byte rows (int8
    /// codes of 64 channels).
    #[test]
    fn chunk_offsets_are_a_permutation_without_bank_conflicts() {
        for (rows, chunks, block_chunks) in [(64, 8, 8), (128, 16, 8), (128, 16, 16), (32, 16, 8), (16, 8, 8), (64, 4, 4), (32, 4, 4)] {
            let mut seen: Vec<u32> =
                (0..rows).flat_map(|r| (0..chunks).map(move |c| chunk_offset(rows, block_chunks, r, c))).collect();
            seen.sort();
            assert_eq!(seen, (0..rows * chunks).map(|i| 16 * i).collect::<Vec<_>>(), "{rows}x{chunks}/{block_chunks}");
            for r0 in (0..rows).step_by(8) {
                for c in 0..chunks {
                    let mut groups: Vec<u32> = (r0..r0 + 8).map(|r| chunk_offset(rows, block_chunks, r, c) / 16 % 8).collect();
                    groups.sort();
                    assert_eq!(groups, (0..8).collect::<Vec<_>>(), "{rows}x{chunks}/{block_chunks} rows {r0}.. chunk {c}");
                }
            }
        }
    }

    #[test]
    fn a_operand_matches_mma_a_fragment() {
        let got = ldmatrix(&id, LdmatrixRole::A, false);
        for l in 0..32 {
            let (g, t) = (l / 4, l % 4);
            // a0..a7: rows g, g+8; cols 2t+(i&1), +8 for i >= 4; packed in pairs.
            let want = [
                (id(g, 2 * t), id(g, 2 * t + 1)),
                (id(g + 8, 2 * t), id(g + 8, 2 * t + 1)),
                (id(g, 2 * t + 8), id(g, 2 * t + 9)),
                (id(g + 8, 2 * t + 8), id(g + 8, 2 * t + 9)),
            ];
            assert_eq!(got[l as usize], want, "lane {l}");
        }
    }

    /// B fragment (k × n): lane holds b0,b1 = (k = 2t, 2t+1; n = g), b2,b3 = (k = 2t+8, 2t+9).
    fn b_fragment(b: &dyn Fn(u32, u32) -> u32, n0: u32, l: u32) -> [(u32, u32); 2] {
        let (g, t) = (l / 4, l % 4);
        [(b(2 * t, n0 + g), b(2 * t + 1, n0 + g)), (b(2 * t + 8, n0 + g), b(2 * t + 9, n0 + g))]
    }

    #[test]
    fn k_tile_gives_b_fragments_of_two_n_tiles() {
        // The tile is [n][k]; B[k][n] = tile[n][k].
        let got = ldmatrix(&id, LdmatrixRole::BNk, false);
        let b = |k: u32, n: u32| id(n, k);
        for l in 0..32 {
            let [r0, r1, r2, r3] = got[l as usize];
            assert_eq!([r0, r1], b_fragment(&b, 0, l), "lane {l} tile 0");
            assert_eq!([r2, r3], b_fragment(&b, 8, l), "lane {l} tile 1");
        }
    }

    #[test]
    fn v_tile_gives_b_fragments_with_trans() {
        // The tile is [k][n]; B[k][n] = tile[k][n].
        let got = ldmatrix(&id, LdmatrixRole::BKn, true);
        for l in 0..32 {
            let [r0, r1, r2, r3] = got[l as usize];
            assert_eq!([r0, r1], b_fragment(&id, 0, l), "lane {l} tile 0");
            assert_eq!([r2, r3], b_fragment(&id, 8, l), "lane {l} tile 1");
        }
    }

}
