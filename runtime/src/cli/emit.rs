//! `tessera emit`: one stage of one kernel at one config, to stdout or a file.

use std::io::Write;
use std::path::PathBuf;

use tessera_codegen::{Stage, Target};

use super::{config_of, find_kernel, parse_stage, parse_target};
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel name, as `tessera list` prints it.
    kernel: String,
    /// Config overrides over the kernel's default, e.g. `block_q=128,warps=8`.
    #[arg(long, value_name = "KEY=VALUE,...")]
    config: Option<String>,
    /// sm_80 or sm_90a.
    #[arg(long, default_value = "sm_80", value_parser = parse_target)]
    target: Target,
    /// ir (tile program after every pass), llvm or ptx.
    #[arg(long, default_value = "ptx", value_parser = parse_stage)]
    stage: Stage,
    /// Write here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), Error> {
    let desc = find_kernel(&args.kernel)?;
    let cfg = config_of(desc, args.config.as_deref())?;
    let text = tessera_codegen::emit(desc, &cfg, args.target, args.stage).map_err(|source| {
        Error::Codegen {
            kernel: desc.name,
            config: cfg.to_string(),
            target: args.target.name().to_string(),
            source: Box::new(source),
        }
    })?;
    match &args.output {
        Some(path) => std::fs::write(path, &text).map_err(|source| Error::WriteFile {
            path: path.clone(),
            source,
        }),
        None => out.write_all(text.as_bytes()).map_err(Error::Stdout),
    }
}
