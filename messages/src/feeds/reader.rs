//! Streaming CSV reader of the tracciati (FORMAT.md §1.1, §5.2, §5.3).

use std::collections::HashMap;
use std::io::Read;

use super::record::{build_record, RowEcho};
use super::row::{col, Binding, RowView};
use super::{
    ErrorCode, FeedFileError, FeedMode, FeedRecord, FeedVersion, Mb14AmountMode, RowIssue,
};

/// Options of [`FeedReader`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Load mode: in DELTA `azione` is mandatory, in FULL it is optional (FORMAT.md §5.6).
    pub mode: FeedMode,
    /// 1.4 multi-beneficiary amount semantics (FORMAT.md §5.4).
    pub mb14_amount_mode: Mb14AmountMode,
    /// Version read from the file-name token, if any: it must agree with the header
    /// (FORMAT.md §5.3, `FILE_VERSION_MISMATCH`); it also tells 1.0 from 1.1.
    pub name_version: Option<FeedVersion>,
}

/// One data row as read (FORMAT.md §5.4): its 1-based number (header = row 0), the raw trimmed
/// fields, the typed record or the list of problems, and the warnings.
#[derive(Debug, Clone)]
pub struct FeedRow {
    /// 1-based data row number (blank lines are not counted).
    pub number: u64,
    /// Byte offset just after this row in the (quote-normalised) input.
    pub byte_offset: u64,
    /// Raw fields, trimmed.
    pub raw: Vec<String>,
    /// Raw values echoed in the outcome report of a rejected row (FORMAT.md §5.8 d).
    pub echo: RowEcho,
    /// The typed record, or every problem found (several codes per row, §5.7).
    pub record: Result<FeedRecord, Vec<RowIssue>>,
    /// Warnings (`WARN_*`); the row is still applied.
    pub warnings: Vec<RowIssue>,
}

/// Columns of 1.x files in file order (FORMAT.md §1.2).
pub(crate) fn v1_columns(version: FeedVersion) -> Vec<&'static str> {
    let mut c = vec![
        col::IUD,
        col::IUV,
        col::ENTITY_TYPE,
        col::FISCAL_CODE,
        col::FULL_NAME,
        col::ADDRESS,
        col::CIVIC,
        col::POSTAL_CODE,
        col::LOCATION,
        col::PROVINCE,
        col::NATION,
        col::EMAIL,
        col::DUE_DATE,
        col::AMOUNT,
        col::PA_FEE,
        col::TIPO_DOVUTO,
        col::TIPO_VERSAMENTO,
        col::CAUSALE,
        col::DATI_RISCOSSIONE,
    ];
    if matches!(
        version,
        FeedVersion::V1_2 | FeedVersion::V1_3 | FeedVersion::V1_4
    ) {
        c.push(col::BILANCIO);
    }
    if matches!(version, FeedVersion::V1_3 | FeedVersion::V1_4) {
        c.push(col::GENERATE_IUV);
    }
    if version == FeedVersion::V1_4 {
        c.extend([
            col::MULTI_BENEFICIARY,
            col::SEC_CF,
            col::SEC_NAME,
            col::SEC_IBAN,
            col::SEC_ADDRESS,
            col::SEC_CIVIC,
            col::SEC_CAP,
            col::SEC_LOCATION,
            col::SEC_PROVINCE,
            col::SEC_NATION,
            col::SEC_DATI,
            col::SEC_CAUSALE,
            col::SEC_AMOUNT,
        ]);
    }
    c.push(col::ACTION);
    c
}

/// Known header aliases of 1.x files (FORMAT.md §5.3), lower case → canonical.
const V1_ALIASES: [(&str, &str); 4] = [
    ("datascadenzapagamento", col::DUE_DATE),
    ("emailpagatore", col::EMAIL),
    ("flgmultibeneficiario", col::MULTI_BENEFICIARY),
    ("importodovutopagato", col::AMOUNT),
];

