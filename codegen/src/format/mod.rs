//! Compressed formats of the K/V cache that kernels read directly.
//!
//! [`prune`] is Mustafar's per-token magnitude pruning; [`cache`] the decode loop's cache of
//! compressed chunks and a dense recent window; [`bitmap`] the bitmap-compressed tile format, bit for bit as the authors' compressor writes it (seeds.md §1.2), so caches made by
//! either can be checked against the other. These are the CPU definitions: the reference and the
//! tests use them, and GPU compression kernels must produce the same bytes.

pub mod bitmap;
pub mod cache;
pub mod prune;

pub use bitmap::{BitmapCache, TileOrder};
pub use cache::{CachePolicy, MustafarCache};
pub use prune::{PruneRule, prune_token};
