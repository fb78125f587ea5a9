//! What the snapshots only show, asserted: the snapshotted PTX assembles for its target without
//! spills, pins the PTX ISA both targets' drivers accept, and uses the instructions the schedule
//! is built on (an unknown LLVM intrinsic would instead appear as an `.extern .func` call that
//! LLVM accepts and the driver rejects).

mod common;

use tessera::codegen::canon::count_prefix;
use tessera::codegen::{Stage, Target, emit};
use tessera::testing::check_ptxas;

use common::ptx_cases;

/// Runs `check(label, kernel name, target, ptx)` over every PTX case.
fn each_ptx(mut check: impl FnMut(&str, &str, Target, &str)) {
    for (label, desc, config, target) in ptx_cases() {
        match emit(desc, &config, target, Stage::Ptx) {
            Ok(ptx) => check(&label, desc.name, target, &ptx),
            Err(e) => panic!("{label}: {e}"),
        }
    }
}

fn directive<'a>(ptx: &'a str, name: &str) -> Option<&'a str> {
    ptx.lines().map(str::trim).find(|l| l.starts_with(name))
}

#[test]
fn assembles_without_spills() {
    each_ptx(|label, name, target, ptx| {
        if let Some(res) = check_ptxas(ptx, target) {
            assert!(res.kernel(name).is_some(), "{label}: no entry {name}");
            // E.g. (C7519): ptxas found a register written between wgmma.fence and a wgmma.
            assert!(res.notes.is_empty(), "{label}: {:?}", res.notes);
        }
    });
}

#[test]
fn pins_version_and_target() {
    each_ptx(|name, _, target, ptx| {
        assert_eq!(
            directive(ptx, ".version"),
            Some(".version 8.0"),
            "{name} {target}"
        );
        let expected = format!(".target {}", target.name());
        assert_eq!(
            directive(ptx, ".target"),
            Some(expected.as_str()),
            "{name} {target}"
        );
    });
}

/// mma.sync configs multiply through ldmatrix; wgmma configs from shared memory, fenced for the
/// async proxy, with no ldmatrix at all.
#[test]
fn uses_the_schedule_instructions() {
    each_ptx(|at, _, _, ptx| {
        let count = |prefix| count_prefix(ptx, prefix);
        assert!(count("cp.async.cg.shared.global") > 0, "no cp.async.cg in {at}");
        if at.contains("_wgmma_") {
            assert!(count("wgmma.mma_async.sync.aligned.m64n") > 0, "no wgmma in {at}");
            assert!(count("fence.proxy.async") > 0, "no async-proxy fence in {at}");
            assert_eq!(count("mma.sync"), 0, "mma.sync left in {at}");
            assert_eq!(count("ldmatrix"), 0, "ldmatrix left in {at}");
        } else {
            assert!(count("mma.sync.aligned.m16n8k16") > 0, "no mma.sync m16n8k16 in {at}");
            let ldmatrix = count("ldmatrix.sync.aligned.m8n8.x4");
            let trans = count("ldmatrix.sync.aligned.m8n8.x4.trans");
            assert!(trans > 0, "no transposing ldmatrix (V operand) in {at}");
            assert!(ldmatrix > trans, "no plain ldmatrix (Q/K operands) in {at}");
        }
    });
}

/// Block-sparse kernels take the block lists as two more parameters and read them through the
/// read-only cache; the other one-entry kernels keep the 13 parameters of `KERNEL_PARAMS` (the
/// decode kernels' entries have their own lists, `BITMAP_PARAMS` and `MERGE_PARAMS`).
#[test]
fn only_block_sparse_kernels_take_block_lists() {
    each_ptx(|at, name, _, ptx| {
        let params = ptx.lines().filter(|l| l.trim_start().starts_with(".param")).count();
        if name.starts_with("sale_") {
            assert_eq!(params, 15, "{at}");
            assert!(count_prefix(ptx, "ld.global.nc") > 0, "no read-only loads of the lists in {at}");
        } else if !name.starts_with("mustafar_") {
            assert_eq!(params, 13, "{at}");
        }
    });
}

#[test]
fn calls_no_external_function() {
    each_ptx(|name, _, target, ptx| {
        assert!(
            !ptx.contains(".extern .func"),
            "{name} on {target} calls an external function"
        );
    });
}