/// 2.0 Italian name ↔ 2.0-eng name (FORMAT.md §1.3), plus the accepted aliases.
const V2_NAMES: [(&str, &str); 33] = [
    (col::IUPD, "iupdOrg"),
    (col::POS_DESCRIPTION, "description"),
    (col::VALIDITY_DATE, "validityDate"),
    (col::MULTI_DEBTOR, "multiDebtor"),
    (col::NOTIFICATION_DATE, "notificationDate"),
    (col::OPTION_INDEX, "paymentOptionIndex"),
    (col::OPTION_TYPE, "paymentOptionType"),
    (col::OPTION_DESCRIPTION, "paymentOptionDescription"),
    (col::IUD, "IUD"),
    (col::IUV, "iuv"),
    (col::ENTITY_TYPE, "entityType"),
    (col::FISCAL_CODE, "fiscalCode"),
    (col::FULL_NAME, "fullName"),
    (col::ADDRESS, "address"),
    (col::CIVIC, "civic"),
    (col::POSTAL_CODE, "postalCode"),
    (col::LOCATION, "location"),
    (col::PROVINCE, "province"),
    (col::NATION, "nation"),
    (col::EMAIL, "email"),
    (col::DUE_DATE, "dueDate"),
    (col::AMOUNT, "amount"),
    (col::TIPO_DOVUTO, "debtPositionTypeCode"),
    (col::CAUSALE, "remittanceInformation"),
    (col::DATI_RISCOSSIONE, "legacyPaymentMetadata"),
    (col::GENERATE_IUV, "generateNotice"),
    (col::PU_PAYMENT, "flagPuPagoPaPayment"),
    (col::BILANCIO, "balance"),
    (col::MULTI_BENEFICIARY, "flagMultiBeneficiary"),
    (col::BENEFICIARIES, "numberBeneficiary"),
    (col::EXEC_CONFIG, "executionConfig"),
    (col::ACTION, "action"),
    (col::NAV, "noticeNumber"),
];

/// Transfer group stems: 2.0 name, 2.0-eng name, alias.
const V2_TRANSFER: [(&str, &str, Option<&str>); 6] = [
    (col::T_CF, "orgFiscalCode", None),
    (col::T_NAME, "orgName", None),
    (col::T_IBAN, "iban", None),
    (col::T_CAUSALE, "remittanceInformation", None),
    (col::T_AMOUNT, "amount", None),
    (
        col::T_CATEGORY,
        "category",
        Some("datiSpecificiRiscossioneEnte"),
    ),
];

pub(crate) fn normalise_header(cell: &str) -> String {
    cell.trim()
        .trim_start_matches('\u{feff}')
        .trim()
        .trim_matches('"')
        .trim()
        .to_string()
}

