//! What the store keeps: per key, every config any sweep considered and what became of it, so a
//! winner can be explained, and merges that never drop a timing.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::key::KeyInfo;
use super::problem::Problem;

/// Every entry, by key id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Entries(pub BTreeMap<String, Entry>);

impl Entries {
    /// Merges `other` in, entry by entry (see [`Entry::merge`]).
    pub fn merge(&mut self, other: Entries) {
        for (id, entry) in other.0 {
            match self.0.get_mut(&id) {
                Some(mine) => mine.merge(entry),
                None => {
                    self.0.insert(id, entry);
                }
            }
        }
    }

    /// Ids starting with `prefix`.
    pub fn matching<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> {
        self.0.iter().filter(move |(id, _)| id.starts_with(prefix))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: KeyInfo,
    /// Configs (as `Config`'s Display writes them) that sweeps of this key have considered, in
    /// the order first seen. One without a record was never reached (a sweep stopped by its
    /// budget): the entry is then partial, and the next sweep times it.
    pub space: Vec<String>,
    /// What became of each config.
    pub records: BTreeMap<String, Record>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unix milliseconds: of two records of one config, the newer wins a merge.
    pub at_ms: u64,
    /// The problem this config was run on (its bucket is the key's).
    pub problem: Problem,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Passed the correctness check and was timed in full: median of `reps` launches.
    Timed {
        median_ms: f64,
        min_ms: f64,
        reps: usize,
        tflops: f64,
    },
    /// Its first, short measurement was too far behind the best at the time.
    Eliminated {
        quick_ms: f64,
        best_quick_ms: f64,
        reps: usize,
    },
    /// Compiled but failed to load, launch, or match the reference; never timed.
    Rejected { reason: String },
    /// Never compiled for the GPU: too much shared memory, too many spills, or codegen failed.
    Pruned { reason: String },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Timed { .. } => "timed",
            Outcome::Eliminated { .. } => "eliminated",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Pruned { .. } => "pruned",
        }
    }

    pub fn median_ms(&self) -> Option<f64> {
        match self {
            Outcome::Timed { median_ms, .. } => Some(*median_ms),
            _ => None,
        }
    }
}

impl Record {
    pub fn now(problem: Problem, outcome: Outcome) -> Record {
        Record {
            at_ms: now_ms(),
            problem,
            outcome,
        }
    }
}

fn now_ms() -> u64 {
    // A clock before 1970 only reorders merges of one config; it is no reason to fail.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Entry {
    pub fn new(key: KeyInfo) -> Entry {
        Entry {
            key,
            space: Vec::new(),
            records: BTreeMap::new(),
        }
    }

    /// Adds configs to the space, keeping the order and skipping those already in it.
    pub fn extend_space<'a>(&mut self, configs: impl IntoIterator<Item = &'a str>) {
        for c in configs {
            if !self.space.iter().any(|s| s == c) {
                self.space.push(c.to_string());
            }
        }
    }

    /// Keeps every config of both sides; of two records of one config the newer wins (ties go
    /// to `other`, the incoming side). Timings are never dropped for being slower.
    pub fn merge(&mut self, other: Entry) {
        self.extend_space(other.space.iter().map(String::as_str));
        for (config, record) in other.records {
            let keep_mine = self
                .records
                .get(&config)
                .is_some_and(|mine| mine.at_ms > record.at_ms);
            if !keep_mine {
                self.records.insert(config, record);
            }
        }
    }

    /// Configs of the space that no sweep reached.
    pub fn untried(&self) -> Vec<&str> {
        self.space
            .iter()
            .filter(|c| !self.records.contains_key(*c))
            .map(String::as_str)
            .collect()
    }

    /// The fastest timed config among those `allowed` (e.g. those valid for the kernel as it is
    /// defined now), with its median.
    pub fn winner(&self, allowed: impl Fn(&str) -> bool) -> Option<(&str, f64)> {
        self.records
            .iter()
            .filter(|(c, _)| allowed(c))
            .filter_map(|(c, r)| Some((c.as_str(), r.outcome.median_ms()?)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Configs ordered for reports: timed by median, then eliminated by their short
    /// measurement, then rejected and pruned, each group in space order.
    pub fn ranked(&self) -> Vec<(&str, &Record)> {
        let position = |c: &str| self.space.iter().position(|s| s == c).unwrap_or(usize::MAX);
        let rank = |r: &Record| match &r.outcome {
            Outcome::Timed { median_ms, .. } => (0, *median_ms),
            Outcome::Eliminated { quick_ms, .. } => (1, *quick_ms),
            Outcome::Rejected { .. } => (2, 0.0),
            Outcome::Pruned { .. } => (3, 0.0),
        };
        let mut out: Vec<(&str, &Record)> =
            self.records.iter().map(|(c, r)| (c.as_str(), r)).collect();
        out.sort_by(|a, b| {
            let (ga, ta) = rank(a.1);
            let (gb, tb) = rank(b.1);
            ga.cmp(&gb)
                .then(ta.total_cmp(&tb))
                .then(position(a.0).cmp(&position(b.0)))
        });
        out
    }
}
