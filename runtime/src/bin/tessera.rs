//! The `tessera` command; everything lives in `tessera_runtime::cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match tessera_runtime::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