/// Detects the version from the header (FORMAT.md §5.3, first match wins).
pub(crate) fn detect_version(
    header: &[String],
    name_version: Option<FeedVersion>,
) -> Result<FeedVersion, FeedFileError> {
    let lower: Vec<String> = header.iter().map(|h| h.to_ascii_lowercase()).collect();
    let has = |n: &str| lower.iter().any(|h| h == n);
    let first = lower.first().map(String::as_str).unwrap_or("");
    let last = lower.last().map(String::as_str).unwrap_or("");
    let nth_back = |k: usize| {
        lower
            .len()
            .checked_sub(k + 1)
            .and_then(|i| lower.get(i))
            .map(String::as_str)
            .unwrap_or("")
    };
    let detected = if has("action")
        && (has("description") || has("paymentoptionindex") || has("fiscalcode"))
    {
        Some(FeedVersion::V2_0Eng)
    } else if has("azione")
        && (has("indiceopzionepagamento")
            || has("descrizioneposizionedebitoria")
            || has("iupd")
            || has("flagpagamentopu"))
    {
        Some(FeedVersion::V2_0)
    } else if lower.len() == 35 && first == "iud" && last == "azione" {
        Some(FeedVersion::V1_4)
    } else if lower.len() == 22 && nth_back(1) == "flggeneraiuv" && last == "azione" {
        Some(FeedVersion::V1_3)
    } else if lower.len() == 21 && nth_back(1) == "bilancio" {
        Some(FeedVersion::V1_2)
    } else if lower.len() == 20 && first == "iud" && last == "azione" {
        Some(if name_version == Some(FeedVersion::V1_0) {
            FeedVersion::V1_0
        } else {
            FeedVersion::V1_1
        })
    } else {
        None
    };
    let Some(version) = detected else {
        let one = header.first().map(String::as_str).unwrap_or("");
        if header.len() == 1 && (one.contains(',') || one.contains('\t') || one.contains('|')) {
            return Err(FeedFileError::new(
                ErrorCode::FileVersionUnknown,
                "separatore di campo errato: il tracciato usa il punto e virgola (;)",
            ));
        }
        return Err(FeedFileError::new(
            ErrorCode::FileVersionUnknown,
            format!(
                "intestazione non riconosciuta ({} colonne): nessuna versione del tracciato \
                 1.0-1.4, 2.0, 2.0-eng corrisponde",
                header.len()
            ),
        ));
    };
    if let Some(named) = name_version {
        let agree = named == version
            || (named == FeedVersion::V1_0 && version == FeedVersion::V1_1)
            || (named == FeedVersion::V2_0 && version == FeedVersion::V2_0Eng)
            || (named == FeedVersion::V2_0Eng && version == FeedVersion::V2_0);
        if !agree {
            return Err(FeedFileError::new(
                ErrorCode::FileVersionMismatch,
                format!(
                    "il nome del file indica la versione {named} ma l'intestazione è della \
                     versione {version}"
                ),
            ));
        }
    }
    Ok(version)
}

/// Builds the binding and the file-level warnings.
fn bind(header: &[String], version: FeedVersion) -> (Binding, Vec<RowIssue>) {
    let mut map = HashMap::new();
    let mut warnings = Vec::new();
    if version.is_positional() {
        let mut aliased = Vec::new();
        for (i, name) in v1_columns(version).into_iter().enumerate() {
            map.insert(name.to_string(), i);
            let label = header.get(i).map(String::as_str).unwrap_or("");
            if !label.eq_ignore_ascii_case(name) {
                let lower = label.to_ascii_lowercase();
                let known = V1_ALIASES
                    .iter()
                    .any(|(alias, canon)| *alias == lower && *canon == name);
                aliased.push(if known {
                    format!("{label} (= {name})")
                } else {
                    format!("{label} (attesa {name})")
                });
            }
        }
        if !aliased.is_empty() {
            warnings.push(RowIssue::new(
                None,
                ErrorCode::WarnHeaderAlias,
                format!(
                    "intestazione con nomi non canonici, colonne lette per posizione: {}",
                    aliased.join(", ")
                ),
            ));
        }
    } else {
        let mut by_lower: HashMap<String, String> = HashMap::new();
        for (it, en) in V2_NAMES {
            by_lower.insert(it.to_ascii_lowercase(), it.to_string());
            by_lower.insert(en.to_ascii_lowercase(), it.to_string());
        }
        for n in 1..=5 {
            for (it, en, alias) in V2_TRANSFER {
                let canon = format!("{it}_{n}");
                by_lower.insert(canon.to_ascii_lowercase(), canon.clone());
                by_lower.insert(format!("{en}_{n}").to_ascii_lowercase(), canon.clone());
                if let Some(a) = alias {
                    by_lower.insert(format!("{a}_{n}").to_ascii_lowercase(), canon.clone());
                }
            }
        }
        by_lower.insert("draft".into(), col::DRAFT.into());
        let mut ignored = Vec::new();
        for (i, h) in header.iter().enumerate() {
            match by_lower.get(&h.to_ascii_lowercase()) {
                Some(canon) => {
                    map.entry(canon.clone()).or_insert(i);
                }
                None => ignored.push(h.clone()),
            }
        }
        if !ignored.is_empty() {
            warnings.push(RowIssue::new(
                None,
                ErrorCode::WarnIgnoredColumn,
                format!("colonne sconosciute ignorate: {}", ignored.join(", ")),
            ));
        }
    }
    (
        Binding {
            map,
            width: header.len(),
        },
        warnings,
    )
}

