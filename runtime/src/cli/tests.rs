use clap::Parser;

use super::{Cli, run};
use crate::Error;

fn cli(args: &[&str]) -> Cli {
    match Cli::try_parse_from(std::iter::once("tessera").chain(args.iter().copied())) {
        Ok(cli) => cli,
        Err(e) => panic!("{args:?} did not parse: {e}"),
    }
}

fn output(args: &[&str]) -> Result<String, Error> {
    let mut out = Vec::new();
    run(cli(args), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn parse_error(args: &[&str]) -> String {
    match Cli::try_parse_from(std::iter::once("tessera").chain(args.iter().copied())) {
        Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn list_shows_every_kernel_and_its_space() {
    let text = output(&["list"]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + crate::catalog::all().len(), "{text}");
    assert!(lines[0].starts_with("kernel"), "{text}");
    let row = lines
        .iter()
        .find(|l| l.starts_with("causal_f16_d64 "))
        .unwrap();
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            "causal_f16_d64",
            "f16",
            "64",
            "causal",
            "dense",
            "[128, 64]",
            "[64, 32, 128]",
            "[4, 8]",
            "[2, 1, 3]",
            "27"
        ]
    );
}

#[test]
fn emit_ir_at_default_and_given_config() {
    let default = output(&["emit", "dense_bf16_d128", "--stage", "ir"]).unwrap();
    assert!(!default.is_empty());
    let tuned = output(&[
        "emit",
        "dense_bf16_d128",
        "--stage",
        "ir",
        "--config",
        "block_q=64,warps=4",
    ])
    .unwrap();
    assert_ne!(default, tuned);
}

#[test]
fn emit_writes_the_file() {
    let path = std::env::temp_dir().join(format!("tessera-cli-test-{}.ir", std::process::id()));
    let path_arg = path.to_string_lossy().into_owned();
    let stdout = output(&["emit", "causal_f16_d64", "--stage", "ir", "-o", &path_arg]).unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(stdout.is_empty());
    assert_eq!(
        written,
        output(&["emit", "causal_f16_d64", "--stage", "ir"]).unwrap()
    );
}

#[test]
fn unknown_kernel_lists_the_known_ones() {
    for args in [
        &["emit", "dense_bf16_d96"][..],
        &["check", "dense_bf16_d128", "dense_bf16_d96"],
    ] {
        let message = output(args).unwrap_err().to_string();
        assert!(
            message.starts_with("unknown kernel `dense_bf16_d96`; known kernels: "),
            "{message}"
        );
        assert!(message.contains("causal_f16_d128"), "{message}");
    }
}

#[test]
fn bad_configs_are_errors_naming_the_problem() {
    let cases = [
        ("warps=3", "warps = 3 must be a power of two"),
        (
            "block_q=64,warps=8",
            "does not split into 16-row slabs over 8 warps",
        ),
        (
            "stages=4",
            "outside kernel `dense_bf16_d128`'s tuning space",
        ),
        ("tile=64", "unknown config key `tile`"),
        ("warps", "`warps` is not `key=value`"),
        ("warps=four", "not a number"),
    ];
    for (config, expected) in cases {
        let message = output(&[
            "emit",
            "dense_bf16_d128",
            "--stage",
            "ir",
            "--config",
            config,
        ])
        .unwrap_err()
        .to_string();
        assert!(
            message.starts_with("invalid config for kernel `dense_bf16_d128`: "),
            "{message}"
        );
        assert!(message.contains(expected), "{config}: {message}");
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    assert!(
        parse_error(&["emit", "x", "--target", "sm_70"])
            .contains("unknown target `sm_70` (known: sm_80, sm_90a)")
    );
    assert!(
        parse_error(&["emit", "x", "--stage", "sass"])
            .contains("unknown stage `sass` (known: ir, llvm, ptx)")
    );
    assert!(parse_error(&["check"]).contains("<KERNELS|--all>"));
    assert!(parse_error(&["check", "--all", "dense_bf16_d64"]).contains("cannot be used with"));
}

fn have_ptxas() -> bool {
    match tessera_codegen::ptxas::find() {
        Ok(_) => true,
        Err(e) if std::env::var("TESSERA_REQUIRE_PTXAS").as_deref() == Ok("1") => panic!("{e}"),
        Err(_) => {
            eprintln!("ptxas not found: skipping the ptxas check");
            false
        }
    }
}

#[test]
fn check_reports_one_row_per_config_and_target() {
    if !have_ptxas() {
        return;
    }
    let text = match output(&["check", "causal_bf16_d64"]) {
        Ok(text) => text,
        Err(e) => panic!("{e}"),
    };
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("causal_bf16_d64 "))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].contains(" sm_80 ") && rows[1].contains(" sm_90a "),
        "{text}"
    );
    assert!(rows.iter().all(|r| r.ends_with(" ok")), "{text}");
}

