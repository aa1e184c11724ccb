//! Integrity of uploaded feeds (FORMAT.md §5.2): our own SHA-256 of every upload, and the
//! optional checksum the Ente supplies — a `<basename>.md5` / `<basename>.sha256` sidecar on the
//! file channels, or the `checksum` parameter of the HTTP upload (`sha256:<hex>` / `md5:<hex>`).
//! A mismatch is the file-level error `FILE_CHECKSUM_MISMATCH`: nothing is applied.
//!
//! Digests are computed by the `sha2` and `md-5` crates over the bytes as received (the zip or
//! the CSV), streaming.

use std::io::Read;

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ErrorCode, FeedFileError};

/// Largest sidecar read, bytes (a digest line, possibly with a file name).
pub const MAX_SIDECAR_BYTES: u64 = 4096;

/// A digest algorithm accepted for the Ente-supplied checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    /// MD5 (MyPay's `.md5` sidecar).
    Md5,
    /// SHA-256.
    Sha256,
}

impl ChecksumAlgorithm {
    /// `md5` / `sha256`: the parameter prefix and the sidecar extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha256 => "sha256",
        }
    }

    /// Length of the hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha256 => 64,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md5" => Some(Self::Md5),
            "sha256" | "sha-256" => Some(Self::Sha256),
            _ => None,
        }
    }
}

/// Where an expected checksum came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ChecksumSource {
    /// The `checksum` parameter of the HTTP upload.
    Parameter,
    /// A sidecar file next to the upload (its name).
    Sidecar {
        /// Sidecar file name (`c_x000-FLOW-1_3.md5`).
        name: String,
    },
}

impl std::fmt::Display for ChecksumSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Parameter => f.write_str("parametro checksum"),
            Self::Sidecar { name } => write!(f, "file {name}"),
        }
    }
}

/// A checksum the Ente says the upload has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedChecksum {
    /// Algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// Lower-case hex digest.
    pub hex: String,
    /// Where it came from.
    pub source: ChecksumSource,
}

fn is_hex_of(s: &str, alg: ChecksumAlgorithm) -> bool {
    s.len() == alg.hex_len() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl ExpectedChecksum {
    /// Parses the HTTP `checksum` parameter: `sha256:<64 hex>` or `md5:<32 hex>` (algorithm and
    /// hex case-insensitive).
    ///
    /// # Errors
    /// A message saying what is expected.
    pub fn parse_parameter(s: &str) -> Result<Self, String> {
        const SHAPE: &str = "expected sha256:<64 hex digits> or md5:<32 hex digits>";
        let (alg, hex) = s.trim().split_once(':').ok_or(SHAPE)?;
        let algorithm = ChecksumAlgorithm::parse(alg).ok_or(SHAPE)?;
        let hex = hex.trim();
        if !is_hex_of(hex, algorithm) {
            return Err(SHAPE.to_string());
        }
        Ok(Self {
            algorithm,
            hex: hex.to_ascii_lowercase(),
            source: ChecksumSource::Parameter,
        })
    }

    /// Parses the content of a sidecar: the bare hex digest, the `md5sum` / `sha256sum` line
    /// (`<hex>  <file>` or `<hex> *<file>`) or the BSD line (`SHA256 (<file>) = <hex>`). The file
    /// name written in the line, if any, is not checked (the sidecar is paired by its own name).
    ///
    /// # Errors
    /// A message (Italian, it ends up in the report) when no digest of the right length is found.
    pub fn parse_sidecar(
        algorithm: ChecksumAlgorithm,
        sidecar_name: &str,
        content: &[u8],
    ) -> Result<Self, String> {
        let bad = || {
            format!(
                "il file {sidecar_name} non contiene un {} valido ({} cifre esadecimali)",
                algorithm.as_str().to_ascii_uppercase(),
                algorithm.hex_len()
            )
        };
        let text = std::str::from_utf8(content).map_err(|_| bad())?;
        let text = text.trim_start_matches('\u{feff}');
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or_else(bad)?;
        let candidate = match line.rsplit_once(" = ") {
            Some((_, hex)) if line.contains('(') => hex.trim(),
            _ => line.split_whitespace().next().unwrap_or(""),
        };
        if !is_hex_of(candidate, algorithm) {
            return Err(bad());
        }
        Ok(Self {
            algorithm,
            hex: candidate.to_ascii_lowercase(),
            source: ChecksumSource::Sidecar {
                name: sidecar_name.to_string(),
            },
        })
    }

    /// [`ExpectedChecksum::parse_sidecar`], or, for a sidecar without a usable digest, an
    /// expectation that never matches and shows what the sidecar held (at most 80 printable
    /// characters): a broken sidecar fails the load (`FILE_CHECKSUM_MISMATCH`) rather than
    /// being ignored.
    pub fn from_sidecar(algorithm: ChecksumAlgorithm, sidecar_name: &str, content: &[u8]) -> Self {
        Self::parse_sidecar(algorithm, sidecar_name, content).unwrap_or_else(|_| {
            let shown: String = String::from_utf8_lossy(content)
                .trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect();
            Self {
                algorithm,
                hex: format!("{shown:?} (non valido)"),
                source: ChecksumSource::Sidecar {
                    name: sidecar_name.to_string(),
                },
            }
        })
    }

    /// The digest of `digests` for this algorithm (`None` if it was not computed).
    pub fn actual<'a>(&self, digests: &'a FileDigests) -> Option<&'a str> {
        match self.algorithm {
            ChecksumAlgorithm::Sha256 => Some(digests.sha256.as_str()),
            ChecksumAlgorithm::Md5 => digests.md5.as_deref(),
        }
    }

    /// Whether the file has this checksum.
    pub fn matches(&self, digests: &FileDigests) -> bool {
        self.actual(digests).is_some_and(|a| a == self.hex)
    }
}

