//! Versioned record encoding: every value starts with one schema byte.
//!
//! | byte | body | written by |
//! |---|---|---|
//! | 1 | JSON of the domain type | the previous build for every record; this build for the records that stay JSON (receipts — mostly the byte-exact XML —, anomalies, feeds, journal, archive documents, acknowledgements) |
//! | 2 | postcard (compact binary, varints) of a dedicated storage record type ([`Compact`]) | this build for debt positions (the hot read model: 1 167 → 203 bytes for a one-option position) |
//!
//! Readers accept both: [`decode`] reads 1 (and 2 where the type is [`Compact`] through
//! [`decode_record`]). A postcard body is not self-describing: its record types are frozen —
//! any change of their fields needs a new schema byte and a new record type, never an edit.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::StorageError;

/// Schema byte of JSON records (the previous build wrote every record this way).
pub const SCHEMA_JSON: u8 = 1;
/// Schema byte of compact (postcard) records.
pub const SCHEMA_COMPACT: u8 = 2;

/// A domain type stored as a dedicated, frozen, compact record (schema byte 2).
pub trait Compact: Sized {
    /// The storage record (plain serde: no `flatten`, untagged or internally tagged enums,
    /// `skip_serializing_if`, `deserialize_any`).
    type Record: Serialize + DeserializeOwned;
    /// The record of a value.
    fn to_record(&self) -> Self::Record;
    /// The value of a record; `Err(reason)` when the record is not a valid value.
    fn from_record(record: Self::Record) -> Result<Self, String>;
}

/// Encodes a value as schema 1 (JSON).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(512);
    out.push(SCHEMA_JSON);
    serde_json::to_writer(&mut out, value).map_err(|e| StorageError::Encode {
        tree: "json",
        source: std::sync::Arc::new(e),
    })?;
    Ok(out)
}

/// Encodes a value as schema 2 (its compact record).
pub fn encode_record<T: Compact>(tree: &'static str, value: &T) -> Result<Vec<u8>, StorageError> {
    let out = vec![SCHEMA_COMPACT];
    postcard::to_extend(&value.to_record(), out).map_err(|e| StorageError::Encode {
        tree,
        source: std::sync::Arc::new(e),
    })
}

fn corrupt(tree: &'static str, key: &[u8], reason: String) -> StorageError {
    StorageError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).escape_debug().to_string(),
        reason,
    }
}

fn unknown_version(tree: &'static str, key: &[u8], v: u8) -> StorageError {
    corrupt(
        tree,
        key,
        format!(
            "schema version {v} is not readable by this build (knows {SCHEMA_JSON} and {SCHEMA_COMPACT})"
        ),
    )
}

/// Decodes a schema-1 (JSON) record.
pub fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StorageError> {
    match bytes.split_first() {
        Some((&SCHEMA_JSON, body)) => {
            serde_json::from_slice(body).map_err(|e| corrupt(tree, key, e.to_string()))
        }
        Some((&v, _)) => Err(unknown_version(tree, key, v)),
        None => Err(corrupt(tree, key, "empty record".into())),
    }
}

/// Decodes a record written with either schema: 1 (JSON of the domain type, as the previous
/// build wrote it) or 2 (the compact record).
pub fn decode_record<T: Compact + DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StorageError> {
    match bytes.split_first() {
        Some((&SCHEMA_JSON, body)) => {
            serde_json::from_slice(body).map_err(|e| corrupt(tree, key, e.to_string()))
        }
        Some((&SCHEMA_COMPACT, body)) => {
            let (record, rest) = postcard::take_from_bytes::<T::Record>(body)
                .map_err(|e| corrupt(tree, key, e.to_string()))?;
            if !rest.is_empty() {
                return Err(corrupt(
                    tree,
                    key,
                    format!("{} bytes after the record", rest.len()),
                ));
            }
            T::from_record(record).map_err(|reason| corrupt(tree, key, reason))
        }
        Some((&v, _)) => Err(unknown_version(tree, key, v)),
        None => Err(corrupt(tree, key, "empty record".into())),
    }
}