/// The error `Gpu::open(0)` gives here, or `None` where there is a GPU.
fn no_gpu_error() -> Option<String> {
    crate::gpu::Gpu::open(0).err().map(|e| e.to_string())
}

/// A `tessera run` input file for dense_bf16_d64: q [1, 2, 8, 64], k and v [1, 1, 8, 64].
fn run_inputs(dir: &std::path::Path) -> String {
    inputs_of(dir, 8)
}

/// q [1, 2, tokens, 64], k and v [1, 1, tokens, 64] in bf16.
fn inputs_of(dir: &std::path::Path, tokens: usize) -> String {
    use crate::io::{FileDtype, HostTensor, write_tensors};
    let t = |heads: usize| {
        let n = heads * tokens * 64;
        let bits: Vec<u16> = (0..n)
            .map(|i| half::bf16::from_f32((i % 7) as f32 - 3.0).to_bits())
            .collect();
        HostTensor::from_bits(FileDtype::BF16, vec![1, heads, tokens, 64], &bits)
    };
    let path = dir.join("in.safetensors");
    let (q, kv) = (t(2), t(1));
    write_tensors(&path, &[("q", &q), ("k", &kv), ("v", &kv)], &[]).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn run_checks_inputs_against_the_kernel_before_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = run_inputs(dir.path());
    let out = dir.path().join("out.safetensors");
    let out = out.to_string_lossy();
    let args = |kernel| ["run", kernel, "--inputs", &inputs, "-o", &out];

    let message = output(&args("dense_bf16_d128")).unwrap_err().to_string();
    assert!(
        message.starts_with("tensor `q`: head_dim (last dimension): expected 128"),
        "{message}"
    );
    let message = output(&args("dense_f16_d64")).unwrap_err().to_string();
    assert_eq!(
        message,
        "tensor `q`: dtype: expected F16 (kernel `dense_f16_d64`), got BF16"
    );
    let missing = dir.path().join("missing.safetensors");
    let message = output(&[
        "run",
        "dense_bf16_d64",
        "--inputs",
        &missing.to_string_lossy(),
        "-o",
        &out,
    ])
    .unwrap_err()
    .to_string();
    assert!(
        message.starts_with("reading ") && message.contains("missing.safetensors"),
        "{message}"
    );
}

