//! Tile products with `ldmatrix.x4` + `mma.sync.m16n8k16`: each warp multiplies its 16-row
//! slabs of A with every n8 tile of B, k16 step by k16 step. B fragments are loaded once per
//! (k step, n16 pair) and shared by the warp's slabs.

use inkwell::values::{BasicValueEnum, IntValue, PointerValue};
use tessera_desc::Dtype;

use super::layout::LdmatrixRole;
use super::lower::{Lowerer, Res, SHARED};
use crate::CodegenError;
use crate::ir::{BufId, Expr, FragId, Operand, Operands, Part};

/// A shared operand's addressing for this lane (`layout::BLOCK_ROW_BYTES`). Within a block row
/// the lane's chunk of an even logical chunk `c` is `(c & !7) | ((c & 7) ^ lane_xor)` (lane_xor
/// < 8), so four base pointers, one per `c & 7` in {0, 2, 4, 6}, cover every chunk and the rest
/// of each address (row, block, `c & !7`) is a constant that ptxas folds into the instruction.
struct SharedOperand<'ctx> {
    bases: [PointerValue<'ctx>; 4],
    /// Chunks per block row, bytes per block row, bytes per block.
    block_chunks: u32,
    pitch: u32,
    block_bytes: u32,
    trans: bool,
}

/// Where the A operand comes from: shared memory through ldmatrix, or registers already in
/// the A layout (P, packed by the softmax from its C-layout scores).
enum ASource<'ctx> {
    Shared(SharedOperand<'ctx>),
    Frag(FragId),
}

/// The int32 accumulators an int8 product left (as f32) in its fragment, in its register
/// order; None for other products.
pub type Int32Products<'ctx> = Option<Vec<IntValue<'ctx>>>;

