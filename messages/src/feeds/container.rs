//! File names, zip containers and `manifest.json` (FORMAT.md §5.2, §5.6).

use std::io::{Read, Seek, Write};

use serde::{Deserialize, Serialize};

use super::{ErrorCode, FeedFileError, FeedMode, FeedVersion};

/// Name of the optional manifest inside a zip (FORMAT.md §5.6).
pub const MANIFEST_NAME: &str = "manifest.json";

/// A MyPay-compatible file name `<codIpaEnte>-<flowId>-<versionToken>.(zip|csv)`
/// (FORMAT.md §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedFileName {
    /// The Ente IPA code (first part).
    pub ipa_code: String,
    /// The flow id (`[A-Za-z0-9_.]{1,50}`).
    pub flow_id: String,
    /// The version token.
    pub version: FeedVersion,
    /// `<ipa>-<flowId>-<token>`, without extension.
    pub basename: String,
    /// True for `.zip`.
    pub zipped: bool,
}

/// Checks a flow id given to the REST API (or derived there from the file name): 1 to 50
/// characters of `[A-Za-z0-9_.-]`, not made of dots only (`.` and `..` are path segments no URL
/// can reach). Such an id is safe in a URL path and in a header as it is.
///
/// # Errors
/// The reason, in English, for the API's problem JSON.
pub fn check_rest_flow_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > 50 {
        return Err("must be 1 to 50 characters of [A-Za-z0-9_.-]");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("may contain only letters, digits, '_', '.' and '-' ([A-Za-z0-9_.-]{1,50})");
    }
    if id.bytes().all(|b| b == b'.') {
        return Err("may not be made of dots only (it would not be reachable in a URL)");
    }
    Ok(())
}

impl FeedFileName {
    /// Parses a file name (any leading directories are ignored).
    ///
    /// # Errors
    /// `FILE_NAME_INVALID` with the reason.
    pub fn parse(name: &str) -> Result<Self, FeedFileError> {
        let bad = |why: &str| {
            FeedFileError::new(
                ErrorCode::FileNameInvalid,
                format!("nome file {name:?} non valido: {why} (atteso <codIpaEnte>-<idFlusso>-<versione>.zip|csv)"),
            )
        };
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        let lower = base.to_ascii_lowercase();
        let (stem, zipped) = if lower.ends_with(".zip") {
            (base.get(..base.len() - 4).unwrap_or(""), true)
        } else if lower.ends_with(".csv") {
            (base.get(..base.len() - 4).unwrap_or(""), false)
        } else {
            return Err(bad("estensione diversa da .zip o .csv"));
        };
        let parts: Vec<&str> = stem.split('-').collect();
        let [ipa, flow, token] = parts.as_slice() else {
            return Err(bad("servono esattamente 3 parti separate da '-'"));
        };
        if ipa.is_empty() {
            return Err(bad("codice IPA vuoto"));
        }
        if flow.is_empty()
            || flow.len() > 50
            || !flow
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            || flow.bytes().all(|b| b == b'.')
        {
            return Err(bad(
                "idFlusso deve essere [A-Za-z0-9_.]{1,50} e non di soli punti",
            ));
        }
        let version = FeedVersion::from_token(token)
            .ok_or_else(|| bad("versione non tra 1_0 1_1 1_2 1_3 1_4 2_0 2_0_eng govpay"))?;
        Ok(Self {
            ipa_code: (*ipa).to_string(),
            flow_id: (*flow).to_string(),
            version,
            basename: stem.to_string(),
            zipped,
        })
    }
}

/// `manifest.json` of a file-drop zip (FORMAT.md §5.6). The cancel ratio is kept in per-mille
/// (integer arithmetic only): `0.20` → 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedManifest {
    /// `mode`.
    pub mode: FeedMode,
    /// `scope.tipiDovuto` (`None` = the values present in the file).
    pub tipi_dovuto: Option<Vec<String>>,
    /// `scope.annoRiferimento`, kept but not used.
    pub anno_riferimento: Option<i32>,
    /// `maxCancelRatio` in per-mille (default 200).
    pub max_cancel_permille: u32,
    /// `allowEmpty` (default false).
    pub allow_empty: bool,
    /// `dryRun` (default false).
    pub dry_run: bool,
}

impl Default for FeedManifest {
    fn default() -> Self {
        Self {
            mode: FeedMode::Delta,
            tipi_dovuto: None,
            anno_riferimento: None,
            max_cancel_permille: 200,
            allow_empty: false,
            dry_run: false,
        }
    }
}

/// `0.2`, `0.20`, `1`, `0.125` → per-mille, without floating point.
fn ratio_permille(s: &str) -> Option<u32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u32 = int.parse().ok()?;
    let mut f3: String = frac.chars().take(3).collect();
    while f3.len() < 3 {
        f3.push('0');
    }
    let permille = int
        .checked_mul(1000)?
        .checked_add(f3.parse::<u32>().ok()?)?;
    (permille <= 1000).then_some(permille)
}