#[test]
fn run_without_a_gpu_says_so() {
    let Some(expected) = no_gpu_error() else {
        eprintln!("a GPU is present: the no-GPU error cannot be checked here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let inputs = run_inputs(dir.path());
    let out = dir.path().join("out.safetensors");
    let message = output(&[
        "run",
        "dense_bf16_d64",
        "--inputs",
        &inputs,
        "--output",
        &out.to_string_lossy(),
        "--lse",
        "--scale",
        "0.1",
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(message, expected);
    assert!(!out.exists());
}

#[test]
fn bench_checks_kernels_and_configs_before_the_gpu() {
    let message = output(&["bench", "dense_bf16_d128", "dense_bf16_d96"])
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("unknown kernel `dense_bf16_d96`"),
        "{message}"
    );
    let message = output(&["bench", "causal_f16_d64", "--config", "warps=3"])
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("invalid config for kernel `causal_f16_d64`: warps = 3"),
        "{message}"
    );
}

#[test]
fn bench_checks_grids_before_the_gpu() {
    let err = |args: &[&str]| output(args).unwrap_err().to_string();
    let m = err(&["bench", "dense_bf16_d128", "--grid", "64,64"]);
    assert!(m.contains("takes no grid"), "{m}");
    let m = err(&["bench", "na2d_w80x80_f16_d128", "--seq", "4096"]);
    assert!(m.contains("give its grid extents"), "{m}");
    let m = err(&["bench", "na2d_w80x80_f16_d128", "--grid", "64,64"]);
    assert!(m.contains("does not fit"), "{m}");
    // A product that wraps around must be refused, not benchmarked on a bogus token count.
    let m = err(&["bench", "na2d_w80x80_f16_d128", "--grid", "4294967301,10330176670282232640"]);
    assert!(m.contains("invalid problem"), "{m}");
}

#[test]
fn block_sparse_kernels_need_a_map_before_the_gpu() {
    let err = |args: &[&str]| output(args).unwrap_err().to_string();
    let m = err(&["bench", "sale_causal_bf16_d128"]);
    assert!(m.contains("--density"), "{m}");
    let m = err(&["bench", "dense_bf16_d128", "--density", "0.2"]);
    assert!(m.contains("none is named"), "{m}");
    assert!(parse_error(&["bench", "sale_causal_bf16_d128", "--density", "1.5"]).contains("not in (0, 1]"));
    // The selection is timed beside the kernel, which needs its map.
    assert!(parse_error(&["bench", "sale_causal_bf16_d128", "--tau", "0.004"]).contains("--density"));
    assert!(parse_error(&["bench", "sale_causal_bf16_d128", "--density", "0.2", "--tau", "nan"]).contains("not a threshold"));
}

/// `run sale` checks its selection flags before a GPU is opened (and with `--select-on host`
/// selects there, from the estimate the flags name); wrong thresholds or estimates, or an
/// estimate the GPU does not make (int4, FP8), are errors there.
#[test]
fn run_sale_selects_its_blocks_before_the_gpu() {
    use crate::io::{FileDtype, HostTensor, write_tensors};
    let dir = tempfile::tempdir().unwrap();
    let t = |heads: usize, tokens: usize| {
        let bits: Vec<u16> = (0..heads * tokens * 128).map(|i| half::bf16::from_f32(((i * 7919) % 13) as f32 / 6.0 - 1.0).to_bits()).collect();
        HostTensor::from_bits(FileDtype::BF16, vec![1, heads, tokens, 128], &bits)
    };
    let inputs = dir.path().join("in.safetensors");
    write_tensors(&inputs, &[("q", &t(2, 300)), ("k", &t(1, 300)), ("v", &t(1, 300))], &[]).unwrap();
    let inputs = inputs.to_string_lossy().into_owned();
    let out = dir.path().join("out.safetensors").to_string_lossy().into_owned();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "sale", "--inputs", &inputs, "-o", &out];
        args.extend(extra);
        output(&args).unwrap_err().to_string()
    };
    let m = run(&["--tau", "0.01", "0.02", "0.03"]);
    assert!(m.contains("3 thresholds for 2 query heads"), "{m}");
    assert!(parse_error(&["run", "sale", "--inputs", "x", "-o", "y", "--estimate", "int3"]).contains("unknown estimate"));
    assert!(parse_error(&["run", "sale", "--inputs", "x", "-o", "y", "--tau", "nan"]).contains("not a threshold"));
    // The GPU selects from exact scores or the int8 estimate.
    let m = run(&["--tau", "0.01", "--estimate", "int4"]);
    assert!(m.contains("--select-on host"), "{m}");
    if let Some(expected) = no_gpu_error() {
        assert_eq!(run(&["--tau", "0.01", "--estimate", "int4", "--select-on", "host"]), expected);
        assert_eq!(run(&["--tau", "0.01"]), expected);
        assert_eq!(run(&["--tau", "0.01", "--estimate", "exact"]), expected);
    }
}

