//! Bulk debt-position feeds ("flussi di import dovuti"), pure part: reading MyPay / PU CSV
//! tracciati 1.0–1.4, 2.0 and 2.0-eng and our own format (FORMAT.md §5), zip containers,
//! file names and manifests, and the writers of the outcome report (§5.7) and of the IUV
//! exchange file (§5.5). Applying a feed to the ledger lives in `mpay-storage` (`feeds`).
//!
//! Also: the integrity checks of an upload ([`checksum`], §5.2) and the MyPay / PU
//! compatibility outputs ([`compat`], §5.5, §5.7).
//!
//! Everything streams: [`FeedReader`] is an iterator of [`FeedRow`]s, one data row at a time,
//! so memory does not grow with the file. Money is [`crate::Amount`] (integer cents).

pub mod checksum;
pub mod compat;
mod container;
pub mod govpay;
mod reader;
mod record;
mod report;
mod row;

pub use container::{
    check_rest_flow_id, extract_zip, FeedFileName, FeedManifest, ZipContents, ZipLimits,
    MANIFEST_NAME,
};
pub use reader::{FeedReader, FeedRow, ReadOptions, MAX_COLUMNS, MAX_LINE_BYTES};
pub use record::{FeedRecord, FeedTransfer, NoticeRequest, PaymentOptionType};
pub use report::{
    IuvExchangeLine, IuvExchangeWriter, IuvKind, OutcomeLine, OutcomeWriter, RowOutcome,
    IUV_EXCHANGE_HEADER, OUTCOME_HEADER,
};

use serde::{Deserialize, Serialize};

/// A tracciato version (FORMAT.md §1.2, §1.3), as detected from the header (§5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FeedVersion {
    /// MyPay 1.0 (20 columns, `causaleVersamento` ≤ 140).
    V1_0,
    /// MyPay 1.1 (20 columns).
    V1_1,
    /// MyPay 1.2 (21 columns, `bilancio`).
    V1_2,
    /// MyPay 1.3 (22 columns, `flgGeneraIuv`).
    V1_3,
    /// MyPay 1.4 (35 columns, one secondary beneficiary).
    V1_4,
    /// PU 2.0 (by name, Italian headers).
    V2_0,
    /// PU 2.0-eng (by name, English headers).
    V2_0Eng,
}

impl FeedVersion {
    /// The file-name token (`1_3`, `2_0_eng`, FORMAT.md §5.2).
    pub fn token(self) -> &'static str {
        match self {
            Self::V1_0 => "1_0",
            Self::V1_1 => "1_1",
            Self::V1_2 => "1_2",
            Self::V1_3 => "1_3",
            Self::V1_4 => "1_4",
            Self::V2_0 => "2_0",
            Self::V2_0Eng => "2_0_eng",
        }
    }

    /// Parses a file-name token, case-insensitively (FORMAT.md §5.2).
    pub fn from_token(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "1_0" => Self::V1_0,
            "1_1" => Self::V1_1,
            "1_2" => Self::V1_2,
            "1_3" => Self::V1_3,
            "1_4" => Self::V1_4,
            "2_0" => Self::V2_0,
            "2_0_eng" => Self::V2_0Eng,
            // GovPay's CSV is read as the equivalent 2.0 file (`govpay`)
            "govpay" => Self::V2_0,
            _ => return None,
        })
    }

    /// True for the MyPay lineage (1.x), bound by column position (FORMAT.md §5.3).
    pub fn is_positional(self) -> bool {
        !matches!(self, Self::V2_0 | Self::V2_0Eng)
    }
}

impl std::fmt::Display for FeedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
            Self::V1_3 => "1.3",
            Self::V1_4 => "1.4",
            Self::V2_0 => "2.0",
            Self::V2_0Eng => "2.0-eng",
        })
    }
}

/// Load mode of a whole file (FORMAT.md §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeedMode {
    /// Row `azione` drives insert / modify / annul.
    #[default]
    Delta,
    /// The file is the complete desired state of a scope: what is missing is cancelled.
    Full,
}

impl FeedMode {
    /// `DELTA` / `FULL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delta => "DELTA",
            Self::Full => "FULL",
        }
    }
}

/// The `azione` of a row (FORMAT.md §1.4): `I`, `M`, `A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RowAction {
    /// `I`: insert.
    Insert,
    /// `M`: modify by IUD.
    Modify,
    /// `A`: annul (cancel) by IUD.
    Annul,
}

impl RowAction {
    /// The one-letter wire form.
    pub fn letter(self) -> &'static str {
        match self {
            Self::Insert => "I",
            Self::Modify => "M",
            Self::Annul => "A",
        }
    }
}

/// Codes of the outcome report (FORMAT.md §5.7 code table). [`ErrorCode::as_str`] gives the
/// exact text written in `codiceEsito`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    FileNameInvalid,
    FileEnteMismatch,
    FileVersionUnknown,
    FileVersionMismatch,
    FileDuplicate,
    FileNoCsv,
    FileMultipleCsv,
    FileChecksumMismatch,
    FileEncoding,
    FullFeedGuard,
    RowColumnCount,
    RowMissingField,
    RowFieldTooLong,
    RowBadFormat,
    RowBadAction,
    RowDuplicateIud,
    RowBadFiscalCode,
    RowBadAddress,
    RowBadEmail,
    RowBadIuv,
    RowIuvDuplicate,
    RowBadAmount,
    RowBadDueDate,
    RowUnknownTipoDovuto,
    RowTipoDovutoDisabled,
    RowBadDatiRiscossione,
    RowBadBilancio,
    RowBadBeneficiary,
    RowOptionInconsistent,
    RowNotFound,
    RowAlreadyExists,
    RowInvalidStatus,
    RowImmutableField,
    RowPositionRejected,
    IuvGenerationFailed,
    SkippedPaid,
    SkippedInPayment,
    InternalError,
    WarnHeaderAlias,
    WarnIgnoredColumn,
    WarnLegacyFieldIgnored,
    WarnBooleanAlias,
    WarnCausaleTruncated140,
}

