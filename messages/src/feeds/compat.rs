//! MyPay / PU compatibility outputs (FORMAT.md §2.1, §2.2, §5.5, §5.7), pure part: file names,
//! the code mapping table, a reader of the *raw* lines of a feed (so rejected rows can be
//! copied verbatim), the writers of the rejects copy (`<basename>_SCARTI.csv` for 1.x input,
//! `ERROR-<basename>.csv` for 2.0 input) and of the IUV copy (`<basename>_IUV.csv` /
//! `<basename>_iuv.csv`), and the streaming writer of `<basename>-RESULT.zip`.
//!
//! Everything streams: [`RawRows`] holds one record at a time, so a copy of a 1 GB file costs
//! the memory of its longest line. Joining these with the stored outcomes lives in
//! `mpay-storage` (`feeds_output`).

use std::io::{BufRead, Write};

use super::reader::{normalise_header, v1_columns, QuoteEscapes};
use super::row::col;
use super::FeedVersion;
use crate::Amount;

/// Header cells appended to the original header by the rejects copy (FORMAT.md §2.1, §2.2).
pub const REJECT_COLUMNS: [&str; 2] = ["cod_rifiuto", "de_rifiuto"];

/// `<basename>-ESITO.csv` (FORMAT.md §5.7).
pub fn outcome_file_name(basename: &str) -> String {
    format!("{basename}-ESITO.csv")
}

/// `<basename>-IUV-EXCHANGE.csv` (FORMAT.md §5.5).
pub fn iuv_exchange_file_name(basename: &str) -> String {
    format!("{basename}-IUV-EXCHANGE.csv")
}

/// `<basename>-RESULT.zip` (FORMAT.md §5.7).
pub fn result_zip_name(basename: &str) -> String {
    format!("{basename}-RESULT.zip")
}

/// Which platform the compatibility copies imitate: MyPay for 1.x input, PU for 2.0 /
/// 2.0-eng input (FORMAT.md §5.5, §5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompatFlavour {
    /// MyPay: `<basename>_SCARTI.csv`, `<basename>_IUV.csv`, `PAA_*` codes.
    Mypay,
    /// PU: `ERROR-<basename>.csv`, `<basename>_iuv.csv`, PU `FileErrorCode` names.
    Pu,
}

impl CompatFlavour {
    /// The flavour of a tracciato version.
    pub fn for_version(v: FeedVersion) -> Self {
        if v.is_positional() {
            Self::Mypay
        } else {
            Self::Pu
        }
    }

    /// Name of the rejects copy.
    pub fn rejects_file_name(self, basename: &str) -> String {
        match self {
            Self::Mypay => format!("{basename}_SCARTI.csv"),
            Self::Pu => format!("ERROR-{basename}.csv"),
        }
    }

    /// Name of the IUV copy.
    pub fn iuv_file_name(self, basename: &str) -> String {
        match self {
            Self::Mypay => format!("{basename}_IUV.csv"),
            Self::Pu => format!("{basename}_iuv.csv"),
        }
    }

