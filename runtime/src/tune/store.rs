//! The persistent tuning store: one JSON file, by default `<user cache dir>/tessera/tune.json`,
//! else `$TESSERA_TUNE_CACHE` (an empty value turns persistence off) or a `--cache` flag.
//!
//! Concurrency: every write takes an exclusive lock on a sibling `.lock` file, reads the
//! current file, merges into it and replaces it by an atomic rename, so concurrent processes
//! each add their records and lose none of the others'. Readers take no lock: the rename means
//! they see a whole old or a whole new file. The lock file is never deleted (deleting it would
//! let two writers lock two different files).
//!
//! Damage: a file that does not parse, or was written by another format version, is reported on
//! stderr and treated as empty, so the next write rebuilds it; an entry whose id does not match
//! its key is dropped the same way. A process killed mid-write leaves only a temporary file
//! that is never read (the PTX cache's `write_atomic`).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::Entries;
use crate::cache::write_atomic;

/// Environment variable naming the store file.
pub const ENV: &str = "TESSERA_TUNE_CACHE";

/// Version of the file format; a file with another is rebuilt rather than misread.
const FORMAT: &str = "tessera-tune v1";

/// Read after the header has been checked.
#[derive(Deserialize)]
struct Body {
    entries: Entries,
}

/// Read first, so that a file of another version is told apart from a corrupt one.
#[derive(Deserialize)]
struct Header {
    format: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("tuning cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a tessera tuning cache of this version: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
}

/// Why a file's contents were not (all) used.
#[derive(Debug, PartialEq)]
pub(super) enum Damage {
    Corrupt(String),
    Foreign(String),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Corrupt(why) => write!(f, "is corrupt ({why})"),
            Damage::Foreign(format) => {
                write!(f, "has format {format:?}, not {FORMAT:?}")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    path: Option<PathBuf>,
}

impl Store {
    /// The store in `path`.
    pub fn at(path: impl Into<PathBuf>) -> Store {
        Store {
            path: Some(path.into()),
        }
    }

    /// A store that remembers nothing: every read is empty, every write is dropped.
    pub fn disabled() -> Store {
        Store { path: None }
    }

    /// `flag` if given, else `$TESSERA_TUNE_CACHE`, else the user's cache directory.
    pub fn resolve(flag: Option<&Path>) -> Store {
        Store {
            path: path_from(
                flag.map(Path::to_path_buf),
                std::env::var_os(ENV),
                dirs::cache_dir(),
            ),
        }
    }

