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
        let bytes = buf.bytes(elem).div_ceil(ALIGN) * ALIGN;
        // An overlay starts at its buffer's offset and, where it is larger, runs on over the
        // buffers placed after that one, which its program must be done with by then
        // (`Shared::overlay`; the interpreter, comparing placed bytes, reports a read or a copy
        // it overwrites). One that names a buffer placed after it gets bytes of its own.
        let offset = match buf.overlay.and_then(|u| program.shared[u.0].offset) {
            Some(at) => {
                next = next.max(at + bytes);
                at
            }
            None => {
                next += bytes;
                next - bytes
            }
        };
        program.shared[i].offset = Some(offset);
    }
    program
}
