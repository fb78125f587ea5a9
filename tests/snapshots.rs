//! Snapshots of canonical PTX (dense, causal, 1-D/2-D/3-D neighborhoods and the block-sparse
//! visit), and of tile
//! programs, so that every change
//! in generated code shows up in review. Re-bless with `INSTA_UPDATE=always cargo test --test
//! snapshots` (or `cargo insta review`) and read the diff.

mod common;

use tessera::codegen::{Stage, Target, canon, emit};

use common::{CASES, kernel, ptx_cases};

fn case(name: &str) -> (&'static tessera::KernelDesc, tessera::Config) {
    match CASES.iter().find(|(n, _)| *n == name) {
        Some((_, config)) => (kernel(name), *config),
        None => panic!("`{name}` is not a snapshot case"),
    }
}

/// Every PTX case's canonical text, under its snapshot name (`common::ptx_cases`).
#[test]
fn ptx() {
    for (label, desc, config, target) in ptx_cases() {
        match emit(desc, &config, target, Stage::Ptx) {
            Ok(ptx) => insta::assert_snapshot!(label.clone(), canon::canonicalize(&ptx)),
            Err(e) => panic!("{label}: {e}"),
        }
    }
}

fn snapshot_ir(name: &str) {
    let (desc, config) = case(name);
    match emit(desc, &config, Target::Sm80, Stage::Ir) {
        Ok(ir) => insta::assert_snapshot!(format!("{name}_ir"), ir),
        Err(e) => panic!("{e}"),
    }
}

// Tile programs are target-independent: one on a line and one over a grid show what the
// passes did.
#[test]
fn causal_bf16_d128_ir() {
    snapshot_ir("causal_bf16_d128");
}

/// The block-sparse loop: trip count and KV tiles read from the launch's lists.
#[test]
fn sale_causal_bf16_d128_ir() {
    snapshot_ir("sale_causal_bf16_d128");
}

#[test]
fn mustafar_bf16_d128_ir() {
    snapshot_ir("mustafar_bf16_d128");
}

#[test]
fn na2d_w13x13_d2x2_bf16_d128_ir() {
    snapshot_ir("na2d_w13x13_d2x2_bf16_d128");
}
