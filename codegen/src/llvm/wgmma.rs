//! Tile products with Hopper's `wgmma.mma_async.m64nNk16` (`m64nNk32.s32.s8.s8` for int8
//! codes, `ir::Operands::Int8`): each warpgroup multiplies the 64 rows of its slab by all of B
//! in one instruction per k step (32 bytes of a row either way), with B (and A, unless it is P
//! in registers) read by the tensor cores straight from shared memory through 64-bit matrix
//! descriptors (PTX ISA §9.7.15.5.1.2.2). LLVM has no intrinsic for the multiply itself, so it
//! is inline PTX; the fences around it are intrinsics.
//!
//! The accumulator and the register A operand have the m16n8 fragment layout of `mma.sync`
//! (each warp holds 16 rows), so the fragments stay as they are.

use inkwell::types::BasicMetadataTypeEnum;
use inkwell::values::{BasicMetadataValueEnum, BasicValueEnum, IntValue};
use tessera_desc::Dtype;

use super::layout::BLOCK_ROW_BYTES;
use super::mma::Int32Products;
use super::lower::{Lowerer, Res};
use crate::CodegenError;
use crate::ir::{BufId, Expr, FragId, Operand, Operands, Part};

/// How a shared operand runs along memory (PTX's "major-ness").
#[derive(Clone, Copy)]
enum Major {
    /// Rows are M or N, the reduction dimension k runs along a row (Q, K).
    K,
    /// Rows run along k, N along a row (V in P·V): the descriptor's `imm-trans-b = 1`.
    Mn,
}

/// Descriptor bits 62-63: the 128-byte swizzle of `layout::chunk_offset`.
const SWIZZLE_128B: u64 = 1 << 62;
/// An 8-row × 128-byte swizzle atom.
const ATOM_BYTES: u32 = 8 * BLOCK_ROW_BYTES;

/// The descriptor's constant fields for an operand of a `rows`-row tile. With the 128-byte
/// swizzle, K-major operands step 8-row groups by SBO (LBO is unused, "assumed 1"); MN-major
/// operands step 8-row groups along k by SBO and 64-column blocks along N by LBO
/// (§9.7.15.5.1.2.1).
fn descriptor_fields(major: Major, rows: u32) -> u64 {
    let (lbo, sbo) = match major {
        Major::K => (16, ATOM_BYTES),
        Major::Mn => (rows * BLOCK_ROW_BYTES, ATOM_BYTES),
    };
    SWIZZLE_128B | u64::from(sbo >> 4) << 32 | u64::from(lbo >> 4) << 16
}

/// Bytes from a K-major tile's start (row 0) to k16 step `kk`: 32 bytes per step within a
/// block row, four steps per 64-column block.
fn k_step_offset(rows: u32, kk: u32) -> u32 {
    (kk / 4) * rows * BLOCK_ROW_BYTES + (kk % 4) * 32
}

/// Bytes from an MN-major tile's start to k16 step `kk`: 16 rows, two swizzle atoms.
fn mn_step_offset(kk: u32) -> u32 {
    kk * 2 * ATOM_BYTES
}

