//! The block map a block-sparse kernel reads (`Visit::Blocks`): for each query tile of each
//! (batch, head) plane, the ascending indices of the KV tiles it visits and their count.
//!
//! Lists rather than a bitmap because the kernel's KV loop then runs over kept tiles only, with
//! a trip count known before the loop, and can prefetch the next kept tile (the pipelining pass
//! reads entry `i + stages - 1`) instead of scanning the skipped ones. Both are int32 launch
//! tables (`ir::Table`): `list` is `[planes, q_tiles, kv_tiles]` (a row's entries past its count
//! are never read) and `count` is `[planes, q_tiles]`, `planes = batch · heads`.

/// Block lists in the launch layout, checked by [`BlockLists::validate`] before any kernel (the
/// interpreter's or the GPU's) reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockLists {
    pub planes: usize,
    pub q_tiles: usize,
    pub kv_tiles: usize,
    pub list: Vec<i32>,
    pub count: Vec<i32>,
}

/// Whether lists of `dims` (planes, query tiles, KV tiles) fit a launch of `planes` planes,
/// `seq_q` × `seq_kv` tokens in tiles of `block_q` × `block_kv`: the kernel indexes them with
/// exactly these counts.
pub fn check_dims(
    dims: (usize, usize, usize),
    planes: usize,
    seq_q: usize,
    seq_kv: usize,
    block_q: usize,
    block_kv: usize,
) -> Result<(), String> {
    let want = (planes, seq_q.div_ceil(block_q.max(1)), seq_kv.div_ceil(block_kv.max(1)));
    if dims == want {
        return Ok(());
    }
    Err(format!(
        "block lists of {} planes × {} query tiles × {} KV tiles; the launch has {} × {} × {} (tiles of {block_q} × {block_kv})",
        dims.0, dims.1, dims.2, want.0, want.1, want.2
    ))
}

impl BlockLists {
    /// The lists of a map of kept blocks, `[planes, q_tiles, kv_tiles]` row-major.
    pub fn from_kept(
        planes: usize,
        q_tiles: usize,
        kv_tiles: usize,
        kept: &[bool],
    ) -> Result<BlockLists, String> {
        let rows = planes.checked_mul(q_tiles).ok_or("the block map has more rows than fit in usize")?;
        if Some(kept.len()) != rows.checked_mul(kv_tiles) {
            return Err(format!(
                "a map of {planes} planes × {q_tiles} × {kv_tiles} blocks cannot hold {} blocks",
                kept.len()
            ));
        }
        BlockLists::from_fn(planes, q_tiles, kv_tiles, |plane, qt, kt| {
            kept[(plane * q_tiles + qt) * kv_tiles + kt]
        })
    }

    /// The lists of the blocks (plane, query tile, KV tile) for which `keep` holds, asked in
    /// ascending order, without building the map (at 128K tokens it has 10⁸ blocks and more).
    pub fn from_fn(
        planes: usize,
        q_tiles: usize,
        kv_tiles: usize,
        mut keep: impl FnMut(usize, usize, usize) -> bool,
    ) -> Result<BlockLists, String> {
        let rows = planes.checked_mul(q_tiles);
        let Some(elems) = rows.and_then(|r| r.checked_mul(kv_tiles)).filter(|&n| n <= i32::MAX as usize) else {
            return Err(format!(
                "block lists of {planes} × {q_tiles} × {kv_tiles} entries exceed the kernel's int32 indexing"
            ));
        };
        let rows = planes * q_tiles;
        let mut list = vec![0; elems];
        let mut count = vec![0; rows];
        for (row, n) in count.iter_mut().enumerate() {
            let (plane, qt) = (row / q_tiles, row % q_tiles);
            let entries = &mut list[row * kv_tiles..(row + 1) * kv_tiles];
            // In range: both are below kv_tiles, whose product with the rows fits in an i32.
            for kt in (0..kv_tiles).filter(|&kt| keep(plane, qt, kt)) {
                entries[*n as usize] = kt as i32;
                *n += 1;
            }
        }
        Ok(BlockLists { planes, q_tiles, kv_tiles, list, count })
    }

    /// Every visit (query tile, KV tile) as a map of kept blocks, `[planes, q_tiles, kv_tiles]`.
    pub fn kept(&self) -> Vec<bool> {
        let mut kept = vec![false; self.list.len()];
        for (row, &n) in self.count.iter().enumerate() {
            for &kb in &self.list[row * self.kv_tiles..][..n.max(0) as usize] {
                kept[row * self.kv_tiles + kb as usize] = true;
            }
        }
        kept
    }

