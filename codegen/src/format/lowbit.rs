//! Low-bit number formats for SALE's block-selection estimate (seeds.md §2.2), one quantizer for
//! all of them: symmetric scales (`max|x|` maps to the format's largest value) shared by the
//! groups of `Grouping`, round half to even onto the format's grid.
//!
//! Which format the estimate should use is a hardware question (issue 7): int4 is SALE's choice
//! on Ampere and Ada, but on Hopper ptxas emulates `mma.sync.s4` and `mma.sync.e4m3` (see
//! BENCHMARKS.md), while `mma.sync.s8` and `wgmma` e4m3/s8 are native. So the selection quality
//! of each format is compared here, on the CPU, with the same rule.

use super::int4::Grouping;

/// A low-bit format of the estimate's operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LowBit {
    /// Integers in [-7, 7] (two's-complement nibbles).
    Int4,
    /// Integers in [-127, 127].
    Int8,
    /// FP8 E4M3 (the `fn` variant of the tensor cores: no infinities, largest finite 448,
    /// 3 mantissa bits, subnormals down to 2^-9).
    E4m3,
}

impl LowBit {
    pub const ALL: [LowBit; 3] = [LowBit::Int4, LowBit::Int8, LowBit::E4m3];

    pub fn name(self) -> &'static str {
        match self {
            LowBit::Int4 => "int4",
            LowBit::Int8 => "int8",
            LowBit::E4m3 => "e4m3",
        }
    }

    /// The largest magnitude: a group's `max|x|` is scaled onto it.
    pub fn max(self) -> f32 {
        match self {
            LowBit::Int4 => 7.0,
            LowBit::Int8 => 127.0,
            LowBit::E4m3 => 448.0,
        }
    }

    /// The nearest value of the format's grid to `x` (already scaled), ties to even, saturated.
    pub fn round(self, x: f32) -> f32 {
        match self {
            LowBit::Int4 | LowBit::Int8 => x.round_ties_even().clamp(-self.max(), self.max()),
            // NaN stays NaN, as `cvt.rn.satfinite.e4m3x2` keeps it (`min` below would not).
            LowBit::E4m3 if x.is_nan() => x,
            LowBit::E4m3 => {
                // Steps of 2^(e-3) within the binade [2^e, 2^(e+1)); the subnormal step below
                // 2^-6 is 2^-9. A value that rounds up to 2^(e+1) lands on the next binade's
                // first value, which is on the grid too.
                let a = x.abs();
                let e = if a < 2f32.powi(-6) { -6 } else { a.log2().floor() as i32 };
                let step = 2f32.powi(e - 3);
                ((a / step).round_ties_even() * step).min(self.max()).copysign(x)
            }
        }
    }
}

/// `rows × d` values as grid values of a format (`codes`) and one scale per group: element
/// (r, c) stands for `codes[r·d + c] · scale(r)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    pub format: LowBit,
    pub rows: usize,
    pub d: usize,
    pub grouping: Grouping,
    pub codes: Vec<f32>,
    pub scales: Vec<f32>,
}

/// `x` must be whole rows of a positive width `d`.
fn check_rows(len: usize, d: usize) -> Result<(), String> {
    if d == 0 || !len.is_multiple_of(d) {
        return Err(format!("{len} values are not whole rows of a positive width {d}"));
    }
    Ok(())
}

pub fn quantize(x: &[f32], d: usize, grouping: Grouping, format: LowBit) -> Result<Quantized, String> {
    check_rows(x.len(), d)?;
    if let Grouping::KeyFragments { block } = grouping
        && (block == 0 || !block.is_multiple_of(8))
    {
        return Err(format!("key scale groups need blocks of a positive multiple of 8 keys, not {block}"));
    }
    let rows = x.len() / d;
    let mut max = vec![0.0f32; grouping.groups(rows)];
    for (r, row) in x.chunks(d).enumerate() {
        let g = grouping.group(r);
        max[g] = row.iter().fold(max[g], |m, v| m.max(v.abs()));
    }
    let scales: Vec<f32> = max.iter().map(|m| m / format.max()).collect();
    // `x · (max_format / max)`, as the authors' quantizer computes it (`x / scale` can round
    // differently at ties).
    let inverse: Vec<f32> = max.iter().map(|&m| if m > 0.0 { format.max() / m } else { 0.0 }).collect();
    let codes = x
        .chunks(d)
        .enumerate()
        .flat_map(|(r, row)| {
            let inv = inverse[grouping.group(r)];
            row.iter().map(move |&v| format.round(v * inv))
        })
        .collect();
    Ok(Quantized { format, rows, d, grouping, codes, scales })
}