impl FeedManifest {
    /// Parses `manifest.json`.
    ///
    /// # Errors
    /// `FILE_NO_CSV` (the container is malformed) naming the problem.
    pub fn parse(json: &str) -> Result<Self, FeedFileError> {
        let bad = |why: String| {
            FeedFileError::new(
                ErrorCode::FileNoCsv,
                format!("manifest.json non valido: {why}"),
            )
        };
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        let mut m = Self::default();
        if let Some(mode) = v.get("mode") {
            m.mode = match mode.as_str().map(str::to_ascii_uppercase).as_deref() {
                Some("FULL") => FeedMode::Full,
                Some("DELTA") => FeedMode::Delta,
                _ => return Err(bad("mode deve essere DELTA o FULL".into())),
            };
        }
        if let Some(scope) = v.get("scope").filter(|s| !s.is_null()) {
            if let Some(t) = scope.get("tipiDovuto").filter(|t| !t.is_null()) {
                let list = t
                    .as_array()
                    .ok_or_else(|| bad("scope.tipiDovuto deve essere un array".into()))?
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("scope.tipiDovuto deve contenere stringhe".into()))?;
                m.tipi_dovuto = Some(list);
            }
            if let Some(a) = scope.get("annoRiferimento").filter(|a| !a.is_null()) {
                m.anno_riferimento = Some(
                    a.as_i64()
                        .and_then(|x| i32::try_from(x).ok())
                        .ok_or_else(|| bad("scope.annoRiferimento deve essere un anno".into()))?,
                );
            }
        }
        if let Some(r) = v.get("maxCancelRatio").filter(|r| !r.is_null()) {
            let text = match r {
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(bad("maxCancelRatio deve essere un numero".into())),
            };
            m.max_cancel_permille = ratio_permille(&text)
                .ok_or_else(|| bad("maxCancelRatio deve essere tra 0 e 1".into()))?;
        }
        if let Some(b) = v.get("allowEmpty").filter(|b| !b.is_null()) {
            m.allow_empty = b
                .as_bool()
                .ok_or_else(|| bad("allowEmpty deve essere booleano".into()))?;
        }
        if let Some(b) = v.get("dryRun").filter(|b| !b.is_null()) {
            m.dry_run = b
                .as_bool()
                .ok_or_else(|| bad("dryRun deve essere booleano".into()))?;
        }
        Ok(m)
    }
}

/// Zip-bomb guards for [`extract_zip`]. FORMAT.md gives none in numbers; these defaults are
/// ours (see the module report): at most 16 entries, a CSV of at most 512 MiB uncompressed, a
/// compression ratio of at most 200:1 (checked on the declared sizes *and* on the bytes really
/// produced), a manifest of at most 64 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    /// Most entries in the archive.
    pub max_entries: usize,
    /// Largest uncompressed CSV, bytes.
    pub max_csv_bytes: u64,
    /// Largest ratio uncompressed / compressed.
    pub max_ratio: u64,
    /// Largest manifest, bytes.
    pub max_manifest_bytes: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        Self {
            max_entries: 16,
            max_csv_bytes: 512 * 1024 * 1024,
            max_ratio: 200,
            max_manifest_bytes: 64 * 1024,
        }
    }
}

/// What [`extract_zip`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipContents {
    /// Name of the CSV entry.
    pub csv_name: String,
    /// Bytes of CSV written.
    pub csv_bytes: u64,
    /// The manifest, if present.
    pub manifest: Option<FeedManifest>,
}

fn container(msg: impl Into<String>) -> FeedFileError {
    FeedFileError::new(ErrorCode::FileNoCsv, msg)
}

/// Copies at most `limit` bytes; errors when the source has more.
fn copy_limited(src: &mut dyn Read, out: &mut dyn Write, limit: u64) -> Result<u64, String> {
    let mut total: u64 = 0;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = src.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(total);
        }
        total = total.saturating_add(n as u64);
        if total > limit {
            return Err(format!(
                "contenuto decompresso oltre il limite di {limit} byte"
            ));
        }
        out.write_all(buf.get(..n).unwrap_or(&[]))
            .map_err(|e| e.to_string())?;
    }
}

