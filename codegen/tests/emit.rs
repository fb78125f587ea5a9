//! Every config of a kernel space lowers to PTX that ptxas accepts for both targets, without
//! spills, with the instructions the lowering means to use.

use tessera_codegen::ir::select::Scores;
use tessera_codegen::{Stage, Target, canon, emit, ptxas};
use tessera_desc::{Dtype, KernelDesc, Layout, Load, Param, Schedule, Visit, Window, WindowAxis};

fn desc(visit: Visit, dtype: Dtype, head_dim: u32) -> KernelDesc {
    KernelDesc {
        name: "attn",
        head_dim,
        dtype,
        layout: Layout::Bhsd,
        visit,
        load: Load::Dense,
        schedule: Schedule::line(Param::Choices(&[64, 128]), Param::Choices(&[32, 64]), Param::Choices(&[4, 8]), Param::Choices(&[1, 2])),
    }
}

fn ptxas_or_skip() -> bool {
    match ptxas::find() {
        Ok(_) => true,
        Err(e) if std::env::var("TESSERA_REQUIRE_PTXAS").as_deref() == Ok("1") => panic!("{e}"),
        Err(e) => {
            eprintln!("ptxas not found: skipping ({e})");
            false
        }
    }
}

#[test]
fn default_configs_assemble_without_spills() {
    let have_ptxas = ptxas_or_skip();
    let axis = |dilation, causal| WindowAxis { size: 13, dilation, stride: 1, causal };
    let window = |dilation, causal| Visit::Window(Window { dims: 1, axes: [axis(dilation, causal); 3] });
    for (visit, dtype, d) in [
        (Visit::Dense, Dtype::Bf16, 128),
        (Visit::Causal, Dtype::F16, 64),
        (window(1, false), Dtype::Bf16, 128),
        (window(2, true), Dtype::F16, 64),
    ] {
        let desc = desc(visit, dtype, d);
        let cfg = desc.default_config().unwrap();
        for target in Target::ALL {
            let ptx = emit(&desc, &cfg, target, Stage::Ptx).unwrap();
            assert!(ptx.contains(".version 8.0"), "{ptx}");
            assert!(!ptx.contains(".extern .func"), "an unknown intrinsic reached the PTX");
            for op in ["mma.sync.aligned.m16n8k16", "cp.async.cg.shared.global", "ldmatrix.sync.aligned.m8n8.x4.shared", "ldmatrix.sync.aligned.m8n8.x4.trans"] {
                assert!(canon::count_prefix(&ptx, op) > 0, "{op} missing for {visit:?} {target}");
            }
            if have_ptxas {
                let res = ptxas::assemble(&ptx, target.name()).unwrap();
                let k = &res.kernels[0];
                eprintln!("{visit:?} {dtype} d{d} {cfg} {target}: {} regs, spills {}/{}", k.registers, k.spill_stores, k.spill_loads);
                assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "{visit:?} {target} spills");
            }
        }
    }
}

/// Neighborhoods over 2-D and 3-D grids with box tiles: one config each, both targets.
#[test]
fn grid_windows_assemble_without_spills() {
    let have_ptxas = ptxas_or_skip();
    let axis = |size, dilation, causal| WindowAxis { size, dilation, stride: 1, causal };
    let fixed = |t: [u32; 3]| t.map(Param::Fixed);
    for (axes, dims, q_tile, kv_tile) in [
        ([axis(13, 1, false), axis(13, 2, false), axis(1, 1, false)], 2, [8, 16, 1], [8, 8, 1]),
        ([axis(7, 1, true), axis(15, 1, false), axis(15, 1, false)], 3, [2, 8, 8], [2, 4, 8]),
    ] {
        let mut desc = desc(Visit::Window(Window { dims, axes }), Dtype::F16, 128);
        desc.schedule = Schedule { q_tile: fixed(q_tile), kv_tile: fixed(kv_tile), warps: Param::Fixed(8), stages: Param::Fixed(2) };
        let cfg = desc.default_config().unwrap();
        for target in Target::ALL {
            let ptx = emit(&desc, &cfg, target, Stage::Ptx).unwrap();
            assert!(canon::count_prefix(&ptx, "mma.sync.aligned.m16n8k16") > 0);
            if have_ptxas {
                let res = ptxas::assemble(&ptx, target.name()).unwrap();
                let k = &res.kernels[0];
                eprintln!("{dims}-D {cfg} {target}: {} regs, spills {}/{}", k.registers, k.spill_stores, k.spill_loads);
                assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "{dims}-D {target} spills");
            }
        }
    }
}

