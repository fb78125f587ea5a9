use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;

use tessera_codegen::{Stage, Target, emit};
use tessera_desc::{Config, Dtype, KernelDesc, Param, Visit};

use super::key::canonical;
use super::*;
use crate::catalog;

fn kernel(name: &str) -> &'static KernelDesc {
    catalog::find(name).expect("a catalog kernel")
}

fn dense() -> &'static KernelDesc {
    kernel("dense_bf16_d64")
}

/// The smallest config in the catalog's space, so each build is quick.
fn small() -> Config {
    Config::line(64, 32, 4, 1)
}

fn direct(desc: &KernelDesc, cfg: &Config, target: Target) -> String {
    emit(desc, cfg, target, Stage::Ptx).unwrap()
}

/// Every file name in `dir`.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn stats(memory_hits: u64, disk_hits: u64, builds: u64, rebuilt: u64) -> Stats {
    Stats {
        memory_hits,
        disk_hits,
        builds,
        rebuilt,
    }
}

#[test]
fn build_then_memory_hit_then_disk_hit() {
    let dir = tempfile::tempdir().unwrap();
    let (desc, cfg, target) = (dense(), small(), Target::Sm90a);
    let expected = direct(desc, &cfg, target);

    let cache = Cache::at(dir.path());
    let first = cache.fetch(desc, &cfg, target).unwrap();
    assert_eq!(first.source, Source::Built);
    assert_eq!(&*first.ptx, expected);
    let second = cache.fetch(desc, &cfg, target).unwrap();
    assert_eq!(second.source, Source::Memory);
    assert!(Arc::ptr_eq(&first.ptx, &second.ptx));
    assert_eq!(cache.stats(), stats(1, 0, 1, 0));

    let path = cache.entry_path(desc, &cfg, target).unwrap();
    assert_eq!(
        listing(dir.path()),
        [path.file_name().unwrap().to_str().unwrap()]
    );
    let on_disk = fs::read_to_string(&path).unwrap();
    let (header, body) = on_disk.split_once('\n').unwrap();
    assert!(header.starts_with("// tessera-cache v1 key="), "{header}");
    assert_eq!(body, expected);

    // A new process: nothing in memory, the entry on disk.
    let later = Cache::at(dir.path());
    let third = later.fetch(desc, &cfg, target).unwrap();
    assert_eq!(third.source, Source::Disk);
    assert_eq!(&*third.ptx, expected);
    assert_eq!(
        later.fetch(desc, &cfg, target).unwrap().source,
        Source::Memory
    );
    assert_eq!(later.stats(), stats(1, 1, 0, 0));
}

#[test]
fn corrupt_entries_are_rebuilt_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let (desc, cfg, target) = (dense(), small(), Target::Sm80);
    let other_cfg = Config {
        stages: 2,
        ..small()
    };
    let expected = direct(desc, &cfg, target);
    let seed = Cache::at(dir.path());
    seed.ptx(desc, &cfg, target).unwrap();
    seed.ptx(desc, &other_cfg, target).unwrap();
    let path = seed.entry_path(desc, &cfg, target).unwrap();
    let good = fs::read(&path).unwrap();
    let other_entry = fs::read(seed.entry_path(desc, &other_cfg, target).unwrap()).unwrap();
    let body_start = good.iter().position(|&b| b == b'\n').unwrap() + 1;

    let mut flipped = good.clone();
    // A digit in the body becomes another digit: still UTF-8, still plausible PTX.
    let at = body_start
        + flipped[body_start..]
            .iter()
            .position(u8::is_ascii_digit)
            .unwrap();
    flipped[at] = if flipped[at] == b'9' {
        b'0'
    } else {
        flipped[at] + 1
    };
    let mut bad_sum = good.clone();
    let sum_at = good.iter().position(|&b| b == b'\n').unwrap() - 1;
    bad_sum[sum_at] = if bad_sum[sum_at] == b'0' { b'1' } else { b'0' };
    let mut garbage_header = b"// something else entirely\n".to_vec();
    garbage_header.extend_from_slice(&good[body_start..]);
    let cases: [(&str, Vec<u8>); 8] = [
        ("flipped body byte", flipped),
        ("wrong checksum", bad_sum),
        ("truncated body", good[..good.len() - 100].to_vec()),
        ("header only", good[..body_start].to_vec()),
        ("truncated header", good[..20].to_vec()),
        ("garbage header", garbage_header),
        ("empty file", Vec::new()),
        ("another key's entry", other_entry),
    ];
    for (what, bytes) in cases {
        assert_ne!(bytes, good, "{what}");
        fs::write(&path, &bytes).unwrap();
        let cache = Cache::at(dir.path());
        let fetched = cache.fetch(desc, &cfg, target).unwrap();
        assert_eq!(fetched.source, Source::Built, "{what}");
        assert_eq!(&*fetched.ptx, expected, "{what}");
        assert_eq!(cache.stats(), stats(0, 0, 1, 1), "{what}");
        assert_eq!(fs::read(&path).unwrap(), good, "{what}: not rewritten");
        let later = Cache::at(dir.path());
        assert_eq!(
            later.fetch(desc, &cfg, target).unwrap().source,
            Source::Disk,
            "{what}"
        );
    }
}

