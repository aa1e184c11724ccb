//! Mapping of one CSV row to a typed record, with the row validation of FORMAT.md §1.2, §1.3,
//! §1.7 and §5.4.
//!
//! Size (~1 140 lines of code): one validation per FORMAT.md rule, in the order of the
//! columns, each with its Italian message — splitting it would separate rules the format
//! describes together.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::row::{col, RowView};
use super::{ErrorCode, FeedMode, FeedVersion, Mb14AmountMode, ReadOptions, RowAction, RowIssue};
use crate::ids::{Amount, FiscalCode, Iban, Iuv, NoticeNumber, OrgFiscalCode};
use crate::position::{Debtor, DebtorType, MAX_TRANSFERS};

/// `tipoOpzionePagamento` (FORMAT.md §1.3, §1.4); unknown values are kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaymentOptionType {
    /// `SINGLE_INSTALLMENT` (the default of 1.x rows).
    SingleInstallment,
    /// `INSTALLMENTS`.
    Installments,
    /// `DOWN_PAYMENT`.
    DownPayment,
    /// `REDUCED_SINGLE_INSTALLMENT`.
    ReducedSingleInstallment,
    /// Any other upper-case token (the PU list may be longer, FORMAT.md §6.2).
    Other(String),
}

impl PaymentOptionType {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::SingleInstallment => "SINGLE_INSTALLMENT",
            Self::Installments => "INSTALLMENTS",
            Self::DownPayment => "DOWN_PAYMENT",
            Self::ReducedSingleInstallment => "REDUCED_SINGLE_INSTALLMENT",
            Self::Other(s) => s,
        }
    }

    /// Parses the wire name (`[A-Z_]+`).
    pub fn parse(s: &str) -> Option<Self> {
        let u = s.trim().to_ascii_uppercase();
        Some(match u.as_str() {
            "SINGLE_INSTALLMENT" => Self::SingleInstallment,
            "INSTALLMENTS" => Self::Installments,
            "DOWN_PAYMENT" => Self::DownPayment,
            "REDUCED_SINGLE_INSTALLMENT" => Self::ReducedSingleInstallment,
            _ if !u.is_empty() && u.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') => {
                Self::Other(u)
            }
            _ => return None,
        })
    }

    /// Whether the option is paid in installments (its rows are `isPartialPayment` options).
    pub fn is_installments(&self) -> bool {
        matches!(self, Self::Installments | Self::DownPayment)
    }
}

/// How the IUV of a row is obtained (FORMAT.md §5.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeRequest {
    /// Tipo A: the Ente supplies the IUV (`codIuv`) and/or the notice number (`numeroAvviso`).
    Supplied {
        /// The IUV (from `codIuv`, or the one inside `numeroAvviso`).
        iuv: Iuv,
        /// The notice number, when given.
        nav: Option<NoticeNumber>,
    },
    /// Tipo B: no IUV and `flgGeneraIuv=true`: the platform generates IUV + notice number.
    Generate,
    /// B-lazy: no IUV and `flgGeneraIuv=false`.
    Lazy,
}

/// A beneficiary of a multi-beneficiary installment (FORMAT.md §1.2 cols 23–34, §1.3 groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedTransfer {
    /// Beneficiary Ente fiscal code.
    pub org_fiscal_code: OrgFiscalCode,
    /// Beneficiary name.
    pub name: Option<String>,
    /// Credit IBAN.
    pub iban: Iban,
    /// Transfer remittance text (defaults to the row's `causaleVersamento`).
    pub remittance: String,
    /// Share in cents (> 0).
    pub amount: Amount,
    /// Taxonomy / `datiSpecificiRiscossione` of the transfer, if given.
    pub category: Option<String>,
}