/// A box of KV tiles is one flattened loop whose tile coordinates are the counter's quotient
/// and remainder by the box's inner extent, known at run time: the lowering carries them
/// through the loop (`llvm::carried`), so no integer division is left in a 2-D loop (after its
/// first barrier) and a 3-D loop keeps only the remainder of a quotient; the masks are one per
/// axis.
#[test]
fn box_loops_carry_their_coordinates() {
    let axis = |size| WindowAxis { size, dilation: 1, stride: 1, causal: false };
    let fixed = |t: [u32; 3]| t.map(Param::Fixed);
    for (dims, q_tile, kv_tile, divisions) in [(2, [16, 8, 1], [8, 8, 1], 0), (3, [2, 8, 8], [2, 4, 4], 2)] {
        let mut desc = desc(Visit::Window(Window { dims, axes: [axis(7); 3] }), Dtype::F16, 128);
        desc.schedule = Schedule { q_tile: fixed(q_tile), kv_tile: fixed(kv_tile), warps: Param::Fixed(4), stages: Param::Fixed(2) };
        let cfg = desc.default_config().unwrap();
        for target in Target::ALL {
            let ptx = emit(&desc, &cfg, target, Stage::Ptx).unwrap();
            let in_loop = &ptx[ptx.find("bar.sync").expect("a barrier")..];
            let found = in_loop.lines().filter(|l| l.contains("div.s32") || l.contains("rem.s32")).count();
            assert_eq!(found, divisions, "{dims}-D {target}");
            let ir = emit(&desc, &cfg, target, Stage::Ir).unwrap();
            assert_eq!(ir.matches("mask S keep").count(), dims as usize, "{dims}-D {target}: one mask per axis");
        }
    }
}

/// A block-sparse visit takes its block lists as two more parameters (int32 pointers read
/// through the non-coherent cache) and assembles without spills on both targets, with mma.sync
/// and, on sm_90a, with wgmma.
#[test]
fn block_sparse_kernels_take_their_lists_and_assemble() {
    let have_ptxas = ptxas_or_skip();
    let visit = Visit::Blocks(tessera_desc::Blocks { causal: true, estimate: tessera_desc::Estimate::SALE });
    let desc = desc(visit, Dtype::Bf16, 128);
    let cfg = desc.default_config().unwrap();
    let cases = [(cfg, Target::Sm80), (cfg, Target::Sm90a), (cfg.with_mma(tessera_desc::Mma::Wgmma), Target::Sm90a)];
    for (cfg, target) in cases {
        let ptx = emit(&desc, &cfg, target, Stage::Ptx).unwrap();
        for param in ["attn_param_13", "attn_param_14"] {
            assert!(ptx.contains(&format!(".param .u64 .ptr .global .align 1 {param}")) || ptx.contains(&format!(".param .u64 {param}")), "{param} missing:\n{ptx}");
        }
        assert!(!ptx.contains("attn_param_15"));
        assert!(canon::count_prefix(&ptx, "ld.global.nc") > 0, "the lists are not read through the read-only path");
        if have_ptxas {
            let res = ptxas::assemble(&ptx, target.name()).unwrap();
            let k = &res.kernels[0];
            eprintln!("blocks {cfg} {target}: {} regs, spills {}/{}", k.registers, k.spill_stores, k.spill_loads);
            assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "{cfg} {target} spills");
        }
    }
    // Kernels that read no tables keep their 13 parameters.
    let causal = emit(&self::desc(Visit::Causal, Dtype::Bf16, 128), &cfg, Target::Sm80, Stage::Ptx).unwrap();
    assert!(causal.contains("attn_param_12") && !causal.contains("attn_param_13"));
}