/// Mandatory header columns of by-name versions (FORMAT.md §1.3 "Req.", §5.4).
const V2_REQUIRED: [&str; 10] = [
    col::POS_DESCRIPTION,
    col::OPTION_INDEX,
    col::OPTION_TYPE,
    col::IUD,
    col::ENTITY_TYPE,
    col::FISCAL_CODE,
    col::FULL_NAME,
    col::AMOUNT,
    col::TIPO_DOVUTO,
    col::CAUSALE,
];

/// Streaming reader of one feed CSV (FORMAT.md §5.2–§5.4): detects the version from the header
/// and yields one [`FeedRow`] per data row. `Err` items are file-level failures
/// (`FILE_ENCODING`): the caller must stop and reject the whole file.
pub struct FeedReader<R: Read> {
    csv: csv::Reader<QuoteEscapes<Source<LineCap<R>>>>,
    version: FeedVersion,
    binding: Binding,
    header: Vec<String>,
    file_warnings: Vec<RowIssue>,
    opts: ReadOptions,
    rows: u64,
    record: csv::ByteRecord,
    legacy_warned: bool,
    failed: bool,
}

fn csv_error(e: &csv::Error, row: Option<u64>) -> FeedFileError {
    let (code, message) = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => (
            ErrorCode::FileEncoding,
            "il file non è codificato in UTF-8".to_string(),
        ),
        _ => (ErrorCode::FileEncoding, format!("file illeggibile: {e}")),
    };
    FeedFileError { code, message, row }
}

fn decode_fields(rec: &csv::ByteRecord, row: Option<u64>) -> Result<Vec<String>, FeedFileError> {
    rec.iter()
        .map(|f| {
            if f.contains(&0) {
                return Err(FeedFileError {
                    code: ErrorCode::FileEncoding,
                    message: "il file contiene byte nulli (UTF-16?): usare UTF-8".into(),
                    row,
                });
            }
            std::str::from_utf8(f)
                .map(|s| s.trim().to_string())
                .map_err(|_| FeedFileError {
                    code: ErrorCode::FileEncoding,
                    message: match row {
                        Some(r) => format!("riga {r}: testo non UTF-8 (usare la codifica UTF-8)"),
                        None => "intestazione non UTF-8 (usare la codifica UTF-8)".into(),
                    },
                    row,
                })
        })
        .collect()
}

