//! The table of one tuning entry, shared by `tessera autotune` and `tessera cache show`: every
//! config the key has a record of, fastest first, relative to the winner.

use std::io::{self, Write};

use super::table::Table;
use crate::catalog;
use crate::tune::{Entry, Outcome};

/// Longest reason shown in the table; the full text follows it.
const NOTE_CHARS: usize = 60;

pub fn write_entry(entry: &Entry, out: &mut dyn Write) -> io::Result<()> {
    let default = default_config(entry);
    let winner = entry.winner(|_| true);
    let best_ms = winner.map(|(_, ms)| ms);
    let mut table = Table::new(vec!["config", "status", "ms", "TFLOP/s", "vs best", "note"]);
    let mut long_notes = Vec::new();
    for (config, record) in entry.ranked() {
        let ratio = |ms: f64| best_ms.map_or("-".to_string(), |b| format!("{:.2}x", ms / b));
        let (ms, tflops, vs, mut note) = match &record.outcome {
            Outcome::Timed {
                median_ms, tflops, ..
            } => (
                format!("{median_ms:.4}"),
                format!("{tflops:.1}"),
                ratio(*median_ms),
                String::new(),
            ),
            Outcome::Eliminated { quick_ms, reps, .. } => (
                format!("{quick_ms:.4}"),
                "-".to_string(),
                ratio(*quick_ms),
                format!("median of {reps} launches"),
            ),
            Outcome::Rejected { reason } | Outcome::Pruned { reason } => {
                if reason.contains('\n') || reason.chars().count() > NOTE_CHARS {
                    long_notes.push((config, reason));
                }
                let first = reason.lines().next().unwrap_or_default();
                let short: String = first.chars().take(NOTE_CHARS).collect();
                let cut = short.len() < reason.len();
                let note = if cut { format!("{short}...") } else { short };
                ("-".to_string(), "-".to_string(), "-".to_string(), note)
            }
        };
        let mut tags = Vec::new();
        if winner.is_some_and(|(w, _)| w == config) {
            tags.push("WINNER");
        }
        if default.as_deref() == Some(config) {
            tags.push("default");
        }
        if !tags.is_empty() {
            let tags = tags.join(", ");
            note = if note.is_empty() {
                tags
            } else {
                format!("{tags}; {note}")
            };
        }
        table.row(vec![
            config.to_string(),
            record.outcome.label().to_string(),
            ms,
            tflops,
            vs,
            note,
        ]);
    }
    for config in entry.untried() {
        table.row(vec![
            config.to_string(),
            "untried".to_string(),
            "-".to_string(),
            "-".to_string(),
            "-".to_string(),
            "the sweep stopped first".to_string(),
        ]);
    }
    table.write(out)?;
    for (config, reason) in long_notes {
        writeln!(out, "\n{config}:\n{}", reason.trim_end())?;
    }
    Ok(())
}

/// The winner against the default config, in one line, when both were timed.
pub fn winner_line(entry: &Entry) -> Option<String> {
    let (winner, ms) = entry.winner(|_| true)?;
    let tflops = match entry.records.get(winner).map(|r| &r.outcome) {
        Some(Outcome::Timed { tflops, .. }) => format!(", {tflops:.1} TFLOP/s"),
        _ => String::new(),
    };
    let mut line = format!("winner {winner}: {ms:.4} ms{tflops}");
    if let Some(default) = default_config(entry) {
        let versus = match entry.records.get(&default).map(|r| &r.outcome) {
            _ if default == winner => "it is the default config".to_string(),
            Some(Outcome::Timed { median_ms, .. }) => format!(
                "the default config ({default}) takes {median_ms:.4} ms, {:.2}x as long",
                median_ms / ms
            ),
            Some(o) => format!("the default config ({default}) was {}", o.label()),
            None => format!("the default config ({default}) was not run"),
        };
        line.push_str(&format!("; {versus}"));
    }
    Some(line)
}

/// The default config of a catalog kernel (user kernels are not known to the CLI).
fn default_config(entry: &Entry) -> Option<String> {
    let desc = catalog::find(&entry.key.kernel)?;
    Some(desc.default_config()?.to_string())
}
