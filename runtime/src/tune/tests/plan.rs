use tessera_codegen::Target;
use tessera_codegen::ptxas::KernelResources;
use tessera_desc::Config;

use super::super::compile::prepare;
use super::super::space::{SPILL_LIMIT_BYTES, program_pruned, spills_pruned, to_run};
use super::{dense, entry, key};

fn cfg(block_q: u32, block_kv: u32, warps: u32, stages: u32) -> Config {
    Config::line(block_q, block_kv, warps, stages)
}

#[test]
fn configs_over_the_shared_memory_limit_are_pruned() {
    let desc = dense();
    let smem = |c: &Config| {
        tessera_codegen::tile_program(desc, c)
            .unwrap()
            .shared_bytes()
    };
    let for_smem = |why: Option<String>| why.is_some_and(|w| w.starts_with("shared memory"));
    // H100's opt-in limit: the whole catalog space fits.
    let h100 = 227 * 1024;
    assert!(desc.configs().iter().all(|c| !for_smem(program_pruned(desc, c, h100))));
    // A 100 KiB card: exactly the configs that need more are pruned, with the figures.
    let small = 100 * 1024;
    for c in desc.configs() {
        let pruned = program_pruned(desc, &c, small);
        assert_eq!(for_smem(pruned.clone()), smem(&c) > small, "{c}: {pruned:?}");
    }
    let big = cfg(128, 128, 8, 3);
    assert_eq!(
        program_pruned(desc, &big, small).unwrap(),
        format!("shared memory {} KiB > 100 KiB", smem(&big) / 1024)
    );
    // A config outside the space is pruned by codegen's own check, not run.
    let outside = program_pruned(desc, &cfg(32, 64, 2, 1), h100).unwrap();
    assert!(outside.starts_with("codegen: "), "{outside}");
}

/// A config whose register fragments alone exceed a thread's 255 registers (d128, 128×128
/// tiles on 4 warps: S and O take 128 each, the row statistics 8) is pruned before codegen;
/// 128×64 on 4 warps (200), 8 warps, and d64's 128×128 on 4 warps (200) are not.
#[test]
fn configs_whose_fragments_exceed_the_registers_are_pruned_before_codegen() {
    let desc = dense();
    let why = program_pruned(desc, &cfg(128, 128, 4, 2), u32::MAX).unwrap();
    assert!(why.contains("264 registers per thread"), "{why}");
    assert_eq!(program_pruned(desc, &cfg(128, 64, 4, 2), u32::MAX), None);
    assert_eq!(program_pruned(desc, &cfg(128, 128, 8, 2), u32::MAX), None);
    let d64 = crate::catalog::find("dense_bf16_d64").unwrap();
    assert_eq!(program_pruned(d64, &cfg(128, 128, 4, 2), u32::MAX), None);
}

#[test]
fn only_heavy_spills_are_pruned() {
    let spill = |stores, loads| KernelResources {
        spill_stores: stores,
        spill_loads: loads,
        ..KernelResources::default()
    };
    assert_eq!(spills_pruned(&spill(0, 0)), None);
    // What H100's fastest-but-spilling configs report: kept.
    assert_eq!(spills_pruned(&spill(92, 140)), None);
    assert_eq!(spills_pruned(&spill(128, 128)), None);
    assert_eq!(
        spills_pruned(&spill(900, 780)).unwrap(),
        format!("spills 900+780 bytes (limit {SPILL_LIMIT_BYTES})")
    );
    assert!(spills_pruned(&spill(129, 128)).is_some());
}

fn ptxas() -> Option<std::path::PathBuf> {
    match tessera_codegen::ptxas::find() {
        Ok(p) => Some(p),
        Err(e) if std::env::var("TESSERA_REQUIRE_PTXAS").as_deref() == Ok("1") => panic!("{e}"),
        Err(e) => {
            eprintln!("skipping the ptxas spill check: {e}");
            None
        }
    }
}

