//! A sweep: which configs to run, the CPU half on every core, the GPU half on one or every GPU,
//! each result written to the store as soon as it exists (a sweep killed half-way keeps what it
//! measured, and the next one times only the rest).

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tessera_desc::{Config, KernelDesc};

use super::TuneError;
use super::compile::{Prepared, prepare};
use super::device::DeviceInfo;
use super::key::KeyInfo;
use super::problem::Problem;
use super::race::{FACTOR, Race};
use super::record::{Entry, Outcome, Record};
use super::recorder::Recorder;
use super::store::{Store, StoreError};
use super::verify::Case;
use super::workers::{Pool, siblings};
use crate::gpu::Gpu;
use crate::parallel::lock;

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Stop starting new candidates after this long (codegen included); the best so far wins
    /// and the entry stays partial. At least one candidate is always timed.
    pub budget: Option<Duration>,
    /// Run every config again, even those with a record.
    pub retune: bool,
    /// Spread candidates over every GPU of the same model as the one given.
    pub all_gpus: bool,
}

/// Progress, reported from whichever thread made it.
pub enum Event<'a> {
    Compiling {
        total: usize,
    },
    Compiled {
        config: &'a Config,
    },
    Timing {
        total: usize,
        gpus: usize,
    },
    Finished {
        config: &'a Config,
        outcome: &'a Outcome,
        /// The fastest fully timed config of this sweep so far.
        best: Option<(Config, f64)>,
    },
}

pub struct Summary {
    pub id: String,
    /// The key's entry with this sweep's records merged in.
    pub entry: Entry,
    /// Configs of the kernel's current space.
    pub space: usize,
    /// Configs this sweep took on (codegen at least); 0 when the store answered.
    pub ran: usize,
    /// What became of them.
    pub counts: Counts,
    pub stopped_by_budget: bool,
    /// Why spills were not judged, when they were not.
    pub spills_unchecked: Option<String>,
    pub gpus: usize,
    /// From the start to the end of the CPU half.
    pub codegen: Duration,
    /// Loading modules on the GPU (the driver's JIT compiles each PTX), summed over GPUs.
    pub load_time: Duration,
    pub wall: Duration,
    /// GPUs that stopped on an error their context does not survive.
    pub gpu_errors: Vec<String>,
    /// The first failure to write the store, if any (the sweep goes on without it).
    pub store_error: Option<StoreError>,
    pub store_path: Option<PathBuf>,
}

/// What became of the configs a sweep took on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub pruned: usize,
    pub timed: usize,
    pub eliminated: usize,
    pub rejected: usize,
    /// Ready for the GPU but never started: the budget ran out, or a GPU failed.
    pub untried: usize,
}

impl Counts {
    pub(super) fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Timed { .. } => self.timed += 1,
            Outcome::Eliminated { .. } => self.eliminated += 1,
            Outcome::Rejected { .. } => self.rejected += 1,
            Outcome::Pruned { .. } => self.pruned += 1,
        }
    }

    /// Candidates that reached the GPU.
    pub fn on_gpu(&self) -> usize {
        self.timed + self.eliminated + self.rejected
    }
}