impl<R: Read> FeedReader<R> {
    /// Reads the header and detects the version (FORMAT.md §5.3).
    ///
    /// # Errors
    /// `FILE_ENCODING` (not UTF-8, UTF-16), `FILE_VERSION_UNKNOWN` (empty file, unknown header,
    /// wrong separator), `FILE_VERSION_MISMATCH` (header vs file-name token).
    pub fn new(input: R, opts: ReadOptions) -> Result<Self, FeedFileError> {
        let input = Source::sniff(LineCap::new(input)).map_err(|e| {
            FeedFileError::new(ErrorCode::FileEncoding, format!("file illeggibile: {e}"))
        })?;
        let mut csv = csv::ReaderBuilder::new()
            .delimiter(b';')
            .quote(b'"')
            .double_quote(true)
            .has_headers(false)
            .flexible(true)
            .from_reader(QuoteEscapes::new(input));
        let mut record = csv::ByteRecord::new();
        let header = loop {
            match csv.read_byte_record(&mut record) {
                Ok(false) => {
                    return Err(FeedFileError::new(
                        ErrorCode::FileVersionUnknown,
                        "file vuoto: manca la riga di intestazione",
                    ))
                }
                Ok(true) => {
                    if LineCap::<R>::marked(&record) {
                        return Err(FeedFileError::new(
                            ErrorCode::FileVersionUnknown,
                            format!(
                                "intestazione troppo lunga: oltre {MAX_LINE_BYTES} byte (separatore errato?)"
                            ),
                        ));
                    }
                    if record.iter().next().is_some_and(|f| {
                        f.starts_with(&[0xFF, 0xFE]) || f.starts_with(&[0xFE, 0xFF])
                    }) {
                        return Err(FeedFileError::new(
                            ErrorCode::FileEncoding,
                            "file in UTF-16: usare la codifica UTF-8",
                        ));
                    }
                    let fields = decode_fields(&record, None)?;
                    if fields.iter().all(|f| normalise_header(f).is_empty()) {
                        continue;
                    }
                    break fields
                        .iter()
                        .map(|f| normalise_header(f))
                        .collect::<Vec<_>>();
                }
                Err(e) => return Err(csv_error(&e, None)),
            }
        };
        let version = detect_version(&header, opts.name_version)?;
        let (binding, file_warnings) = bind(&header, version);
        if !version.is_positional() {
            let missing: Vec<&str> = V2_REQUIRED
                .iter()
                .copied()
                .filter(|c| binding.index(c).is_none())
                .chain(
                    (opts.mode == FeedMode::Delta && binding.index(col::ACTION).is_none())
                        .then_some(col::ACTION),
                )
                .collect();
            if !missing.is_empty() {
                return Err(FeedFileError::new(
                    ErrorCode::FileVersionUnknown,
                    format!(
                        "intestazione {version}: mancano le colonne obbligatorie {}",
                        missing.join(", ")
                    ),
                ));
            }
        }
        Ok(Self {
            csv,
            version,
            binding,
            header,
            file_warnings,
            opts,
            rows: 0,
            record,
            legacy_warned: false,
            failed: false,
        })
    }

    /// The detected version.
    pub fn version(&self) -> FeedVersion {
        self.version
    }

    /// The header cells (trimmed, BOM and quotes removed).
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Index in [`FeedRow::raw`] of a column, by its canonical name (the 2.0 Italian name, e.g.
    /// `importoDovuto`; `codiceFiscaleEnte_2` for transfer groups; the 1.4 `*EnteSecondario`
    /// names), whatever the header spelled (positional 1.x, 2.0-eng, aliases).
    pub fn column_index(&self, canonical: &str) -> Option<usize> {
        self.binding.index(canonical)
    }

    /// File-level warnings (`WARN_HEADER_ALIAS`, `WARN_IGNORED_COLUMN`).
    pub fn file_warnings(&self) -> &[RowIssue] {
        &self.file_warnings
    }

    /// Data rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.rows
    }

    /// Bytes consumed so far (of the quote-normalised input).
    pub fn byte_offset(&self) -> u64 {
        self.csv.position().byte()
    }

    fn next_row(&mut self) -> Option<Result<FeedRow, FeedFileError>> {
        loop {
            match self.csv.read_byte_record(&mut self.record) {
                Ok(false) => return None,
                Err(e) => return Some(Err(csv_error(&e, Some(self.rows + 1)))),
                Ok(true) => {}
            }
            let number = self.rows + 1;
            if let Some(issue) = self.oversized() {
                // neither decoded nor echoed: memory stays bounded by the line limit
                self.rows = number;
                let raw = Vec::new();
                let view = RowView {
                    fields: &raw,
                    binding: &self.binding,
                    version: self.version,
                };
                let echo = RowEcho::of(&view);
                return Some(Ok(FeedRow {
                    number,
                    byte_offset: self.csv.position().byte(),
                    raw,
                    echo,
                    record: Err(vec![issue]),
                    warnings: Vec::new(),
                }));
            }
            let raw = match decode_fields(&self.record, Some(number)) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            if raw.iter().all(String::is_empty) {
                continue;
            }
            self.rows = number;
            let view = RowView {
                fields: &raw,
                binding: &self.binding,
                version: self.version,
            };
            let echo = RowEcho::of(&view);
            let (record, mut warnings) = if raw.len() != self.binding.width {
                (
                    Err(vec![RowIssue::new(
                        None,
                        ErrorCode::RowColumnCount,
                        format!(
                            "numero di colonne errato: {} invece di {} (versione {})",
                            raw.len(),
                            self.binding.width,
                            self.version
                        ),
                    )]),
                    Vec::new(),
                )
            } else {
                build_record(&view, self.opts)
            };
            if !self.legacy_warned
                && (view.get(col::PA_FEE).is_some() || view.get(col::TIPO_VERSAMENTO).is_some())
            {
                self.legacy_warned = true;
                warnings.push(RowIssue::new(
                    Some(col::TIPO_VERSAMENTO),
                    ErrorCode::WarnLegacyFieldIgnored,
                    "commissioneCaricoPa / tipoVersamento letti ma ignorati (campi legacy)",
                ));
            }
            let byte_offset = self.csv.position().byte();
            return Some(Ok(FeedRow {
                number,
                byte_offset,
                raw,
                echo,
                record,
                warnings,
            }));
        }
    }
}

