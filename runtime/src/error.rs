//! Everything the CLI can fail with, each message complete on its own: the binary prints only
//! the top-level `Display`, so sources are folded into it rather than chained.

use std::io;
use std::path::PathBuf;

use tessera_codegen::CodegenError;
use tessera_codegen::ptxas::PtxasError;
use tessera_desc::ConfigError;

use crate::gpu::GpuError;
use crate::tune::TuneError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown kernel `{name}`; known kernels: {known}")]
    UnknownKernel { name: String, known: String },
    #[error("invalid config for kernel `{kernel}`: {source}")]
    Config {
        kernel: &'static str,
        #[source]
        source: ConfigError,
    },
    #[error("{kernel} ({config}, {target}): {source}")]
    Codegen {
        kernel: &'static str,
        config: String,
        target: String,
        // Boxed: CodegenError is large and every CLI result would carry its size.
        #[source]
        source: Box<CodegenError>,
    },
    #[error(transparent)]
    Ptxas(#[from] PtxasError),
    #[error("writing {}: {source}", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing to stdout: {0}")]
    Stdout(#[source] io::Error),
    #[error("{failed} of {total} checks failed")]
    CheckFailed { failed: usize, total: usize },
    #[error("reading {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a valid safetensors file: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error("{} has no tensor `{name}` (it has: {found})", path.display())]
    MissingTensor {
        path: PathBuf,
        name: String,
        found: String,
    },
    // The input problems `tessera run` finds before touching a GPU: wrong dtype, rank, head_dim,
    // or shapes that disagree between q, k and v.
    #[error("tensor `{tensor}`: {what}: expected {expected}, got {got}")]
    Tensor {
        tensor: &'static str,
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("invalid problem: {0}")]
    Problem(String),
    #[error("{failed} of {total} benchmarks failed")]
    BenchFailed { failed: usize, total: usize },
    #[error(transparent)]
    Tune(#[from] TuneError),
    #[error("the sweep stopped early: {0}")]
    TuneStopped(String),
    #[error("no tuning store entry's key starts with `{prefix}` in {path}")]
    NoTuneEntry { prefix: String, path: String },
    #[error("the tuning store is disabled (${var} is set but empty)")]
    NoTuneStore { var: &'static str },
}

impl Error {
    /// A closed stdout (`tessera list | head`) is the reader's choice, not a failure to report.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Stdout(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}