    pub fn from_env() -> Store {
        Store::resolve(None)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Every entry, without locking. Damage is reported on stderr and yields what could be
    /// read (nothing for a corrupt or foreign file).
    pub fn load(&self) -> Result<Entries, StoreError> {
        match &self.path {
            Some(path) => read_or_report(path, "it is rebuilt on the next write"),
            None => Ok(Entries::default()),
        }
    }

    /// What is wrong with the file, if anything (no file yet is fine): what `load` reports on
    /// stderr before it uses what it could read.
    pub fn damage(&self) -> Result<Option<String>, StoreError> {
        let Some(bytes) = self.path.as_deref().map(read).transpose()?.flatten() else {
            return Ok(None);
        };
        Ok(match decode(&bytes) {
            Ok((_, 0)) => None,
            Ok((_, dropped)) => Some(format!("{dropped} entries do not match their key ids")),
            Err(damage) => Some(format!("the file {damage}")),
        })
    }

    /// Runs `f` on the current entries under the lock and writes the result back atomically.
    /// A disabled store runs `f` on no entries and writes nothing.
    pub fn update<R>(&self, f: impl FnOnce(&mut Entries) -> R) -> Result<R, StoreError> {
        let Some(path) = &self.path else {
            return Ok(f(&mut Entries::default()));
        };
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let lock = lock(path).map_err(io)?;
        let mut entries = read_or_report(path, "rebuilding it")?;
        let result = f(&mut entries);
        write_atomic(path, &stem(path), &encode(&entries).map_err(io)?).map_err(io)?;
        drop(lock);
        Ok(result)
    }

    /// Removes the entries whose id starts with `prefix` (all for ""), returning how many.
    pub fn clear(&self, prefix: &str) -> Result<usize, StoreError> {
        self.update(|entries| {
            let before = entries.0.len();
            entries.0.retain(|id, _| !id.starts_with(prefix));
            before - entries.0.len()
        })
    }

    /// Writes every entry to `to`, in the store's own format; returns how many.
    pub fn export(&self, to: &Path) -> Result<usize, StoreError> {
        let entries = self.load()?;
        let io = |source| StoreError::Io {
            path: to.to_path_buf(),
            source,
        };
        write_atomic(to, &stem(to), &encode(&entries).map_err(io)?).map_err(io)?;
        Ok(entries.0.len())
    }

    /// Merges the entries of an exported file in; returns how many it held. Unlike the store
    /// itself, a damaged file is an error: the user named it, and silently importing nothing
    /// would hide the problem.
    pub fn import(&self, from: &Path) -> Result<usize, StoreError> {
        let bytes = fs::read(from).map_err(|source| StoreError::Io {
            path: from.to_path_buf(),
            source,
        })?;
        let (incoming, dropped) = decode(&bytes).map_err(|d| StoreError::Invalid {
            path: from.to_path_buf(),
            why: d.to_string(),
        })?;
        if dropped > 0 {
            return Err(StoreError::Invalid {
                path: from.to_path_buf(),
                why: format!("{dropped} entries do not match their key ids"),
            });
        }
        let n = incoming.0.len();
        self.update(|entries| entries.merge(incoming))?;
        Ok(n)
    }
}

/// The store file for a `--cache` flag, a `TESSERA_TUNE_CACHE` value and the user's cache
/// directory.
pub(super) fn path_from(
    flag: Option<PathBuf>,
    var: Option<OsString>,
    user_cache: Option<PathBuf>,
) -> Option<PathBuf> {
    if flag.is_some() {
        return flag;
    }
    match var {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => user_cache.map(|d| d.join("tessera").join("tune.json")),
    }
}

/// The blocking exclusive lock, released when the returned file is closed (also by a crash:
/// the OS drops the locks of a dead process).
fn lock(path: &Path) -> io::Result<File> {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_file_name(name))?;
    file.lock()?;
    Ok(file)
}

fn stem(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "tune".to_string(), |n| n.to_string_lossy().into_owned())
}

/// The file's bytes, or `None` when there is no file yet.
fn read(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_or_report(path: &Path, then: &str) -> Result<Entries, StoreError> {
    let Some(bytes) = read(path)? else {
        return Ok(Entries::default());
    };
    match decode(&bytes) {
        Ok((entries, 0)) => Ok(entries),
        Ok((entries, dropped)) => {
            eprintln!(
                "tessera: tuning cache {}: dropped {dropped} entries that do not match their \
                 key ids; {then}",
                path.display()
            );
            Ok(entries)
        }
        Err(damage) => {
            eprintln!("tessera: tuning cache {} {damage}; {then}", path.display());
            Ok(Entries::default())
        }
    }
}

/// The entries of a file, and how many were dropped for not matching their ids (a hand edit
/// or a bit flip that still parses).
pub(super) fn decode(bytes: &[u8]) -> Result<(Entries, usize), Damage> {
    let header: Header =
        serde_json::from_slice(bytes).map_err(|e| Damage::Corrupt(e.to_string()))?;
    if header.format != FORMAT {
        return Err(Damage::Foreign(header.format));
    }
    let body: Body = serde_json::from_slice(bytes).map_err(|e| Damage::Corrupt(e.to_string()))?;
    let mut entries = body.entries;
    let before = entries.0.len();
    entries.0.retain(|id, entry| *id == entry.key.id());
    let dropped = before - entries.0.len();
    Ok((entries, dropped))
}

/// The file's bytes. Timings are finite by construction (see `measure`): JSON has no NaN, and
/// serde_json would write one as `null`, which would then fail to read back.
fn encode(entries: &Entries) -> io::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct BodyRef<'a> {
        format: &'a str,
        entries: &'a Entries,
    }
    let body = BodyRef {
        format: FORMAT,
        entries,
    };
    let mut out = serde_json::to_vec_pretty(&body).map_err(io::Error::other)?;
    out.push(b'\n');
    Ok(out)
}