/// One typed, syntactically valid row (FORMAT.md §5.1: position → option → installment).
/// 1.x rows map to a position with `iupd = IUD`, option 1, `SINGLE_INSTALLMENT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedRecord {
    /// `azione`; `None` only in FULL mode (upsert).
    pub action: Option<RowAction>,
    /// Position id (`IUPD`, falling back to `IUD`).
    pub iupd: String,
    /// Installment id, unique per Ente.
    pub iud: String,
    /// `descrizionePosizioneDebitoria` (2.0).
    pub position_description: Option<String>,
    /// `dataValidita` (2.0).
    pub validity_date: Option<NaiveDate>,
    /// `coobbligato` (2.0).
    pub multi_debtor: bool,
    /// `dataNotifica` (2.0).
    pub notification_date: Option<NaiveDate>,
    /// `indiceOpzionePagamento` (1 for 1.x).
    pub option_index: u32,
    /// `tipoOpzionePagamento`.
    pub option_type: PaymentOptionType,
    /// `descrizioneOpzionePagamento`.
    pub option_description: Option<String>,
    /// Tipo A / B / B-lazy.
    pub notice: NoticeRequest,
    /// The debtor.
    pub debtor: Debtor,
    /// `dataEsecuzionePagamento`.
    pub due_date: Option<NaiveDate>,
    /// Installment total in cents (for 1.4 MYPAY mode: `importoDovuto` + secondary share).
    pub amount: Amount,
    /// Share of the primary transfer (total − Σ other transfers).
    pub primary_amount: Amount,
    /// `tipoDovuto` (the service code).
    pub tipo_dovuto: String,
    /// `causaleVersamento`, cut to 140 characters (`WARN_CAUSALE_TRUNCATED_140`).
    pub remittance: String,
    /// `datiSpecificiRiscossione`.
    pub collection_data: Option<String>,
    /// `bilancio` XML, validated (§1.7).
    pub bilancio: Option<String>,
    /// `flgGeneraIuv` (default true).
    pub generate_notice: bool,
    /// `flagPagamentoPu` (default true; false = record-only, not published).
    pub pagopa_payment: bool,
    /// `draft` (2.0).
    pub draft: bool,
    /// Explicit primary transfer (all `_1` columns filled); `None` = the Ente itself.
    pub primary: Option<FeedTransfer>,
    /// Transfers 2..k.
    pub others: Vec<FeedTransfer>,
    /// `configurazioniEsecuzione` JSON, syntax-checked.
    pub execution_config: Option<String>,
}

impl FeedRecord {
    /// Number of transfers the installment will have.
    pub fn transfer_count(&self) -> usize {
        1 + self.others.len()
    }
}

/// Raw values echoed by the outcome report (FORMAT.md §5.8 d: rejected rows echo the input).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowEcho {
    /// `IUPD` (2.0) or `IUD` (1.x).
    pub iupd: String,
    /// `IUD`.
    pub iud: String,
    /// `azione` as written.
    pub action: String,
    /// `codIuv` as written.
    pub iuv: String,
    /// `importoDovuto` as written.
    pub amount: String,
    /// `dataEsecuzionePagamento` as written.
    pub due_date: String,
    /// `indiceOpzionePagamento` as written.
    pub option_index: String,
}

impl RowEcho {
    pub(crate) fn of(v: &RowView<'_>) -> Self {
        let g = |c: &str| v.get(c).unwrap_or("").to_string();
        let iud = g(col::IUD);
        let iupd = match v.get(col::IUPD) {
            Some(p) if !v.version.is_positional() => p.to_string(),
            _ => iud.clone(),
        };
        Self {
            iupd,
            iud,
            action: g(col::ACTION),
            iuv: g(col::IUV),
            amount: g(col::AMOUNT),
            due_date: g(col::DUE_DATE),
            option_index: if v.version.is_positional() {
                "1".into()
            } else {
                g(col::OPTION_INDEX)
            },
        }
    }
}

/// Accumulates issues while a row is mapped.
struct V<'a, 'b> {
    row: &'b RowView<'a>,
    issues: Vec<RowIssue>,
    warnings: Vec<RowIssue>,
}

