//! Shared-memory planning: places each buffer at an offset in the CTA's dynamic shared memory.
//! Offsets are 1024-byte aligned, the period of the 128-byte XOR swizzle, so that the same tiles
//! can later be written by TMA with `SWIZZLE_128B` and read by wgmma descriptors.

use crate::ir::Program;

pub const ALIGN: u32 = 1024;

pub fn place(mut program: Program) -> Program {
    let elem = program.elem_bytes();
    let mut next = 0;
    for i in 0..program.shared.len() {
        let buf = &program.shared[i];
        // An overlay that does not fit under its buffer (or names one placed after it) gets
        // bytes of its own: never an overlap the program did not ask for.
        let under = buf.overlay.map(|u| &program.shared[u.0]).filter(|u| u.offset.is_some() && u.bytes(elem) >= buf.bytes(elem));
        let offset = match under {
            Some(u) => u.offset,
            None => {
                let at = next;
                next += buf.bytes(elem).div_ceil(ALIGN) * ALIGN;
                Some(at)
            }
        };
        program.shared[i].offset = offset;
    }
    program
}