#[test]
fn ptxas_spills_are_judged_by_the_spill_rule_and_light_ones_stay() {
    let Some(ptxas) = ptxas() else { return };
    let desc = dense();
    let light = cfg(128, 64, 4, 2); // ~140 bytes of spills on sm_90a
    let configs = [light, cfg(128, 64, 4, 1), cfg(128, 64, 4, 3), cfg(128, 64, 8, 2)];
    let done = std::sync::atomic::AtomicUsize::new(0);
    let prepared = prepare(
        desc,
        &configs,
        Target::Sm90a,
        227 * 1024,
        Some(&ptxas),
        &|_| {
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    );
    assert_eq!(done.into_inner(), configs.len());
    // Each verdict is the spill rule's on what ptxas reports for that config (none of these
    // breaks the fragment rule), whichever side of the limit codegen puts it.
    for (p, config) in prepared.iter().zip(configs) {
        assert_eq!(p.config, config);
        let ptx = tessera_codegen::emit(desc, &config, Target::Sm90a, tessera_codegen::Stage::Ptx).unwrap();
        let res = tessera_codegen::ptxas::assemble_with(&ptxas, &ptx, "sm_90a").unwrap();
        let kernel = res.kernel(desc.name).unwrap();
        assert_eq!(p.pruned, spills_pruned(kernel), "{config}");
        if config == light {
            assert!(kernel.spill_stores > 0 && p.pruned.is_none(), "{config}: {kernel:?}");
        }
    }

    // Without ptxas nothing is judged on spills; fragments over the registers still are.
    let unchecked = prepare(desc, &[light, cfg(128, 128, 4, 2)], Target::Sm90a, 227 * 1024, None, &|_| {});
    assert_eq!(unchecked[0].pruned, None);
    assert!(unchecked[1].pruned.as_deref().is_some_and(|w| w.contains("registers")));
}

/// No config of the space spills past the limit any more without breaking the fragment rule
/// first, so a stand-in ptxas reports the spills: the verdicts must follow what it says.
#[cfg(unix)]
#[test]
fn configs_that_ptxas_says_spill_past_the_limit_are_pruned() {
    use std::os::unix::fs::PermissionsExt;
    let desc = dense();
    let config = cfg(128, 64, 8, 2);
    let dir = tempfile::tempdir().unwrap();
    let verdict = |spills: u32| {
        let ptxas = dir.path().join(format!("ptxas-{spills}"));
        let report = format!(
            "ptxas info    : Compiling entry function '{name}' for 'sm_90a'\nptxas info    : Function properties for {name}\n    0 bytes stack frame, {spills} bytes spill stores, {spills} bytes spill loads\nptxas info    : Used 255 registers, used 1 barriers\n",
            name = desc.name
        );
        std::fs::write(&ptxas, format!("#!/bin/sh\ncat >&2 <<'REPORT'\n{report}REPORT\n")).unwrap();
        std::fs::set_permissions(&ptxas, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(desc, &[config], Target::Sm90a, 227 * 1024, Some(&ptxas), &|_| {}).remove(0).pruned
    };
    assert_eq!(verdict(SPILL_LIMIT_BYTES / 2), None);
    let heavy = verdict(SPILL_LIMIT_BYTES);
    assert!(heavy.as_deref().is_some_and(|w| w.starts_with("spills ")), "{heavy:?}");
}

#[test]
fn a_sweep_runs_only_configs_without_a_record() {
    let desc = dense();
    let space = super::super::space::space(desc, Target::Sm90a);
    // Hopper's space is the schedule twice: once per instruction family.
    assert_eq!(space.len(), 2 * desc.configs().len() - desc.configs().iter().filter(|c| c.warps % 4 != 0).count());
    assert_eq!(super::super::space::space(desc, Target::Sm80), desc.configs());
    assert_eq!(to_run(&space, None, false), space);
    let first = space[0].to_string();
    let third = space[2].to_string();
    let e = entry(key(desc.name, 4096), &[(&first, 1, 1.0), (&third, 1, 2.0)]);
    let rest = to_run(&space, Some(&e), false);
    assert_eq!(rest.len(), space.len() - 2);
    assert_eq!(rest[0], space[1]);
    assert!(!rest.contains(&space[0]) && !rest.contains(&space[2]));
    // A complete entry: nothing to time, which is what makes a second `autotune` free.
    let mut full = e.clone();
    for c in &space {
        full.records.insert(c.to_string(), super::timed(1, 1.0));
    }
    assert!(to_run(&space, Some(&full), false).is_empty());
    assert_eq!(to_run(&space, Some(&full), true), space);
}

/// Neighborhood configs that waste more than half the work of the space's best on the
/// problem's grid are pruned, with both fractions in the reason; NATTEN's 3-D case keeps its
/// whole catalog space, a 1-D window its long query tiles, and other kernels are never judged.
#[test]
fn neighborhood_configs_that_waste_most_of_their_work_are_pruned() {
    use super::super::space::useful_work_pruned;
    let na3d = crate::catalog::find("na3d_w18x24x24_f16_d128").unwrap();
    let space = na3d.configs();
    assert!(useful_work_pruned(na3d, &space, &[30, 48, 80], 227 * 1024).iter().all(Option::is_none));
    // A 1-D window of 13 (dilation 2) on 10 000 tokens: 64-token query tiles compute about 7
    // keys per useful one, 1024-token tiles about 80.
    let na1d = crate::catalog::find("na1d_w13_d2_bf16_d128").unwrap();
    let configs = [Config::line(64, 32, 4, 2), Config::line(1024, 32, 4, 2)];
    let why = useful_work_pruned(na1d, &configs, &[10_000], 227 * 1024);
    assert!(why[0].is_none(), "{why:?}");
    let reason = why[1].as_deref().unwrap_or_default();
    assert!(reason.contains("useful on this grid") && reason.contains("best config's"), "{reason}");
    assert!(useful_work_pruned(dense(), &dense().configs(), &[4096], 227 * 1024).iter().all(Option::is_none));
}

fn mustafar() -> &'static tessera_desc::KernelDesc {
    crate::catalog::find("mustafar_bf16_d128").unwrap()
}

/// A decode kernel's space is its schedule on every target (it has no warpgroup twins); its
/// query rows per warp must hold the problem's GQA group, and nothing else about the problem
/// prunes it.
#[test]
fn a_decode_space_is_pruned_by_the_gqa_group() {
    use super::super::space::{problem_pruned, space};
    use super::super::Problem;
    let desc = mustafar();
    assert_eq!(space(desc, Target::Sm90a), desc.configs());
    assert_eq!(space(desc, Target::Sm80), desc.configs());
    let configs = desc.configs();
    assert!(problem_pruned(desc, &configs, &Problem::decode(1, 32, 8, 32768), 227 * 1024).iter().all(Option::is_none));
    // 32 query heads per KV head: 4 warps over 128 rows (each warp holding the group in 32) and
    // one warp over 64 or 128 rows hold them; 4 warps over 64 rows hold the group in 16.
    let wide = problem_pruned(desc, &configs, &Problem::decode(1, 32, 1, 32768), 227 * 1024);
    for (c, why) in configs.iter().zip(&wide) {
        match (c.block_q(), c.warps) {
            (64, 1) | (128, _) => assert_eq!(why, &None, "{c}"),
            _ => assert_eq!(why.as_deref(), Some("its 16 query rows per warp cannot hold the 32 query heads of a KV head")),
        }
    }
    // One warp over 64 or 128 rows spills: its S and O fragments alone take 400 or 800
    // registers a thread, so it is pruned before codegen; the rest fits H100's shared memory.
    for c in &configs {
        let why = program_pruned(desc, c, 227 * 1024);
        match (c.block_q(), c.warps) {
            (64, 1) => assert_eq!(why.as_deref(), Some("its register fragments alone take 400 registers per thread (at most 255)")),
            (128, 1) => assert_eq!(why.as_deref(), Some("its register fragments alone take 800 registers per thread (at most 255)")),
            _ => assert_eq!(why, None, "{c}"),
        }
    }
    // Attention kernels are never judged on the group.
    let gqa = Problem { seq_q: 4096, ..Problem::decode(1, 32, 1, 4096) };
    assert!(problem_pruned(dense(), &dense().configs(), &gqa, 227 * 1024).iter().all(Option::is_none));
}

/// The configs left after the register check assemble without heavy spills (ptxas's report
/// would prune them otherwise): the whole decode space but the one-warp 64- and 128-row
/// configs runs.
#[test]
fn the_rest_of_the_decode_space_does_not_spill() {
    let Some(ptxas) = ptxas() else { return };
    let desc = mustafar();
    let configs = desc.configs();
    let prepared = prepare(desc, &configs, Target::Sm90a, 227 * 1024, Some(&ptxas), &|_| {});
    for p in &prepared {
        match &p.pruned {
            Some(why) => assert!(p.config.warps == 1 && p.config.block_q() >= 64 && why.contains("registers"), "{}: {why}", p.config),
            None => assert!(p.config.warps > 1 || p.config.block_q() < 64, "{}", p.config),
        }
    }
}
