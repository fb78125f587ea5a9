//! tessera: attention tile schedules, written in Rust, compiled to PTX through LLVM.

extern crate self as tessera;

pub use tessera_desc::*;
pub use tessera_dsl::attention;