#[test]
fn unreadable_entry_is_rebuilt_and_unwritable_dir_does_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (desc, cfg, target) = (dense(), small(), Target::Sm80);
    let expected = direct(desc, &cfg, target);

    // A directory where the entry should be: unreadable as a file, and the rename onto it fails.
    let cache = Cache::at(dir.path());
    fs::create_dir(cache.entry_path(desc, &cfg, target).unwrap()).unwrap();
    let fetched = cache.fetch(desc, &cfg, target).unwrap();
    assert_eq!((fetched.source, &*fetched.ptx), (Source::Built, &*expected));
    assert_eq!(cache.stats(), stats(0, 0, 1, 1));
    assert_eq!(
        listing(dir.path()).len(),
        1,
        "the failed write left a temp file"
    );

    // The cache "directory" is a file: nothing can be created under it.
    let file = dir.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let cache = Cache::at(&file);
    let fetched = cache.fetch(desc, &cfg, target).unwrap();
    assert_eq!((fetched.source, &*fetched.ptx), (Source::Built, &*expected));
    assert_eq!(
        cache.fetch(desc, &cfg, target).unwrap().source,
        Source::Memory
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn a_half_written_temp_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (desc, cfg, target) = (dense(), small(), Target::Sm80);
    let key = Key::of(desc, &cfg, target);
    // What a process killed mid-write leaves: only its temp file, never the final name.
    let stale = dir.path().join(format!(".{key}.999999.0.tmp"));
    fs::write(&stale, "// tessera-cache v1 key=").unwrap();
    let cache = Cache::at(dir.path());
    assert_eq!(
        cache.fetch(desc, &cfg, target).unwrap().source,
        Source::Built
    );
    let later = Cache::at(dir.path());
    let fetched = later.fetch(desc, &cfg, target).unwrap();
    assert_eq!(
        (fetched.source, &*fetched.ptx),
        (Source::Disk, &*direct(desc, &cfg, target))
    );
}

#[test]
fn different_inputs_have_different_keys_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(dir.path());
    let causal = kernel("causal_bf16_d64");
    let wider = Config {
        kv_tile: [64, 1, 1],
        ..small()
    };
    let inputs = [
        (dense(), small(), Target::Sm80),
        (dense(), small(), Target::Sm90a),
        (dense(), wider, Target::Sm80),
        (causal, small(), Target::Sm80),
    ];
    let mut texts = HashSet::new();
    for (desc, cfg, target) in inputs {
        let fetched = cache.fetch(desc, &cfg, target).unwrap();
        assert_eq!(fetched.source, Source::Built);
        texts.insert(fetched.ptx);
    }
    assert_eq!(texts.len(), inputs.len());
    let keys: HashSet<Key> = inputs.iter().map(|(d, c, t)| Key::of(d, c, *t)).collect();
    assert_eq!(keys.len(), inputs.len());
    let mut files: Vec<String> = keys.iter().map(|k| format!("{k}.ptx")).collect();
    files.sort();
    assert_eq!(listing(dir.path()), files);
}

