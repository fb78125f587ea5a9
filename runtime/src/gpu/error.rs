use cudarc::driver::DriverError;
use tessera_codegen::CodegenError;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no CUDA driver found (libcuda.so.1 could not be loaded): is this a machine with an NVIDIA GPU and driver?"
    )]
    NoDriver,
    #[error("no usable GPU: {0}")]
    NoDevice(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("CUDA driver: {0}")]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    #[error("argument `{arg}`: {what}: expected {expected}, got {got}")]
    Mismatch {
        arg: &'static str,
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error("{0}")]
    Invalid(String),
}
