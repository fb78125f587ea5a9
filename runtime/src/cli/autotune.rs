//! `tessera autotune`: a sweep of a kernel's space for one problem, with a progress bar showing
//! the best so far, then the key's table; the results go to the tuning store, so a second run
//! with the same key times nothing.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::find_kernel;
use super::tune_report::{winner_line, write_entry};
use crate::Error;
use crate::gpu::Gpu;
use crate::tune::{self, Event, Options, Problem, Store, Summary, TuneError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel name, as `tessera list` prints it.
    kernel: String,
    /// The problem: batch, heads, kv heads, seq_q, seq_kv (e.g. 1,32,32,16384,16384). A window
    /// over 2 or 3 axes takes its token grid in place of the two lengths, which are its tokens
    /// (e.g. 1,16,16,56x56 or 1,16,16,16x32x32). A decode kernel (mustafar_*) takes one query
    /// token and its context's tokens (e.g. 1,32,8,1,32768).
    #[arg(long, value_name = "B,H,HKV,SQ,SKV")]
    shape: Problem,
    /// Stop starting candidates after this many seconds (codegen included); the best so far
    /// wins and the next run times the rest.
    #[arg(long, value_name = "N", value_parser = parse_budget)]
    budget_seconds: Option<f64>,
    /// Spread the candidates over every GPU of the same model as GPU 0.
    #[arg(long)]
    all_gpus: bool,
    /// Run every config again, even those the store has a record of.
    #[arg(long)]
    retune: bool,
    /// The tuning store [default: $TESSERA_TUNE_CACHE, else <user cache dir>/tessera/tune.json].
    #[arg(long, value_name = "PATH")]
    cache: Option<PathBuf>,
}

fn parse_budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), Error> {
    let desc = find_kernel(&args.kernel)?;
    // Before the GPU, so that a grid that does not fit the kernel fails at once, anywhere.
    args.shape
        .check_for(desc)
        .map_err(|why| TuneError::Problem {
            problem: args.shape,
            why,
        })?;
    let store = Store::resolve(args.cache.as_deref());
    let gpu = Gpu::open(0)?;
    let options = Options {
        budget: args.budget_seconds.map(Duration::from_secs_f64),
        retune: args.retune,
        all_gpus: args.all_gpus,
    };
    // Hidden by indicatif when stderr is not a terminal, so logs and pipes stay clean.
    let bar = ProgressBar::new(0);
    let summary = tune::sweep(&gpu, desc, &args.shape, &store, &options, &|event| {
        show(&bar, &event)
    });
    bar.finish_and_clear();
    let summary = summary?;
    report(desc.name, &args.shape, &summary, out).map_err(Error::Stdout)?;
    if let Some(e) = summary.store_error {
        return Err(Error::Tune(e.into()));
    }
    if !summary.gpu_errors.is_empty() {
        return Err(Error::TuneStopped(summary.gpu_errors.join("; ")));
    }
    Ok(())
}

fn show(bar: &ProgressBar, event: &Event<'_>) {
    let style = |template: &str| {
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
    };
    match event {
        Event::Compiling { total } => {
            bar.set_style(style("codegen {bar:30} {pos}/{len} {msg}"));
            bar.set_length(*total as u64);
            bar.set_position(0);
        }
        Event::Compiled { config } => {
            bar.inc(1);
            bar.set_message(config.to_string());
        }
        Event::Timing { total, gpus } => {
            let gpus = if *gpus == 1 {
                "GPU   ".to_string()
            } else {
                format!("{gpus} GPUs")
            };
            bar.set_style(style(&format!("{gpus} {{bar:30}} {{pos}}/{{len}} {{msg}}")));
            bar.set_length(*total as u64);
            bar.set_position(0);
            bar.set_message("");
        }
        Event::Finished { best, .. } => {
            bar.inc(1);
            if let Some((config, ms)) = best {
                bar.set_message(format!("best so far {config}: {ms:.4} ms"));
            }
        }
    }
}

fn report(
    kernel: &str,
    problem: &Problem,
    s: &Summary,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let key = &s.entry.key;
    writeln!(
        out,
        "{kernel} for {problem} on {}: key {} (bucket {})",
        key.device.describe(),
        &s.id[..12.min(s.id.len())],
        key.bucket
    )?;
    write_entry(&s.entry, out)?;
    writeln!(out)?;
    let c = &s.counts;
    if s.ran == 0 {
        writeln!(
            out,
            "timed 0 candidates: the store already had all {} configs of the space for this key",
            s.space
        )?;
    } else {
        writeln!(
            out,
            "ran {} of {} configs ({} already recorded): {} pruned, {} on {} GPU{}: {} timed, \
             {} eliminated early, {} rejected; {:.1} s wall ({:.1} s codegen, {:.1} s loading \
             modules)",
            s.ran,
            s.space,
            s.space - s.ran.min(s.space),
            c.pruned,
            c.on_gpu(),
            s.gpus,
            if s.gpus == 1 { "" } else { "s" },
            c.timed,
            c.eliminated,
            c.rejected,
            s.wall.as_secs_f64(),
            s.codegen.as_secs_f64(),
            s.load_time.as_secs_f64()
        )?;
    }
    if let Some(why) = &s.spills_unchecked {
        writeln!(out, "spills not checked ({})", first_line(why))?;
    }
    if c.untried > 0 {
        let why = if s.stopped_by_budget {
            "stopped by the budget"
        } else {
            "stopped by a GPU error"
        };
        writeln!(
            out,
            "{why} with {} configs untried; the next run times them",
            c.untried
        )?;
    }
    match winner_line(&s.entry) {
        Some(line) => writeln!(out, "{line}")?,
        None => writeln!(out, "no config passed; launches use the default config")?,
    }
    match &s.store_path {
        Some(path) => writeln!(out, "tuning store: {}", path.display()),
        None => writeln!(
            out,
            "tuning store disabled (${} is empty): nothing remembered",
            crate::tune::STORE_ENV
        ),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}