#[test]
fn bench_without_a_gpu_says_so() {
    let Some(expected) = no_gpu_error() else {
        eprintln!("a GPU is present: the no-GPU error cannot be checked here");
        return;
    };
    for args in [
        &["bench", "dense_bf16_d128"][..],
        &[
            "bench",
            "causal_bf16_d64",
            "dense_f16_d128",
            "--all-configs",
            "--json",
        ],
    ] {
        assert_eq!(output(args).unwrap_err().to_string(), expected);
    }
}

#[test]
fn run_and_bench_usage_errors() {
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "dense_bf16_d64", "--inputs", "in", "-o", "out"];
        args.extend(extra);
        parse_error(&args)
    };
    assert!(run(&["--scale", "0"]).contains("the scale must be finite and positive, got 0"));
    assert!(run(&["--scale", "nan"]).contains("finite and positive"));
    assert!(run(&["--scale", "x"]).contains("`x` is not a number"));
    assert!(parse_error(&["run", "dense_bf16_d64", "-o", "out"]).contains("--inputs <FILE>"));

    assert!(parse_error(&["bench"]).contains("<KERNELS>..."));
    assert!(
        parse_error(&[
            "bench",
            "dense_bf16_d64",
            "--all-configs",
            "--config",
            "warps=4"
        ])
        .contains("cannot be used with")
    );
    for bad in [
        &["--reps", "0"][..],
        &["--seq", "1024,0"],
        &["--heads", "0"],
    ] {
        let mut args = vec!["bench", "dense_bf16_d64"];
        args.extend(bad);
        assert!(parse_error(&args).contains("must be at least 1"), "{bad:?}");
    }
    // The defaults, spelled out in --help, are what a bare `bench` uses.
    let cli = cli(&["bench", "dense_bf16_d64"]);
    let text = format!("{cli:?}");
    assert!(
        text.contains("seq: [1024, 4096, 16384]") && text.contains("heads: 32"),
        "{text}"
    );
}

/// A store file holding one entry of dense_bf16_d128 with two timed configs and one pruned.
fn seeded_store(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    use crate::tune::{DeviceInfo, Entries, Entry, KeyInfo, Outcome, Problem, Record, Store};
    let desc = crate::catalog::find("dense_bf16_d128").unwrap();
    let problem: Problem = "1,32,32,16384,16384".parse().unwrap();
    let device = DeviceInfo {
        name: "Test GPU".to_string(),
        compute_capability: (9, 0),
        driver: 13000,
    };
    let key = KeyInfo::new(desc, &problem, &device);
    let id = key.id();
    let mut entry = Entry::new(key);
    let default = desc.default_config().unwrap().to_string();
    let other = "block_q=64,block_kv=64,warps=4,stages=2".to_string();
    let pruned = "block_q=128,block_kv=128,warps=4,stages=2".to_string();
    entry.extend_space([default.as_str(), other.as_str(), pruned.as_str()]);
    let timed = |ms: f64| Outcome::Timed {
        median_ms: ms,
        min_ms: ms,
        reps: 10,
        tflops: 4.4 / ms,
    };
    let rec = |outcome| Record::now(problem, outcome);
    entry.records.insert(default, rec(timed(12.0)));
    entry.records.insert(other.clone(), rec(timed(10.0)));
    entry.records.insert(
        pruned,
        rec(Outcome::Pruned {
            reason: "spills 900+780 bytes (limit 256)".to_string(),
        }),
    );
    let path = dir.join("tune.json");
    Store::at(&path)
        .update(|all| all.merge(Entries([(id.clone(), entry)].into())))
        .unwrap();
    (path, id)
}

