use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;

use super::super::store::{Damage, decode, path_from};
use super::super::{Entries, KeyInfo, Store, StoreError};
use super::{device, entry, key};

const A: &str = "block_q=128,block_kv=64,warps=8,stages=2";
const B: &str = "block_q=64,block_kv=64,warps=4,stages=2";

/// One entry per sequence length, so that every writer has keys of its own.
fn one(seq: usize, config: &str, ms: f64) -> Entries {
    let k = key("dense_bf16_d64", seq);
    Entries([(k.id(), entry(k, &[(config, 1, ms)]))].into())
}

fn add(store: &Store, entries: Entries) {
    store.update(|all| all.merge(entries)).unwrap();
}

fn store_in(dir: &Path) -> (Store, PathBuf) {
    let path = dir.join("sub").join("tune.json");
    (Store::at(&path), path)
}

#[test]
fn where_the_store_lives() {
    let user = Some(PathBuf::from("/home/u/.cache"));
    assert_eq!(
        path_from(None, None, user.clone()),
        Some(PathBuf::from("/home/u/.cache/tessera/tune.json"))
    );
    assert_eq!(
        path_from(None, Some("/x/t.json".into()), user.clone()),
        Some(PathBuf::from("/x/t.json"))
    );
    // Set but empty: persistence off.
    assert_eq!(path_from(None, Some("".into()), user.clone()), None);
    // The flag wins over both.
    assert_eq!(
        path_from(Some("/f.json".into()), Some("".into()), user),
        Some(PathBuf::from("/f.json"))
    );
    assert_eq!(path_from(None, None, None), None);
}

#[test]
fn a_write_is_read_back_and_later_writes_merge_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    assert_eq!(store.load().unwrap(), Entries::default());
    add(&store, one(1024, A, 1.0));
    add(&store, one(1024, B, 2.0));
    add(&store, one(4096, A, 3.0));
    let all = store.load().unwrap();
    assert_eq!(all.0.len(), 2);
    let k = key("dense_bf16_d64", 1024);
    assert_eq!(all.0[&k.id()].records.len(), 2);
    // Readable JSON with the format named, and only the lock file beside it.
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("{\n  \"format\": \"tessera-tune v1\""),
        "{text}"
    );
    let mut names: Vec<String> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["tune.json", "tune.json.lock"]);
}

#[test]
fn concurrent_threads_lose_no_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_in(dir.path());
    let (threads, each) = (8, 6);
    let start = Arc::new(Barrier::new(threads));
    thread::scope(|s| {
        for t in 0..threads {
            let (store, start) = (store.clone(), start.clone());
            s.spawn(move || {
                start.wait();
                for i in 0..each {
                    add(&store, one(1 << (t * each + i), A, 1.0));
                }
            });
        }
    });
    assert_eq!(store.load().unwrap().0.len(), threads * each);
}

const CHILD_ENV: &str = "TESSERA_TUNE_TEST_CHILD";
const CHILD_WRITES: usize = 8;

/// Run by `concurrent_processes_lose_no_entry` in child processes; does nothing on its own.
#[test]
#[ignore = "a helper that other tests run in child processes"]
fn child_writer() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, n) = arg.rsplit_once('|').unwrap();
    let store = Store::at(path);
    // `forever`: write until killed (`a_process_killed_mid_write_leaves_a_sound_store`).
    if n == "forever" {
        for i in 0.. {
            add(&store, one(1 << (i % 40), B, 1.0 + i as f64));
        }
    }
    let n: usize = n.parse().unwrap();
    for i in 0..CHILD_WRITES {
        add(&store, one(1 << (n * CHILD_WRITES + i), B, 1.0 + i as f64));
    }
}