/// Extracts the single CSV of a feed zip into `out` and reads the optional `manifest.json`
/// (FORMAT.md §5.2: exactly one `.csv`; `__MACOSX/`, dot-files and directories ignored), with
/// the zip-bomb guards of [`ZipLimits`]. Nothing is written to disk by this function; the
/// caller chooses `out` (a temporary file, so the load can stream it twice).
///
/// # Errors
/// `FILE_NO_CSV` (not a zip, no CSV, unsafe names, encrypted entries, limits exceeded),
/// `FILE_MULTIPLE_CSV`.
pub fn extract_zip<R: Read + Seek>(
    input: R,
    out: &mut dyn Write,
    limits: ZipLimits,
) -> Result<ZipContents, FeedFileError> {
    let mut zip =
        zip::ZipArchive::new(input).map_err(|e| container(format!("zip non leggibile: {e}")))?;
    if zip.len() > limits.max_entries {
        return Err(container(format!(
            "lo zip contiene {} elementi (massimo {})",
            zip.len(),
            limits.max_entries
        )));
    }
    let mut csv_idx = Vec::new();
    let mut manifest_idx = None;
    for i in 0..zip.len() {
        let f = zip
            .by_index_raw(i)
            .map_err(|e| container(format!("zip non leggibile: {e}")))?;
        let name = f.name().to_string();
        if f.is_dir() {
            continue;
        }
        if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
            return Err(container(format!("nome non sicuro nello zip: {name:?}")));
        }
        let parts: Vec<&str> = name.split(['/', '\\']).collect();
        if parts.first() == Some(&"__MACOSX") || parts.iter().any(|p| p.starts_with('.')) {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if lower == MANIFEST_NAME {
            manifest_idx = Some(i);
        } else if lower.ends_with(".csv") {
            csv_idx.push((i, name, f.size(), f.compressed_size(), f.encrypted()));
        }
    }
    let (idx, csv_name, size, compressed, encrypted) = match csv_idx.len() {
        0 => return Err(container("lo zip non contiene alcun file .csv")),
        1 => csv_idx
            .pop()
            .ok_or_else(|| container("lo zip non contiene alcun file .csv"))?,
        n => {
            return Err(FeedFileError::new(
                ErrorCode::FileMultipleCsv,
                format!("lo zip contiene {n} file .csv: ne è ammesso uno solo"),
            ))
        }
    };
    if encrypted {
        return Err(container("file cifrato nello zip: non supportato"));
    }
    if size > limits.max_csv_bytes {
        return Err(container(format!(
            "CSV di {size} byte oltre il limite di {} byte",
            limits.max_csv_bytes
        )));
    }
    let ratio_cap = compressed
        .max(1)
        .saturating_mul(limits.max_ratio)
        .saturating_add(64 * 1024);
    if size > ratio_cap {
        return Err(container(format!(
            "rapporto di compressione sospetto ({size} byte da {compressed})"
        )));
    }
    let limit = limits.max_csv_bytes.min(ratio_cap);
    let csv_bytes = {
        let mut f = zip
            .by_index(idx)
            .map_err(|e| container(format!("CSV nello zip non leggibile: {e}")))?;
        copy_limited(&mut f, out, limit).map_err(container)?
    };
    let manifest = match manifest_idx {
        None => None,
        Some(i) => {
            let mut f = zip
                .by_index(i)
                .map_err(|e| container(format!("manifest.json non leggibile: {e}")))?;
            let mut buf = Vec::new();
            copy_limited(&mut f, &mut buf, limits.max_manifest_bytes).map_err(container)?;
            let text =
                String::from_utf8(buf).map_err(|_| container("manifest.json non è UTF-8"))?;
            Some(FeedManifest::parse(&text)?)
        }
    };
    Ok(ZipContents {
        csv_name,
        csv_bytes,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_flow_ids() {
        for ok in ["F1", "TARI.2025-A_b", "a.", ".a", &"x".repeat(50)] {
            assert_eq!(check_rest_flow_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "...",
            "a/b",
            "a b",
            "é",
            "a%2F",
            "a\r\n",
            &"x".repeat(51),
        ] {
            assert!(check_rest_flow_id(bad).is_err(), "{bad:?}");
        }
        assert!(FeedFileName::parse("c_x000-..-2_0.csv").is_err());
    }

    #[test]
    fn names() {
        let n = FeedFileName::parse("dir/c_x000-TARI2025A-2_0.csv").unwrap();
        assert_eq!(n.ipa_code, "c_x000");
        assert_eq!(n.flow_id, "TARI2025A");
        assert_eq!(n.version, FeedVersion::V2_0);
        assert_eq!(n.basename, "c_x000-TARI2025A-2_0");
        assert_eq!(
            FeedFileName::parse("c_x000-F-2_0_ENG.zip").unwrap().version,
            FeedVersion::V2_0Eng
        );
        for bad in [
            "a-b.csv",
            "a-b-c-1_3.csv",
            "a-b-9_9.csv",
            "a-b-1_3.txt",
            "a-b c-1_3.csv",
        ] {
            assert_eq!(
                FeedFileName::parse(bad).unwrap_err().code,
                ErrorCode::FileNameInvalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn manifest() {
        let m = FeedManifest::parse(
            r#"{"mode":"FULL","scope":{"tipiDovuto":["TARI"]},"maxCancelRatio":0.20,"allowEmpty":false,"dryRun":false}"#,
        )
        .unwrap();
        assert_eq!(m.mode, FeedMode::Full);
        assert_eq!(m.tipi_dovuto, Some(vec!["TARI".to_string()]));
        assert_eq!(m.max_cancel_permille, 200);
        assert_eq!(ratio_permille("0.125"), Some(125));
        assert_eq!(ratio_permille("1"), Some(1000));
        assert_eq!(ratio_permille("1.5"), None);
        assert!(FeedManifest::parse(r#"{"mode":"X"}"#).is_err());
    }
}
