//! Loading, launching and tuning tessera kernels, and the `tessera` CLI.
//!
//! `catalog`: the built-in kernels; `cli`: the command that lists, emits, ptxas-checks, runs and
//! times them; `gpu`: the CUDA driver side; `io`: tensors in safetensors files.

// The DSL expands to `::tessera::...` paths, which in the user-facing facade name the `tessera`
// crate; here the description crate plays that role.
extern crate tessera_desc as tessera;

pub mod cache;
pub mod catalog;
pub mod cli;
mod error;
pub mod io;

pub use error::Error;
pub mod gpu;