/// The sidecar names paired with an uploaded file, in the order they are looked for:
/// `<basename>.md5`, `<file>.md5`, `<basename>.sha256`, `<file>.sha256` (FORMAT.md §5.2 names
/// the first form; the second is what `md5sum` users tend to write).
pub fn sidecar_names(file_name: &str) -> Vec<(ChecksumAlgorithm, String)> {
    let lower = file_name.to_ascii_lowercase();
    let stem = if lower.ends_with(".csv") || lower.ends_with(".zip") {
        file_name.get(..file_name.len() - 4).unwrap_or(file_name)
    } else {
        file_name
    };
    let mut out = Vec::new();
    for alg in [ChecksumAlgorithm::Md5, ChecksumAlgorithm::Sha256] {
        out.push((alg, format!("{stem}.{}", alg.as_str())));
        if stem != file_name {
            out.push((alg, format!("{file_name}.{}", alg.as_str())));
        }
    }
    out
}

/// Digests of an uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDigests {
    /// SHA-256, lower-case hex (always computed: "we always store our own SHA-256").
    pub sha256: String,
    /// MD5, lower-case hex, when asked for.
    pub md5: Option<String>,
    /// Size in bytes.
    pub bytes: u64,
}

/// Computes the SHA-256 (and the MD5 when `with_md5`) of everything `input` yields, 64 KiB at
/// a time.
///
/// # Errors
/// I/O errors of `input`.
pub fn digest<R: Read>(mut input: R, with_md5: bool) -> std::io::Result<FileDigests> {
    let mut sha = Sha256::new();
    let mut md5 = with_md5.then(Md5::new);
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or(&[]);
        sha.update(chunk);
        if let Some(m) = md5.as_mut() {
            m.update(chunk);
        }
        bytes += n as u64;
    }
    Ok(FileDigests {
        sha256: hex::encode(sha.finalize()),
        md5: md5.map(|m| hex::encode(m.finalize())),
        bytes,
    })
}

/// The `FILE_CHECKSUM_MISMATCH` error for the checksums that did not match (FORMAT.md §5.2).
pub fn mismatch_error(failed: &[(&ExpectedChecksum, Option<&str>)]) -> FeedFileError {
    let parts: Vec<String> = failed
        .iter()
        .map(|(e, actual)| {
            format!(
                "{} atteso {} ({}), calcolato {}",
                e.algorithm.as_str().to_ascii_uppercase(),
                e.hex,
                e.source,
                actual.unwrap_or("-")
            )
        })
        .collect();
    FeedFileError::new(
        ErrorCode::FileChecksumMismatch,
        format!(
            "il file ricevuto non corrisponde al checksum dichiarato: {}; nulla è stato caricato",
            parts.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_known_input() {
        let d = digest(&b"abc"[..], true).unwrap();
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.md5.as_deref(), Some("900150983cd24fb0d6963f7d28e17f72"));
        assert_eq!(d.bytes, 3);
        assert_eq!(digest(&b"abc"[..], false).unwrap().md5, None);
    }

    #[test]
    fn parameter_syntax() {
        let c = ExpectedChecksum::parse_parameter("MD5:900150983CD24FB0D6963F7D28E17F72").unwrap();
        assert_eq!(c.algorithm, ChecksumAlgorithm::Md5);
        assert_eq!(c.hex, "900150983cd24fb0d6963f7d28e17f72");
        assert!(c.matches(&digest(&b"abc"[..], true).unwrap()));
        assert!(!c.matches(&digest(&b"abd"[..], true).unwrap()));
        for bad in [
            "900150983cd24fb0d6963f7d28e17f72",
            "md5:900150983cd24fb0d6963f7d28e17f7",
            "sha256:900150983cd24fb0d6963f7d28e17f72",
            "sha1:a9993e364706816aba3e25717850c26c9cd0d89d",
            "md5:z00150983cd24fb0d6963f7d28e17f72",
        ] {
            assert!(ExpectedChecksum::parse_parameter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sidecar_forms() {
        let h = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        for content in [
            h.to_string(),
            format!("{h}\n"),
            format!("{h}  c_x000-F-1_3.zip\n"),
            format!("{h} *c_x000-F-1_3.zip\r\n"),
            format!("SHA256 (c_x000-F-1_3.zip) = {}\n", h.to_uppercase()),
        ] {
            let c = ExpectedChecksum::parse_sidecar(
                ChecksumAlgorithm::Sha256,
                "c_x000-F-1_3.sha256",
                content.as_bytes(),
            )
            .unwrap();
            assert_eq!(c.hex, h, "{content}");
        }
        assert!(
            ExpectedChecksum::parse_sidecar(ChecksumAlgorithm::Md5, "x.md5", h.as_bytes()).is_err()
        );
        assert!(ExpectedChecksum::parse_sidecar(ChecksumAlgorithm::Md5, "x.md5", b"").is_err());
        let broken = ExpectedChecksum::from_sidecar(ChecksumAlgorithm::Md5, "x.md5", b"oops\n");
        assert_eq!(broken.hex, "\"oops\" (non valido)");
        assert!(!broken.matches(&digest(&b"oops"[..], true).unwrap()));
        assert_eq!(
            sidecar_names("c_x000-F-1_3.zip")
                .into_iter()
                .map(|(_, n)| n)
                .collect::<Vec<_>>(),
            [
                "c_x000-F-1_3.md5",
                "c_x000-F-1_3.zip.md5",
                "c_x000-F-1_3.sha256",
                "c_x000-F-1_3.zip.sha256"
            ]
        );
    }
}
