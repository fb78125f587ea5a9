//! tessera: attention tile schedules, written in Rust, compiled to PTX through LLVM.

extern crate self as tessera;

pub use tessera_codegen as codegen;
pub use tessera_codegen::{Stage, Target};
pub use tessera_desc::*;
pub use tessera_dsl::attention;

pub mod testing;