#[test]
fn concurrent_caches_on_one_dir_agree_and_leave_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = [
        (dense(), small(), Target::Sm80),
        (dense(), small(), Target::Sm90a),
        (kernel("causal_f16_d64"), small(), Target::Sm80),
    ];
    let expected: Vec<String> = inputs.iter().map(|(d, c, t)| direct(d, c, *t)).collect();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (dir, barrier) = (dir.path().to_path_buf(), barrier.clone());
            thread::spawn(move || {
                let cache = Cache::at(dir);
                barrier.wait();
                // Each thread starts at a different input, so the same and different keys are
                // built, written and read at once.
                let mut out = vec![String::new(); inputs.len()];
                for j in 0..inputs.len() {
                    let n = (i + j) % inputs.len();
                    let (desc, cfg, target) = inputs[n];
                    out[n] = cache.ptx(desc, &cfg, target).unwrap().to_string();
                }
                out
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expected);
    }
    let mut files: Vec<String> = inputs
        .iter()
        .map(|(d, c, t)| format!("{}.ptx", Key::of(d, c, *t)))
        .collect();
    files.sort();
    assert_eq!(listing(dir.path()), files);
    let later = Cache::at(dir.path());
    for ((desc, cfg, target), text) in inputs.iter().zip(&expected) {
        let fetched = later.fetch(desc, cfg, *target).unwrap();
        assert_eq!(
            (fetched.source, &*fetched.ptx),
            (Source::Disk, text.as_str())
        );
    }
}

#[test]
fn one_cache_builds_each_key_once_under_contention() {
    let cache = Arc::new(Cache::in_memory());
    let (desc, cfg, target) = (dense(), small(), Target::Sm80);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (cache, barrier) = (cache.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                cache.ptx(desc, &cfg, target).unwrap()
            })
        })
        .collect();
    let results: Vec<Arc<str>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|r| Arc::ptr_eq(r, &results[0])));
    assert_eq!(cache.stats(), stats(7, 0, 1, 0));
}

#[test]
fn codegen_errors_pass_through_and_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(dir.path());
    let bad = Config {
        warps: 3,
        ..small()
    };
    assert!(cache.ptx(dense(), &bad, Target::Sm80).is_err());
    assert!(cache.ptx(dense(), &bad, Target::Sm80).is_err());
    assert_eq!(cache.stats(), Stats::default());
    assert!(listing(dir.path()).is_empty());
}

const TEST_DESC: KernelDesc = KernelDesc {
    name: "k",
    head_dim: 64,
    dtype: Dtype::Bf16,
    layout: tessera_desc::Layout::Bhsd,
    visit: Visit::Dense,
    load: tessera_desc::Load::Dense,
    schedule: tessera_desc::Schedule::line(Param::Choices(&[128, 64]), Param::Fixed(64), Param::Choices(&[4]), Param::Choices(&[1, 2])),
};

fn text_of(desc: &KernelDesc, cfg: &Config, target: Target, version: &str, llvm: &str) -> String {
    canonical(desc, cfg, target, version, llvm)
}

#[test]
fn key_text_is_canonical_and_stable() {
    let cfg = Config::line(64, 64, 4, 2);
    let text = text_of(&TEST_DESC, &cfg, Target::Sm90a, "1.2.3", "22");
    assert_eq!(
        text,
        "tessera-ptx-key v1\n\
         tessera=\"1.2.3\"\n\
         llvm=\"22\"\n\
         target=sm_90a\n\
         kernel.name=\"k\"\n\
         kernel.head_dim=64\n\
         kernel.dtype=bf16\n\
         kernel.layout=bhsd\n\
         kernel.visit=dense\n\
         kernel.load=dense\n\
         schedule.q_tile=[128, 64]\n\
         schedule.kv_tile=64\n\
         schedule.warps=[4]\n\
         schedule.stages=[1, 2]\n\
         config=block_q=64,block_kv=64,warps=4,stages=2\n"
    );
    // Pinned (checked with `sha256sum`): a key that changed between builds or runs would make
    // every entry a miss.
    assert_eq!(
        Key::from_text(&text).as_str(),
        "b8a6810046ac78cd278abc5341d950ac42014c8a7ab3ec80b4c466f66ba8349b"
    );
    assert_eq!(
        key_text(&TEST_DESC, &cfg, Target::Sm90a),
        text_of(
            &TEST_DESC,
            &cfg,
            Target::Sm90a,
            &format!("{}+{}", env!("CARGO_PKG_VERSION"), tessera_codegen::FINGERPRINT),
            LLVM_MAJOR
        )
    );
}