impl<'ctx> Lowerer<'ctx, '_> {
    /// `part` of `buf` (`Part`) as this warp's (first row, first chunk) of it.
    fn part_origin(&self, buf: BufId, part: Part) -> Res<(IntValue<'ctx>, IntValue<'ctx>)> {
        let sb = self.program.shared(buf);
        let parts = self.program.key_parts;
        let (part_rows, part_cols) = self.program.part_dims(buf, part);
        let (rows, chunks) = match part {
            Part::Whole => return Ok((self.i32(0), self.i32(0))),
            Part::Rows => (part_rows, 0),
            Part::Cols => (0, part_cols / self.chunk_elems()),
        };
        // A column part is a power of two of even chunks, at a multiple of its width: the
        // chunks the products add within it, and a lane's chunk 0 or 1, share no bit with its
        // first chunk, so the swizzle's XOR below may fold them all.
        if part == Part::Cols && (chunks < 2 || !chunks.is_power_of_two() || sb.block_cols != sb.cols) {
            return Err(CodegenError::Ir(format!("{}: {parts} column parts of {} columns", sb.name, sb.cols)));
        }
        let at = |n: u32| self.b.build_int_mul(self.lane.warp, self.i32(n as i64), "");
        Ok((at(rows)?, at(chunks)?))
    }

    fn shared_operand(&self, buf: BufId, stage: &Expr, role: LdmatrixRole, part: Part) -> Res<SharedOperand<'ctx>> {
        let sb = self.program.shared(buf);
        let pitch = sb.block_cols * self.program.elem_bytes();
        let (block_chunks, block_bytes) = (sb.block_cols / self.chunk_elems(), sb.rows * pitch);
        let b = &self.b;
        let (row, chunk) = role.lane_offset();
        let (part_row, part_chunk) = self.part_origin(buf, part)?;
        let row = b.build_int_add(self.expr(&row)?, part_row, "")?;
        // The part's first chunk: its low 3 bits join the lane's chunk, the rest is bytes.
        let chunk = b.build_or(self.expr(&chunk)?, b.build_and(part_chunk, self.i32(7), "")?, "")?;
        let part_bytes = b.build_int_mul(b.build_and(part_chunk, self.i32(!7), "")?, self.i32(16), "")?;
        // Operand row bases are multiples of 8 and chunk bases even, so the swizzled chunk of
        // (base_row + row, base_chunk + chunk) is base_chunk ^ (chunk ^ swizzle(row)).
        let lane_xor = b.build_xor(chunk, self.row_swizzle(row, block_chunks)?, "")?;
        let lane_base = b.build_int_add(self.stage_base(buf, stage)?, b.build_int_mul(row, self.i32(pitch as i64), "")?, "")?;
        let lane_base = b.build_int_add(lane_base, part_bytes, "")?;
        let mut bases = [self.smem; 4];
        for (e, base) in bases.iter_mut().enumerate() {
            let chunk = b.build_xor(self.i32(2 * e as i64), lane_xor, "")?;
            let off = b.build_int_add(lane_base, b.build_int_mul(chunk, self.i32(16), "")?, "")?;
            *base = self.byte_ptr(self.smem, off)?;
        }
        Ok(SharedOperand { bases, block_chunks, pitch, block_bytes, trans: role == LdmatrixRole::BKn })
    }

    /// `ldmatrix.x4` of the 16×16 block at (`row`, `col`) of a shared operand.
    fn ldmatrix(&self, op: &SharedOperand<'ctx>, row: IntValue<'ctx>, col: u32) -> Res<[IntValue<'ctx>; 4]> {
        let b = &self.b;
        let chunk = col / self.chunk_elems();
        let (block, within) = (chunk / op.block_chunks, chunk % op.block_chunks);
        let base = op.bases[((within & 7) / 2) as usize];
        let off = b.build_int_mul(row, self.i32(op.pitch as i64), "")?;
        let off = b.build_int_add(off, self.i32((block * op.block_bytes + (within & !7) * 16) as i64), "")?;
        let ptr = self.byte_ptr(base, off)?;
        let name = if op.trans {
            "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.trans.b16"
        } else {
            "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.b16"
        };
        let s = self.call_value(name, &[self.ptr_type(SHARED)], &[ptr.into()])?.into_struct_value();
        let mut regs = [self.i32(0); 4];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = b.build_extract_value(s, i as u32, "")?.into_int_value();
        }
        Ok(regs)
    }

    /// `Stmt::LoadOperand`: each slab's k16 steps of `src` through `ldmatrix.x4`, in the order
    /// the products read an `Operand::Frag` (4 registers per slab and step).
    pub fn load_operand(&mut self, frag: FragId, src: BufId) -> Res<()> {
        let op = self.shared_operand(src, &Expr::from(0), LdmatrixRole::A, Part::Whole)?;
        let k_step = 32 / self.program.elem_bytes();
        let cols = self.program.frag(frag).cols;
        let mut regs = Vec::new();
        for slab in 0..self.slabs() {
            for kk in 0..cols / k_step {
                regs.extend(self.ldmatrix(&op, self.slab_row(slab)?, kk * k_step)?.map(BasicValueEnum::from));
            }
        }
        self.frags[frag.0] = regs;
        Ok(())
    }

    /// One `mma.sync.m16n8k16` with f32 accumulators (`m16n8k32` of int8 codes with int32
    /// accumulators for `Operands::Int8`).
    fn mma_sync(&self, a: &[IntValue<'ctx>; 4], b0: IntValue<'ctx>, b1: IntValue<'ctx>, c: &mut [BasicValueEnum<'ctx>]) -> Res<()> {
        let (name, ops): (&str, Vec<BasicValueEnum<'ctx>>) = match (self.program.operands, self.program.dtype) {
            (Operands::Int8, _) => ("llvm.nvvm.mma.m16n8k32.row.col.s8", a.iter().chain([&b0, &b1]).map(|v| (*v).into()).collect()),
            (Operands::Dtype, Dtype::F16) => {
                let h2 = self.ctx.f16_type().vec_type(2);
                let cast = |v: IntValue<'ctx>| self.b.build_bit_cast(v, h2, "");
                let mut ops = Vec::new();
                for v in a.iter().chain([&b0, &b1]) {
                    ops.push(cast(*v)?);
                }
                ("llvm.nvvm.mma.m16n8k16.row.col.f32.f32", ops)
            }
            (Operands::Dtype, _) => {
                let ops = a.iter().chain([&b0, &b1]).map(|v| (*v).into()).collect();
                ("llvm.nvvm.mma.m16n8k16.row.col.bf16", ops)
            }
        };
        let mut args = ops;
        args.extend(c.iter().copied());
        let d = self.call_value(name, &[], &args)?.into_struct_value();
        for (i, ci) in c.iter_mut().enumerate() {
            *ci = self.b.build_extract_value(d, i as u32, "")?;
        }
        Ok(())
    }

    /// `acc += a · b` with mma.sync; for int8 codes, also the int32 products (`Int32Products`).
    pub fn mma(&mut self, acc: FragId, a: &Operand, b: &Operand) -> Res<Int32Products<'ctx>> {
        let n = self.program.frag(acc).cols;
        let Operand::Shared { buf: b_buf, stage: b_stage, kn, part } = b else {
            return Err(CodegenError::Ir("mma: B must be a shared tile".into()));
        };
        let b_role = if *kn { LdmatrixRole::BKn } else { LdmatrixRole::BNk };
        let b_op = self.shared_operand(*b_buf, b_stage, b_role, *part)?;
        let (part_rows, part_cols) = self.program.part_dims(*b_buf, *part);
        let k = if *kn { part_rows } else { part_cols };
        let a_src = match a {
            Operand::Shared { buf, stage, kn: false, part: Part::Whole } => {
                ASource::Shared(self.shared_operand(*buf, stage, LdmatrixRole::A, Part::Whole)?)
            }
            Operand::Frag(p) => ASource::Frag(*p),
            Operand::Shared { .. } => return Err(CodegenError::Ir("mma: A must be [m][k]".into())),
        };
        let int8 = self.program.operands == Operands::Int8;
        if int8 && (*kn || matches!(a_src, ASource::Frag(_))) {
            return Err(CodegenError::Ir("mma: int8 operands come from [m][k] and [n][k] shared tiles".into()));
        }
        // Elements per mma k step: 16 bytes per ldmatrix row chunk pair of 16-bit values, or 32
        // int8 codes.
        let k_step = 32 / self.program.elem_bytes();
        // int8 products accumulate in int32 registers; the fragment keeps f32 (exact, see
        // `Operands::Int8`), converted around the product chain.
        if int8 {
            let i32t = self.ctx.i32_type();
            for v in self.frags[acc.0].iter_mut() {
                *v = self.b.build_float_to_signed_int(v.into_float_value(), i32t, "")?.into();
            }
        }
        let slabs = self.slabs();
        let n_tiles = n / 8;
        for kk in 0..k / k_step {
            let mut a_regs = Vec::new();
            for slab in 0..slabs {
                a_regs.push(match &a_src {
                    ASource::Shared(op) => self.ldmatrix(op, self.slab_row(slab)?, kk * k_step)?,
                    ASource::Frag(p) => {
                        let base = ((slab * (self.program.frag(*p).cols / 16) + kk) * 4) as usize;
                        let r = &self.frags[p.0][base..base + 4];
                        [0, 1, 2, 3].map(|i| r[i].into_int_value())
                    }
                });
            }
            for np in 0..n / 16 {
                // B rows run along k for V ([k][n]) and along n for K ([n][k]).
                let (row, col) = if *kn { (kk * 16, np * 16) } else { (np * 16, kk * k_step) };
                let bregs = self.ldmatrix(&b_op, self.i32(row as i64), col)?;
                for (slab, a_r) in a_regs.iter().enumerate() {
                    for half in 0..2 {
                        let base = ((slab as u32 * n_tiles + 2 * np + half) * 4) as usize;
                        let mut c: Vec<_> = self.frags[acc.0][base..base + 4].to_vec();
                        let (b0, b1) = (bregs[2 * half as usize], bregs[2 * half as usize + 1]);
                        self.mma_sync(a_r, b0, b1, &mut c)?;
                        self.frags[acc.0][base..base + 4].copy_from_slice(&c);
                    }
                }
            }
        }
        if int8 { self.int_accumulators_to_f32(acc) } else { Ok(None) }
    }

    /// The int32 accumulators of `acc` as f32, exactly: a dot product of at most 256 int8 codes
    /// has |s| ≤ 2²², and for those `bits(s + 0x4B40_0000) − 1.5·2²³` is `s` (the sum lands in
    /// [2²³, 2²⁴], where f32 steps by 1). An integer add and a float add run at full rate, where
    /// `cvt.rn.f32.s32` runs at a quarter and was the int8 selection's largest cost per element.
    /// Returns the int32 values, which a selection's estimate vote bounds its rows with.
    pub(super) fn int_accumulators_to_f32(&mut self, acc: FragId) -> Res<Int32Products<'ctx>> {
        const MAGIC_BITS: u64 = 0x4B40_0000;
        const MAGIC: f32 = 12_582_912.0;
        if self.program.head_dim > 256 {
            return Err(CodegenError::Ir(format!("int8 dot products over head_dim {} may not fit f32 exactly", self.program.head_dim)));
        }
        let (i32t, f32t) = (self.ctx.i32_type(), self.ctx.f32_type());
        let (bits, magic) = (i32t.const_int(MAGIC_BITS, false), f32t.const_float(MAGIC as f64));
        let ints: Vec<IntValue<'ctx>> = self.frags[acc.0].iter().map(|v| v.into_int_value()).collect();
        for (v, &int) in self.frags[acc.0].iter_mut().zip(&ints) {
            let shifted = self.b.build_int_add(int, bits, "")?;
            let float = self.b.build_bit_cast(shifted, f32t, "")?.into_float_value();
            *v = self.b.build_float_sub(float, magic, "")?.into();
        }
        Ok(Some(ints))
    }
}
