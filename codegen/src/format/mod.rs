//! Compressed formats of the K/V cache that kernels read directly.
//!
//! [`prune`] is Mustafar's per-token magnitude pruning; [`bitmap`] is its bitmap-compressed tile
//! format, bit for bit as the authors' compressor writes it (seeds.md §1.2), so caches made by
//! either can be checked against the other. These are the CPU definitions: the reference and the
//! tests use them, and GPU compression kernels must produce the same bytes.

pub mod bitmap;
pub mod prune;

pub use bitmap::{BitmapCache, TileOrder};
pub use prune::{PruneRule, prune_token};