/// Tunes `desc` for `problem` on `gpu` (and, with `all_gpus`, its siblings).
pub fn sweep(
    gpu: &Gpu,
    desc: &KernelDesc,
    problem: &Problem,
    store: &Store,
    options: &Options,
    on: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Summary, TuneError> {
    let start = Instant::now();
    problem.check_for(desc).map_err(|why| TuneError::Problem {
        problem: *problem,
        why,
    })?;
    let target = gpu.target()?;
    let space = super::space::space(desc, target);
    if space.is_empty() {
        return Err(TuneError::EmptySpace { kernel: desc.name });
    }
    let key = KeyInfo::new(desc, problem, &DeviceInfo::of(gpu)?);
    let id = key.id();
    let mut entry = store
        .load()?
        .0
        .remove(&id)
        .unwrap_or_else(|| Entry::new(key.clone()));
    let mut todo = super::space::to_run(&space, Some(&entry), options.retune);
    // Judged against the whole space, so that a resumed sweep prunes as a fresh one would.
    let unfit: Vec<(Config, String)> = space
        .iter()
        .zip(super::space::problem_pruned(desc, &space, problem, gpu.max_shared_bytes))
        .filter_map(|(c, why)| Some((*c, why?)))
        .filter(|(c, _)| todo.contains(c))
        .collect();
    todo.retain(|c| !unfit.iter().any(|(w, _)| w == c));
    let ran = todo.len() + unfit.len();
    let space_names: Vec<String> = space.iter().map(Config::to_string).collect();
    entry.extend_space(space_names.iter().map(String::as_str));
    let recorder = Recorder::new(store, id.clone(), entry);
    let mut summary = Summary {
        id,
        entry: Entry::new(key),
        space: space.len(),
        ran,
        counts: Counts::default(),
        stopped_by_budget: false,
        spills_unchecked: None,
        gpus: 1,
        codegen: Duration::ZERO,
        load_time: Duration::ZERO,
        wall: Duration::ZERO,
        gpu_errors: Vec::new(),
        store_error: None,
        store_path: store.path().map(PathBuf::from),
    };
    if ran == 0 {
        summary.entry = recorder.into_entry().0;
        summary.wall = start.elapsed();
        return Ok(summary);
    }

    // The CPU half. The space goes to the store first, so that a sweep stopped early leaves
    // an entry that knows what it did not reach.
    recorder.write(Vec::new());
    let ptxas = tessera_codegen::ptxas::find();
    summary.spills_unchecked = ptxas.as_ref().err().map(|e| e.to_string());
    on(Event::Compiling { total: todo.len() });
    let prepared = prepare(
        desc,
        &todo,
        target,
        gpu.max_shared_bytes,
        ptxas.as_deref().ok(),
        &|config| on(Event::Compiled { config }),
    );
    summary.codegen = start.elapsed();
    let mut ready = Vec::new();
    let mut pruned: Vec<_> = unfit.into_iter().map(|(config, reason)| (config, Record::now(*problem, Outcome::Pruned { reason }))).collect();
    for Prepared {
        config,
        pruned: why,
    } in prepared
    {
        match why {
            Some(reason) => {
                pruned.push((config, Record::now(*problem, Outcome::Pruned { reason })))
            }
            None => ready.push(config),
        }
    }
    let mut counts = Counts {
        pruned: pruned.len(),
        ..Counts::default()
    };
    recorder.write(pruned);

    // The GPU half. A resumed sweep is judged against the stored winner, so that it does not
    // time in full what the earlier sweep would have eliminated.
    let mut race = Race::new(FACTOR);
    if !options.retune {
        let current = |c: &str| space_names.iter().any(|s| s == c);
        if let Some((_, ms)) = lock(&recorder.entry).winner(current) {
            race.record(ms);
        }
    }
    if !ready.is_empty() {
        let case = Case::new(desc, problem).map_err(TuneError::Reference)?;
        let pool = Pool {
            desc,
            problem,
            case: &case,
            ready: &ready,
            next: AtomicUsize::new(0),
            race: Mutex::new(race),
            best: Mutex::new(None),
            deadline: options.budget.map(|b| start + b),
            stopped: AtomicBool::new(false),
            counts: Mutex::new(counts),
            load_time: Mutex::new(Duration::ZERO),
            recorder: &recorder,
            on,
        };
        let siblings = if options.all_gpus {
            siblings(gpu)
        } else {
            Vec::new()
        };
        summary.gpus = 1 + siblings.len();
        on(Event::Timing {
            total: ready.len(),
            gpus: summary.gpus,
        });
        summary.gpu_errors = pool.run(gpu, &siblings);
        counts = *lock(&pool.counts);
        summary.load_time = *lock(&pool.load_time);
        summary.stopped_by_budget = pool.stopped.load(Ordering::Relaxed);
    }
    counts.untried = ready.len() - counts.on_gpu();
    summary.counts = counts;
    (summary.entry, summary.store_error) = recorder.into_entry();
    summary.wall = start.elapsed();
    Ok(summary)
}