impl<R: Read> FeedReader<R> {
    /// The row error of a record over the limits (a physical line longer than
    /// [`MAX_LINE_BYTES`], or more than [`MAX_COLUMNS`] columns), if it is one.
    fn oversized(&self) -> Option<RowIssue> {
        if LineCap::<R>::marked(&self.record) {
            Some(RowIssue::new(
                None,
                ErrorCode::RowBadFormat,
                format!("riga troppo lunga: oltre {MAX_LINE_BYTES} byte, riga scartata"),
            ))
        } else if self.record.len() > MAX_COLUMNS {
            Some(RowIssue::new(
                None,
                ErrorCode::RowColumnCount,
                format!(
                    "troppe colonne: {} (al massimo {MAX_COLUMNS}; attese {} per la versione {})",
                    self.record.len(),
                    self.binding.width,
                    self.version
                ),
            ))
        } else {
            None
        }
    }
}

impl<R: Read> Iterator for FeedReader<R> {
    type Item = Result<FeedRow, FeedFileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_row();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}

/// Longest physical line of a feed file (every format: the widest legitimate row is a few KiB).
/// A longer line is cut there and its record rejected with a row error (issue 9.7: a 10 MB
/// line of `;` made the CSV reader hold ten million fields).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Most columns a record may have before it is rejected undecoded.
pub const MAX_COLUMNS: usize = 1024;

/// Marks where [`LineCap`] cut a line (unlikely in a real file; the cut record is rejected).
const CUT_MARK: &[u8] = b"\x1a\x1aMPAY-RIGA-TROPPO-LUNGA\x1a\x1a";

/// Read adapter cutting every physical line at [`MAX_LINE_BYTES`]: the rest of the line is
/// skipped and [`CUT_MARK`] written in its place, so memory downstream is bounded by the limit
/// whatever the file.
pub(crate) struct LineCap<R> {
    inner: R,
    line: usize,
    skipping: bool,
    out: Vec<u8>,
    pos: usize,
}

impl<R: Read> LineCap<R> {
    pub(crate) fn new(inner: R) -> Self {
        LineCap {
            inner,
            line: 0,
            skipping: false,
            out: Vec::with_capacity(8192 + CUT_MARK.len()),
            pos: 0,
        }
    }

    /// Whether a record holds a cut line.
    fn marked(rec: &csv::ByteRecord) -> bool {
        rec.as_slice()
            .windows(CUT_MARK.len())
            .any(|w| w == CUT_MARK)
    }
}

