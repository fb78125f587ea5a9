//! The scalar semantics of the tile operations, written once over an `Arith` backend: the
//! interpreter instantiates it with f32 arithmetic, the LLVM lowering with IR builders. The two
//! therefore agree by construction on every formula (guards, exp2 scaling, LSE), differing only
//! in the accuracy of the hardware's `ex2.approx`/`lg2.approx` and in summation order.

pub mod select;
pub mod softmax;

/// The operations the softmax and epilogue formulas need.
pub trait Arith {
    type F: Copy;
    type B: Copy;
    fn constant(&mut self, v: f32) -> Self::F;
    fn add(&mut self, a: Self::F, b: Self::F) -> Self::F;
    fn sub(&mut self, a: Self::F, b: Self::F) -> Self::F;
    fn mul(&mut self, a: Self::F, b: Self::F) -> Self::F;
    fn div(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a·b + c` with one rounding (the GPU's `fma.rn.f32`).
    fn fma(&mut self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    fn max(&mut self, a: Self::F, b: Self::F) -> Self::F;
    fn exp2(&mut self, a: Self::F) -> Self::F;
    fn log2(&mut self, a: Self::F) -> Self::F;
    /// Ordered `a == b` (false when either is NaN).
    fn eq(&mut self, a: Self::F, b: Self::F) -> Self::B;
    /// Ordered `a > b`.
    fn gt(&mut self, a: Self::F, b: Self::F) -> Self::B;
    /// Ordered `a ≥ b`.
    fn ge(&mut self, a: Self::F, b: Self::F) -> Self::B;
    fn select(&mut self, c: Self::B, a: Self::F, b: Self::F) -> Self::F;
}

/// Plain f32 arithmetic, as the interpreter runs it.
pub struct F32;

impl Arith for F32 {
    type F = f32;
    type B = bool;
    fn constant(&mut self, v: f32) -> f32 {
        v
    }
    fn add(&mut self, a: f32, b: f32) -> f32 {
        a + b
    }
    fn sub(&mut self, a: f32, b: f32) -> f32 {
        a - b
    }
    fn mul(&mut self, a: f32, b: f32) -> f32 {
        a * b
    }
    fn div(&mut self, a: f32, b: f32) -> f32 {
        a / b
    }
    fn fma(&mut self, a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    fn max(&mut self, a: f32, b: f32) -> f32 {
        a.max(b)
    }
    fn exp2(&mut self, a: f32) -> f32 {
        a.exp2()
    }
    fn log2(&mut self, a: f32) -> f32 {
        a.log2()
    }
    fn eq(&mut self, a: f32, b: f32) -> bool {
        a == b
    }
    fn gt(&mut self, a: f32, b: f32) -> bool {
        a > b
    }
    fn ge(&mut self, a: f32, b: f32) -> bool {
        a >= b
    }
    fn select(&mut self, c: bool, a: f32, b: f32) -> f32 {
        if c { a } else { b }
    }
}

/// Rounds to the element type to nearest even, as `cvt.rn.{bf16,f16}x2.f32` and the loads of
/// bf16/f16 inputs do.
pub fn round_to(dtype: tessera_desc::Dtype, x: f32) -> f32 {
    match dtype {
        tessera_desc::Dtype::F16 => half::f16::from_f32(x).to_f32(),
        _ => half::bf16::from_f32(x).to_f32(),
    }
}