/// A bitmap-load kernel is lowered as a decode kernel (plus its merge entry), which ptxas
/// assembles at every config of a small space; a bitmap load the decode program cannot run
/// (K only, or a causal visit) is an error that says so, never PTX that reads the compressed
/// cache as dense tiles.
#[test]
fn bitmap_loads_lower_as_decode_kernels() {
    let have_ptxas = ptxas_or_skip();
    for (dtype, d) in [(Dtype::Bf16, 128), (Dtype::F16, 64)] {
        let mut desc = desc(Visit::Dense, dtype, d);
        desc.load = Load::Bitmap(tessera_desc::BitmapLoad { k: true, v: true });
        // One warp per 16-row query tile, or four warps over 64 rows that split the keys (each
        // warp's rows hold the GQA group): more slabs per warp only cost registers.
        let schedules = [
            Schedule::line(Param::Fixed(64), Param::Choices(&[64, 128]), Param::Fixed(4), Param::Choices(&[1, 2])),
            Schedule::line(Param::Fixed(16), Param::Fixed(64), Param::Fixed(1), Param::Fixed(1)),
        ];
        let descs = schedules.map(|schedule| KernelDesc { schedule, ..desc });
        let cases = descs.iter().flat_map(|desc| desc.configs().into_iter().map(move |cfg| (desc, cfg)));
        for ((desc, cfg), target) in cases.flat_map(|c| Target::ALL.map(|t| (c, t))) {
            let ptx = emit(desc, &cfg, target, Stage::Ptx).unwrap_or_else(|e| panic!("{cfg:?} {target}: {e}"));
            assert!(ptx.contains(".entry attn(") && ptx.contains(".entry attn_merge("), "{cfg:?}");
            // Bitmaps and offsets (ca, 8 and 4 bytes) and values (cg, 16) are staged with
            // cp.async, and each value is taken from shared memory by a load that only lanes
            // whose element is kept issue.
            for op in ["cp.async.ca.shared.global", "cp.async.cg.shared.global", "popc.b64", "@p ld.shared.u16"] {
                assert!(ptx.contains(op), "{cfg:?} {target}: no {op} in the staged bitmap path");
            }
            let vector_loads = ptx.lines().any(|l| l.contains("ld.global") && l.contains(".v4."));
            assert!(!vector_loads, "{cfg:?} {target}: packed values are read with global loads, not staged");
            if have_ptxas {
                let res = ptxas::assemble(&ptx, target.name()).unwrap_or_else(|e| panic!("{cfg:?} {target}: {e}"));
                let k = res.kernel("attn").unwrap();
                assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "{cfg:?} {target} spills");
            }
        }
    }
    for (visit, k, v) in [(Visit::Dense, true, false), (Visit::Causal, true, true)] {
        let mut desc = desc(visit, Dtype::F16, 64);
        desc.load = Load::Bitmap(tessera_desc::BitmapLoad { k, v });
        desc.schedule = Schedule::line(Param::Fixed(64), Param::Fixed(64), Param::Fixed(4), Param::Fixed(2));
        let cfg = desc.default_config().unwrap();
        let err = emit(&desc, &cfg, Target::Sm90a, Stage::Ptx).unwrap_err();
        assert!(err.to_string().contains("bitmap"), "{err}");
    }
}

/// Mustafar's GPU compression module: its one entry for each head dim, on both targets,
/// assembles without spills or local memory, and searches each token's threshold once: 14
/// rounds of f16x2 comparisons over each thread's D/4 value pairs. The look-back reads and
/// publishes its words with relaxed GPU-scope accesses (`llvm::compress::flag`), never plain
/// ones that could be hoisted out of the wait.
#[test]
fn the_compression_entry_assembles() {
    let have_ptxas = ptxas_or_skip();
    for d in [64, 128] {
        for target in Target::ALL {
            let ptx = tessera_codegen::compress_ptx(d, target).unwrap();
            let name = tessera_codegen::compress_entry(d);
            assert!(ptx.contains(&format!(".entry {name}(")), "d{d} {target}: no entry {name}");
            assert_eq!(ptx.matches(".entry ").count(), 1, "d{d} {target}");
            assert!(!ptx.contains(".local"), "d{d} {target}: local memory");
            assert_eq!(ptx.matches("set.lt.f16x2.f16x2").count(), 14 * d as usize / 4, "d{d} {target}");
            assert_eq!(ptx.matches("ld.relaxed.gpu.global.b64").count(), 2, "d{d} {target}: the look-back's and the plane start's waits");
            assert_eq!(ptx.matches("st.relaxed.gpu.global.b64").count(), 3, "d{d} {target}: aggregate, prefix, plane start");
            assert_eq!(ptx.matches("atom.relaxed.gpu.global.add.u32").count(), 1, "d{d} {target}: the ticket");
            if have_ptxas {
                let res = ptxas::assemble(&ptx, target.name()).unwrap();
                assert_eq!(res.kernels.len(), 1, "d{d} {target}");
                for k in &res.kernels {
                    assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "d{d} {target} {}", k.name);
                    eprintln!("d{d} {target} {}: {} registers, {} bytes shared", k.name, k.registers, k.shared_bytes);
                }
            }
        }
    }
    assert!(tessera_codegen::compress_ptx(96, Target::Sm80).is_err());
}

