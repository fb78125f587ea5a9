use super::super::{Entries, Outcome, Problem, Record};
use super::{entry, key, problem, timed};

const A: &str = "block_q=128,block_kv=64,warps=8,stages=2";
const B: &str = "block_q=64,block_kv=64,warps=4,stages=2";
const C: &str = "block_q=64,block_kv=32,warps=4,stages=1";

#[test]
fn merge_keeps_every_config_and_the_newer_record_of_each() {
    let k = key("dense_bf16_d128", 4096);
    let mut mine = entry(k.clone(), &[(A, 10, 1.0), (B, 30, 2.0)]);
    let theirs = entry(k.clone(), &[(B, 20, 9.0), (C, 5, 3.0)]);
    mine.merge(theirs);
    assert_eq!(mine.space, [A, B, C]);
    assert_eq!(mine.records[A], timed(10, 1.0));
    // Mine is newer: kept, even though theirs is slower (newer is the rule, not faster).
    assert_eq!(mine.records[B], timed(30, 2.0));
    assert_eq!(mine.records[C], timed(5, 3.0));

    // Equal times go to the incoming side.
    let mut tie = entry(k.clone(), &[(A, 10, 1.0)]);
    tie.merge(entry(k, &[(A, 10, 4.0)]));
    assert_eq!(tie.records[A], timed(10, 4.0));
}

#[test]
fn entries_merge_by_key() {
    let (k1, k2) = (key("dense_bf16_d128", 4096), key("dense_bf16_d128", 16384));
    let mut all = Entries::default();
    all.merge(Entries(
        [(k1.id(), entry(k1.clone(), &[(A, 1, 1.0)]))].into(),
    ));
    all.merge(Entries(
        [(k2.id(), entry(k2.clone(), &[(A, 1, 2.0)]))].into(),
    ));
    all.merge(Entries(
        [(k1.id(), entry(k1.clone(), &[(B, 1, 3.0)]))].into(),
    ));
    assert_eq!(all.0.len(), 2);
    assert_eq!(all.0[&k1.id()].records.len(), 2);
    assert_eq!(all.matching(&k2.id()[..6]).count(), 1);
    assert_eq!(all.matching("").count(), 2);
}

#[test]
fn the_winner_is_the_fastest_timed_config_allowed() {
    let k = key("dense_bf16_d128", 4096);
    let mut e = entry(k, &[(A, 1, 2.0), (B, 1, 1.5)]);
    e.extend_space([C]);
    e.records.insert(
        C.to_string(),
        Record {
            at_ms: 1,
            problem: problem(4096),
            outcome: Outcome::Eliminated {
                quick_ms: 0.5,
                best_quick_ms: 0.1,
                reps: 3,
            },
        },
    );
    // An eliminated config never wins, whatever its short measurement said.
    assert_eq!(e.winner(|_| true), Some((B, 1.5)));
    assert_eq!(e.winner(|c| c != B), Some((A, 2.0)));
    assert_eq!(e.winner(|_| false), None);
    let order: Vec<&str> = e.ranked().into_iter().map(|(c, _)| c).collect();
    assert_eq!(order, [B, A, C]);
}

#[test]
fn configs_without_a_record_make_an_entry_partial() {
    let mut e = entry(key("dense_bf16_d128", 4096), &[(A, 1, 2.0)]);
    assert!(e.untried().is_empty());
    e.extend_space([B, A, C]);
    assert_eq!(e.space, [A, B, C]);
    assert_eq!(e.untried(), [B, C]);
}

#[test]
fn problems_keep_their_grid_in_json_and_those_without_one_are_written_as_before() {
    let line = problem(4096);
    let json = serde_json::to_string(&line).unwrap();
    assert_eq!(
        json,
        r#"{"batch":1,"heads":32,"kv_heads":32,"seq_q":4096,"seq_kv":4096}"#
    );
    assert_eq!(serde_json::from_str::<Problem>(&json).unwrap(), line);

    let grid: Problem = "1,8,2,16x32x30".parse().unwrap();
    let json = serde_json::to_string(&grid).unwrap();
    assert!(json.ends_with(r#""grid":[16,32,30]}"#), "{json}");
    assert_eq!(serde_json::from_str::<Problem>(&json).unwrap(), grid);

    // A grid is checked as it is read: one axis, or an empty one, is no grid.
    for bad in ["[56]", "[56,0]", "[]"] {
        let text = json.replace("[16,32,30]", bad);
        assert!(serde_json::from_str::<Problem>(&text).is_err(), "{text}");
    }
}
