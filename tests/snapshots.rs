//! Snapshots of canonical PTX (dense, causal, and 1-D/2-D/3-D neighborhoods), and of tile
//! programs, so that every change
//! in generated code shows up in review. Re-bless with `INSTA_UPDATE=always cargo test --test
//! snapshots` (or `cargo insta review`) and read the diff.

mod common;

use tessera::codegen::{Stage, Target, canon, emit};

use common::{CASES, kernel};

fn case(name: &str) -> (&'static tessera::KernelDesc, tessera::Config) {
    match CASES.iter().find(|(n, _)| *n == name) {
        Some((_, config)) => (kernel(name), *config),
        None => panic!("`{name}` is not a snapshot case"),
    }
}

fn canonical_ptx(name: &str, target: Target) -> String {
    let (desc, config) = case(name);
    match emit(desc, &config, target, Stage::Ptx) {
        Ok(ptx) => canon::canonicalize(&ptx),
        Err(e) => panic!("{name} on {target}: {e}"),
    }
}

fn snapshot_ptx(name: &str) {
    for target in Target::ALL {
        insta::assert_snapshot!(format!("{name}_{target}"), canonical_ptx(name, target));
    }
}

fn snapshot_ir(name: &str) {
    let (desc, config) = case(name);
    match emit(desc, &config, Target::Sm80, Stage::Ir) {
        Ok(ir) => insta::assert_snapshot!(format!("{name}_ir"), ir),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn dense_bf16_d128_ptx() {
    snapshot_ptx("dense_bf16_d128");
}

#[test]
fn causal_bf16_d128_ptx() {
    snapshot_ptx("causal_bf16_d128");
}

#[test]
fn causal_f16_d64_ptx() {
    snapshot_ptx("causal_f16_d64");
}

#[test]
fn na1d_w13_d2_bf16_d128_ptx() {
    snapshot_ptx("na1d_w13_d2_bf16_d128");
}

#[test]
fn na2d_w13x13_d2x2_bf16_d128_ptx() {
    snapshot_ptx("na2d_w13x13_d2x2_bf16_d128");
}

#[test]
fn na3d_w7x15x15_c100_bf16_d128_ptx() {
    snapshot_ptx("na3d_w7x15x15_c100_bf16_d128");
}

#[test]
fn mustafar_bf16_d128_ptx() {
    snapshot_ptx("mustafar_bf16_d128");
}

// Tile programs are target-independent: one on a line and one over a grid show what the
// passes did.
#[test]
fn causal_bf16_d128_ir() {
    snapshot_ir("causal_bf16_d128");
}

#[test]
fn mustafar_bf16_d128_ir() {
    snapshot_ir("mustafar_bf16_d128");
}

#[test]
fn na2d_w13x13_d2x2_bf16_d128_ir() {
    snapshot_ir("na2d_w13x13_d2x2_bf16_d128");
}