impl<'a> V<'a, '_> {
    fn get(&self, c: &str) -> Option<&'a str> {
        self.row.get(c)
    }

    fn err(&mut self, c: &str, code: ErrorCode, msg: impl Into<String>) {
        self.issues.push(RowIssue::new(Some(c), code, msg));
    }

    fn warn(&mut self, c: &str, code: ErrorCode, msg: impl Into<String>) {
        self.warnings.push(RowIssue::new(Some(c), code, msg));
    }

    /// Text with a maximum length in characters; `required` → `ROW_MISSING_FIELD`.
    fn text(&mut self, c: &str, required: bool, max: usize) -> Option<String> {
        match self.get(c) {
            None => {
                if required {
                    self.err(c, ErrorCode::RowMissingField, format!("{c} non presente"));
                }
                None
            }
            Some(v) if v.chars().count() > max => {
                self.err(
                    c,
                    ErrorCode::RowFieldTooLong,
                    format!("{c} troppo lungo (massimo {max} caratteri)"),
                );
                None
            }
            Some(v) => Some(v.to_string()),
        }
    }

    fn amount(&mut self, c: &str, required: bool, code: ErrorCode) -> Option<Amount> {
        let v = match self.get(c) {
            None => {
                if required {
                    self.err(c, ErrorCode::RowMissingField, format!("{c} non presente"));
                }
                return None;
            }
            Some(v) => v,
        };
        if v.len() > 15 {
            self.err(c, code, format!("{c} troppo lungo (massimo 15 caratteri)"));
            return None;
        }
        if v.contains(',') {
            self.err(
                c,
                code,
                format!("{c} non numerico (usare il punto come separatore decimale)"),
            );
            return None;
        }
        match Amount::parse_decimal_lenient(v) {
            Ok(a) if a.is_zero() => {
                self.err(c, code, format!("{c} deve essere maggiore di zero"));
                None
            }
            Ok(a) => Some(a),
            Err(crate::IdError::OutOfRange { .. }) => {
                self.err(c, code, format!("{c} oltre il massimo 999999999.99"));
                None
            }
            Err(_) => {
                self.err(
                    c,
                    code,
                    format!("{c} non numerico (cifre, punto decimale, al massimo 2 decimali)"),
                );
                None
            }
        }
    }

    fn date(&mut self, c: &str, code: ErrorCode) -> Option<NaiveDate> {
        let v = self.get(c)?;
        match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
            Ok(d) if v.len() == 10 => match crate::domain::dates::check_day(d) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(c, code, format!("{c}: {}", e.message_it()));
                    None
                }
            },
            _ => {
                self.err(c, code, format!("{c} non valida (formato yyyy-MM-dd)"));
                None
            }
        }
    }

    fn boolean(&mut self, c: &str, default: bool) -> bool {
        let Some(v) = self.get(c) else {
            return default;
        };
        match v.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            "1" | "s" | "y" | "si" | "yes" => {
                self.warn(
                    c,
                    ErrorCode::WarnBooleanAlias,
                    format!("{c}: valore {v} letto come true"),
                );
                true
            }
            "0" | "n" | "no" => {
                self.warn(
                    c,
                    ErrorCode::WarnBooleanAlias,
                    format!("{c}: valore {v} letto come false"),
                );
                false
            }
            _ => {
                self.err(
                    c,
                    ErrorCode::RowBadFormat,
                    format!("{c} non booleano (true/false)"),
                );
                default
            }
        }
    }
}

fn dati_riscossione_ok(s: &str) -> bool {
    // ^[0129]/\S{3,138}$
    let mut ch = s.chars();
    let first_ok = matches!(ch.next(), Some('0' | '1' | '2' | '9'));
    let slash = ch.next() == Some('/');
    let rest: Vec<char> = ch.collect();
    first_ok && slash && (3..=138).contains(&rest.len()) && rest.iter().all(|c| !c.is_whitespace())
}

fn secondary_dati_ok(s: &str) -> bool {
    // ^9/\d{2}\d{2}\d{3}\w{2}/\S{0,129}$
    let c: Vec<char> = s.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or(' ');
    at(0) == '9'
        && at(1) == '/'
        && (2..9).all(|i| at(i).is_ascii_digit())
        && (9..11).all(|i| at(i).is_alphanumeric() || at(i) == '_')
        && at(11) == '/'
        && c.len() <= 12 + 129
        && c.iter().skip(12).all(|ch| !ch.is_whitespace())
}

fn email_ok(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 256
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

/// Validates the `bilancio` XML (FORMAT.md §1.7) and returns Σ importo.
fn bilancio_total(xml: &str) -> Result<Amount, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut total = Amount::ZERO;
    let mut capitoli = 0usize;
    let mut has_cod_capitolo = false;
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Err(e) => return Err(format!("XML non valido: {e}")),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.is_empty() && name != "bilancio" {
                    return Err("l'elemento radice deve essere <bilancio>".into());
                }
                if name == "capitolo" {
                    capitoli += 1;
                    has_cod_capitolo = false;
                }
                stack.push(name);
                text.clear();
            }
            Ok(Event::Text(t)) => {
                text.push_str(&String::from_utf8_lossy(t.as_ref()));
            }
            Ok(Event::End(_)) => {
                let name = stack.pop().unwrap_or_default();
                let parent = stack.last().map(String::as_str).unwrap_or("");
                match (name.as_str(), parent) {
                    ("importo", "accertamento") => {
                        let v = text.trim();
                        let a = Amount::parse_decimal(v)
                            .map_err(|_| format!("importo {v} non valido (formato 0.00)"))?;
                        total = total
                            .checked_add(a)
                            .ok_or_else(|| "somma degli importi troppo grande".to_string())?;
                    }
                    ("codCapitolo", "capitolo") => {
                        let n = text.trim().chars().count();
                        if !(1..=64).contains(&n) {
                            return Err("codCapitolo deve avere da 1 a 64 caratteri".into());
                        }
                        has_cod_capitolo = true;
                    }
                    ("capitolo", _) if !has_cod_capitolo => {
                        return Err("capitolo senza codCapitolo".into())
                    }
                    _ => {}
                }
                text.clear();
            }
            Ok(_) => {}
        }
    }
    if capitoli == 0 {
        return Err("nessun capitolo".into());
    }
    Ok(total)
}