#[test]
fn cache_lists_shows_clears_exports_and_imports_the_tuning_store() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = seeded_store(dir.path());
    let store = path.to_string_lossy().into_owned();
    let cache = |args: &[&str]| {
        let mut all = vec!["cache"];
        all.extend(args);
        all.extend(["--cache", &store]);
        output(&all)
    };

    let ls = cache(&["ls"]).unwrap();
    assert!(
        ls.contains(&id[..12]) && ls.contains("dense_bf16_d128"),
        "{ls}"
    );
    assert!(
        ls.contains("block_q=64,block_kv=64,warps=4,stages=2  10.0000  3/3\n"),
        "{ls}"
    );
    assert!(ls.ends_with(&format!("1 entries in {store}\n")), "{ls}");

    let show = cache(&["show", &id[..6]]).unwrap();
    assert!(show.starts_with(&format!("key {id}\n")), "{show}");
    let winner = show.lines().find(|l| l.contains("WINNER")).unwrap();
    let cells: Vec<&str> = winner.split_whitespace().collect();
    assert_eq!(
        cells[..2],
        ["block_q=64,block_kv=64,warps=4,stages=2", "timed"],
        "{show}"
    );
    assert!(winner.contains("1.00x"), "{winner}");
    let default = crate::catalog::find("dense_bf16_d128")
        .and_then(|d| d.default_config())
        .unwrap()
        .to_string();
    let row = show.lines().find(|l| l.starts_with(&default)).unwrap();
    assert!(row.contains("1.20x") && row.ends_with("default"), "{row}");
    assert!(
        show.contains("pruned") && show.contains("spills 900+780"),
        "{show}"
    );
    let summary = format!("the default config ({default}) takes 12.0000 ms, 1.20x as long");
    assert!(show.contains(&summary), "{show}");
    let missing = cache(&["show", "zz"]).unwrap_err().to_string();
    assert!(
        missing.contains("no tuning store entry's key starts with `zz`"),
        "{missing}"
    );

    let shipped = dir.path().join("shipped.json");
    let shipped_arg = shipped.to_string_lossy().into_owned();
    let exported = cache(&["export", &shipped_arg]).unwrap();
    assert!(exported.starts_with("exported 1 entries"), "{exported}");
    assert_eq!(
        cache(&["clear"]).unwrap(),
        format!("removed 1 entries from {store}\n")
    );
    assert!(
        cache(&["ls"])
            .unwrap()
            .ends_with(&format!("0 entries in {store}\n"))
    );
    let imported = cache(&["import", &shipped_arg]).unwrap();
    assert!(imported.starts_with("imported 1 entries"), "{imported}");
    assert_eq!(cache(&["ls"]).unwrap(), ls);
    assert_eq!(
        cache(&["clear", &id[..4]]).unwrap(),
        format!("removed 1 entries from {store}\n")
    );
}

#[test]
fn autotune_usage_errors() {
    let autotune = |extra: &[&str]| {
        let mut args = vec!["autotune", "dense_bf16_d128"];
        args.extend(extra);
        parse_error(&args)
    };
    assert!(autotune(&[]).contains("--shape <B,H,HKV,SQ,SKV>"));
    assert!(autotune(&["--shape", "1,2,3"]).contains("is not B,H,HKV,SQ,SKV"));
    assert!(autotune(&["--shape", "1,32,5,64,64"]).contains("must divide heads"));
    let budget = autotune(&["--shape", "1,2,2,64,64", "--budget-seconds", "0"]);
    assert!(
        budget.contains("not a positive number of seconds"),
        "{budget}"
    );
    assert!(parse_error(&["cache"]).contains("Usage"));
    assert!(parse_error(&["cache", "show"]).contains("<PREFIX>"));
}

#[test]
fn autotune_checks_the_kernel_before_the_gpu_and_says_when_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tune.json").to_string_lossy().into_owned();
    let unknown = output(&[
        "autotune",
        "nope",
        "--shape",
        "1,2,2,64,64",
        "--cache",
        &store,
    ]);
    assert!(matches!(unknown, Err(Error::UnknownKernel { .. })));
    let Some(expected) = no_gpu_error() else {
        eprintln!("a GPU is present: the no-GPU error cannot be checked here");
        return;
    };
    let err = output(&[
        "autotune",
        "dense_bf16_d64",
        "--shape",
        "1,2,2,64,64",
        "--cache",
        &store,
    ]);
    assert_eq!(err.unwrap_err().to_string(), expected);
    assert!(!dir.path().join("tune.json").exists());
}

