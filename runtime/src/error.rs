//! Everything the CLI can fail with, each message complete on its own: the binary prints only
//! the top-level `Display`, so sources are folded into it rather than chained.

use std::io;
use std::path::PathBuf;

use tessera_codegen::CodegenError;
use tessera_codegen::ptxas::PtxasError;
use tessera_desc::ConfigError;

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
}

impl Error {
    /// A closed stdout (`tessera list | head`) is the reader's choice, not a failure to report.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Stdout(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}
