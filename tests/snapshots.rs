//! Snapshots of the dense family's canonical PTX, and of one tile program, so that every change
//! in generated code shows up in review. Re-bless with `INSTA_UPDATE=always cargo test --test
//! snapshots` (or `cargo insta review`) and read the diff.

mod common;

use tessera::codegen::{Stage, Target, canon, emit};

use common::{CONFIG, KERNELS, kernel};

fn canonical_ptx(name: &str, target: Target) -> String {
    match emit(kernel(name), &CONFIG, target, Stage::Ptx) {
        Ok(ptx) => canon::canonicalize(&ptx),
        Err(e) => panic!("{name} on {target}: {e}"),
    }
}

fn snapshot_ptx(name: &str) {
    for target in Target::ALL {
        insta::assert_snapshot!(format!("{name}_{target}"), canonical_ptx(name, target));
    }
}

#[test]
fn dense_bf16_d128_ptx() {
    snapshot_ptx(KERNELS[0]);
}

#[test]
fn causal_bf16_d128_ptx() {
    snapshot_ptx(KERNELS[1]);
}

#[test]
fn causal_f16_d64_ptx() {
    snapshot_ptx(KERNELS[2]);
}

// The tile program is target-independent; one kernel is enough to show what the passes did.
#[test]
fn causal_bf16_d128_ir() {
    let ir = match emit(kernel("causal_bf16_d128"), &CONFIG, Target::Sm80, Stage::Ir) {
        Ok(ir) => ir,
        Err(e) => panic!("{e}"),
    };
    insta::assert_snapshot!("causal_bf16_d128_ir", ir);
}