#[test]
fn key_text_changes_with_every_input() {
    let cfg = Config::line(64, 64, 4, 1);
    let base = text_of(&TEST_DESC, &cfg, Target::Sm80, "0.1.0", "22");
    let d = TEST_DESC;
    let s = d.schedule;
    let descs = [
        KernelDesc { name: "k2", ..d },
        KernelDesc { head_dim: 128, ..d },
        KernelDesc {
            dtype: Dtype::F16,
            ..d
        },
        KernelDesc {
            visit: Visit::Causal,
            ..d
        },
        KernelDesc {
            schedule: tessera_desc::Schedule {
                q_tile: [Param::Fixed(64), Param::Fixed(1), Param::Fixed(1)],
                ..s
            },
            ..d
        },
        KernelDesc {
            schedule: tessera_desc::Schedule {
                kv_tile: [Param::Choices(&[64]), Param::Fixed(1), Param::Fixed(1)],
                ..s
            },
            ..d
        },
        KernelDesc {
            schedule: tessera_desc::Schedule {
                warps: Param::Choices(&[4, 8]),
                ..s
            },
            ..d
        },
        KernelDesc {
            schedule: tessera_desc::Schedule {
                stages: Param::Choices(&[2, 1]),
                ..s
            },
            ..d
        },
        // A name that tries to forge the following line must not collide with the real thing.
        KernelDesc {
            name: "k\"\nkernel.head_dim=64",
            ..d
        },
    ];
    let mut texts = vec![base.clone()];
    texts.extend(
        descs
            .iter()
            .map(|d| text_of(d, &cfg, Target::Sm80, "0.1.0", "22")),
    );
    for c in [
        Config { q_tile: [128, 1, 1], ..cfg },
        Config { kv_tile: [32, 1, 1], ..cfg },
        Config { q_tile: [8, 16, 1], ..cfg },
        Config { warps: 8, ..cfg },
        Config { stages: 2, ..cfg },
    ] {
        texts.push(text_of(&d, &c, Target::Sm80, "0.1.0", "22"));
    }
    texts.push(text_of(&d, &cfg, Target::Sm90a, "0.1.0", "22"));
    texts.push(text_of(&d, &cfg, Target::Sm80, "0.1.1", "22"));
    texts.push(text_of(&d, &cfg, Target::Sm80, "0.1.0", "23"));
    let distinct: HashSet<&String> = texts.iter().collect();
    assert_eq!(distinct.len(), texts.len(), "two inputs share a key text");
    let keys: HashSet<Key> = texts.iter().map(|t| Key::from_text(t)).collect();
    assert_eq!(keys.len(), texts.len());
    assert!(keys.iter().all(|k| {
        k.as_str().len() == 64
            && k.as_str()
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }));
}

#[test]
fn llvm_major_matches_the_workspace_inkwell_feature() {
    let manifest = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"));
    let inkwell = manifest
        .lines()
        .find(|l| l.starts_with("inkwell"))
        .expect("the workspace pins inkwell");
    assert!(
        inkwell.contains(&format!("\"llvm{LLVM_MAJOR}-")),
        "LLVM_MAJOR = {LLVM_MAJOR} but the workspace has: {inkwell}"
    );
}

#[test]
fn cache_dir_comes_from_the_environment_then_the_user_cache() {
    let user = Some(PathBuf::from("/home/u/.cache"));
    assert_eq!(
        dir_from(Some("/tmp/x".into()), user.clone()),
        Some(PathBuf::from("/tmp/x"))
    );
    assert_eq!(dir_from(Some("".into()), user.clone()), None);
    assert_eq!(
        dir_from(None, user),
        Some(PathBuf::from("/home/u/.cache/tessera/ptx"))
    );
    assert_eq!(dir_from(None, None), None);
}
