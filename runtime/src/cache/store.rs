//! Reading and atomically writing entries in the cache directory.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::entry;
use super::key::Key;

/// Why an entry was not served.
pub(super) enum Miss {
    Missing,
    Unreadable(io::Error),
    Corrupt(String),
}

pub(super) fn path(dir: &Path, key: &Key) -> PathBuf {
    dir.join(format!("{key}.ptx"))
}

pub(super) fn read(dir: &Path, key: &Key) -> Result<String, Miss> {
    let bytes = match fs::read(path(dir, key)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Miss::Missing),
        Err(e) => return Err(Miss::Unreadable(e)),
    };
    entry::decode(key, &bytes)
        .map(str::to_owned)
        .map_err(Miss::Corrupt)
}

/// Process-wide, so that several `Cache`s of one process sharing a directory never pick the
/// same temporary name.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes the entry atomically (see [`write_atomic`]). Two writers of one key race harmlessly:
/// both write the same text and the last rename wins.
///
/// No fsync: after a power loss the entry may come back empty or torn, and the checksum turns
/// that into a rebuild, which costs less than syncing every write.
pub(super) fn write(dir: &Path, key: &Key, ptx: &str) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    write_atomic(
        &path(dir, key),
        key.as_str(),
        entry::encode(key, ptx).as_bytes(),
    )
}

/// Writes `bytes` to `path` under a temporary name in the same directory (named after `stem`),
/// then renames it into place: a rename within a directory is atomic, so readers in this or any
/// other process see either the old file, no file, or the whole new one, never a partial write.
/// A process killed mid-write leaves only its temporary file, which no reader ever opens.
pub(crate) fn write_atomic(path: &Path, stem: &str, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (tmp, mut file) = create_temp(dir, stem)?;
    let written = file.write_all(bytes);
    // Closed before the rename: Windows refuses to rename a file that is still open.
    drop(file);
    let written = written.and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        // Best effort: the write already failed, and a leftover temp file is never read.
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// A new file whose name is unique to this process and call. `create_new` guards against a
/// stale file left by a crashed process whose pid has been reused.
fn create_temp(dir: &Path, stem: &str) -> io::Result<(PathBuf, fs::File)> {
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..16 {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{stem}.{pid}.{n}.tmp"));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}
