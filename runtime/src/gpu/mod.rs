//! The GPU side: finding a device through the CUDA driver, loading tessera's PTX, and launching
//! kernels with every argument checked first.

mod attention;
mod blocks;
pub mod bench;
pub mod block_map;
pub mod checks;
mod compress;
mod error;
mod mustafar;
mod quantize;
mod sale;
mod tensor;
mod tuned;

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream, sys};

pub use attention::{Attention, AttentionArgs, grid_extents};
pub use blocks::DeviceBlockLists;
pub use compress::{CompressWorkspace, Compressor};
pub use error::GpuError;
pub use mustafar::{DecodeArgs, DeviceBitmapCache, DeviceMustafarCache, MustafarDecode};
pub use quantize::{DeviceQuantized, Quantizer};
pub use sale::{SaleSelect, SaleWorkspace, SelectArgs};
pub use tensor::DeviceTensor;
use tessera_codegen::Target;

/// An opened GPU: its context, a stream, and what tessera needs to know about it.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub name: String,
    pub compute_capability: (i32, i32),
    /// Opt-in maximum of dynamic shared memory per block.
    pub max_shared_bytes: u32,
}

/// Dynamic shared memory a kernel may use without opting in.
const DEFAULT_DYNAMIC_SHARED: u32 = 48 * 1024;

impl Gpu {
    /// The entries `entries` of the module of `desc` at `config` (from the PTX cache), ready for
    /// a program needing `smem` bytes of dynamic shared memory: over this GPU's limit is an
    /// error, over the default an opt-in.
    pub(crate) fn load_entries<const N: usize>(&self, desc: &tessera_desc::KernelDesc, config: &tessera_desc::Config, smem: u32, entries: [&str; N]) -> Result<[cudarc::driver::CudaFunction; N], GpuError> {
        let ptx = crate::cache::ptx(desc, config, self.target()?)?;
        self.load_ptx(&format!("{} at {config}", desc.name), &ptx, smem, entries)
    }

    /// The entries `entries` of the module `ptx` (`what`, for errors), as `load_entries`.
    pub(crate) fn load_ptx<const N: usize>(&self, what: &str, ptx: &str, smem: u32, entries: [&str; N]) -> Result<[cudarc::driver::CudaFunction; N], GpuError> {
        if smem > self.max_shared_bytes {
            return Err(GpuError::Invalid(format!(
                "{what} needs {smem} bytes of shared memory; {} allows {}",
                self.name, self.max_shared_bytes
            )));
        }
        let module = self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx))?;
        let functions = entries.iter().map(|e| module.load_function(e)).collect::<Result<Vec<_>, _>>()?;
        if smem > DEFAULT_DYNAMIC_SHARED {
            let attr = sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
            for f in &functions {
                f.set_attribute(attr, smem as i32)?;
            }
        }
        functions.try_into().map_err(|_| GpuError::Invalid(format!("{} entries asked, another number loaded", N)))
    }

    /// The first `n` elements of `x` on the host. Only those are copied: arrays are allocated
    /// at least one element long (the driver refuses zero bytes) and some carry padding, which
    /// nothing writes and compute-sanitizer's initcheck flags when read.
    pub(crate) fn download<T: cudarc::driver::DeviceRepr + Default + Clone>(&self, x: &cudarc::driver::CudaSlice<T>, n: usize) -> Result<Vec<T>, GpuError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if n > x.len() {
            return Err(GpuError::Invalid(format!("{n} elements asked of an array of {}", x.len())));
        }
        Ok(self.stream.clone_dtoh(&x.slice(..n))?)
    }

    /// Opens device `ordinal`. Without a driver or a GPU this is an error that says so: cudarc
    /// loads `libcuda.so.1` lazily and panics when it is missing, so the library is looked for
    /// first.
    pub fn open(ordinal: usize) -> Result<Gpu, GpuError> {
        // SAFETY: loading the driver library runs its initialisers, as cudarc's own load would.
        unsafe { libloading::Library::new("libcuda.so.1") }.map_err(|_| GpuError::NoDriver)?;
        let ctx = CudaContext::new(ordinal).map_err(|e| GpuError::NoDevice(e.to_string()))?;
        let attr = |a| ctx.attribute(a).map_err(GpuError::from);
        let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        let max_shared =
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?;
        Ok(Gpu {
            name: ctx.name()?,
            stream: ctx.default_stream(),
            ctx,
            compute_capability: (major, minor),
            max_shared_bytes: max_shared.max(0) as u32,
        })
    }

    /// The best target this device runs: sm_90a on Hopper, sm_80 PTX (JIT-compiled by the
    /// driver) on everything else from Ampere on.
    pub fn target(&self) -> Result<Target, GpuError> {
        match self.compute_capability {
            (9, 0) => Ok(Target::Sm90a),
            (major, _) if major >= 8 => Ok(Target::Sm80),
            (major, minor) => Err(GpuError::Unsupported(format!(
                "{} has compute capability {major}.{minor}; tessera needs 8.0 or newer",
                self.name
            ))),
        }
    }
}