    /// The platform's code for one of ours (FORMAT.md §5.7 code table). `description` is ours;
    /// it only tells the two flavours of a due-date error apart (`… non presente`). Codes with
    /// no equivalent on the platform map to its generic one (`PAA_IMPORT_ERROR`,
    /// `PROCESSING_ERROR`; `CSV_GENERIC_ERROR` for PU file-level codes).
    pub fn code(self, ours: &str, description: &str) -> &'static str {
        let missing = description.contains("non presente");
        match self {
            Self::Mypay => match ours {
                "FILE_NAME_INVALID" => "PAA_IMPORT_NOME_FILE_ERR",
                "FILE_ENTE_MISMATCH" => "PAA_IMPORT_ENTE_ERR",
                "FILE_VERSION_UNKNOWN" | "FILE_VERSION_MISMATCH" => "PAA_IMPORT_FILE_VERSIONE_ERR",
                "FILE_DUPLICATE" => "PAA_IMPORT_FLUSSO_DUPLICATO",
                "FILE_NO_CSV" | "FILE_MULTIPLE_CSV" => "PAA_IMPORT_NO_CSV",
                "FILE_CHECKSUM_MISMATCH" => "PAA_IMPORT_NO_MATCH_MD5",
                "ROW_COLUMN_COUNT" | "ROW_MISSING_FIELD" | "ROW_FIELD_TOO_LONG"
                | "ROW_BAD_FORMAT" => "PAA_IMPORT_SINTASSI_CSV",
                "ROW_BAD_ACTION" => "PAA_IMPORT_SINTASSI_CSV_AZIONE",
                "ROW_DUPLICATE_IUD" => "PAA_IMPORT_IUD_DUPLICATO",
                "ROW_BAD_FISCAL_CODE" => "PAA_IMPORT_SINTASSI_CSV_COD_FISC",
                "ROW_BAD_ADDRESS" => "PAA_IMPORT_SINTASSI_CSV_INDIRIZZO",
                "ROW_BAD_EMAIL" => "PAA_IMPORT_SINTASSI_CSV_EMAIL",
                "ROW_BAD_IUV" | "ROW_IUV_DUPLICATE" => "PAA_IMPORT_SINTASSI_CSV_IUV",
                "ROW_BAD_AMOUNT" => "PAA_IMPORT_SINTASSI_CSV_IMPORTO",
                "ROW_BAD_DUE_DATE" if missing => {
                    "PAA_IMPORT_SINTASSI_CSV_DATA_SCADENZA_PAGAMENTO_NON_PRESENTE"
                }
                "ROW_BAD_DUE_DATE" => "PAA_IMPORT_SINTASSI_CSV_DATA_SCADENZA_PAGAMENTO",
                "ROW_UNKNOWN_TIPO_DOVUTO" => "PAA_IMPORT_SINTASSI_CSV_TIPO_DOVUTO_INESISTENTE",
                "ROW_TIPO_DOVUTO_DISABLED" => {
                    "PAA_IMPORT_SINTASSI_CSV_TIPO_DOVUTO_NON_ATTIVO_PER_ENTE"
                }
                "ROW_BAD_DATI_RISCOSSIONE" => "PAA_IMPORT_SINTASSI_CSV_DATI_RISCOSS",
                "ROW_BAD_BILANCIO" => "PAA_IMPORT_SINTASSI_CSV_BILANCIO",
                "ROW_BAD_BENEFICIARY" => {
                    let d = description.to_ascii_lowercase();
                    if d.contains("iban") {
                        "PAA_IMPORT_SINTASSI_CSV_IBAN_ACCREDITO_ENTE_SECONDARIO"
                    } else if d.contains("importo") || d.contains("somma") {
                        "PAA_IMPORT_SINTASSI_CSV_IMPORTO_VERS_ENTE_SECONDARIO"
                    } else {
                        "PAA_IMPORT_SINTASSI_CSV_COD_FISC_ENTE_SECONDARIO"
                    }
                }
                _ => "PAA_IMPORT_ERROR",
            },
            Self::Pu => match ours {
                "FILE_NAME_INVALID" => "INVALID_FILE_NAME",
                "FILE_ENTE_MISMATCH" => "ORGANIZATION_IPA_MISMATCH",
                "FILE_VERSION_UNKNOWN" | "FILE_VERSION_MISMATCH" => "CSV_MISSING_REQUIRED_HEADER",
                c if c.starts_with("FILE_") => "CSV_GENERIC_ERROR",
                "ROW_COLUMN_COUNT" => "CSV_COLUMN_COUNT_MISMATCH",
                "ROW_MISSING_FIELD" => "CSV_MISSING_REQUIRED_FIELD",
                "ROW_FIELD_TOO_LONG" | "ROW_BAD_ADDRESS" => "CSV_VALIDATION_ERROR",
                "ROW_BAD_FORMAT" | "ROW_BAD_ACTION" => "CSV_DATA_TYPE_MISMATCH",
                "ROW_DUPLICATE_IUD" | "ROW_ALREADY_EXISTS" => "INSTALLMENT_ALREADY_EXISTS",
                "ROW_BAD_FISCAL_CODE" => "INVALID_VAT_CODE",
                "ROW_BAD_EMAIL" => "INVALID_EMAIL",
                "ROW_BAD_IUV" | "ROW_IUV_DUPLICATE" => "INVALID_IUV",
                "ROW_BAD_AMOUNT" => "INVALID_AMOUNT",
                "ROW_BAD_DUE_DATE" if missing => "MISSING_DUE_DATE",
                "ROW_BAD_DUE_DATE" => "INVALID_DUE_DATE",
                "ROW_UNKNOWN_TIPO_DOVUTO" | "ROW_TIPO_DOVUTO_DISABLED" => {
                    "DEBT_POSITION_TYPE_ORG_BY_CODE_NOT_FOUND"
                }
                "ROW_BAD_DATI_RISCOSSIONE" => "INVALID_LEGACY_PAYMENT_METADATA",
                "ROW_BAD_BILANCIO" => "INVALID_BALANCE",
                "ROW_BAD_BENEFICIARY" => {
                    let d = description.to_ascii_lowercase();
                    if d.contains("somma") || d.contains("importo") {
                        "INVALID_INSTALLMENT_AMOUNT_CENTS"
                    } else if d.contains("numerobeneficiari") || d.contains("trasferimento") {
                        "TOO_MANY_TRANSFERS_FOR_INSTALLMENT"
                    } else {
                        "INVALID_IBAN"
                    }
                }
                "ROW_OPTION_INCONSISTENT" if description.contains("debitore") => {
                    "DIFFERENT_DEBTORS_IN_SAME_PO"
                }
                "ROW_OPTION_INCONSISTENT" if description.contains("opzione") => {
                    "DUPLICATED_PAYMENT_OPTION_INDEX"
                }
                "ROW_NOT_FOUND" => "DEBT_POSITION_BY_IUD_NOT_FOUND",
                "ROW_INVALID_STATUS" => "INVALID_INSTALLMENT_STATUS",
                "ROW_IMMUTABLE_FIELD" => "IMMUTABLE_FIELD",
                _ => "PROCESSING_ERROR",
            },
        }
    }

    /// `cod_rifiuto` and `de_rifiuto` for the codes and descriptions of an outcome line (kept in
    /// the same order as in the ESITO: codes joined with `|` without repeating one, descriptions
    /// with ` | `).
    pub fn reject_fields(self, codes: &[String], descriptions: &[String]) -> (String, String) {
        let mut mapped: Vec<&'static str> = Vec::new();
        for (i, c) in codes.iter().enumerate() {
            let d = descriptions.get(i).map(String::as_str).unwrap_or("");
            let m = self.code(c, d);
            if !mapped.contains(&m) {
                mapped.push(m);
            }
        }
        (mapped.join("|"), descriptions.join(" | "))
    }
}

