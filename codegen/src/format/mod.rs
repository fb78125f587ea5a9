//! Compressed formats of the K/V cache that kernels read directly.
//!
//! [`blocks`] is the kept-block lists a block-sparse kernel reads.
//! [`int4`] is SALE's 4-bit quantization of Q and K for its block-selection estimate, [`lowbit`]
//! the quantizer it shares with the int8 and FP8 alternatives, [`smoothed`] the int8 operands of
//! a whole problem as the GPU quantizer writes them.
//! [`prune`] is Mustafar's per-token magnitude pruning; [`cache`] the decode loop's cache of
//! compressed chunks and a dense recent window; [`bitmap`] the bitmap-compressed tile format, bit for bit as the authors' compressor writes it (seeds.md §1.2), so caches made by
//! either can be checked against the other. These are the CPU definitions: the reference and the
//! tests use them, and GPU compression kernels must produce the same bytes.

pub mod bitmap;
pub mod blocks;
pub mod cache;
pub mod int4;
pub mod lowbit;
pub mod prune;
pub mod smoothed;

pub use bitmap::{BitmapCache, TileOrder};
pub use blocks::BlockLists;
pub use cache::{CachePolicy, MustafarCache};
pub use prune::{PruneRule, prune_token};

/// The value of 16-bit element bits of `dtype`.
pub fn to_f32(dtype: tessera_desc::Dtype, bits: u16) -> f32 {
    match dtype {
        tessera_desc::Dtype::F16 => half::f16::from_bits(bits).to_f32(),
        _ => half::bf16::from_bits(bits).to_f32(),
    }
}

/// `x` rounded to `dtype`, as element bits.
pub fn from_f32(dtype: tessera_desc::Dtype, x: f32) -> u16 {
    match dtype {
        tessera_desc::Dtype::F16 => half::f16::from_f32(x).to_bits(),
        _ => half::bf16::from_f32(x).to_bits(),
    }
}