/// A decode kernel's shape is one query token over a context, with a GQA group that one of its
/// configs' query rows per warp hold: anything else fails before the GPU (and before the store
/// is touched).
#[test]
fn autotune_checks_a_decode_kernels_shape_before_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tune.json").to_string_lossy().into_owned();
    let autotune = |shape: &str| output(&["autotune", "mustafar_bf16_d128", "--shape", shape, "--cache", &store]);
    let prefill = autotune("1,32,8,4096,4096").unwrap_err().to_string();
    assert!(prefill.contains("is a decode kernel") && prefill.contains("B,H,HKV,1,CONTEXT"), "{prefill}");
    let grid = autotune("1,32,8,64x64").unwrap_err().to_string();
    assert!(grid.contains("is a decode kernel"), "{grid}");
    let wide = autotune("1,256,1,1,4096").unwrap_err().to_string();
    assert!(wide.contains("256 query heads per KV head do not fit any config"), "{wide}");
    if let Some(no_gpu) = no_gpu_error() {
        assert_eq!(autotune("1,32,8,1,32768").unwrap_err().to_string(), no_gpu);
    }
    assert!(!dir.path().join("tune.json").exists());
}

/// The error of `tessera run na` on `inputs` with the flags `extra` (head_dim 64).
fn na_error(inputs: &str, out: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "na", "--inputs", inputs, "-o", out, "--head-dim", "64"];
    args.extend_from_slice(extra);
    output(&args).unwrap_err().to_string()
}

#[test]
fn run_na_builds_its_kernel_from_flags_and_checks_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = run_inputs(dir.path());
    let out = dir.path().join("out.safetensors");
    let out = out.to_string_lossy();
    let run = |extra: &[&str]| na_error(&inputs, &out, extra);
    assert!(run(&[]).contains("needs --window"), "{}", run(&[]));
    let stride = run(&["--window", "3", "--stride", "4"]);
    assert!(stride.contains("stride 4 is larger than the window size 3"), "{stride}");
    // q and k have 8 tokens: a window of 5 with dilation 2 spans 10.
    let wide = run(&["--window", "5", "--dilation", "2"]);
    assert!(wide.contains("does not fit in the extent 8"), "{wide}");
    let dtype = run(&["--window", "3", "--dtype", "f16"]);
    assert!(dtype.contains("dtype: expected F16"), "{dtype}");
    if let Some(no_gpu) = no_gpu_error() {
        assert_eq!(run(&["--window", "3", "--dilation", "2", "--causal"]), no_gpu);
    }
}