/// Record state, as [`QuoteEscapes`] and `csv-core` see it (FORMAT.md §5.2 quoting: `""` and
/// `\"` are escaped quotes inside a quoted field; `;` separates; `\r`, `\n`, `\r\n` end a
/// record outside quotes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Q {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// The fields of one raw record as the feed reader sees them (trimmed; lossy UTF-8).
fn parse_fields(record: &[u8]) -> Vec<String> {
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(b';')
        .quote(b'"')
        .double_quote(true)
        .has_headers(false)
        .flexible(true)
        // a leading empty line: csv-core strips a BOM only at the very start of its input, and
        // here the record may be any line of the file
        .from_reader(QuoteEscapes::new(std::io::Read::chain(&b"\n"[..], record)));
    let mut rec = csv::ByteRecord::new();
    match csv.read_byte_record(&mut rec) {
        Ok(true) => rec
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether the feed reader skips this record as blank (every field empty after trimming).
fn is_blank(record: &[u8]) -> bool {
    let candidate = match std::str::from_utf8(record) {
        Ok(s) => s.chars().all(|c| c == ';' || c == '"' || c.is_whitespace()),
        Err(_) => false,
    };
    candidate && parse_fields(record).iter().all(String::is_empty)
}

/// The raw lines of a feed, numbered like [`super::FeedReader`] numbers its rows: the header is
/// the first record that is not blank, data rows are the following non-blank records, 1-based.
/// A record is the bytes between two record ends outside quotes (so a quoted field may span
/// lines); its bytes are returned exactly as in the file, without the line end.
pub struct RawRows<R: BufRead> {
    /// Cut like the feed reader's input (`MAX_LINE_BYTES`), so rows match and stay bounded.
    input: std::io::BufReader<super::reader::LineCap<R>>,
    header: Option<Vec<u8>>,
    header_fields: usize,
    record: Vec<u8>,
    rows: u64,
    eof: bool,
    started: bool,
}

impl<R: BufRead> RawRows<R> {
    /// Reads up to the header.
    ///
    /// # Errors
    /// I/O errors of `input`.
    pub fn new(input: R) -> std::io::Result<Self> {
        let mut me = Self {
            input: std::io::BufReader::new(super::reader::LineCap::new(input)),
            header: None,
            header_fields: 0,
            record: Vec::new(),
            rows: 0,
            eof: false,
            started: false,
        };
        while me.next_record()? {
            let fields = parse_fields(&me.record);
            if fields.iter().any(|f| !normalise_header(f).is_empty()) {
                let bytes = me
                    .record
                    .strip_prefix("\u{feff}".as_bytes())
                    .unwrap_or(&me.record)
                    .to_vec();
                me.header = Some(bytes);
                me.header_fields = fields.len();
                break;
            }
        }
        Ok(me)
    }

    /// The header line as in the file (a leading UTF-8 BOM removed), if the file has one.
    pub fn header(&self) -> Option<&[u8]> {
        self.header.as_deref()
    }

    /// Number of fields of the header (0 without a header).
    pub fn header_fields(&self) -> usize {
        self.header_fields
    }

    /// The next data row: its number and its raw bytes.
    ///
    /// # Errors
    /// I/O errors of the input.
    pub fn next_row(&mut self) -> std::io::Result<Option<(u64, &[u8])>> {
        if self.header.is_none() {
            return Ok(None);
        }
        loop {
            if !self.next_record()? {
                return Ok(None);
            }
            if !is_blank(&self.record) {
                self.rows += 1;
                return Ok(Some((self.rows, &self.record)));
            }
        }
    }

    /// Reads the next record into `self.record`; false at the end of the input.
    fn next_record(&mut self) -> std::io::Result<bool> {
        self.record.clear();
        let mut state = Q::FieldStart;
        let mut backslash = false;
        loop {
            if self.eof {
                return Ok(!self.record.is_empty());
            }
            let (used, done) = {
                let buf = match self.input.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if buf.is_empty() {
                    self.eof = true;
                    (0, false)
                } else {
                    let mut used = 0;
                    let mut done = false;
                    if !self.started {
                        // csv-core skips a BOM at the start of the file: it starts no field
                        self.started = true;
                        if let Some(bom) = buf.get(..3).filter(|b| *b == "\u{feff}".as_bytes()) {
                            self.record.extend_from_slice(bom);
                            used = 3;
                        }
                    }
                    for &b in buf.get(used..).unwrap_or(&[]) {
                        used += 1;
                        if backslash {
                            backslash = false;
                            if b == b'"' {
                                self.record.push(b);
                                continue;
                            }
                        }
                        let end = matches!(b, b'\n' | b'\r');
                        state = match state {
                            Q::FieldStart | Q::Unquoted | Q::QuoteInQuoted if end => {
                                if self.record.is_empty() {
                                    // an empty line: nothing of a record yet
                                    continue;
                                }
                                done = true;
                                break;
                            }
                            Q::FieldStart | Q::Unquoted if b == b';' => Q::FieldStart,
                            Q::FieldStart if b == b'"' => Q::Quoted,
                            Q::FieldStart | Q::Unquoted => Q::Unquoted,
                            Q::Quoted if b == b'\\' => {
                                backslash = true;
                                Q::Quoted
                            }
                            Q::Quoted if b == b'"' => Q::QuoteInQuoted,
                            Q::Quoted => Q::Quoted,
                            Q::QuoteInQuoted if b == b'"' => Q::Quoted,
                            Q::QuoteInQuoted if b == b';' => Q::FieldStart,
                            Q::QuoteInQuoted => Q::Unquoted,
                        };
                        self.record.push(b);
                    }
                    (used, done)
                }
            };
            self.input.consume(used);
            if done {
                return Ok(true);
            }
        }
    }
}

/// Quotes a field when it holds `;`, `"` or a line break (FORMAT.md §5.2 output rule).
fn csv_field(s: &str) -> String {
    if s.contains([';', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writer of the rejects copy (`<basename>_SCARTI.csv` / `ERROR-<basename>.csv`, FORMAT.md
/// §5.7): the original header followed by `;cod_rifiuto;de_rifiuto`, then each rejected row
/// verbatim followed by `;<code>;<description>`; a file-level failure is one line with empty
/// data columns. Lines end with `\r\n`.
pub struct RejectsWriter<W: Write> {
    out: W,
}

impl<W: Write> RejectsWriter<W> {
    /// Writes the header (`cod_rifiuto;de_rifiuto` alone when the original one is unknown).
    ///
    /// # Errors
    /// I/O errors of `out`.
    pub fn new(mut out: W, header: Option<&[u8]>) -> std::io::Result<Self> {
        if let Some(h) = header {
            out.write_all(h)?;
            out.write_all(b";")?;
        }
        out.write_all(REJECT_COLUMNS.join(";").as_bytes())?;
        out.write_all(b"\r\n")?;
        Ok(Self { out })
    }

    /// One rejected row: its raw bytes, then the code and the description.
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn write_row(&mut self, raw: &[u8], code: &str, description: &str) -> std::io::Result<()> {
        self.out.write_all(raw)?;
        write!(
            self.out,
            ";{};{}\r\n",
            csv_field(code),
            csv_field(description)
        )
    }

    /// A line with `data_columns` empty data columns (a file-level failure, as PU writes a
    /// header failure).
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn write_empty_row(
        &mut self,
        data_columns: usize,
        code: &str,
        description: &str,
    ) -> std::io::Result<()> {
        self.out.write_all(";".repeat(data_columns).as_bytes())?;
        write!(
            self.out,
            "{};{}\r\n",
            csv_field(code),
            csv_field(description)
        )
    }

    /// Flushes and returns the output.
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The canonical header of a 1.x version (`None` for 2.0: it has no fixed layout), used for the
/// rejects copy of a file whose own header could not be read.
pub fn canonical_header(v: FeedVersion) -> Option<String> {
    v.is_positional().then(|| v1_columns(v).join(";"))
}

/// `0.00` for a valid amount, the input otherwise (FORMAT.md §5.2: outputs use dot decimals
/// with exactly two decimals).
fn amount_0_00(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    Amount::parse_decimal_lenient(s)
        .map(Amount::to_decimal_string)
        .unwrap_or_else(|_| s.to_string())
}

/// `azione` of an IUV-copy line: the row's own, or (FULL mode, where it may be empty) the one
/// matching what was done (`INSERITO` → `I`, `ANNULLATO` → `A`, otherwise `M`).
fn action_for(raw: &str, performed: &str) -> String {
    if !raw.is_empty() {
        return raw.to_ascii_uppercase();
    }
    match performed {
        "INSERITO" => "I",
        "ANNULLATO" => "A",
        _ => "M",
    }
    .to_string()
}

/// How the IUV copy is laid out (FORMAT.md §5.5): MyPay `_IUV.csv` = the original header and
/// each accepted row re-serialised at full width with `codIuv` filled and amounts `0.00`; PU
/// `_iuv.csv` = the §2.2 layout (the 1.4 columns: IUD … `bilancio`, `flgGeneraIuv`,
/// `flagMultiBeneficiario`, the 12 `*EnteSecondario` columns from transfer group 2, `azione`),
/// `tipoVersamento` always `ALL`.
#[derive(Debug, Clone)]
pub struct IuvCopyLayout {
    flavour: CompatFlavour,
    /// Output column → where its value comes from.
    columns: Vec<Source>,
    width: usize,
}

#[derive(Debug, Clone)]
enum Source {
    /// Input column (index), copied.
    Copy(Option<usize>),
    /// Input column, as an amount `0.00`.
    Amount(Option<usize>),
    /// The assigned IUV (else the input's `codIuv`).
    Iuv(Option<usize>),
    /// The action.
    Action(Option<usize>),
    /// Input column, with a default when empty.
    Default(Option<usize>, &'static str),
    /// A constant.
    Const(&'static str),
}

impl IuvCopyLayout {
    /// The layout for a file of `version`; `index` gives the input position of a canonical
    /// column (the reader's [`super::FeedReader::column_index`]).
    pub fn new(version: FeedVersion, index: &dyn Fn(&str) -> Option<usize>) -> Self {
        let flavour = CompatFlavour::for_version(version);
        let names = match flavour {
            CompatFlavour::Mypay => v1_columns(version),
            CompatFlavour::Pu => v1_columns(FeedVersion::V1_4),
        };
        let group2 = |stem: &str| index(&format!("{stem}_2"));
        let columns: Vec<Source> = names
            .iter()
            .map(|&name| match (flavour, name) {
                (_, col::IUV) => Source::Iuv(index(name)),
                (_, col::ACTION) => Source::Action(index(name)),
                (CompatFlavour::Mypay, col::AMOUNT | col::PA_FEE | col::SEC_AMOUNT) => {
                    Source::Amount(index(name))
                }
                (CompatFlavour::Mypay, _) => Source::Copy(index(name)),
                (CompatFlavour::Pu, col::AMOUNT) => Source::Amount(index(name)),
                (CompatFlavour::Pu, col::PA_FEE) => Source::Const(""),
                (CompatFlavour::Pu, col::TIPO_VERSAMENTO) => Source::Const("ALL"),
                (CompatFlavour::Pu, col::GENERATE_IUV) => Source::Default(index(name), "true"),
                (CompatFlavour::Pu, col::MULTI_BENEFICIARY) => {
                    Source::Default(index(name), "false")
                }
                (CompatFlavour::Pu, col::SEC_CF) => Source::Copy(group2(col::T_CF)),
                (CompatFlavour::Pu, col::SEC_NAME) => Source::Copy(group2(col::T_NAME)),
                (CompatFlavour::Pu, col::SEC_IBAN) => Source::Copy(group2(col::T_IBAN)),
                (CompatFlavour::Pu, col::SEC_DATI) => Source::Copy(group2(col::T_CATEGORY)),
                (CompatFlavour::Pu, col::SEC_CAUSALE) => Source::Copy(group2(col::T_CAUSALE)),
                (CompatFlavour::Pu, col::SEC_AMOUNT) => Source::Amount(group2(col::T_AMOUNT)),
                (
                    CompatFlavour::Pu,
                    col::SEC_ADDRESS
                    | col::SEC_CIVIC
                    | col::SEC_CAP
                    | col::SEC_LOCATION
                    | col::SEC_PROVINCE
                    | col::SEC_NATION,
                ) => Source::Const(""),
                (CompatFlavour::Pu, _) => Source::Copy(index(name)),
            })
            .collect();
        Self {
            flavour,
            width: columns.len(),
            columns,
        }
    }

    /// The flavour.
    pub fn flavour(&self) -> CompatFlavour {
        self.flavour
    }

    /// The PU header (the 1.4 names); MyPay copies keep the file's own header instead.
    pub fn pu_header() -> String {
        v1_columns(FeedVersion::V1_4).join(";")
    }

    /// Number of output columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The output fields of an accepted row: `raw` as read (trimmed), `iuv` the IUV it got or
    /// kept (empty for a row without one), `performed` its `azioneEseguita`.
    pub fn row(&self, raw: &[String], iuv: &str, performed: &str) -> Vec<String> {
        let get = |i: &Option<usize>| i.and_then(|i| raw.get(i)).map(String::as_str).unwrap_or("");
        self.columns
            .iter()
            .map(|c| match c {
                Source::Copy(i) => get(i).to_string(),
                Source::Amount(i) => amount_0_00(get(i)),
                Source::Iuv(i) if iuv.is_empty() => get(i).to_string(),
                Source::Iuv(_) => iuv.to_string(),
                Source::Action(i) => action_for(get(i), performed),
                Source::Default(i, d) if get(i).is_empty() => (*d).to_string(),
                Source::Default(i, _) => get(i).to_string(),
                Source::Const(s) => (*s).to_string(),
            })
            .collect()
    }
}

/// Streaming writer of the IUV copy: a header line, then one line per accepted row (`;`,
/// `\r\n`, quoting only when needed).
pub struct IuvCopyWriter<W: Write> {
    csv: csv::Writer<W>,
}

impl<W: Write> IuvCopyWriter<W> {
    /// Writes `header` as given (the original header bytes, or [`IuvCopyLayout::pu_header`]).
    ///
    /// # Errors
    /// I/O errors of `out`.
    pub fn new(mut out: W, header: &[u8]) -> std::io::Result<Self> {
        out.write_all(header)?;
        out.write_all(b"\r\n")?;
        let csv = csv::WriterBuilder::new()
            .delimiter(b';')
            .quote_style(csv::QuoteStyle::Necessary)
            .terminator(csv::Terminator::CRLF)
            .has_headers(false)
            .from_writer(out);
        Ok(Self { csv })
    }

    /// One line.
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn write(&mut self, fields: &[String]) -> std::io::Result<()> {
        self.csv
            .write_record(fields)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Flushes and returns the output.
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn finish(self) -> std::io::Result<W> {
        self.csv
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Streaming writer of `<basename>-RESULT.zip` (FORMAT.md §5.7): entries are deflated and
/// written one after the other straight to the output (no seeking: data descriptors), so an
/// HTTP response can carry it while it is produced.
pub struct ResultZip<W: Write> {
    zip: zip::ZipWriter<zip::write::StreamWriter<W>>,
    modified: zip::DateTime,
    entries: Vec<String>,
}

fn zip_io(e: zip::result::ZipError) -> std::io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

impl<W: Write> ResultZip<W> {
    /// A new archive whose entries carry `modified` as their date (zip dates are local time:
    /// Europe/Rome).
    pub fn new(out: W, modified: chrono::DateTime<chrono::Utc>) -> Self {
        use chrono::{Datelike, Timelike};
        let modified = modified.with_timezone(&chrono_tz::Europe::Rome);
        let t = zip::DateTime::from_date_and_time(
            u16::try_from(modified.year()).unwrap_or(1980),
            u8::try_from(modified.month()).unwrap_or(1),
            u8::try_from(modified.day()).unwrap_or(1),
            u8::try_from(modified.hour()).unwrap_or(0),
            u8::try_from(modified.minute()).unwrap_or(0),
            u8::try_from(modified.second()).unwrap_or(0),
        )
        .unwrap_or_default();
        Self {
            zip: zip::ZipWriter::new_stream(out),
            modified: t,
            entries: Vec::new(),
        }
    }

    /// Starts an entry; write its content into the returned writer before the next call.
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn entry(&mut self, name: &str) -> std::io::Result<&mut dyn Write> {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(self.modified);
        self.zip.start_file(name, opts).map_err(zip_io)?;
        self.entries.push(name.to_string());
        Ok(&mut self.zip)
    }

    /// Writes the central directory; returns the output and the entry names.
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn finish(self) -> std::io::Result<(W, Vec<String>)> {
        let w = self.zip.finish().map_err(zip_io)?;
        Ok((w.into_inner(), self.entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::{FeedReader, ReadOptions};
    use proptest::prelude::*;
    use std::io::Read;

    const H13: &str = "IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;indirizzoPagatore;civicoPagatore;capPagatore;localitaPagatore;provinciaPagatore;nazionePagatore;mailPagatore;dataEsecuzionePagamento;importoDovuto;commissioneCaricoPa;tipoDovuto;tipoVersamento;causaleVersamento;datiSpecificiRiscossione;bilancio;flgGeneraIuv;azione";

    /// (number, fields) of each row.
    type Rows = Vec<(u64, Vec<String>)>;

    /// Every row as the feed reader and as [`RawRows`] see them.
    fn both(body: &[u8]) -> (Rows, Rows) {
        let mut file = format!("\u{feff}\"IUD\";{}\r\n", &H13[4..]).into_bytes();
        file.extend_from_slice(body);
        let reader = FeedReader::new(&file[..], ReadOptions::default()).unwrap();
        let a = reader
            .map(|r| {
                let r = r.unwrap();
                (r.number, r.raw)
            })
            .collect();
        let mut raw = RawRows::new(&file[..]).unwrap();
        assert_eq!(
            raw.header(),
            Some(format!("\"IUD\";{}", &H13[4..]).as_bytes())
        );
        assert_eq!(raw.header_fields(), 22);
        let mut b = Vec::new();
        while let Some((n, bytes)) = raw.next_row().unwrap() {
            b.push((n, parse_fields(bytes)));
        }
        (a, b)
    }

    #[test]
    fn raw_rows_are_numbered_like_the_reader() {
        let body = b"a;b\r\n\r\n  ;  ; \r\n\"x;\ny\";\"q\\\"z\"\n\"\"\"\"\n;\"\";\n last";
        let (a, b) = both(body);
        assert_eq!(a, b);
        assert_eq!(a.len(), 4, "{a:?}");
        let mut raw = RawRows::new(&b"\n\nh1;h2\r\nx;\"multi\r\nline\"\r\ny\n"[..]).unwrap();
        assert_eq!(raw.header(), Some(&b"h1;h2"[..]));
        assert_eq!(
            raw.next_row().unwrap(),
            Some((1, &b"x;\"multi\r\nline\""[..]))
        );
        assert_eq!(raw.next_row().unwrap(), Some((2, &b"y"[..])));
        assert_eq!(raw.next_row().unwrap(), None);
    }

    proptest! {
        #[test]
        fn raw_rows_match_the_reader_on_any_input(
            body in proptest::collection::vec(
                prop::sample::select(vec![
                    "a", ";", "\"", "\\", "\r", "\n", " ", "1", "\u{a0}", "é", "\u{feff}",
                ]),
                0..300,
            )
        ) {
            let (a, b) = both(body.concat().as_bytes());
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn rejects_copy_keeps_lines_verbatim() {
        let mut w = RejectsWriter::new(Vec::new(), Some(b"a;b")).unwrap();
        w.write_row(b"1; \"x;y\" ", "PAA_IMPORT_SINTASSI_CSV", "errore; grave")
            .unwrap();
        w.write_empty_row(2, "PAA_IMPORT_NO_MATCH_MD5", "checksum")
            .unwrap();
        let s = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(
            s,
            "a;b;cod_rifiuto;de_rifiuto\r\n1; \"x;y\" ;PAA_IMPORT_SINTASSI_CSV;\"errore; grave\"\r\n;;PAA_IMPORT_NO_MATCH_MD5;checksum\r\n"
        );
    }

    #[test]
    fn code_mapping() {
        let (c, d) = CompatFlavour::Mypay.reject_fields(
            &[
                "ROW_NOT_FOUND".into(),
                "ROW_BAD_FISCAL_CODE".into(),
                "ROW_MISSING_FIELD".into(),
                "ROW_FIELD_TOO_LONG".into(),
            ],
            &["a".into(), "b".into(), "c".into(), "d".into()],
        );
        assert_eq!(
            c,
            "PAA_IMPORT_ERROR|PAA_IMPORT_SINTASSI_CSV_COD_FISC|PAA_IMPORT_SINTASSI_CSV"
        );
        assert_eq!(d, "a | b | c | d");
        assert_eq!(
            CompatFlavour::Pu.code("ROW_BAD_DUE_DATE", "x non presente"),
            "MISSING_DUE_DATE"
        );
        assert_eq!(
            CompatFlavour::Mypay.code("ROW_BAD_DUE_DATE", "x non valida"),
            "PAA_IMPORT_SINTASSI_CSV_DATA_SCADENZA_PAGAMENTO"
        );
        assert_eq!(
            CompatFlavour::Pu.code("FILE_CHECKSUM_MISMATCH", ""),
            "CSV_GENERIC_ERROR"
        );
        assert_eq!(
            CompatFlavour::Mypay.code("FILE_CHECKSUM_MISMATCH", ""),
            "PAA_IMPORT_NO_MATCH_MD5"
        );
        assert_eq!(
            CompatFlavour::Pu.code("ROW_NOT_FOUND", ""),
            "DEBT_POSITION_BY_IUD_NOT_FOUND"
        );
    }

    #[test]
    fn iuv_layouts() {
        let file =
            format!("{H13}\r\nD1;;F;X;N;;;;;;;;2025-06-30;50;0;T;ALL;C;9/0101101IM/;;true;I\r\n");
        let mut r = FeedReader::new(file.as_bytes(), ReadOptions::default()).unwrap();
        let l = IuvCopyLayout::new(r.version(), &|c| r.column_index(c));
        assert_eq!(l.flavour(), CompatFlavour::Mypay);
        let row = r.next().unwrap().unwrap();
        let out = l.row(&row.raw, "01000000000101030", "INSERITO");
        assert_eq!(out.len(), 22);
        assert_eq!(out[1], "01000000000101030");
        assert_eq!((out[13].as_str(), out[14].as_str()), ("50.00", "0.00"));
        assert_eq!(out[21], "I");
        let v2 = "IUPD;descrizionePosizioneDebitoria;indiceOpzionePagamento;tipoOpzionePagamento;IUD;codIuv;tipoIdentificativoUnivoco;codiceIdentificativoUnivoco;anagraficaPagatore;importoDovuto;tipoDovuto;causaleVersamento;flagMultiBeneficiario;numeroBeneficiari;codiceFiscaleEnte_2;denominazioneEnte_2;ibanAccreditoEnte_2;causaleVersamentoEnte_2;importoVersamentoEnte_2;codiceTassonomiaEnte_2;azione\r\nP;D;1;SINGLE_INSTALLMENT;U1;;F;X;N;300;RETTA;C;true;2;80000000028;Sec;IT60X0542811101000000123456;Q;100;9/0101101IM/;\r\n";
        let mut r = FeedReader::new(
            v2.as_bytes(),
            ReadOptions {
                mode: crate::feeds::FeedMode::Full,
                ..ReadOptions::default()
            },
        )
        .unwrap();
        let l = IuvCopyLayout::new(r.version(), &|c| r.column_index(c));
        assert_eq!(l.flavour(), CompatFlavour::Pu);
        assert_eq!(l.width(), 35);
        let row = r.next().unwrap().unwrap();
        let out = l.row(&row.raw, "01000000000100424", "INSERITO");
        let names: Vec<&str> = v1_columns(FeedVersion::V1_4);
        let get = |n: &str| out[names.iter().position(|x| *x == n).unwrap()].as_str();
        assert_eq!(get("IUD"), "U1");
        assert_eq!(get("codIuv"), "01000000000100424");
        assert_eq!(get("importoDovuto"), "300.00");
        assert_eq!(get("tipoVersamento"), "ALL");
        assert_eq!(get("flgGeneraIuv"), "true");
        assert_eq!(get("codiceFiscaleEnteSecondario"), "80000000028");
        assert_eq!(get("importoVersamentoEnteSecondario"), "100.00");
        assert_eq!(
            get("datiSpecificiRiscossioneEnteSecondario"),
            "9/0101101IM/"
        );
        assert_eq!(get("azione"), "I");
    }

    #[test]
    fn result_zip_streams() {
        let t = chrono::DateTime::parse_from_rfc3339("2025-03-01T09:00:00Z")
            .unwrap()
            .to_utc();
        let mut z = ResultZip::new(Vec::new(), t);
        z.entry("a-ESITO.csv").unwrap().write_all(b"x\r\n").unwrap();
        z.entry("a_SCARTI.csv")
            .unwrap()
            .write_all(b"y\r\n")
            .unwrap();
        let (bytes, names) = z.finish().unwrap();
        assert_eq!(names, ["a-ESITO.csv", "a_SCARTI.csv"]);
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let d = a.by_index(0).unwrap().last_modified().unwrap();
        assert_eq!((d.year(), d.month(), d.day(), d.hour()), (2025, 3, 1, 10));
        let mut s = String::new();
        a.by_name("a_SCARTI.csv")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "y\r\n");
    }
}
