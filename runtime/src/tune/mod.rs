//! Autotuning: the fastest config of a kernel's space for a problem on a GPU, found once and
//! remembered.
//!
//! A sweep (`sweep`) takes the configs of the space that the store has no record of for the
//! key (`key`: kernel, bucketed problem, device, driver, tessera version), prunes those that
//! cannot or should not run (`space`), generates the rest's PTX on every core (`compile`), and
//! on one or every GPU (`workers`) checks each against the float64 reference (`verify`) before
//! timing it, dropping clearly slower ones after a short measurement (`race`, `measure`).
//! Every result goes to the persistent store (`store`, `record`) as it comes (`recorder`); the
//! launch API asks `policy::choose` for the winner. Mustafar decode kernels go the same way,
//! over a KV cache the tuner compresses (`decode`); `launch` runs either kind of kernel.

mod compile;
mod decode;
mod device;
mod key;
mod launch;
mod measure;
mod policy;
mod problem;
pub mod race;
mod record;
mod recorder;
pub mod space;
mod store;
mod sweep;
mod verify;
mod workers;

#[cfg(test)]
mod tests;

pub use decode::POLICY as DECODE_POLICY;
pub use device::DeviceInfo;
pub use key::{Bucket, KeyInfo, bucket_len};
pub use policy::{AUTOTUNE_ENV, Choice, Policy, Source, choose};
pub use problem::{Grid, Problem};
pub use record::{Entries, Entry, Outcome, Record};
pub use store::{ENV as STORE_ENV, Store, StoreError};
pub use sweep::{Counts, Event, Options, Summary, sweep};

use crate::gpu::GpuError;

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("problem {problem}: {why}")]
    Problem { problem: Problem, why: String },
    #[error("kernel `{kernel}` has no valid config in its tuning space")]
    EmptySpace { kernel: &'static str },
    #[error("kernel `{kernel}` has no config that runs this problem on this GPU: {why}")]
    NothingFits { kernel: &'static str, why: String },
    #[error("the reference for the correctness check: {0}")]
    Reference(String),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
