//! Each result goes to the store as soon as it exists, so that a sweep killed half-way keeps
//! what it measured and the next one times only the rest.

use std::sync::{Mutex, PoisonError};

use tessera_desc::Config;

use super::record::{Entries, Entry, Record};
use super::store::{Store, StoreError};
use crate::parallel::lock;

/// Writes records to the store as they come, and keeps the merged entry for the report.
pub struct Recorder<'a> {
    store: &'a Store,
    id: String,
    pub entry: Mutex<Entry>,
    error: Mutex<Option<StoreError>>,
}

impl<'a> Recorder<'a> {
    /// `entry` is the key's entry as loaded, with the sweep's space added.
    pub fn new(store: &'a Store, id: String, entry: Entry) -> Recorder<'a> {
        Recorder {
            store,
            id,
            entry: Mutex::new(entry),
            error: Mutex::new(None),
        }
    }

    /// Records (and the space, always) merged into the store. A failed write is remembered
    /// and the sweep goes on: its timings are still worth reporting.
    pub fn write(&self, records: Vec<(Config, Record)>) {
        let update = {
            let mut entry = lock(&self.entry);
            for (config, record) in records {
                entry.records.insert(config.to_string(), record);
            }
            entry.clone()
        };
        let id = self.id.clone();
        let written = self.store.update(|entries| {
            entries.merge(Entries([(id, update)].into_iter().collect()));
        });
        if let Err(e) = written {
            lock(&self.error).get_or_insert(e);
        }
    }

    /// The entry with every record of this sweep, and the first failure to write it.
    pub fn into_entry(self) -> (Entry, Option<StoreError>) {
        let error = self
            .error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = self
            .entry
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        (entry, error)
    }
}