impl Quantized {
    pub fn code(&self, r: usize, c: usize) -> f32 {
        self.codes[r * self.d + c]
    }

    pub fn scale(&self, r: usize) -> f32 {
        self.scales[self.grouping.group(r)]
    }

    pub fn dequantize(&self) -> Vec<f32> {
        (0..self.rows).flat_map(|r| (0..self.d).map(move |c| self.code(r, c) * self.scale(r))).collect()
    }

    /// The dot product of row `i`'s codes with row `j` of `other`'s, as the tensor cores
    /// accumulate it before scaling (exact: every product and partial sum is representable).
    pub fn dot(&self, i: usize, other: &Quantized, j: usize) -> f64 {
        (0..self.d).map(|c| self.code(i, c) as f64 * other.code(j, c) as f64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every finite E4M3 value, from its bits: sign, 4 exponent bits (bias 7), 3 mantissa bits;
    /// S.1111.111 is NaN and there are no infinities.
    fn e4m3_grid() -> Vec<f32> {
        let mut out = Vec::new();
        for bits in 0u8..0x7f {
            let (e, m) = ((bits >> 3) as i32, (bits & 7) as f32);
            let v = if e == 0 { m / 8.0 * 2f32.powi(-6) } else { (1.0 + m / 8.0) * 2f32.powi(e - 7) };
            out.extend([v, -v]);
        }
        out
    }

    #[test]
    fn e4m3_rounds_onto_its_grid_ties_to_even() {
        let grid = e4m3_grid();
        assert_eq!(grid.iter().cloned().fold(0.0, f32::max), 448.0);
        for v in &grid {
            assert_eq!(LowBit::E4m3.round(*v), *v, "{v} is on the grid");
        }
        // Between 1 and 1.125 (step 1/8): 1.0625 is a tie, to the even mantissa 1.0.
        assert_eq!(LowBit::E4m3.round(1.0625), 1.0);
        assert_eq!(LowBit::E4m3.round(1.1875), 1.25);
        // Saturation, rounding up into the next binade, and subnormals.
        assert_eq!(LowBit::E4m3.round(1000.0), 448.0);
        assert_eq!(LowBit::E4m3.round(-1.97), -2.0);
        assert_eq!(LowBit::E4m3.round(2f32.powi(-9) * 1.4), 2f32.powi(-9));
        assert!(LowBit::ALL.iter().all(|f| f.round(f32::NAN).is_nan()));
    }

    #[test]
    fn integer_formats_round_half_to_even_and_saturate() {
        assert_eq!([2.5, 3.5, -2.5, 9.0].map(|x| LowBit::Int4.round(x)), [2.0, 4.0, -2.0, 7.0]);
        assert_eq!([126.5, 200.0].map(|x| LowBit::Int8.round(x)), [126.0, 127.0]);
    }

    proptest! {
        /// Every element comes back within half a grid step of its scaled value, and the nearest
        /// grid value is the one chosen (checked against the whole E4M3 grid).
        #[test]
        fn quantization_is_nearest_on_the_grid(x in proptest::collection::vec(-8.0f32..8.0, 32 * 4)) {
            let grid = e4m3_grid();
            for format in LowBit::ALL {
                let q = quantize(&x, 4, Grouping::KeyFragments { block: 32 }, format).unwrap();
                for (i, &v) in x.iter().enumerate() {
                    let s = q.scale(i / 4);
                    let scaled = if s > 0.0 { v * (format.max() / (s * format.max())) } else { 0.0 };
                    let code = q.code(i / 4, i % 4);
                    let best = match format {
                        LowBit::E4m3 => grid.iter().map(|g| (g - scaled).abs()).fold(f32::INFINITY, f32::min),
                        _ => (scaled.round() - scaled).abs(),
                    };
                    prop_assert!((code - scaled).abs() <= best + 1e-4 * scaled.abs().max(1.0), "{format:?} {v}: code {code} for {scaled}");
                }
            }
        }
    }
}
