//! Tests of everything in `tune` that needs no GPU: keys, the store, pruning, planning. The
//! early-elimination rule is tested next to it, in `race.rs`.

mod key;
mod plan;
mod problem;
mod record;
mod store;

use super::{DeviceInfo, Entry, KeyInfo, Outcome, Problem, Record};
use crate::catalog;
use tessera_desc::KernelDesc;

fn dense() -> &'static KernelDesc {
    catalog::find("dense_bf16_d128").expect("a catalog kernel")
}

fn device(driver: i32) -> DeviceInfo {
    DeviceInfo {
        name: "Test GPU 80GB".to_string(),
        compute_capability: (9, 0),
        driver,
    }
}

fn problem(seq: usize) -> Problem {
    Problem {
        batch: 1,
        heads: 32,
        kv_heads: 32,
        seq_q: seq,
        seq_kv: seq,
        grid: None,
    }
}

/// A key of `kernel` (a catalog name) for sequence length `seq`.
fn key(kernel: &str, seq: usize) -> KeyInfo {
    let desc = catalog::find(kernel).expect("a catalog kernel");
    KeyInfo::new(desc, &problem(seq), &device(13000))
}

fn timed(at_ms: u64, ms: f64) -> Record {
    Record {
        at_ms,
        problem: problem(4096),
        outcome: Outcome::Timed {
            median_ms: ms,
            min_ms: ms * 0.99,
            reps: 10,
            tflops: 1.0 / ms,
        },
    }
}

/// An entry of `key` with timed records `(config, at_ms, ms)`.
fn entry(key: KeyInfo, records: &[(&str, u64, f64)]) -> Entry {
    let mut e = Entry::new(key);
    e.extend_space(records.iter().map(|r| r.0));
    for &(config, at, ms) in records {
        e.records.insert(config.to_string(), timed(at, ms));
    }
    e
}