impl ErrorCode {
    /// The code as written in the report (`ROW_BAD_AMOUNT`, `WARN_BOOLEAN_ALIAS`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FileNameInvalid => "FILE_NAME_INVALID",
            Self::FileEnteMismatch => "FILE_ENTE_MISMATCH",
            Self::FileVersionUnknown => "FILE_VERSION_UNKNOWN",
            Self::FileVersionMismatch => "FILE_VERSION_MISMATCH",
            Self::FileDuplicate => "FILE_DUPLICATE",
            Self::FileNoCsv => "FILE_NO_CSV",
            Self::FileMultipleCsv => "FILE_MULTIPLE_CSV",
            Self::FileChecksumMismatch => "FILE_CHECKSUM_MISMATCH",
            Self::FileEncoding => "FILE_ENCODING",
            Self::FullFeedGuard => "FULL_FEED_GUARD",
            Self::RowColumnCount => "ROW_COLUMN_COUNT",
            Self::RowMissingField => "ROW_MISSING_FIELD",
            Self::RowFieldTooLong => "ROW_FIELD_TOO_LONG",
            Self::RowBadFormat => "ROW_BAD_FORMAT",
            Self::RowBadAction => "ROW_BAD_ACTION",
            Self::RowDuplicateIud => "ROW_DUPLICATE_IUD",
            Self::RowBadFiscalCode => "ROW_BAD_FISCAL_CODE",
            Self::RowBadAddress => "ROW_BAD_ADDRESS",
            Self::RowBadEmail => "ROW_BAD_EMAIL",
            Self::RowBadIuv => "ROW_BAD_IUV",
            Self::RowIuvDuplicate => "ROW_IUV_DUPLICATE",
            Self::RowBadAmount => "ROW_BAD_AMOUNT",
            Self::RowBadDueDate => "ROW_BAD_DUE_DATE",
            Self::RowUnknownTipoDovuto => "ROW_UNKNOWN_TIPO_DOVUTO",
            Self::RowTipoDovutoDisabled => "ROW_TIPO_DOVUTO_DISABLED",
            Self::RowBadDatiRiscossione => "ROW_BAD_DATI_RISCOSSIONE",
            Self::RowBadBilancio => "ROW_BAD_BILANCIO",
            Self::RowBadBeneficiary => "ROW_BAD_BENEFICIARY",
            Self::RowOptionInconsistent => "ROW_OPTION_INCONSISTENT",
            Self::RowNotFound => "ROW_NOT_FOUND",
            Self::RowAlreadyExists => "ROW_ALREADY_EXISTS",
            Self::RowInvalidStatus => "ROW_INVALID_STATUS",
            Self::RowImmutableField => "ROW_IMMUTABLE_FIELD",
            Self::RowPositionRejected => "ROW_POSITION_REJECTED",
            Self::IuvGenerationFailed => "IUV_GENERATION_FAILED",
            Self::SkippedPaid => "SKIPPED_PAID",
            Self::SkippedInPayment => "SKIPPED_IN_PAYMENT",
            Self::InternalError => "INTERNAL_ERROR",
            Self::WarnHeaderAlias => "WARN_HEADER_ALIAS",
            Self::WarnIgnoredColumn => "WARN_IGNORED_COLUMN",
            Self::WarnLegacyFieldIgnored => "WARN_LEGACY_FIELD_IGNORED",
            Self::WarnBooleanAlias => "WARN_BOOLEAN_ALIAS",
            Self::WarnCausaleTruncated140 => "WARN_CAUSALE_TRUNCATED_140",
        }
    }

    /// True for the `WARN_*` codes (the row is applied, esito `WARN`).
    pub fn is_warning(self) -> bool {
        self.as_str().starts_with("WARN_")
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validation problem of a row (FORMAT.md §5.7): the column (canonical 2.0 name, `None`
/// for row-level problems), the code and an Italian message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowIssue {
    /// Column name as in the 2.0 header (e.g. `importoDovuto`), if the problem has one.
    pub column: Option<String>,
    /// §5.7 code.
    pub code: ErrorCode,
    /// Italian description.
    pub message: String,
}

impl RowIssue {
    /// A new issue.
    pub fn new(column: Option<&str>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            column: column.map(str::to_string),
            code,
            message: message.into(),
        }
    }
}

/// A file-level failure (FORMAT.md §5.7, level `file`): nothing of the file is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct FeedFileError {
    /// §5.7 file-level code.
    pub code: ErrorCode,
    /// Italian description, naming the row when known.
    pub message: String,
    /// 1-based data row where the problem was found (`None` for header / container problems).
    pub row: Option<u64>,
}

impl FeedFileError {
    /// A new file-level error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            row: None,
        }
    }
}

/// How `importoDovuto` of a 1.4 multi-beneficiary row is read (FORMAT.md §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mb14AmountMode {
    /// MyPay: total = `importoDovuto + importoVersamentoEnteSecondario` (default).
    #[default]
    Mypay,
    /// PU: total = `importoDovuto`.
    Pu,
}