impl<R: Read> Read for LineCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(rest) = self.out.get(self.pos..) {
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
                        dst.copy_from_slice(src);
                    }
                    self.pos += n;
                    return Ok(n);
                }
            }
            self.out.clear();
            self.pos = 0;
            let mut chunk = [0u8; 8192];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                return Ok(0);
            }
            for &b in chunk.iter().take(n) {
                if b == b'\n' {
                    self.line = 0;
                    self.skipping = false;
                    self.out.push(b);
                } else if self.skipping {
                    // the rest of an over-long line is dropped
                } else if self.line >= MAX_LINE_BYTES {
                    self.skipping = true;
                    self.out.extend_from_slice(CUT_MARK);
                } else {
                    self.line += 1;
                    self.out.push(b);
                }
            }
        }
    }
}

type Head<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// The input as the reader sees it: the file itself, or a GovPay CSV rewritten as the
/// equivalent PU 2.0 file ([`super::govpay`]), told apart by the first line.
pub(crate) enum Source<R: Read> {
    Plain(Head<R>),
    GovPay(Box<super::govpay::GovPayToPu<Head<R>>>),
}

impl<R: Read> Source<R> {
    /// Reads the first line (at most 64 KiB) to tell a GovPay file, then replays it.
    fn sniff(mut input: R) -> std::io::Result<Self> {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.contains(&b'\n') && head.len() < 64 * 1024 {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
        let first = head
            .split(|b| *b == b'\n')
            .next()
            .unwrap_or_default()
            .to_vec();
        let replay = std::io::Cursor::new(head).chain(input);
        Ok(if super::govpay::is_govpay_header(&first) {
            Source::GovPay(Box::new(super::govpay::GovPayToPu::new(replay)))
        } else {
            Source::Plain(replay)
        })
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::Plain(r) => r.read(buf),
            Source::GovPay(r) => r.read(buf),
        }
    }
}

/// Quote state of [`QuoteEscapes`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum QState {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// Read adapter turning the MyPay/opencsv escape `\"` inside a quoted field into the RFC 4180
/// `""` the `csv` crate understands, so both are accepted (FORMAT.md §5.2).
pub(crate) struct QuoteEscapes<R> {
    inner: R,
    out: Vec<u8>,
    pos: usize,
    state: QState,
    backslash: bool,
    eof: bool,
}

impl<R: Read> QuoteEscapes<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            out: Vec::with_capacity(16 * 1024),
            pos: 0,
            state: QState::FieldStart,
            backslash: false,
            eof: false,
        }
    }

    fn push(&mut self, b: u8) {
        if self.backslash {
            self.backslash = false;
            if b == b'"' {
                self.out.extend_from_slice(b"\"\"");
                return;
            }
            self.out.push(b'\\');
        }
        let sep = matches!(b, b';' | b'\n' | b'\r');
        self.state = match self.state {
            QState::FieldStart | QState::Unquoted if sep => QState::FieldStart,
            QState::FieldStart if b == b'"' => QState::Quoted,
            QState::FieldStart | QState::Unquoted => QState::Unquoted,
            QState::Quoted if b == b'\\' => {
                self.backslash = true;
                return;
            }
            QState::Quoted if b == b'"' => QState::QuoteInQuoted,
            QState::Quoted => QState::Quoted,
            QState::QuoteInQuoted if b == b'"' => QState::Quoted,
            QState::QuoteInQuoted if sep => QState::FieldStart,
            QState::QuoteInQuoted => QState::Unquoted,
        };
        self.out.push(b);
    }
}

impl<R: Read> Read for QuoteEscapes<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(rest) = self.out.get(self.pos..) {
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
                        dst.copy_from_slice(src);
                    }
                    self.pos += n;
                    return Ok(n);
                }
            }
            if self.eof {
                return Ok(0);
            }
            self.out.clear();
            self.pos = 0;
            let mut chunk = [0u8; 8192];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                self.eof = true;
                if self.backslash {
                    self.backslash = false;
                    self.out.push(b'\\');
                }
                continue;
            }
            for &b in chunk.iter().take(n) {
                self.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backslash_quote_becomes_double_quote() {
        let mut r = QuoteEscapes::new(&b"a;\"x \\\"y\\\" z\";b\\\"\n"[..]);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "a;\"x \"\"y\"\" z\";b\\\"\n");
    }
}
