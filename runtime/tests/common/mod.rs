//! What the GPU test binaries share.

use tessera_runtime::gpu::Gpu;

/// GPU 0, or `None` after saying why the test is skipped.
pub fn gpu() -> Option<Gpu> {
    match Gpu::open(0) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}
