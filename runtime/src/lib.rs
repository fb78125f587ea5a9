//! Loading, launching and tuning tessera kernels, and the `tessera` CLI.
//!
//! `catalog`: the built-in kernels; `cli`: the command that lists, emits, ptxas-checks, runs,
//! times and autotunes them; `gpu`: the CUDA driver side; `io`: tensors in safetensors files;
//! `tune`: the autotuner and its persistent store.

// The DSL expands to `::tessera::...` paths, which in the user-facing facade name the `tessera`
// crate; here the description crate plays that role.
extern crate tessera_desc as tessera;

pub mod cache;
pub mod catalog;
pub mod cli;
mod error;
pub mod io;
mod parallel;
pub mod tune;

pub use error::Error;
pub mod gpu;
