//! Versioned record encoding: one schema-version byte, then JSON.

use serde::{de::DeserializeOwned, Serialize};

use crate::StorageError;

/// Current schema version of every record written by this build.
pub const SCHEMA_VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(512);
    out.push(SCHEMA_VERSION);
    serde_json::to_writer(&mut out, value).map_err(|e| StorageError::Io(e.to_string()))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    match bytes.split_first() {
        Some((&SCHEMA_VERSION, body)) => {
            serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!(
            "schema version {v} is not readable by this build (knows {SCHEMA_VERSION})"
        ))),
        None => Err(corrupt("empty record".into())),
    }
}