/// SIGKILL at arbitrary moments of a writer's life (inside a write, between writes) never leaves
/// a store that reads as damaged, and what was written before stays.
#[test]
fn a_process_killed_mid_write_leaves_a_sound_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    add(&store, one(1 << 50, A, 1.0));
    let exe = std::env::current_exe().unwrap();
    for delay_ms in [3, 11, 29, 47, 83] {
        let mut child = Command::new(&exe)
            .args(["tune::tests::store::child_writer", "--exact", "--ignored", "--quiet"])
            .env(CHILD_ENV, format!("{}|forever", path.display()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(store.damage().unwrap(), None, "killed after {delay_ms} ms");
        let first = key("dense_bf16_d64", 1 << 50).id();
        assert!(store.load().unwrap().0.contains_key(&first), "the first entry was lost after {delay_ms} ms");
    }
    // The writers did write before they were killed: the kills hit a live writer.
    assert!(store.load().unwrap().0.len() > 1);
}

#[test]
fn concurrent_processes_lose_no_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|n| {
            Command::new(&exe)
                .args([
                    "tune::tests::store::child_writer",
                    "--exact",
                    "--ignored",
                    "--quiet",
                ])
                .env(CHILD_ENV, format!("{}|{n}", path.display()))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(store.load().unwrap().0.len(), 4 * CHILD_WRITES);
}

#[test]
fn a_temp_file_left_by_a_crash_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    add(&store, one(1024, A, 1.0));
    let before = store.load().unwrap();
    // What a process killed mid-write leaves: a half-written temp file, never the real name.
    let stale = path.with_file_name(".tune.json.999999.0.tmp");
    fs::write(&stale, "{\"format\": \"tessera-tune v1\", \"entr").unwrap();
    assert_eq!(store.load().unwrap(), before);
    add(&store, one(2048, A, 1.0));
    assert_eq!(store.load().unwrap().0.len(), 2);
    assert!(stale.exists());
}

#[test]
fn a_corrupt_store_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    add(&store, one(1024, A, 1.0));
    let good = fs::read(&path).unwrap();
    for bad in [
        b"".to_vec(),
        b"\x00\xff garbage".to_vec(),
        good[..good.len() / 2].to_vec(),
        b"{\"format\": \"tessera-tune v1\", \"entries\": [1, 2]}".to_vec(),
    ] {
        fs::write(&path, &bad).unwrap();
        assert!(matches!(decode(&bad), Err(Damage::Corrupt(_))));
        assert_eq!(store.load().unwrap(), Entries::default());
        add(&store, one(4096, B, 2.0));
        let rebuilt = store.load().unwrap();
        assert_eq!(rebuilt, one(4096, B, 2.0));
    }
}

#[test]
fn a_store_of_another_version_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let foreign = b"{\"format\": \"tessera-tune v999\", \"entries\": {\"x\": 1}}";
    fs::write(&path, foreign).unwrap();
    assert_eq!(
        decode(foreign),
        Err(Damage::Foreign("tessera-tune v999".into()))
    );
    assert_eq!(store.load().unwrap(), Entries::default());
    add(&store, one(1024, A, 1.0));
    assert_eq!(store.load().unwrap(), one(1024, A, 1.0));
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .contains("\"tessera-tune v1\"")
    );
}

#[test]
fn an_entry_that_does_not_match_its_id_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_in(dir.path());
    add(&store, one(1024, A, 1.0));
    add(&store, one(2048, A, 1.0));
    // A hand edit that still parses: the entry now claims another bucket than its id says.
    let text = fs::read_to_string(&path).unwrap();
    let edited = text.replacen("\"seq_q\": 1024", "\"seq_q\": 8192", 1);
    assert_ne!(text, edited);
    fs::write(&path, edited).unwrap();
    let (entries, dropped) = decode(&fs::read(&path).unwrap()).unwrap();
    assert_eq!((entries, dropped), (one(2048, A, 1.0), 1));
    assert_eq!(store.load().unwrap(), one(2048, A, 1.0));
}

#[test]
fn export_then_import_round_trips_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let (from, _) = store_in(&dir.path().join("a"));
    add(&from, one(1024, A, 1.0));
    add(&from, one(1024, B, 2.0));
    add(&from, one(8192, A, 3.0));
    let file = dir.path().join("shipped.json");
    assert_eq!(from.export(&file).unwrap(), 2);

    let (to, _) = store_in(&dir.path().join("b"));
    add(&to, one(64, B, 4.0));
    assert_eq!(to.import(&file).unwrap(), 2);
    let mut expected = from.load().unwrap();
    expected.merge(one(64, B, 4.0));
    assert_eq!(to.load().unwrap(), expected);
    // Importing again changes nothing.
    to.import(&file).unwrap();
    assert_eq!(to.load().unwrap(), expected);

    // A damaged file named by the user is an error, not an empty import.
    fs::write(&file, "not json").unwrap();
    assert!(matches!(to.import(&file), Err(StoreError::Invalid { .. })));
    assert!(matches!(
        to.import(&dir.path().join("missing.json")),
        Err(StoreError::Io { .. })
    ));
    assert_eq!(to.load().unwrap(), expected);
}

