//! Codegen time per config on this CPU: description → tile IR → passes → LLVM → PTX, one call
//! of `emit(.., Stage::Ptx)` at a time on one thread, for every config of each kernel's space
//! that a sweep compiles (not those `tune::space::program_pruned` rejects first).
//! A sweep's CPU half is this times the configs over the cores, so the bar is ≤ 100 ms per
//! config. Prints mean and max per config (and how much of it is the tile program, before
//! LLVM) and exits non-zero when any max exceeds the bar.
//!
//! Arguments: kernel names (default: dense_bf16_d128), `--reps N` (default 5),
//! `--target sm_80|sm_90a` (default sm_90a, what H100 sweeps emit).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use tessera_codegen::{Stage, Target, emit};
use tessera_runtime::catalog;

const BAR_MS: f64 = 100.0;

fn main() -> ExitCode {
    let mut kernels = Vec::new();
    let mut reps = 5usize;
    let mut target = Target::Sm90a;
    let mut benching = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // `cargo bench` passes this to every bench binary; `cargo test --all-targets` runs
            // the binary without it, in a debug build, where timings mean nothing.
            "--bench" => benching = true,
            "--reps" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => reps = n,
                _ => return usage("--reps takes a positive count"),
            },
            "--target" => match args.next().as_deref().and_then(Target::parse) {
                Some(t) => target = t,
                None => return usage("--target takes sm_80 or sm_90a"),
            },
            name => match catalog::find(name) {
                Some(desc) => kernels.push(desc),
                None => return usage(&format!("unknown kernel `{name}` ({})", catalog::names())),
            },
        }
    }
    if kernels.is_empty() {
        kernels.extend(catalog::find("dense_bf16_d128"));
    }
    if !benching {
        return smoke(&kernels, target);
    }

    let mut worst: f64 = 0.0;
    let mut total = (0.0, 0usize);
    for desc in kernels {
        // What a sweep compiles: its space less the configs pruned before codegen (those over
        // a thread's registers; shared memory is a device's, so not judged here). A config
        // whose program cannot be built is an error, as its codegen would be.
        let mut configs = Vec::new();
        let mut skipped = 0;
        for c in tessera_runtime::tune::space::space(desc, target) {
            match tessera_runtime::tune::space::program_pruned(desc, &c, u32::MAX) {
                None => configs.push(c),
                Some(why) if why.starts_with("codegen") => {
                    eprintln!("{} ({c}): {why}", desc.name);
                    return ExitCode::FAILURE;
                }
                Some(_) => skipped += 1,
            }
        }
        // LLVM's one-time target initialisation is paid by the first call of a process, not
        // by each config: time it apart.
        let t = Instant::now();
        if let Some(first) = configs.first()
            && let Err(e) = emit(desc, first, target, Stage::Ptx)
        {
            eprintln!("{} ({first}): {e}", desc.name);
            return ExitCode::FAILURE;
        }
        println!(
            "{} on {target}: {} configs ({} pruned before codegen), {reps} reps each; first call of the process {:.1} ms",
            desc.name,
            configs.len(),
            skipped,
            t.elapsed().as_secs_f64() * 1e3
        );
        println!(
            "{:<44} {:>9} {:>9} {:>12}",
            "config", "mean ms", "max ms", "of which IR"
        );
        for cfg in &configs {
            let time = |stage| -> Result<Vec<f64>, String> {
                let mut times = Vec::with_capacity(reps);
                for _ in 0..reps {
                    let t = Instant::now();
                    let text = emit(desc, cfg, target, stage)
                        .map_err(|e| format!("{} ({cfg}): {e}", desc.name))?;
                    black_box(text);
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
                Ok(times)
            };
            // The tile program alone (build and passes): the rest of a PTX emit is LLVM.
            let (ptx, ir) = match (time(Stage::Ptx), time(Stage::Ir)) {
                (Ok(ptx), Ok(ir)) => (ptx, ir),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let mean = |t: &[f64]| t.iter().sum::<f64>() / t.len() as f64;
            let max = ptx.iter().copied().fold(0.0, f64::max);
            println!(
                "{:<44} {:>9.1} {max:>9.1} {:>12.1}",
                cfg.to_string(),
                mean(&ptx),
                mean(&ir)
            );
            worst = worst.max(max);
            total = (total.0 + mean(&ptx), total.1 + 1);
        }
    }
    let mean = total.0 / total.1.max(1) as f64;
    let verdict = if worst <= BAR_MS { "within" } else { "OVER" };
    println!("mean over configs {mean:.1} ms, max {worst:.1} ms: {verdict} the {BAR_MS} ms bar");
    if worst <= BAR_MS {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("{message}\nusage: codegen [KERNEL...] [--reps N] [--target sm_80|sm_90a]");
    ExitCode::FAILURE
}

/// Under `cargo test`: one emit per kernel, so the bench stays compiled and working in CI.
fn smoke(kernels: &[&tessera_desc::KernelDesc], target: Target) -> ExitCode {
    for desc in kernels {
        let Some(cfg) = desc.default_config() else {
            eprintln!("{}: empty tuning space", desc.name);
            return ExitCode::FAILURE;
        };
        if let Err(e) = emit(desc, &cfg, target, Stage::Ptx) {
            eprintln!("{} ({cfg}): {e}", desc.name);
            return ExitCode::FAILURE;
        }
    }
    println!("codegen bench: smoke run only (time it with `cargo bench -p tessera-runtime --bench codegen`)");
    ExitCode::SUCCESS
}