    /// The tables' shapes agree, every count is in `0..=kv_tiles`, every listed tile in
    /// `0..kv_tiles` and each row strictly ascending, and every flat index fits in an int32 (the
    /// kernel's index arithmetic). A kernel given lists that fail this would read out of bounds
    /// or visit a tile twice.
    pub fn validate(&self) -> Result<(), String> {
        let rows = self.planes.checked_mul(self.q_tiles);
        let elems = rows.and_then(|r| r.checked_mul(self.kv_tiles));
        let (Some(rows), Some(elems)) = (rows, elems) else {
            return Err(format!(
                "{} × {} × {} block lists overflow usize",
                self.planes, self.q_tiles, self.kv_tiles
            ));
        };
        if elems > i32::MAX as usize {
            return Err(format!(
                "block lists of {elems} entries exceed the kernel's int32 indexing"
            ));
        }
        if self.count.len() != rows || self.list.len() != elems {
            return Err(format!(
                "block lists for {} planes × {} query tiles × {} KV tiles need {rows} counts and {elems} entries, got {} and {}",
                self.planes,
                self.q_tiles,
                self.kv_tiles,
                self.count.len(),
                self.list.len()
            ));
        }
        for (row, &n) in self.count.iter().enumerate() {
            let (plane, qt) = (row / self.q_tiles.max(1), row % self.q_tiles.max(1));
            if n < 0 || n as usize > self.kv_tiles {
                return Err(format!(
                    "plane {plane}, query tile {qt}: count {n} is outside 0..={}",
                    self.kv_tiles
                ));
            }
            let entries = &self.list[row * self.kv_tiles..][..n as usize];
            if let Some(&kb) = entries
                .iter()
                .find(|&&kb| kb < 0 || kb as usize >= self.kv_tiles)
            {
                return Err(format!(
                    "plane {plane}, query tile {qt}: KV tile {kb} is outside 0..{}",
                    self.kv_tiles
                ));
            }
            if let Some(w) = entries.windows(2).find(|w| w[0] >= w[1]) {
                return Err(format!(
                    "plane {plane}, query tile {qt}: KV tiles {} then {} are not strictly ascending",
                    w[0], w[1]
                ));
            }
        }
        Ok(())
    }

    /// Whether these lists fit a launch of `planes` planes, `seq_q` queries and `seq_kv` keys
    /// in tiles of `block_q` × `block_kv`.
    pub fn check_launch(
        &self,
        planes: usize,
        seq_q: usize,
        seq_kv: usize,
        block_q: usize,
        block_kv: usize,
    ) -> Result<(), String> {
        check_dims((self.planes, self.q_tiles, self.kv_tiles), planes, seq_q, seq_kv, block_q, block_kv)?;
        self.validate()
    }

    /// Entry `at` of a table, as the kernel reads it; out of bounds is an error.
    pub fn read(&self, table: crate::ir::Table, at: i32) -> Result<i32, String> {
        let data = match table {
            crate::ir::Table::KvList => &self.list,
            crate::ir::Table::KvCount => &self.count,
        };
        usize::try_from(at)
            .ok()
            .and_then(|i| data.get(i))
            .copied()
            .ok_or_else(|| {
                format!(
                    "{}[{at}] is outside its {} entries",
                    table.name(),
                    data.len()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_kept_maps() {
        let kept = [
            true, false, true, false, false, false, false, true, true, true, true, true,
        ];
        let lists = BlockLists::from_kept(2, 2, 3, &kept).unwrap();
        assert_eq!(lists.count, [2, 0, 2, 3]);
        assert_eq!(&lists.list[..2], [0, 2]);
        assert_eq!(&lists.list[6..8], [1, 2]);
        assert_eq!(lists.kept(), kept);
        assert!(lists.check_launch(2, 100, 96, 64, 32).is_ok());
        assert!(lists.check_launch(2, 129, 96, 64, 32).is_err());
        assert!(BlockLists::from_kept(2, 2, 3, &kept[1..]).is_err());
    }

    #[test]
    fn bad_lists_are_errors() {
        let good = BlockLists::from_kept(1, 1, 4, &[true, true, false, true]).unwrap();
        let bad = |f: fn(&mut BlockLists)| {
            let mut l = good.clone();
            f(&mut l);
            l.validate().unwrap_err()
        };
        assert!(bad(|l| l.count[0] = 5).contains("outside 0..=4"));
        assert!(bad(|l| l.count[0] = -1).contains("outside"));
        assert!(bad(|l| l.list[1] = 4).contains("KV tile 4 is outside"));
        assert!(bad(|l| l.list[1] = 0).contains("not strictly ascending"));
        assert!(bad(|l| l.list.pop().map_or((), drop)).contains("need 1 counts and 4 entries"));
        // Entries past the count are never read, so they may hold anything.
        let mut tail = good.clone();
        tail.list[3] = -7;
        assert!(tail.validate().is_ok());
        assert!(good.read(crate::ir::Table::KvCount, 1).is_err());
        assert_eq!(good.read(crate::ir::Table::KvList, 2), Ok(3));
    }
}
