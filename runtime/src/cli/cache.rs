//! `tessera cache`: the tuning store, listed, shown, cleared, exported and imported (so that an
//! application can ship the configs tuned for its problems and GPUs).

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use super::table::Table;
use super::tune_report::{winner_line, write_entry};
use crate::Error;
use crate::tune::{Entry, STORE_ENV, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// The tuning store [default: $TESSERA_TUNE_CACHE, else <user cache dir>/tessera/tune.json].
    #[arg(long, value_name = "PATH", global = true)]
    cache: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// One line per key: kernel, problem bucket, device, winner.
    Ls,
    /// Every record of the keys whose id starts with PREFIX.
    Show { prefix: String },
    /// Remove every entry, or those whose key id starts with PREFIX.
    Clear { prefix: Option<String> },
    /// Write every entry to FILE.
    Export { file: PathBuf },
    /// Merge the entries of FILE (written by `export`) into the store.
    Import { file: PathBuf },
}

pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), Error> {
    let store = Store::resolve(args.cache.as_deref());
    let Some(path) = store.path() else {
        return Err(Error::NoTuneStore { var: STORE_ENV });
    };
    let path = path.display().to_string();
    let stdout = |r: std::io::Result<()>| r.map_err(Error::Stdout);
    match &args.action {
        Action::Ls => {
            let entries = store.load().map_err(|e| Error::Tune(e.into()))?;
            stdout(list(entries.0.iter(), out))?;
            stdout(writeln!(out, "{} entries in {path}", entries.0.len()))
        }
        Action::Show { prefix } => {
            let entries = store.load().map_err(|e| Error::Tune(e.into()))?;
            let matching: Vec<_> = entries.matching(prefix).collect();
            if matching.is_empty() {
                return Err(Error::NoTuneEntry {
                    prefix: prefix.clone(),
                    path,
                });
            }
            for (i, (id, entry)) in matching.into_iter().enumerate() {
                if i > 0 {
                    stdout(writeln!(out))?;
                }
                stdout(show(id, entry, out))?;
            }
            Ok(())
        }
        Action::Clear { prefix } => {
            let n = store
                .clear(prefix.as_deref().unwrap_or(""))
                .map_err(|e| Error::Tune(e.into()))?;
            stdout(writeln!(out, "removed {n} entries from {path}"))
        }
        Action::Export { file } => {
            let n = store.export(file).map_err(|e| Error::Tune(e.into()))?;
            stdout(writeln!(
                out,
                "exported {n} entries from {path} to {}",
                file.display()
            ))
        }
        Action::Import { file } => {
            let n = store.import(file).map_err(|e| Error::Tune(e.into()))?;
            stdout(writeln!(
                out,
                "imported {n} entries from {} into {path}",
                file.display()
            ))
        }
    }
}

fn list<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Entry)>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut table = Table::new(vec![
        "key", "kernel", "seq_q", "seq_kv", "grid", "group", "device", "winner", "ms", "records",
    ]);
    for (id, entry) in entries {
        let k = &entry.key;
        let (winner, ms) = match entry.winner(|_| true) {
            Some((c, ms)) => (c.to_string(), format!("{ms:.4}")),
            None => ("-".to_string(), "-".to_string()),
        };
        // Configs with a record of those any sweep considered; fewer means a sweep stopped.
        let mut records = format!("{}/{}", entry.records.len(), entry.space.len());
        if !entry.untried().is_empty() {
            records.push_str(" partial");
        }
        table.row(vec![
            short(id).to_string(),
            k.kernel.clone(),
            format!("<={}", k.bucket.seq_q),
            format!("<={}", k.bucket.seq_kv),
            k.bucket.grid.map_or("-".to_string(), |g| g.to_string()),
            k.bucket.group.to_string(),
            k.device.describe(),
            winner,
            ms,
            records,
        ]);
    }
    table.write(out)
}

fn show(id: &str, entry: &Entry, out: &mut dyn Write) -> std::io::Result<()> {
    let k = &entry.key;
    writeln!(out, "key {id}")?;
    writeln!(
        out,
        "{} (description {}), tessera {}",
        k.kernel,
        short(&k.kernel_hash),
        k.tessera
    )?;
    writeln!(out, "problem bucket: {}", k.bucket)?;
    writeln!(out, "device: {}", k.device.describe())?;
    write_entry(entry, out)?;
    if let Some(line) = winner_line(entry) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Enough of a hash to tell keys apart on screen and to type as a prefix.
fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}