#[test]
fn clear_removes_all_or_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_in(dir.path());
    add(&store, one(1024, A, 1.0));
    add(&store, one(2048, A, 1.0));
    let id = key("dense_bf16_d64", 1024).id();
    assert_eq!(store.clear(&id[..10]).unwrap(), 1);
    assert_eq!(store.load().unwrap(), one(2048, A, 1.0));
    assert_eq!(store.clear("").unwrap(), 1);
    assert_eq!(store.load().unwrap(), Entries::default());
}

#[test]
fn a_disabled_store_remembers_nothing() {
    let store = Store::disabled();
    assert_eq!(store.path(), None);
    let seen = store.update(|all| {
        all.merge(one(1024, A, 1.0));
        all.0.len()
    });
    assert_eq!(seen.unwrap(), 1);
    assert_eq!(store.load().unwrap(), Entries::default());
}

#[test]
fn an_unreadable_store_is_an_error_for_writers() {
    // A directory where the file should be: neither readable as a store nor replaceable.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.json");
    fs::create_dir(&path).unwrap();
    let store = Store::at(&path);
    assert!(matches!(store.load(), Err(StoreError::Io { .. })));
    assert!(store.update(|_| ()).is_err());
}

/// A store as tessera wrote it before problems had grids: the key of
/// `key::key_text_is_canonical_and_stable` and one record.
const BEFORE_GRIDS: &str = r#"{
  "format": "tessera-tune v1",
  "entries": {
    "fb848ed963d17633e1a38d6f0e7dc6061035ce737a1e5d6a1acc550bbcd47255": {
      "key": {
        "kernel": "k",
        "kernel_hash": "ab12",
        "bucket": {"seq_q": 16384, "seq_kv": 8192, "head_dim": 128, "dtype": "bf16", "group": 4},
        "device": {"name": "Test GPU 80GB", "compute_capability": [9, 0], "driver": 13000},
        "tessera": "1.2.3+f00"
      },
      "space": ["block_q=128,block_kv=64,warps=8,stages=2"],
      "records": {
        "block_q=128,block_kv=64,warps=8,stages=2": {
          "at_ms": 1,
          "problem": {"batch": 1, "heads": 32, "kv_heads": 8, "seq_q": 16384, "seq_kv": 8192},
          "status": "timed", "median_ms": 1.5, "min_ms": 1.4, "reps": 10, "tflops": 300.0
        }
      }
    }
  }
}"#;

#[test]
fn a_store_written_before_grids_loads_with_every_entry_and_writes_back_without_grids() {
    let (entries, dropped) = decode(BEFORE_GRIDS.as_bytes()).unwrap();
    // No entry is dropped: the ids of keys without a grid did not change.
    assert_eq!((entries.0.len(), dropped), (1, 0));
    let entry = entries.0.values().next().unwrap();
    assert_eq!(entry.key.bucket.grid, None);
    let record = &entry.records[A];
    assert_eq!(record.problem, "1,32,8,16384,8192".parse().unwrap());
    let text = serde_json::to_string(&entries).unwrap();
    assert!(!text.contains("grid"), "{text}");
}

#[test]
fn an_entry_of_a_grid_is_read_back_under_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_in(dir.path());
    let desc = crate::catalog::find("na2d_w13x13_d2x2_bf16_d128").unwrap();
    let k = KeyInfo::new(desc, &"1,8,2,56x56".parse().unwrap(), &device(13000));
    let config = "q_tile=16x8,kv_tile=8x8,warps=4,stages=2";
    let entries = Entries([(k.id(), entry(k, &[(config, 1, 1.0)]))].into());
    add(&store, entries.clone());
    assert_eq!(store.load().unwrap(), entries);
}

/// A decode kernel's entry (its bucket's planes, its problem's single query token) is written
/// and read back whole, and an attention entry beside it keeps its own key.
#[test]
fn a_decode_entry_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_in(dir.path());
    let desc = crate::catalog::find("mustafar_f16_d128").unwrap();
    let problem = super::super::Problem::decode(1, 32, 8, 32768);
    let k = KeyInfo::new(desc, &problem, &device(13000));
    let mut e = entry(k.clone(), &[("block_q=64,block_kv=64,warps=4,stages=2", 1, 0.05)]);
    e.records.values_mut().for_each(|r| r.problem = problem);
    add(&store, Entries([(k.id(), e.clone())].into()));
    add(&store, one(1024, A, 1.0));
    let all = store.load().unwrap();
    assert_eq!(all.0.len(), 2);
    assert_eq!(all.0[&k.id()], e);
    assert_eq!(all.0[&k.id()].key.bucket.planes, Some(8));
}