/// SALE's threshold and list entries assemble on both targets without local memory, the list
/// entries placing each kept tile with one ballot per 32 tiles.
#[test]
fn the_sale_list_entries_assemble() {
    let have_ptxas = ptxas_or_skip();
    for target in Target::ALL {
        let ptx = tessera_codegen::sale_ptx(target).unwrap();
        for name in tessera_codegen::SALE_ENTRIES {
            assert!(ptx.contains(&format!(".entry {name}(")), "{target}: no entry {name}");
        }
        assert!(!ptx.contains(".local"), "{target}: local memory");
        assert_eq!(canon::count_prefix(&ptx, "vote.sync.ballot.b32"), 2, "{target}");
        if have_ptxas {
            let res = ptxas::assemble(&ptx, target.name()).unwrap();
            assert_eq!(res.kernels.len(), 3, "{target}");
            for k in &res.kernels {
                assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "{target} {}", k.name);
            }
        }
    }
}

/// SALE's int8 quantization module: its seven entries for each head dim (both dtypes share the
/// means entry), on both targets, assemble without spills or local memory. The bit-exact GPU
/// test relies on IEEE f32 arithmetic: every f32 subtraction, product and division is rounded
/// `.rn` (ptxas may not contract or approximate them), no denormal flushing, and the codes round
/// with `cvt.rni`.
#[test]
fn the_quantization_entries_assemble() {
    let have_ptxas = ptxas_or_skip();
    for d in [64, 128, 32, 256] {
        for target in Target::ALL {
            let ptx = tessera_codegen::quantize_ptx(d, target).unwrap();
            let mut names: Vec<String> = Dtype::ALL.into_iter().flat_map(|dt| tessera_codegen::quantize_entries(dt, d)).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), 7);
            for name in &names {
                assert!(ptx.contains(&format!(".entry {name}(")), "d{d} {target}: no entry {name}");
            }
            assert!(!ptx.contains(".local"), "d{d} {target}: local memory");
            let ops = canon::opcodes(&ptx);
            for op in ["sub.f32", "mul.f32", "div.f32", "div.approx", "div.full", "fma.rn.f32"] {
                assert!(!ops.iter().any(|o| o.starts_with(op)), "d{d} {target}: {op}");
            }
            assert!(!ops.iter().any(|o| o.contains(".ftz")), "d{d} {target}: flushes denormals");
            assert!(canon::count_prefix(&ptx, "cvt.rni.s32.f32") >= 4 * d as usize / 32, "d{d} {target}: codes not rounded by cvt.rni");
            if have_ptxas {
                let res = ptxas::assemble(&ptx, target.name()).unwrap();
                for k in &res.kernels {
                    eprintln!("d{d} {target} {}: {} regs", k.name, k.registers);
                    assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "d{d} {target} {}", k.name);
                }
                assert_eq!(res.kernels.len(), 7, "d{d} {target}");
            }
        }
    }
    assert!(tessera_codegen::quantize_ptx(96, Target::Sm80).is_err());
}

