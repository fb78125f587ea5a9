//! SALE's 4-bit quantization of Q and K for the block-selection estimate (seeds.md §2.2): per-head
//! mean smoothing, symmetric int4 (`scale = max|x| / 7`, round half to even, values in
//! [-7, 7]; `lowbit` quantizes), two nibbles per byte (even channel low), and scales grouped the
//! way the int4 `mma.sync` fragments hold their operands, so that one lane's partial scores
//! share one `sq · sk` and can be dequantized once after the row max.

use super::lowbit::{self, LowBit};

/// Which elements share a scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// One scale per row (`quant_mode = 2`).
    PerRow,
    /// Queries (`quant_mode = 3`): within each 16-row group, rows r and r + 8 share a scale (the
    /// two rows one lane holds of an m16n8 accumulator).
    QueryFragments,
    /// Keys (`quant_mode = 3`): within each block of `block` keys, key t uses scale
    /// `(t mod 8) / 2` of its block (the key columns lane % 4 holds in every n8 tile).
    KeyFragments { block: usize },
}

impl Grouping {
    /// The scale index of row `r`.
    pub fn group(self, r: usize) -> usize {
        match self {
            Grouping::PerRow => r,
            Grouping::QueryFragments => (r / 16) * 8 + r % 8,
            Grouping::KeyFragments { block } => (r / block) * 4 + (r % 8) / 2,
        }
    }

    /// Scales for `rows` rows.
    pub fn groups(self, rows: usize) -> usize {
        (0..rows).map(|r| self.group(r) + 1).max().unwrap_or(0)
    }
}

/// `rows × d` values quantized: packed nibbles (`rows × d/2` bytes) and one scale per group.
#[derive(Clone, Debug, PartialEq)]
pub struct Int4 {
    pub rows: usize,
    pub d: usize,
    pub grouping: Grouping,
    pub packed: Vec<u8>,
    pub scales: Vec<f32>,
}

/// `x` must be whole rows of `d` values, `d` even (two values per byte).
fn check_rows(len: usize, d: usize) -> Result<(), String> {
    if d == 0 || !d.is_multiple_of(2) || !len.is_multiple_of(d) {
        return Err(format!("{len} values are not whole rows of an even, positive width {d}"));
    }
    Ok(())
}

/// Subtracts the mean over rows (tokens) from every row of a `rows × d` head; returns the mean
/// and the smoothed values. Softmax ignores the per-row constant this shifts Q·Kᵀ by for K; for
/// Q the estimate adds back `mean_q · k_j` per key (`correction`).
pub fn smooth(x: &[f32], d: usize) -> Result<(Vec<f32>, Vec<f32>), String> {
    let mean = mean(x, d)?;
    let smoothed = subtract_mean(x, &mean)?;
    Ok((mean, smoothed))
}