impl<'ctx> Lowerer<'ctx, '_> {
    /// The descriptor of the shared operand whose first element is `byte` bytes into the CTA's
    /// shared window.
    fn descriptor(&self, byte: IntValue<'ctx>, major: Major, rows: u32) -> Res<IntValue<'ctx>> {
        let i64t = self.ctx.i64_type();
        let b = &self.b;
        let addr = b.build_and(b.build_right_shift(byte, self.i32(4), false, "")?, self.i32(0x3fff), "")?;
        let addr = b.build_int_z_extend(addr, i64t, "")?;
        Ok(b.build_or(addr, i64t.const_int(descriptor_fields(major, rows), false), "")?)
    }

    /// The shared-window address of byte `offset` of dynamic shared memory.
    fn shared_address(&self, offset: IntValue<'ctx>) -> Res<IntValue<'ctx>> {
        let base = self.b.build_ptr_to_int(self.smem, self.ctx.i32_type(), "")?;
        Ok(self.b.build_int_add(base, offset, "")?)
    }

    /// Descriptor of the k16 step `kk` of a K-major operand from row `row0` on (a multiple of 8).
    fn k_major(&self, buf: BufId, stage: &Expr, row0: IntValue<'ctx>, kk: u32) -> Res<IntValue<'ctx>> {
        let rows = self.program.shared(buf).rows;
        let b = &self.b;
        let off = b.build_int_add(self.stage_base(buf, stage)?, b.build_int_mul(row0, self.i32(BLOCK_ROW_BYTES as i64), "")?, "")?;
        let off = b.build_int_add(off, self.i32(k_step_offset(rows, kk) as i64), "")?;
        self.descriptor(self.shared_address(off)?, Major::K, rows)
    }

    /// Descriptor of the k16 step `kk` of an MN-major B (rows along k).
    fn mn_major(&self, buf: BufId, stage: &Expr, kk: u32) -> Res<IntValue<'ctx>> {
        let rows = self.program.shared(buf).rows;
        let off = self.b.build_int_add(self.stage_base(buf, stage)?, self.i32(mn_step_offset(kk) as i64), "")?;
        self.descriptor(self.shared_address(off)?, Major::Mn, rows)
    }

    /// One `wgmma.mma_async.m64n{n}k16` into `d` (n/2 f32 registers of this thread): A from a
    /// descriptor, or from four registers. Without `accumulate`, d = A·B (scale-d false) and the
    /// old registers are not inputs, so nothing has to write them between the fence and here.
    fn wgmma_async(&self, n: u32, a: WgmmaA<'ctx>, b_desc: IntValue<'ctx>, trans_b: bool, accumulate: bool, d: &mut [BasicValueEnum<'ctx>]) -> Res<()> {
        let int8 = self.program.operands == Operands::Int8;
        let ty = match (int8, self.program.dtype) {
            (true, _) => "s8",
            (false, Dtype::F16) => "f16",
            (false, _) => "bf16",
        };
        let outs = (n / 2) as usize;
        let (i32t, i64t) = (self.ctx.i32_type(), self.ctx.i64_type());
        // int8 products accumulate in int32 registers (the caller converts around the chain).
        let (acc_t, acc_c): (inkwell::types::BasicTypeEnum<'ctx>, &str) = if int8 { (i32t.into(), "=r") } else { (self.ctx.f32_type().into(), "=f") };
        let regs = |from: usize, count: usize| (from..from + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        // Operands: the outputs, the same registers tied as inputs (when accumulating), then A,
        // B, and scale-d.
        let tied = if accumulate { outs } else { 0 };
        let mut args: Vec<BasicMetadataValueEnum<'ctx>> = d[..tied].iter().map(|v| (*v).into()).collect();
        let mut types: Vec<BasicMetadataTypeEnum<'ctx>> = vec![acc_t.into(); tied];
        let mut constraints: Vec<String> = (0..outs).map(|_| acc_c.to_string()).collect();
        constraints.extend((0..tied).map(|i| i.to_string()));
        let first_in = outs + tied;
        let a_text = match a {
            WgmmaA::Desc(desc) => {
                args.push(desc.into());
                types.push(i64t.into());
                constraints.push("l".into());
                format!("${first_in}")
            }
            WgmmaA::Regs(r) => {
                for v in r {
                    args.push(v.into());
                    types.push(i32t.into());
                    constraints.push("r".into());
                }
                format!("{{{}}}", regs(first_in, 4))
            }
        };
        let next = first_in + if matches!(a, WgmmaA::Desc(_)) { 1 } else { 4 };
        args.extend::<[BasicMetadataValueEnum<'ctx>; 2]>([b_desc.into(), self.i32(i64::from(accumulate)).into()]);
        types.extend::<[BasicMetadataTypeEnum<'ctx>; 2]>([i64t.into(), i32t.into()]);
        constraints.extend(["l".to_string(), "r".to_string()]);
        // scale-d is a predicate: true accumulates into d. Integer wgmma has no scale or
        // transpose immediates (its operands are K-major).
        let trans_a = if matches!(a, WgmmaA::Desc(_)) { "0, " } else { "" };
        let (shape, tail) = match int8 {
            true => (format!("m64n{n}k32.s32.s8.s8"), String::new()),
            false => (format!("m64n{n}k16.f32.{ty}.{ty}"), format!(", 1, 1, {trans_a}{}", u32::from(trans_b))),
        };
        let text = format!(
            "{{\n.reg .pred p;\nsetp.ne.b32 p, ${}, 0;\n\
             wgmma.mma_async.sync.aligned.{shape} {{{}}}, {a_text}, ${next}, p{tail};\n}}",
            next + 1,
            regs(0, outs),
        );
        let ret = self.ctx.struct_type(&vec![acc_t; outs], false);
        let fn_ty = ret.fn_type(&types, false);
        let asm = self.ctx.create_inline_asm(fn_ty, text, constraints.join(","), true, false, None, false);
        let out = self.b.build_indirect_call(fn_ty, asm, &args, "")?.try_as_basic_value();
        let inkwell::values::ValueKind::Basic(out) = out else {
            return Err(CodegenError::Llvm("wgmma returned no value".into()));
        };
        for (i, di) in d.iter_mut().enumerate() {
            *di = self.b.build_extract_value(out.into_struct_value(), i as u32, "")?;
        }
        Ok(())
    }

    /// `acc += a · b` with wgmma: one warpgroup instruction per (slab, k16 step), all in one
    /// commit group that completes before the fragments are used.
    pub fn wgmma(&mut self, acc: FragId, a: &Operand, b: &Operand) -> Res<Int32Products<'ctx>> {
        let n = self.program.frag(acc).cols;
        let Operand::Shared { buf: b_buf, stage: b_stage, kn, part: Part::Whole } = b else {
            return Err(CodegenError::Ir("wgmma: B must be a whole shared tile (a warpgroup shares its B)".into()));
        };
        if self.program.shared.iter().any(|s| s.block_cols * self.program.elem_bytes() != BLOCK_ROW_BYTES) {
            return Err(CodegenError::Ir("wgmma: shared tiles must be in 128-byte blocks (passes::engine)".into()));
        }
        let b_rows = self.program.shared(*b_buf).rows;
        let k = if *kn { b_rows } else { self.program.shared(*b_buf).cols };
        let int8 = self.program.operands == Operands::Int8;
        if int8 && (*kn || matches!(a, Operand::Frag(_))) {
            return Err(CodegenError::Ir("wgmma: int8 operands are K-major shared tiles".into()));
        }
        // Elements per k step: 32 bytes of a row, 16 16-bit values or 32 int8 codes.
        let k_step = 32 / self.program.elem_bytes();
        // Accumulators still all zero (a fresh `Fill`) start with scale-d false instead; the rest,
        // and P, were last written by ordinary instructions, which must all come before the fence
        // (pinned there, or LLVM may sink them past it and ptxas serializes the wgmmas).
        let slab_len = (n / 2) as usize;
        let fresh: Vec<bool> = self.frags[acc.0].chunks(slab_len).map(|d| d.iter().all(|v| is_zero(*v))).collect();
        // int8 accumulators enter as int32, converted before the pin below so that nothing is
        // computed between the fence and the wgmmas.
        if int8 {
            let i32t = self.ctx.i32_type();
            for (slab, d) in self.frags[acc.0].chunks_mut(slab_len).enumerate() {
                if !fresh[slab] {
                    for v in d.iter_mut() {
                        *v = self.b.build_float_to_signed_int(v.into_float_value(), i32t, "")?.into();
                    }
                }
            }
        }
        let mut pinned: Vec<BasicValueEnum<'ctx>> = Vec::new();
        for (slab, d) in self.frags[acc.0].chunks(slab_len).enumerate() {
            if !fresh[slab] {
                pinned.extend_from_slice(d);
            }
        }
        if let Operand::Frag(p) = a {
            pinned.extend_from_slice(&self.frags[p.0]);
        }
        let pinned = self.pin(&pinned)?;
        let mut pinned = pinned.into_iter();
        for (slab, d) in self.frags[acc.0].chunks_mut(slab_len).enumerate() {
            if !fresh[slab] {
                d.iter_mut().for_each(|v| *v = pinned.next().unwrap_or(*v));
            }
        }
        if let Operand::Frag(p) = a {
            self.frags[p.0].iter_mut().for_each(|v| *v = pinned.next().unwrap_or(*v));
        }
        self.call("llvm.nvvm.wgmma.fence.sync.aligned", &[], &[])?;
        // Warpgroups are 4 warps (`rules::check_mma`).
        let group_warp = self.b.build_and(self.lane.warp, self.i32(!3), "")?;
        for slab in 0..self.slabs() {
            // The warpgroup's first warp's rows: slab_row of warp `group_warp`.
            let slab_base = self.i32((slab * self.program.config.warps * 16) as i64);
            let row0 = self.b.build_int_add(slab_base, self.b.build_int_mul(group_warp, self.i32(16), "")?, "")?;
            let base = self.acc_index(n, slab, 0, 0);
            for kk in 0..k / k_step {
                let a_op = match a {
                    Operand::Shared { buf, stage, kn: false, part: Part::Whole } => WgmmaA::Desc(self.k_major(*buf, stage, row0, kk)?),
                    Operand::Frag(p) => {
                        let at = ((slab * (self.program.frag(*p).cols / 16) + kk) * 4) as usize;
                        let r = &self.frags[p.0][at..at + 4];
                        WgmmaA::Regs([0, 1, 2, 3].map(|i| r[i].into_int_value()))
                    }
                    Operand::Shared { .. } => return Err(CodegenError::Ir("wgmma: A must be [m][k]".into())),
                };
                let b_desc = if *kn { self.mn_major(*b_buf, b_stage, kk)? } else { self.k_major(*b_buf, b_stage, self.i32(0), kk)? };
                let mut d: Vec<_> = self.frags[acc.0][base..base + (n / 2) as usize].to_vec();
                self.wgmma_async(n, a_op, b_desc, *kn, kk > 0 || !fresh[slab as usize], &mut d)?;
                self.frags[acc.0][base..base + (n / 2) as usize].copy_from_slice(&d);
            }
        }
        self.call("llvm.nvvm.wgmma.commit_group.sync.aligned", &[], &[])?;
        let none_pending = self.ctx.i64_type().const_zero().into();
        self.call("llvm.nvvm.wgmma.wait_group.sync.aligned", &[], &[none_pending])?;
        if int8 { self.int_accumulators_to_f32(acc) } else { Ok(None) }
    }

    /// `values` passed through one empty `asm volatile` (CUTLASS's `warpgroup_fence_operand`):
    /// whatever computes them is emitted before it, and so before the `wgmma.fence` that follows.
    fn pin(&self, values: &[BasicValueEnum<'ctx>]) -> Res<Vec<BasicValueEnum<'ctx>>> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let types: Vec<_> = values.iter().map(|v| v.get_type()).collect();
        let constraint = |t: &inkwell::types::BasicTypeEnum<'_>| if t.is_float_type() { "=f" } else { "=r" };
        let mut constraints: Vec<String> = types.iter().map(|t| constraint(t).to_string()).collect();
        constraints.extend((0..values.len()).map(|i| i.to_string()));
        let params: Vec<BasicMetadataTypeEnum<'ctx>> = types.iter().map(|&t| t.into()).collect();
        let fn_ty = self.ctx.struct_type(&types, false).fn_type(&params, false);
        let asm = self.ctx.create_inline_asm(fn_ty, String::new(), constraints.join(","), true, false, None, false);
        let args: Vec<BasicMetadataValueEnum<'ctx>> = values.iter().map(|&v| v.into()).collect();
        let inkwell::values::ValueKind::Basic(out) = self.b.build_indirect_call(fn_ty, asm, &args, "")?.try_as_basic_value() else {
            return Err(CodegenError::Llvm("operand fence returned no value".into()));
        };
        (0..values.len()).map(|i| Ok(self.b.build_extract_value(out.into_struct_value(), i as u32, "")?)).collect()
    }

    /// Makes this thread's landed cp.async writes visible to the async proxy that wgmma reads
    /// shared memory through; the barrier after it publishes them to the other warps.
    pub fn fence_async_proxy(&self) -> Res<()> {
        self.call("llvm.nvvm.fence.proxy.async.shared_cta", &[], &[])?;
        Ok(())
    }
}

/// A constant +0.0: what `Fill` leaves in an accumulator.
fn is_zero(v: BasicValueEnum<'_>) -> bool {
    matches!(v, BasicValueEnum::FloatValue(f) if f.get_constant() == Some((0.0, false)) && f.is_const())
}

#[derive(Clone, Copy)]
enum WgmmaA<'ctx> {
    Desc(IntValue<'ctx>),
    Regs([IntValue<'ctx>; 4]),
}

/// The descriptors read back the way the tensor cores read them: PTX ISA §9.7.15.5.1.2.1.3's
/// canonical 128-byte-swizzle layouts (16-bit elements, T = 8), with the swizzle applied to the
/// shared address, must find each element of the operand where `layout` put it.
#[cfg(test)]
mod tests {
    use super::*;

    struct Decoded {
        start: u32,
        lbo: u32,
        sbo: u32,
    }

    fn decode(desc: u64) -> Decoded {
        assert_eq!(desc >> 62, 1, "128-byte swizzle");
        assert_eq!((desc >> 49) & 7, 0, "base offset: tiles start on 1024-byte boundaries");
        let field = |at: u32| ((desc >> at) & 0x3fff) as u32 * 16;
        Decoded { start: field(0), lbo: field(16), sbo: field(32) }
    }

    /// Swizzle<3,4,3> on byte addresses: bits 4-6 ^= bits 7-9.
    fn swizzle(addr: u32) -> u32 {
        addr ^ ((addr >> 3) & 0x70)
    }

    /// Where `layout` puts element (row, col) of a tile that starts at `base`.
    fn placed(base: u32, rows: u32, row: u32, col: u32) -> u32 {
        let (block, chunk) = (col / 64, (col % 64) / 8);
        base + block * rows * BLOCK_ROW_BYTES + row * BLOCK_ROW_BYTES + (chunk ^ (row % 8)) * 16 + (col % 8) * 2
    }

    fn descriptor(byte: u32, major: Major, rows: u32) -> u64 {
        u64::from((byte >> 4) & 0x3fff) | descriptor_fields(major, rows)
    }

    /// K-major, ((8,m),(T,2k)):((8T,SBO),(1,T)): Q rows row0.. as A (m = 64), K rows as B.
    #[test]
    fn k_major_descriptors_find_the_tile() {
        for (base, rows, cols) in [(0, 64, 128), (8192, 128, 128), (1024, 128, 64), (0, 32, 128)] {
            for row0 in (0..rows).step_by(64) {
                for kk in 0..cols / 16 {
                    let d = decode(descriptor(base + row0 * BLOCK_ROW_BYTES + k_step_offset(rows, kk), Major::K, rows));
                    for mn in 0..64.min(rows) {
                        for k in 0..16 {
                            let elem = (mn % 8) * 64 + (mn / 8) * (d.sbo / 2) + k % 8 + 8 * (k / 8);
                            let got = swizzle(d.start + 2 * elem);
                            assert_eq!(got, placed(base, rows, row0 + mn, 16 * kk + k), "tile {rows}x{cols} row0 {row0} kk {kk} ({mn}, {k})");
                        }
                    }
                }
            }
        }
    }

    /// MN-major, ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)): V as B, k = key rows, N = head dims.
    #[test]
    fn mn_major_descriptors_find_the_tile() {
        for (base, rows, cols) in [(0, 64, 128), (16384, 128, 128), (2048, 32, 64)] {
            for kk in 0..rows / 16 {
                let d = decode(descriptor(base + mn_step_offset(kk), Major::Mn, rows));
                for n in 0..cols {
                    for k in 0..16 {
                        let elem = n % 8 + 8 * ((n / 8) % 8) + (n / 64) * (d.lbo / 2) + (k % 8) * 64 + (k / 8) * (d.sbo / 2);
                        let got = swizzle(d.start + 2 * elem);
                        assert_eq!(got, placed(base, rows, 16 * kk + k, n), "tile {rows}x{cols} kk {kk} ({k}, {n})");
                    }
                }
            }
        }
    }
}