#[test]
fn run_na_over_a_grid_checks_the_flags_and_the_grid_before_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    // 24 tokens: a 4 × 6 or 2 × 3 × 4 grid.
    let inputs = inputs_of(dir.path(), 24);
    let out = dir.path().join("out.safetensors");
    let out = out.to_string_lossy();
    let run = |extra: &[&str]| na_error(&inputs, &out, extra);
    let cases: &[(&[&str], &str)] = &[
        (&["--window", "3", "5"], "kernel `na2d`: a 2-D window needs --grid with its 2 extents"),
        (&["--grid", "4", "6", "--window", "3", "3", "3"], "--window has 3 values for a 2-D grid"),
        (&["--grid", "4", "6", "--window", "3", "--dilation", "1", "2", "1"], "--dilation has 3 values"),
        (&["--grid", "4", "6", "--window", "3", "--causal", "1", "0", "1"], "--causal has 3 values"),
        (&["--grid", "24", "--window", "3", "5"], "--window has 2 values for a 1-D grid"),
        (
            &["--grid", "4", "6", "--window", "3", "--stride", "1", "4"],
            "axis 1: stride 4 is larger than the window size 3",
        ),
        (
            &["--grid", "4", "6", "--window", "3", "5", "--dilation", "2", "1"],
            "axis 0: window 3 × dilation 2 = 6 does not fit in the extent 4",
        ),
        (&["--grid", "5", "5", "--window", "3"], "grid [5, 5] holds 25 tokens, the tensors 24"),
        (
            &["--grid", "2", "3", "4", "--window", "3"],
            "axis 0: window 3 × dilation 1 = 3 does not fit in the extent 2",
        ),
    ];
    for (extra, expected) in cases {
        let message = run(extra);
        assert!(message.contains(expected), "{extra:?}: {message}");
    }
    let dense = ["run", "dense_bf16_d64", "--grid", "4", "6", "--inputs", &inputs, "-o", &out];
    let message = output(&dense).unwrap_err().to_string();
    assert!(message.contains("dense_bf16_d64 has no window, so it takes no grid"), "{message}");
    if let Some(no_gpu) = no_gpu_error() {
        let grid_3d = ["--grid", "2", "3", "4", "--window", "2", "3", "2", "--causal", "1", "0", "0"];
        assert_eq!(run(&grid_3d), no_gpu);
        assert_eq!(run(&["--grid", "4", "6", "--window", "3", "5", "--dilation", "1", "--causal"]), no_gpu);
    }
}

#[test]
fn run_na_per_axis_flags_parse_one_value_per_axis_or_one_for_all() {
    fn na<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["run", "na", "--inputs", "in", "-o", "out"][..], extra].concat()
    }
    let parsed = |extra: &[&str]| format!("{:?}", cli(&na(extra)));
    let defaults = parsed(&["--window", "7"]);
    assert!(
        defaults.contains("grid: None") && defaults.contains("dilation: [1], stride: [1], causal: [false]"),
        "{defaults}"
    );
    let text = parsed(&["--grid", "9", "21", "19", "--window", "3", "7", "8", "--causal", "1", "no", "false"]);
    assert!(text.contains("grid: Some([9, 21, 19])") && text.contains("causal: [true, false, false]"), "{text}");
    assert!(parsed(&["--window", "7", "--causal"]).contains("causal: [true]"));
    assert!(parse_error(&na(&["--grid", "1", "2", "3", "4"])).contains("unexpected argument '4'"));
    assert!(parse_error(&na(&["--window", "3", "--causal", "maybe"])).contains("invalid value 'maybe'"));
    let grid = parse_error(&na(&["--grid", "4", "x", "--window", "3"]));
    assert!(grid.contains("invalid value 'x' for '--grid <EXTENT>...'"), "{grid}");
}

#[test]
fn sale_estimates_compare_every_format_with_the_exact_selection() {
    let text = output(&["sale-estimates", "--seq", "512", "--head-dim", "64", "--tau", "0.01"]).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(names, ["exact", "int4", "int8", "e4m3"], "{text}");
    // The exact selection agrees with itself.
    assert_eq!(&rows[0][2..5], ["1.0000", "0", "0"], "{text}");
    let bad = output(&["sale-estimates", "--seq", "4"]).unwrap_err();
    assert!(bad.to_string().contains("at least 8 tokens"), "{bad}");
}