/// The mean over the rows of a `rows × d` head, summed in f64 (zeros for no rows).
pub fn mean(x: &[f32], d: usize) -> Result<Vec<f32>, String> {
    check_rows(x.len(), d)?;
    let rows = x.len() / d;
    let mut mean = vec![0.0f64; d];
    for row in x.chunks(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    Ok(mean.iter().map(|m| (m / rows.max(1) as f64) as f32).collect())
}

/// `x - mean` row by row, one f32 subtraction per element: what a GPU quantizer computes from
/// its own means, so that codes made from them can be checked exactly.
pub fn subtract_mean(x: &[f32], mean: &[f32]) -> Result<Vec<f32>, String> {
    check_rows(x.len(), mean.len())?;
    Ok(x.chunks(mean.len()).flat_map(|row| row.iter().zip(mean).map(|(v, m)| v - m)).collect())
}

/// The estimate's per-key correction for smoothed queries: `mean_q · k_j` for each smoothed key.
pub fn correction(mean_q: &[f32], k_smoothed: &[f32]) -> Result<Vec<f32>, String> {
    check_rows(k_smoothed.len(), mean_q.len())?;
    Ok(k_smoothed.chunks(mean_q.len()).map(|k| k.iter().zip(mean_q).map(|(a, b)| a * b).sum()).collect())
}

pub fn quantize(x: &[f32], d: usize, grouping: Grouping) -> Result<Int4, String> {
    check_rows(x.len(), d)?;
    let q = lowbit::quantize(x, d, grouping, LowBit::Int4)?;
    let mut packed = vec![0u8; q.rows * d / 2];
    for (i, &code) in q.codes.iter().enumerate() {
        let nibble = (code as i8 as u8) & 0x0f;
        // Even channel in the low nibble, odd in the high one.
        packed[i / 2] |= if i.is_multiple_of(2) { nibble } else { nibble << 4 };
    }
    Ok(Int4 { rows: q.rows, d, grouping, packed, scales: q.scales })
}

impl Int4 {
    /// The signed 4-bit value of element (r, c).
    pub fn value(&self, r: usize, c: usize) -> i8 {
        let byte = self.packed[(r * self.d + c) / 2];
        let nibble = if c.is_multiple_of(2) { byte & 0x0f } else { byte >> 4 };
        // Sign-extend the two's-complement nibble.
        ((nibble << 4) as i8) >> 4
    }

    pub fn scale(&self, r: usize) -> f32 {
        self.scales[self.grouping.group(r)]
    }

    pub fn dequantize(&self) -> Vec<f32> {
        (0..self.rows).flat_map(|r| (0..self.d).map(move |c| self.value(r, c) as f32 * self.scale(r))).collect()
    }

    /// The int32 dot product of row `i` of `self` with row `j` of `other`, as the int4 mma
    /// accumulates it.
    pub fn dot(&self, i: usize, other: &Int4, j: usize) -> i32 {
        (0..self.d).map(|c| self.value(i, c) as i32 * other.value(j, c) as i32).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nibbles_pack_even_low_and_sign_extend() {
        let q = quantize(&[7.0, -7.0, 1.0, -1.0], 4, Grouping::PerRow).unwrap();
        assert_eq!(q.scales, vec![1.0]);
        // 7 = 0x7 low, -7 = 0x9 high; 1 = 0x1 low, -1 = 0xf high.
        assert_eq!(q.packed, vec![0x97, 0xf1]);
        assert_eq!((0..4).map(|c| q.value(0, c)).collect::<Vec<_>>(), vec![7, -7, 1, -1]);
    }

    #[test]
    fn rounding_is_half_to_even() {
        // Scale 1: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2.
        let q = quantize(&[7.0, 2.5, 3.5, -2.5], 4, Grouping::PerRow).unwrap();
        assert_eq!((0..4).map(|c| q.value(0, c)).collect::<Vec<_>>(), vec![7, 2, 4, -2]);
    }

    #[test]
    fn bad_widths_and_groups_are_errors() {
        assert!(quantize(&[1.0; 9], 3, Grouping::PerRow).is_err());
        assert!(quantize(&[1.0; 8], 0, Grouping::PerRow).is_err());
        assert!(quantize(&[1.0; 7], 2, Grouping::PerRow).is_err());
        assert!(quantize(&[1.0; 8], 2, Grouping::KeyFragments { block: 12 }).is_err());
        assert!(smooth(&[1.0; 4], 0).is_err());
        assert!(correction(&[], &[1.0]).is_err());
    }

    #[test]
    fn fragment_groups_follow_the_mma_layout() {
        let q = Grouping::QueryFragments;
        assert_eq!((q.group(0), q.group(8), q.group(7), q.group(15), q.group(16)), (0, 0, 7, 7, 8));
        let k = Grouping::KeyFragments { block: 32 };
        // Key t = a·8 + b·2 + c uses scale b of its 32-key block.
        assert_eq!((k.group(0), k.group(1), k.group(2), k.group(9), k.group(31), k.group(32)), (0, 0, 1, 0, 3, 4));
    }

    #[test]
    fn smoothing_removes_the_mean_and_the_correction_restores_scores() {
        let (d, q, k) = (2, [1.0f32, 2.0, 3.0, 6.0], [0.5f32, -1.0, 1.5, 1.0]);
        let (mq, qs) = smooth(&q, d).unwrap();
        let (_, ks) = smooth(&k, d).unwrap();
        assert_eq!(mq, vec![2.0, 4.0]);
        assert_eq!(qs, vec![-1.0, -2.0, 1.0, 2.0]);
        // q_i · ks_j = qs_i · ks_j + mean_q · ks_j.
        let corr = correction(&mq, &ks).unwrap();
        for i in 0..2 {
            for j in 0..2 {
                let exact: f32 = (0..d).map(|c| q[i * d + c] * ks[j * d + c]).sum();
                let split: f32 = (0..d).map(|c| qs[i * d + c] * ks[j * d + c]).sum::<f32>() + corr[j];
                assert!((exact - split).abs() < 1e-5);
            }
        }
    }

    proptest! {
        /// Every element is within half a step of its dequantized value, for every grouping.
        #[test]
        fn round_trip_within_half_a_step(x in proptest::collection::vec(-8.0f32..8.0, 64 * 8)) {
            for grouping in [Grouping::PerRow, Grouping::QueryFragments, Grouping::KeyFragments { block: 32 }] {
                let q = quantize(&x, 8, grouping).unwrap();
                for (i, (&v, back)) in x.iter().zip(q.dequantize()).enumerate() {
                    let s = q.scale(i / 8);
                    prop_assert!((v - back).abs() <= s / 2.0 + 1e-6, "{grouping:?} element {i}: {v} vs {back} (scale {s})");
                }
            }
        }
    }
}
