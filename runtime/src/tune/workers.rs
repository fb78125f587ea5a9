//! The GPU half of a sweep: one worker per GPU, each with its own inputs, taking candidates
//! from a shared queue and judging them against a shared race, so that several identical GPUs
//! split a sweep between them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cudarc::driver::CudaContext;
use cudarc::driver::result::device;
use tessera_desc::{Config, KernelDesc};

use super::measure::Bench;
use super::problem::Problem;
use super::race::Race;
use super::record::{Outcome, Record};
use super::recorder::Recorder;
use super::sweep::{Counts, Event};
use super::verify::Case;
use crate::gpu::{Gpu, GpuError};
use crate::parallel::lock;

/// Other GPUs of the same model as `gpu` (timings are only comparable on identical cards, and
/// the key names one model).
pub fn siblings(gpu: &Gpu) -> Vec<usize> {
    let count = CudaContext::device_count().unwrap_or(1).max(1) as usize;
    let mine = gpu.ctx.ordinal();
    (0..count)
        .filter(|&i| i != mine)
        .filter(|&i| {
            // By device handle: a context per GPU just to read its name would cost each GPU
            // a context creation.
            device::get(i as i32)
                .and_then(device::get_name)
                .is_ok_and(|name| name == gpu.name)
        })
        .collect()
}

/// What every GPU's worker shares.
pub struct Pool<'a> {
    pub desc: &'a KernelDesc,
    pub problem: &'a Problem,
    pub case: &'a Case,
    pub ready: &'a [Config],
    pub next: AtomicUsize,
    pub race: Mutex<Race>,
    pub best: Mutex<Option<(Config, f64)>>,
    pub deadline: Option<Instant>,
    pub stopped: AtomicBool,
    pub counts: Mutex<Counts>,
    /// Module loading (driver JIT) summed over GPUs.
    pub load_time: Mutex<Duration>,
    pub recorder: &'a Recorder<'a>,
    pub on: &'a (dyn Fn(Event<'_>) + Sync),
}

impl Pool<'_> {
    /// Runs a worker on `gpu` (this thread) and one on each of `others` (opened by their own
    /// threads); returns the errors that stopped workers.
    pub fn run(&self, gpu: &Gpu, others: &[usize]) -> Vec<String> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = others
                .iter()
                .map(|&ordinal| {
                    scope.spawn(move || match Gpu::open(ordinal) {
                        Ok(g) => self.work(&g).err(),
                        Err(e) => Some(format!("GPU {ordinal}: {e}")),
                    })
                })
                .collect();
            let mut errors = vec![self.work(gpu).err()];
            errors.extend(handles.into_iter().map(|h| match h.join() {
                Ok(e) => e,
                Err(panic) => std::panic::resume_unwind(panic),
            }));
            errors.into_iter().flatten().collect()
        })
    }

    /// Takes candidates until none are left, the budget is spent, or this GPU fails.
    fn work(&self, gpu: &Gpu) -> Result<(), String> {
        let fail = |e: GpuError| format!("GPU {} ({}): {e}", gpu.ctx.ordinal(), gpu.name);
        let mut bench = Bench::new(gpu, self.desc, self.problem, self.case).map_err(fail)?;
        let result = self.take_candidates(&mut bench).map_err(fail);
        *lock(&self.load_time) += bench.load_time;
        result
    }

    fn take_candidates(&self, bench: &mut Bench<'_>) -> Result<(), GpuError> {
        loop {
            if self.out_of_time() {
                self.stopped.store(true, Ordering::Relaxed);
                return Ok(());
            }
            let Some(config) = self.ready.get(self.next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(());
            };
            let outcome = match bench.run(config, self.case, &self.race) {
                Ok(outcome) => outcome,
                Err(e) => {
                    // Recorded, so that the next sweep does not run the faulting config again.
                    let reason = format!("{e} (the GPU's context did not survive it)");
                    let record = Record::now(*self.problem, Outcome::Rejected { reason });
                    lock(&self.counts).add(&record.outcome);
                    self.recorder.write(vec![(*config, record)]);
                    return Err(e);
                }
            };
            lock(&self.counts).add(&outcome);
            let best = {
                let mut best = lock(&self.best);
                if let Some(ms) = outcome.median_ms()
                    && best.is_none_or(|(_, b)| ms < b)
                {
                    *best = Some((*config, ms));
                }
                *best
            };
            (self.on)(Event::Finished {
                config,
                outcome: &outcome,
                best,
            });
            self.recorder
                .write(vec![(*config, Record::now(*self.problem, outcome))]);
        }
    }

    /// The budget never stops a sweep before something is timed: a partial sweep must still
    /// have a winner.
    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d) && lock(&self.race).best_ms().is_some()
    }
}