fn cut140(s: &str) -> String {
    s.chars().take(140).collect()
}

/// Reads a transfer group; `Ok(None)` when it is entirely empty.
#[allow(clippy::too_many_arguments)]
fn transfer(
    v: &mut V<'_, '_>,
    label: &str,
    cf_col: &str,
    name_col: &str,
    iban_col: &str,
    causale_col: &str,
    amount_col: &str,
    category_col: &str,
    default_causale: &str,
) -> Option<Option<FeedTransfer>> {
    let any = [
        cf_col,
        name_col,
        iban_col,
        causale_col,
        amount_col,
        category_col,
    ]
    .iter()
    .any(|c| v.get(c).is_some());
    if !any {
        return Some(None);
    }
    let before = v.issues.len();
    let bad = ErrorCode::RowBadBeneficiary;
    let cf = match v.get(cf_col) {
        None => {
            v.err(cf_col, bad, format!("{label}: {cf_col} non presente"));
            None
        }
        Some(s) => match OrgFiscalCode::parse_unchecked(s) {
            Ok(c) => Some(c),
            Err(_) => {
                v.err(
                    cf_col,
                    bad,
                    format!("{label}: codice fiscale ente non valido"),
                );
                None
            }
        },
    };
    let name = match v.get(name_col) {
        Some(n) if n.chars().count() > 70 => {
            v.err(name_col, bad, format!("{label}: {name_col} troppo lungo"));
            None
        }
        n => n.map(str::to_string),
    };
    let iban = match v.get(iban_col) {
        None => {
            v.err(iban_col, bad, format!("{label}: {iban_col} non presente"));
            None
        }
        Some(s) => match Iban::parse(s) {
            Ok(i) => Some(i),
            Err(e) => {
                v.err(iban_col, bad, format!("{label}: IBAN non valido ({e})"));
                None
            }
        },
    };
    let remittance = match v.get(causale_col) {
        Some(c) if c.chars().count() > 1024 => {
            v.err(causale_col, bad, format!("{label}: causale troppo lunga"));
            None
        }
        Some(c) => Some(cut140(c)),
        None => Some(cut140(default_causale)),
    };
    let amount = match v.get(amount_col) {
        None => {
            v.err(amount_col, bad, format!("{label}: importo non presente"));
            None
        }
        Some(_) => v.amount(amount_col, true, bad),
    };
    let category = v.get(category_col).map(str::to_string);
    if v.issues.len() > before {
        return None;
    }
    Some(Some(FeedTransfer {
        org_fiscal_code: cf?,
        name,
        iban: iban?,
        remittance: remittance?,
        amount: amount?,
        category,
    }))
}