/// On Hopper the selection programs also lower to wgmma (the kernel's `mma = wgmma` twin): the
/// int8 estimate with `m64nNk32.s32.s8.s8` from two K-major descriptors, exact scores with
/// `k16` bf16; ptxas assembles them without spills or notes (a note would mean serialized
/// wgmmas).
#[test]
fn selection_programs_lower_to_wgmma_on_hopper() {
    use tessera_desc::{Blocks, Config, Estimate, Mma};
    let have_ptxas = ptxas_or_skip();
    // 128×64 and 64×128 on four warps: the register budget for four resident CTAs applies to
    // the first, and would spill the second's int8 selection (92 bytes at 168 registers).
    let configs = [(128, Config::line(64, 32, 4, 2)), (128, Config::line(128, 64, 8, 2)), (64, Config::line(64, 64, 4, 3)), (128, Config::line(128, 64, 4, 2)), (128, Config::line(64, 128, 4, 2))];
    for (d, cfg) in configs {
        let cfg = cfg.with_mma(Mma::Wgmma);
        let mut kernel = desc(Visit::Blocks(Blocks { causal: true, estimate: Estimate::SALE }), Dtype::Bf16, d);
        kernel.schedule = Schedule::line(Param::Fixed(cfg.block_q()), Param::Fixed(cfg.block_kv()), Param::Fixed(cfg.warps), Param::Fixed(cfg.stages));
        for (scores, instruction, k) in [(Scores::Int8, format!("m64n{}k32.s32.s8.s8", cfg.block_kv()), 32), (Scores::Exact, format!("m64n{}k16.f32.bf16.bf16", cfg.block_kv()), 16)] {
            let program = tessera_codegen::select_program(&kernel, &cfg, scores).unwrap();
            let program = match tessera_codegen::passes::engine::select(program, Target::Sm90a) {
                // 64 int8 codes are half a 128-byte row: such a selection stays on mma.sync.
                Err(e) if scores == Scores::Int8 && d == 64 => {
                    assert!(e.contains("128-byte rows"), "{e}");
                    continue;
                }
                other => other.unwrap(),
            };
            let ptx = tessera_codegen::compile_program(&program, Target::Sm90a).unwrap();
            // One per (slab, k step) in the loop: each warpgroup's warps own slabs of 16 rows
            // each, multiplied together as 64-row wgmmas.
            let want = cfg.block_q() / (16 * cfg.warps) * d / k;
            assert_eq!(canon::count_prefix(&ptx, &format!("wgmma.mma_async.sync.aligned.{instruction}")) as u32, want, "{scores:?} {cfg}");
            assert!(!ptx.contains("mma.sync.aligned"), "{scores:?} {cfg}: mma.sync left");
            // The int8 estimate's vote skips, per warp, rows its bound rules out.
            assert_eq!(ptx.contains("vote.sync.any.pred"), scores == Scores::Int8, "{scores:?} {cfg}");
            if have_ptxas {
                let res = ptxas::assemble(&ptx, "sm_90a").unwrap();
                let k = &res.kernels[0];
                assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "{scores:?} {cfg}");
                assert!(res.notes.is_empty(), "{scores:?} {cfg}: {:?}", res.notes);
            }
        }
    }
}

/// SALE's selection programs (`ir::select`) assemble without spills on both targets, for SALE's
/// 64×32 tiles and larger ones, bf16 and f16, exact and int8 scores, with their vote as one
/// CTA-wide OR reduction; the int8 estimate multiplies with `m16n8k32` s8 products, half as
/// many as the exact scores' k16 steps.
#[test]
fn selection_programs_assemble() {
    use tessera_desc::{Blocks, Config, Estimate};
    let have_ptxas = ptxas_or_skip();
    let configs = [(Dtype::Bf16, 128, Config::line(64, 32, 4, 2)), (Dtype::F16, 64, Config::line(128, 64, 8, 3)), (Dtype::Bf16, 128, Config::line(128, 64, 4, 2))];
    for ((dtype, d, cfg), scores) in configs.into_iter().flat_map(|c| [(c, Scores::Exact), (c, Scores::Int8)]) {
        let mut kernel = desc(Visit::Blocks(Blocks { causal: true, estimate: Estimate::SALE }), dtype, d);
        kernel.schedule = Schedule::line(Param::Fixed(cfg.block_q()), Param::Fixed(cfg.block_kv()), Param::Fixed(cfg.warps), Param::Fixed(cfg.stages));
        let program = tessera_codegen::select_program(&kernel, &cfg, scores).unwrap();
        for target in Target::ALL {
            let ptx = tessera_codegen::compile_program(&program, target).unwrap();
            assert_eq!(canon::count_prefix(&ptx, "bar.red.or.pred"), 1, "{cfg} {target}: one vote per tile in the loop");
            // Products per KV tile: (rows per warp / 16) · (block_kv / 8) · (d / k) for k = 16
            // (exact) or 32 (int8 codes), once in the loop (the pipeline peels no step).
            let (int8, sync) = (canon::count_prefix(&ptx, "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"), canon::count_prefix(&ptx, "mma.sync.aligned.m16n8k16"));
            let products = (cfg.block_q() / cfg.warps / 16) * (cfg.block_kv() / 8) * d / if scores == Scores::Int8 { 32 } else { 16 };
            let want = if scores == Scores::Int8 { (products as usize, 0) } else { (0, products as usize) };
            assert_eq!((int8, sync), want, "{scores:?} {cfg} {target}: products");
            if have_ptxas {
                let res = ptxas::assemble(&ptx, target.name()).unwrap();
                let k = &res.kernels[0];
                assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "{cfg} {target}");
            }
        }
    }
}
