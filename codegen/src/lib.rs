//! Codegen: kernel description → tile IR → passes → LLVM IR → PTX, plus a CPU interpreter of the
//! tile IR, a float64 reference, and the tools that check PTX without a GPU.

pub mod canon;
pub mod ptxas;
pub mod reference;