/// Maps and validates one row (FORMAT.md §5.4). Returns the record or the issues, and the
/// warnings.
pub(crate) fn build_record(
    row: &RowView<'_>,
    opts: ReadOptions,
) -> (Result<FeedRecord, Vec<RowIssue>>, Vec<RowIssue>) {
    let mut v = V {
        row,
        issues: Vec::new(),
        warnings: Vec::new(),
    };
    let version = row.version;
    let v1 = version.is_positional();

    // azione
    let action = match v.get(col::ACTION) {
        None if opts.mode == FeedMode::Full => None,
        None => {
            v.err(
                col::ACTION,
                ErrorCode::RowBadAction,
                "azione non presente (I, M o A)",
            );
            None
        }
        Some(a) => match a.to_ascii_uppercase().as_str() {
            "I" => Some(RowAction::Insert),
            "M" => Some(RowAction::Modify),
            "A" => Some(RowAction::Annul),
            _ => {
                v.err(
                    col::ACTION,
                    ErrorCode::RowBadAction,
                    format!("azione {a} non valida (I, M o A)"),
                );
                None
            }
        },
    };

    // IUD / IUPD
    let iud = v.text(col::IUD, true, 35);
    if let Some(i) = &iud {
        if i.starts_with("000") {
            v.err(
                col::IUD,
                ErrorCode::RowBadFormat,
                "IUD non può iniziare con 000",
            );
        }
    }
    let iupd = if v1 {
        iud.clone()
    } else {
        match v.text(col::IUPD, false, 256) {
            Some(p) => Some(p),
            None => iud.clone(),
        }
    };

    // 2.0 position / option columns
    let position_description = if v1 {
        None
    } else {
        v.text(col::POS_DESCRIPTION, true, 140)
    };
    let validity_date = v.date(col::VALIDITY_DATE, ErrorCode::RowBadFormat);
    let multi_debtor = v.boolean(col::MULTI_DEBTOR, false);
    let notification_date = v.date(col::NOTIFICATION_DATE, ErrorCode::RowBadFormat);
    let option_index = if v1 {
        Some(1)
    } else {
        match v.get(col::OPTION_INDEX) {
            None => {
                v.err(
                    col::OPTION_INDEX,
                    ErrorCode::RowMissingField,
                    "indiceOpzionePagamento non presente",
                );
                None
            }
            Some(s) => match s.parse::<u32>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    v.err(
                        col::OPTION_INDEX,
                        ErrorCode::RowBadFormat,
                        "indiceOpzionePagamento deve essere un intero ≥ 1",
                    );
                    None
                }
            },
        }
    };
    let option_type = if v1 {
        Some(PaymentOptionType::SingleInstallment)
    } else {
        match v.get(col::OPTION_TYPE) {
            None => {
                v.err(
                    col::OPTION_TYPE,
                    ErrorCode::RowMissingField,
                    "tipoOpzionePagamento non presente",
                );
                None
            }
            Some(s) => {
                let t = PaymentOptionType::parse(s);
                if t.is_none() {
                    v.err(
                        col::OPTION_TYPE,
                        ErrorCode::RowBadFormat,
                        format!("tipoOpzionePagamento {s} non valido"),
                    );
                }
                t
            }
        }
    };
    let option_description = v.text(col::OPTION_DESCRIPTION, false, 140);

    // debtor
    let kind = match v.get(col::ENTITY_TYPE) {
        None => {
            v.err(
                col::ENTITY_TYPE,
                ErrorCode::RowMissingField,
                "tipoIdentificativoUnivoco non presente",
            );
            None
        }
        Some(t) => match t.to_ascii_uppercase().as_str() {
            "F" => Some(DebtorType::F),
            "G" => Some(DebtorType::G),
            _ => {
                v.err(
                    col::ENTITY_TYPE,
                    ErrorCode::RowBadFiscalCode,
                    "tipoIdentificativoUnivoco deve essere F o G",
                );
                None
            }
        },
    };
    let fiscal_code = match v.get(col::FISCAL_CODE) {
        None => {
            v.err(
                col::FISCAL_CODE,
                ErrorCode::RowMissingField,
                "codiceIdentificativoUnivoco non presente",
            );
            None
        }
        Some(s) => {
            let upper = s.to_ascii_uppercase();
            match (FiscalCode::parse_unchecked(&upper), kind) {
                (Ok(FiscalCode::Person(_)), Some(DebtorType::G))
                | (Ok(FiscalCode::Anonymous), Some(DebtorType::G)) => {
                    v.err(
                        col::FISCAL_CODE,
                        ErrorCode::RowBadFiscalCode,
                        "codice fiscale non valido per un soggetto G (11 cifre)",
                    );
                    None
                }
                (Ok(fc), _) => Some(fc),
                (Err(_), _) => {
                    v.err(
                        col::FISCAL_CODE,
                        ErrorCode::RowBadFiscalCode,
                        "codice fiscale non valido",
                    );
                    None
                }
            }
        }
    };
    let full_name = v.text(col::FULL_NAME, true, 70);
    let addr = |v: &mut V<'_, '_>, c: &str, max: usize| -> Option<String> {
        match v.get(c) {
            Some(s) if s.chars().count() > max => {
                v.err(
                    c,
                    ErrorCode::RowBadAddress,
                    format!("{c} troppo lungo (massimo {max} caratteri)"),
                );
                None
            }
            s => s.map(str::to_string),
        }
    };
    let street_name = addr(&mut v, col::ADDRESS, 70);
    let civic_number = addr(&mut v, col::CIVIC, 16);
    let postal_code = addr(&mut v, col::POSTAL_CODE, 16);
    let city = addr(&mut v, col::LOCATION, 35);
    let province = addr(&mut v, col::PROVINCE, 2);
    let country = match v.get(col::NATION) {
        Some(n) if n.len() == 2 && n.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(n.to_ascii_uppercase())
        }
        Some(_) => {
            v.err(
                col::NATION,
                ErrorCode::RowBadAddress,
                "nazionePagatore non valida (codice ISO 3166 di 2 lettere)",
            );
            None
        }
        None => None,
    };
    if let Some(cap) = &postal_code {
        let italian = country.as_deref().is_none_or(|c| c == "IT");
        if italian && !(cap.len() == 5 && cap.bytes().all(|b| b.is_ascii_digit())) {
            v.err(
                col::POSTAL_CODE,
                ErrorCode::RowBadAddress,
                "capPagatore non valido (5 cifre)",
            );
        }
    }
    if let Some(p) = &province {
        if !p.bytes().all(|b| b.is_ascii_alphabetic()) {
            v.err(
                col::PROVINCE,
                ErrorCode::RowBadAddress,
                "provinciaPagatore non valida (sigla di 2 lettere)",
            );
        }
    }
    let email = match v.get(col::EMAIL) {
        Some(e) if !email_ok(e) => {
            v.err(
                col::EMAIL,
                ErrorCode::RowBadEmail,
                "mailPagatore non valida",
            );
            None
        }
        e => e.map(str::to_string),
    };

    // due date, amount
    let due_date = v.date(col::DUE_DATE, ErrorCode::RowBadDueDate);
    if v.get(col::DUE_DATE).is_none() && matches!(version, FeedVersion::V1_0 | FeedVersion::V1_1) {
        v.err(
            col::DUE_DATE,
            ErrorCode::RowBadDueDate,
            "dataEsecuzionePagamento non presente (obbligatoria nelle versioni 1.0 e 1.1)",
        );
    }
    let amount = v.amount(col::AMOUNT, true, ErrorCode::RowBadAmount);
    if let Some(fee) = v.get(col::PA_FEE) {
        if fee.contains(',') || (Amount::parse_decimal_lenient(fee).is_err()) {
            v.err(
                col::PA_FEE,
                ErrorCode::RowBadAmount,
                "commissioneCaricoPa non numerica",
            );
        }
    }
    let tipo_dovuto = v.text(col::TIPO_DOVUTO, true, 64);
    if let Some(tv) = v.get(col::TIPO_VERSAMENTO) {
        let ok = tv.len() <= 32
            && (tv == "ALL"
                || tv
                    .split('|')
                    .all(|t| matches!(t, "BBT" | "BP" | "AD" | "CP" | "PO" | "OBEP")));
        if !ok {
            v.err(
                col::TIPO_VERSAMENTO,
                ErrorCode::RowBadFormat,
                "tipoVersamento non valido",
            );
        }
    }
    let causale_max = if version == FeedVersion::V1_0 {
        140
    } else {
        1024
    };
    let remittance = v.text(col::CAUSALE, true, causale_max).map(|c| {
        if c.chars().count() > 140 {
            v.warn(
                col::CAUSALE,
                ErrorCode::WarnCausaleTruncated140,
                "causaleVersamento oltre 140 caratteri: troncata per pagoPA",
            );
        }
        cut140(&c)
    });
    let collection_data = match v.get(col::DATI_RISCOSSIONE) {
        Some(d) if !dati_riscossione_ok(d) => {
            v.err(
                col::DATI_RISCOSSIONE,
                ErrorCode::RowBadDatiRiscossione,
                "datiSpecificiRiscossione non validi (formato 9/<codice tassonomico>/)",
            );
            None
        }
        d => d.map(str::to_string),
    };
    let bilancio = match v.get(col::BILANCIO) {
        Some(b) if b.chars().count() > 4096 => {
            v.err(
                col::BILANCIO,
                ErrorCode::RowBadBilancio,
                "bilancio troppo lungo (massimo 4096 caratteri)",
            );
            None
        }
        b => b.map(str::to_string),
    };
    let generate_notice = v.boolean(col::GENERATE_IUV, true);
    let pagopa_payment = v.boolean(col::PU_PAYMENT, true);
    let draft = v.boolean(col::DRAFT, false);
    let execution_config = match v.get(col::EXEC_CONFIG) {
        Some(j) if serde_json::from_str::<serde_json::Value>(j).is_err() => {
            v.err(
                col::EXEC_CONFIG,
                ErrorCode::RowBadFormat,
                "configurazioniEsecuzione non è un JSON valido",
            );
            None
        }
        j => j.map(str::to_string),
    };

    // IUV / notice number (Tipo A / B)
    let iuv_in = match v.get(col::IUV) {
        None => None,
        Some(s) => match Iuv::parse(s) {
            Ok(i) => Some(i),
            Err(_) => {
                v.err(
                    col::IUV,
                    ErrorCode::RowBadIuv,
                    "codIuv non valido (15 o 17 cifre)",
                );
                None
            }
        },
    };
    let nav_in = match v.get(col::NAV) {
        None => None,
        Some(s) => match NoticeNumber::parse_unchecked(s) {
            Ok(n) => Some(n),
            Err(_) => {
                v.err(
                    col::NAV,
                    ErrorCode::RowBadIuv,
                    "numeroAvviso non valido (18 cifre)",
                );
                None
            }
        },
    };
    let notice = match (iuv_in, nav_in) {
        (Some(iuv), Some(nav)) => {
            if nav.iuv() != iuv {
                v.err(
                    col::NAV,
                    ErrorCode::RowBadIuv,
                    "numeroAvviso e codIuv non corrispondono",
                );
            }
            NoticeRequest::Supplied {
                iuv,
                nav: Some(nav),
            }
        }
        (Some(iuv), None) => NoticeRequest::Supplied { iuv, nav: None },
        (None, Some(nav)) => NoticeRequest::Supplied {
            iuv: nav.iuv(),
            nav: Some(nav),
        },
        (None, None) if v.get(col::IUV).is_some() || v.get(col::NAV).is_some() => {
            NoticeRequest::Generate // already reported
        }
        (None, None) if generate_notice => NoticeRequest::Generate,
        (None, None) => NoticeRequest::Lazy,
    };

    // beneficiaries
    let causale_default = remittance.clone().unwrap_or_default();
    let mut primary = None;
    let mut others = Vec::new();
    let multi = v.boolean(col::MULTI_BENEFICIARY, false);
    let mut total = amount;
    if version == FeedVersion::V1_4 {
        if multi {
            if let Some(t) = transfer(
                &mut v,
                "ente secondario",
                col::SEC_CF,
                col::SEC_NAME,
                col::SEC_IBAN,
                col::SEC_CAUSALE,
                col::SEC_AMOUNT,
                col::SEC_DATI,
                &causale_default,
            ) {
                match t {
                    Some(t) => {
                        if let Some(d) = &t.category {
                            if !secondary_dati_ok(d) {
                                v.err(
                                    col::SEC_DATI,
                                    ErrorCode::RowBadBeneficiary,
                                    "datiSpecificiRiscossioneEnteSecondario non validi",
                                );
                            }
                        }
                        if opts.mb14_amount_mode == Mb14AmountMode::Mypay {
                            total = amount.and_then(|a| a.checked_add(t.amount));
                        }
                        others.push(t);
                    }
                    None => v.err(
                        col::SEC_CF,
                        ErrorCode::RowBadBeneficiary,
                        "flagMultiBeneficiario=true ma ente secondario assente",
                    ),
                }
            }
        }
    } else if !v1 {
        let group = |n: usize| {
            [
                format!("{}_{n}", col::T_CF),
                format!("{}_{n}", col::T_NAME),
                format!("{}_{n}", col::T_IBAN),
                format!("{}_{n}", col::T_CAUSALE),
                format!("{}_{n}", col::T_AMOUNT),
                format!("{}_{n}", col::T_CATEGORY),
            ]
        };
        let g1 = group(1);
        let all_1 = g1.iter().take(5).all(|c| v.get(c).is_some());
        if all_1 {
            let [a, b, c, d, e, f] = &g1;
            if let Some(t) = transfer(
                &mut v,
                "trasferimento 1",
                a,
                b,
                c,
                d,
                e,
                f,
                &causale_default,
            ) {
                primary = t;
            }
        } else if g1.iter().any(|c| v.get(c).is_some()) {
            v.err(
                &format!("{}_1", col::T_CF),
                ErrorCode::RowBadBeneficiary,
                "trasferimento 1 incompleto: compilare tutte le colonne _1 o nessuna",
            );
        }
        if multi {
            let k = match v.get(col::BENEFICIARIES) {
                None => Some(2),
                Some(s) => match s.parse::<usize>() {
                    Ok(n) if (1..=MAX_TRANSFERS).contains(&n) => Some(n),
                    _ => {
                        v.err(
                            col::BENEFICIARIES,
                            ErrorCode::RowBadBeneficiary,
                            "numeroBeneficiari deve essere tra 1 e 5",
                        );
                        None
                    }
                },
            };
            for n in 2..=k.unwrap_or(1) {
                let [a, b, c, d, e, f] = &group(n);
                match transfer(
                    &mut v,
                    &format!("trasferimento {n}"),
                    a,
                    b,
                    c,
                    d,
                    e,
                    f,
                    &causale_default,
                ) {
                    Some(Some(t)) => others.push(t),
                    Some(None) => v.err(
                        a,
                        ErrorCode::RowBadBeneficiary,
                        format!("trasferimento {n} non presente (numeroBeneficiari)"),
                    ),
                    None => {}
                }
            }
        }
    }
    let others_sum = Amount::checked_sum(others.iter().map(|t| t.amount));
    let primary_amount = match (total, others_sum, &primary) {
        (Some(t), Some(s), Some(p)) => {
            if s.checked_add(p.amount) != Some(t) {
                v.err(
                    col::AMOUNT,
                    ErrorCode::RowBadBeneficiary,
                    "la somma dei trasferimenti non corrisponde a importoDovuto",
                );
            }
            Some(p.amount)
        }
        (Some(t), Some(s), None) => match t.checked_sub(s) {
            Some(p) if !p.is_zero() => Some(p),
            _ => {
                v.err(
                    col::AMOUNT,
                    ErrorCode::RowBadBeneficiary,
                    "la somma dei trasferimenti secondari non è inferiore a importoDovuto",
                );
                None
            }
        },
        (Some(_), None, _) => {
            v.err(
                col::AMOUNT,
                ErrorCode::RowBadBeneficiary,
                "somma dei trasferimenti oltre il massimo",
            );
            None
        }
        (None, _, _) => None,
    };
    if let (Some(b), Some(t)) = (&bilancio, total) {
        match bilancio_total(b) {
            Ok(sum) if sum == t => {}
            Ok(sum) => v.err(
                col::BILANCIO,
                ErrorCode::RowBadBilancio,
                format!(
                    "bilancio: la somma degli accertamenti ({sum}) è diversa dall'importo ({t})"
                ),
            ),
            Err(e) => v.err(
                col::BILANCIO,
                ErrorCode::RowBadBilancio,
                format!("bilancio: {e}"),
            ),
        }
    }

    let warnings = std::mem::take(&mut v.warnings);
    if !v.issues.is_empty() {
        return (Err(v.issues), warnings);
    }
    let build = || -> Option<FeedRecord> {
        Some(FeedRecord {
            action,
            iupd: iupd?,
            iud: iud?,
            position_description,
            validity_date,
            multi_debtor,
            notification_date,
            option_index: option_index?,
            option_type: option_type?,
            option_description,
            notice,
            debtor: Debtor {
                kind: kind?,
                fiscal_code: fiscal_code?,
                full_name: full_name?,
                street_name,
                civic_number,
                postal_code,
                city,
                province: province.map(|p| p.to_ascii_uppercase()),
                region: None,
                country,
                email,
                phone: None,
            },
            due_date,
            amount: total?,
            primary_amount: primary_amount?,
            tipo_dovuto: tipo_dovuto?,
            remittance: remittance?,
            collection_data,
            bilancio,
            generate_notice,
            pagopa_payment,
            draft,
            primary,
            others,
            execution_config,
        })
    };
    match build() {
        Some(r) => (Ok(r), warnings),
        None => (
            Err(vec![RowIssue::new(
                None,
                ErrorCode::InternalError,
                "riga incompleta",
            )]),
            warnings,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes() {
        assert!(dati_riscossione_ok("9/0101101IM/"));
        assert!(!dati_riscossione_ok("9/ab"));
        assert!(!dati_riscossione_ok("3/0101101IM/"));
        assert!(secondary_dati_ok("9/0101101IM/"));
        assert!(!secondary_dati_ok("9/01011IM/"));
        assert!(email_ok("uno@example.invalid"));
        assert!(!email_ok("uno@"));
    }

    #[test]
    fn bilancio_sum() {
        let x = "<bilancio><capitolo><codCapitolo>CAP123</codCapitolo><accertamento>\
                 <codAccertamento>ACC1</codAccertamento><importo>60.00</importo></accertamento>\
                 <accertamento><importo>40.00</importo></accertamento></capitolo></bilancio>";
        assert_eq!(bilancio_total(x).unwrap().cents(), 10000);
        assert!(bilancio_total("<x/>").is_err());
        assert!(bilancio_total("<bilancio><capitolo><accertamento><importo>1.00</importo></accertamento></capitolo></bilancio>").is_err());
    }
}
