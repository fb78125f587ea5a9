//! safetensors files: a JSON header of names, dtypes, shapes and offsets, then raw bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{SafeTensorError, SafeTensors};

use super::HostTensor;
use crate::Error;

/// A safetensors file read into memory, its header checked.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<TensorFile, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let file = TensorFile {
            path: path.to_path_buf(),
            bytes,
        };
        file.parse()?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies tensor `name` out of the file.
    pub fn tensor(&self, name: &str) -> Result<HostTensor, Error> {
        let parsed = self.parse()?;
        let view = parsed.tensor(name).map_err(|_| {
            let mut found = parsed.names();
            found.sort();
            Error::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
                found: if found.is_empty() {
                    "no tensors".to_string()
                } else {
                    found.join(", ")
                },
            }
        })?;
        Ok(HostTensor {
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            bytes: view.data().to_vec(),
        })
    }

    // Parsing only the header again is cheaper than keeping a view that borrows `bytes`.
    fn parse(&self) -> Result<SafeTensors<'_>, Error> {
        SafeTensors::deserialize(&self.bytes).map_err(|source| Error::Safetensors {
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes `tensors` under their names, with `metadata` as the file's string-to-string
/// `__metadata__`. An existing file is replaced.
pub fn write_tensors(
    path: &Path,
    tensors: &[(&str, &HostTensor)],
    metadata: &[(&str, String)],
) -> Result<(), Error> {
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let metadata = (!metadata.is_empty()).then_some(metadata);
    safetensors::serialize_to_file(tensors.iter().copied(), metadata, path).map_err(|e| {
        Error::WriteFile {
            path: path.to_path_buf(),
            source: match e {
                SafeTensorError::IoError(e) => e,
                // A tensor whose bytes do not match its shape: a bug here, not in the user's file.
                e => std::io::Error::other(e),
            },
        }
    })
}