/// `run mustafar` checks its inputs (one query token, head_dim 128, bf16/f16) and the cache
/// policy before a GPU is opened; valid inputs get as far as the GPU.
#[test]
fn run_mustafar_checks_inputs_and_policy_before_the_gpu() {
    use crate::io::{FileDtype, HostTensor, write_tensors};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, q_tokens: usize, d: usize| {
        let t = |heads, tokens| HostTensor::from_bits(FileDtype::BF16, vec![1, heads, tokens, d], &vec![0x3f80; heads * tokens * d]);
        let path = dir.path().join(name);
        write_tensors(&path, &[("q", &t(8, q_tokens)), ("k", &t(2, 300)), ("v", &t(2, 300))], &[]).unwrap();
        path.to_string_lossy().into_owned()
    };
    let out = dir.path().join("out.safetensors").to_string_lossy().into_owned();
    let error = |inputs: &str, extra: &[&str]| {
        let mut args = vec!["run", "mustafar", "--inputs", inputs, "-o", &out];
        args.extend(extra);
        output(&args).unwrap_err().to_string()
    };
    let message = error(&write("two.safetensors", 2, 128), &[]);
    assert!(message.contains("one query token per head"), "{message}");
    let message = error(&write("d64.safetensors", 1, 64), &[]);
    assert!(message.starts_with("tensor `q`: head_dim"), "{message}");
    let good = write("good.safetensors", 1, 128);
    let message = error(&good, &["--chunk", "100"]);
    assert!(message.contains("chunk = 100 is not a multiple of 64"), "{message}");
    if let Some(expected) = no_gpu_error() {
        assert_eq!(error(&good, &["--lse", "--splits", "3"]), expected);
    }
    let message = parse_error(&["run", "mustafar", "--inputs", "x", "-o", "y", "--k-sparsity", "1.5"]);
    assert!(message.contains("a sparsity is at least 0 and below 1"), "{message}");
}

#[test]
fn bench_mustafar_checks_its_problem_before_the_gpu() {
    let message = output(&["bench", "mustafar", "dense_bf16_d128"]).unwrap_err().to_string();
    assert!(message.contains("decode kernel alone"), "{message}");
    let message = output(&["bench", "mustafar", "--heads", "30", "--kv-heads", "8"]).unwrap_err().to_string();
    assert!(message.contains("must be a multiple of --kv-heads"), "{message}");
    let message = output(&["bench", "mustafar", "--context", "8192", "--chunk", "100"]).unwrap_err().to_string();
    assert!(message.contains("chunk = 100"), "{message}");
}

#[test]
fn bench_checks_its_gqa_group_before_the_gpu() {
    let message = output(&["bench", "sale_causal_bf16_d128", "--density", "0.2", "--heads", "32", "--kv-heads", "6"]).unwrap_err().to_string();
    assert!(message.contains("--heads 32 must be a multiple of --kv-heads 6"), "{message}");
}

/// `calibrate sale` halves each head's τ from 0.008 until its error is under θ · seq (a head
/// that never gets there runs dense, τ = 0), and prints the `run sale` flags to use them.
#[test]
fn calibrate_sale_halves_thresholds_until_the_error_passes() {
    let taus = |theta: &str| -> Vec<f64> {
        let text = output(&["calibrate", "sale", "--structured", "--seq", "512", "--head-dim", "64", "--theta", theta]).unwrap();
        let last = text.lines().last().unwrap().to_string();
        assert!(last.starts_with("tessera run sale --tau "), "{text}");
        last.split_whitespace().skip(4).take(2).map(|t| t.parse().unwrap()).collect()
    };
    let loose = taus("10");
    assert_eq!(loose, vec![0.008, 0.008]);
    let tight = taus("0.02");
    for t in &tight {
        // 0.008 / 2^k, or dense.
        assert!(*t == 0.0 || (0.008 / t).log2().fract() == 0.0, "{tight:?}");
    }
    assert!(tight.iter().zip(&loose).all(|(t, l)| t <= l) && tight != loose, "{tight:?}");
    assert_eq!(taus("0"), vec![0.0, 0.0]);
    // On the GPU: SALE's kernels' head_dim and an estimate the GPU makes, said before a GPU is
    // looked for.
    let gpu = |extra: &[&str]| {
        let mut args = vec!["calibrate", "sale", "--gpu", "--structured", "--seq", "256"];
        args.extend(extra);
        output(&args).unwrap_err().to_string()
    };
    assert!(gpu(&["--head-dim", "64"]).contains("head_dim 128"));
    assert!(gpu(&["--head-dim", "128", "--estimate", "int4"]).contains("exact scores or the int8 estimate"));
    if let Some(expected) = no_gpu_error() {
        assert_eq!(gpu(&["--head-dim", "128"]), expected);
    }
}
