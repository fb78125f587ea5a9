//! The block lists of a block-sparse kernel (`visit = blocks(..)`) on the device.
//!
//! Made only by [`DeviceBlockLists::upload`], which validates the lists first (shapes, every
//! count and index in range, each row strictly ascending): the kernel reads them without bounds
//! checks, so lists that reach it are known good. A launch then checks that their tiles are the
//! kernel config's tiles over the launch's planes and lengths.

use cudarc::driver::CudaSlice;
use tessera_codegen::format::BlockLists;

use super::{Gpu, GpuError};

pub struct DeviceBlockLists {
    planes: usize,
    q_tiles: usize,
    kv_tiles: usize,
    pub(super) list: CudaSlice<i32>,
    pub(super) count: CudaSlice<i32>,
}

impl DeviceBlockLists {
    /// Validates `lists` on the host, then copies both tables to the device.
    pub fn upload(gpu: &Gpu, lists: &BlockLists) -> Result<DeviceBlockLists, GpuError> {
        lists
            .validate()
            .map_err(|e| GpuError::Invalid(format!("block lists: {e}")))?;
        // A zero-length allocation is not a valid device pointer on every driver; the kernel
        // reads nothing from an empty table, so one spare entry costs nothing.
        let padded = |t: &[i32]| if t.is_empty() { vec![0] } else { t.to_vec() };
        Ok(DeviceBlockLists {
            planes: lists.planes,
            q_tiles: lists.q_tiles,
            kv_tiles: lists.kv_tiles,
            list: gpu.stream.clone_htod(&padded(&lists.list))?,
            count: gpu.stream.clone_htod(&padded(&lists.count))?,
        })
    }

    /// (planes, query tiles, KV tiles) the lists were made for.
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.planes, self.q_tiles, self.kv_tiles)
    }

    /// Lists the selection's entries write: every row ascending, its count at most `kv_tiles`,
    /// by construction (one ballot-ordered pass over the row's visible tiles), which
    /// `BlockLists::validate` of a download confirms in the GPU tests.
    pub(super) fn from_device(dims: (usize, usize, usize), list: CudaSlice<i32>, count: CudaSlice<i32>) -> DeviceBlockLists {
        DeviceBlockLists { planes: dims.0, q_tiles: dims.1, kv_tiles: dims.2, list, count }
    }

    /// The lists on the host.
    pub fn download(&self, gpu: &Gpu) -> Result<BlockLists, GpuError> {
        let (planes, q_tiles, kv_tiles) = self.dims();
        Ok(BlockLists {
            planes,
            q_tiles,
            kv_tiles,
            list: gpu.download(&self.list, planes * q_tiles * kv_tiles)?,
            count: gpu.download(&self.count, planes * q_tiles)?,
        })
    }
}
