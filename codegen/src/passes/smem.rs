//! Shared-memory planning: places each buffer at an offset in the CTA's dynamic shared memory.
//! Offsets are 1024-byte aligned, the period of the 128-byte XOR swizzle, so that the same tiles
//! can later be written by TMA with `SWIZZLE_128B` and read by wgmma descriptors.

use crate::ir::Program;

pub const ALIGN: u32 = 1024;

pub fn place(mut program: Program) -> Program {
    let elem = program.elem_bytes();
    let mut next = 0;
    for buf in &mut program.shared {
        buf.offset = Some(next);
        next += (buf.rows * buf.cols * buf.stages * elem).div_ceil(ALIGN) * ALIGN;
    }
    program
}
