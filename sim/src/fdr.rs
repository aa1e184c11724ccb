//! `pagopa-sim fdr`: the PSPs' reporting side (SPEC §9), built from the payments the simulator
//! made (`psp --payments-out FILE`, one JSON line per receipt acknowledged by the station).
//!
//! - `fdr build`: one reporting flow per PSP × receiving organization × IBAN × payment day,
//!   one row per transfer (outcome `EXECUTED`, `STAND_IN` for a Stand-In receipt), id
//!   `<dataRegolamento><idPSP>-S<progressive>` (SPEC §9.2), header count and total; faults on
//!   request (a revised flow, duplicated rows, a code-9 row for an unknown IUV before the normal
//!   rows, an unknown outcome code, a header count/total mismatch, an IUR that is not the
//!   receiptId). Written as one JSON file that `serve` and `bank` read.
//! - `fdr serve`: pagoPA's FdR REST API for organizations (`fdr_organization.json` v1.2.4):
//!   the list with `publishedGt` / `flowDate` / `pspId` and paging (latest published revision
//!   only), the flow header and its paginated payments, the `Ocp-Apim-Subscription-Key` check,
//!   `FDR-xxxx` errors. A revision held back by `build` is published by `POST /_sim/publish`;
//!   `POST /_sim/reload` reads the flows file again (the server may start before the payments).
//! - `fdr bank`: the SCT credits as the Ente's bank or treasurer reports them (camt.053 or OPI
//!   giornale di cassa, see [`crate::bank`]).
//!
//! Independent of the platform's codecs like the rest of the simulator.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::build::{Receipt, ReceiptAccount};

/// One transfer of a recorded payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRecord {
    /// `idTransfer` (1..=5).
    pub id_transfer: u8,
    /// Amount, cents.
    pub amount_cents: i64,
    /// The receiving organization (`fiscalCodePA` of the transfer).
    pub organization: String,
    /// The IBAN credited; `None` for a digital stamp (never reported in a flow).
    pub iban: Option<String>,
}

/// A payment the PSP simulation completed (the station acknowledged its receipt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRecord {
    /// The notice's organization.
    pub organization: String,
    /// NAV.
    pub notice_number: String,
    /// IUV (`creditorReferenceId`).
    pub iuv: String,
    /// `receiptId` (the IUR a flow carries).
    pub receipt_id: String,
    /// PSP id.
    pub psp_id: String,
    /// PSP name.
    pub psp_name: String,
    /// Channel.
    pub channel_id: String,
    /// `paymentDateTime` as sent (Italian local time, no offset).
    pub payment_date_time: String,
    /// A Stand-In receipt.
    pub stand_in: bool,
    /// Transfers.
    pub transfers: Vec<TransferRecord>,
}

impl PaymentRecord {
    /// The record of a receipt as sent.
    pub fn of(r: &Receipt) -> PaymentRecord {
        PaymentRecord {
            organization: r.fiscal_code.clone(),
            notice_number: r.notice_number.clone(),
            iuv: r.creditor_reference_id.clone(),
            receipt_id: r.receipt_id.clone(),
            psp_id: r.psp.id_psp.clone(),
            psp_name: r.psp.company_name.clone(),
            channel_id: r.psp.id_channel.clone(),
            payment_date_time: r.payment_date_time.clone().unwrap_or_default(),
            stand_in: r.stand_in == Some(true),
            transfers: r
                .transfers
                .iter()
                .map(|t| TransferRecord {
                    id_transfer: t.id_transfer,
                    amount_cents: t.amount.0,
                    organization: t.fiscal_code_pa.clone(),
                    iban: match &t.account {
                        ReceiptAccount::Iban(i) => Some(i.clone()),
                        ReceiptAccount::MbdAttachment(_) => None,
                    },
                })
                .collect(),
        }
    }
}

/// Appends payment records to a JSON-lines file (shared by the PSP workers).
pub struct PaymentLog {
    file: Mutex<std::fs::File>,
}

impl PaymentLog {
    /// Opens `path` for appending (created when missing).
    pub fn open(path: &Path) -> Result<PaymentLog, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(PaymentLog {
            file: Mutex::new(file),
        })
    }

    /// Records one receipt the station acknowledged.
    pub fn record(&self, r: &Receipt) -> Result<(), String> {
        let mut line = serde_json::to_string(&PaymentRecord::of(r)).map_err(|e| e.to_string())?;
        line.push('\n');
        let mut f = self.file.lock().map_err(|_| "payment log poisoned")?;
        f.write_all(line.as_bytes()).map_err(|e| e.to_string())
    }
}

/// Reads a payments file (JSON lines; blank lines ignored).
pub fn read_payments(path: &Path) -> Result<Vec<PaymentRecord>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// One row of a flow (`datiSingoliPagamenti` / REST `Payment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimRow {
    /// 1-based index in the flow.
    pub index: u64,
    /// IUV.
    pub iuv: String,
    /// IUR.
    pub iur: String,
    /// `idTransfer`.
    pub id_transfer: u8,
    /// Amount, cents.
    pub amount_cents: i64,
    /// REST `payStatus` (`EXECUTED`, `STAND_IN`, `NO_RPT`, … or an unknown one on request).
    pub pay_status: String,
    /// Payment instant, UTC.
    pub pay_date: String,
}

/// One revision of a flow, as the PSP publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimFlow {
    /// 1-based ordinal of the flow in the build (revisions share it).
    pub ordinal: usize,
    /// Flow id.
    pub fdr: String,
    /// Revision.
    pub revision: u32,
    /// Not published yet (`POST /_sim/publish` publishes it).
    pub held: bool,
    /// Publication instant (UTC).
    pub published: String,
    /// Flow creation instant (UTC).
    pub flow_date: String,
    /// PSP id.
    pub psp_id: String,
    /// PSP name.
    pub psp_name: String,
    /// Channel.
    pub channel_id: String,
    /// Receiving organization.
    pub organization: String,
    /// IBAN credited.
    pub iban: String,
    /// Business day of the payments (Europe/Rome).
    pub payment_day: NaiveDate,
    /// Settlement date (D+1).
    pub regulation_date: NaiveDate,
    /// Settlement reference (TRN).
    pub regulation: String,
    /// Declared number of payments.
    pub declared_count: u64,
    /// Declared total, cents.
    pub declared_cents: i64,
    /// What the PSP actually credits for this flow (rows, a repeated row counted once).
    pub money_cents: i64,
    /// Faults injected in this revision.
    pub faults: Vec<String>,
    /// Rows.
    pub rows: Vec<SimRow>,
}

/// The flows file written by `fdr build`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowsFile {
    /// Every revision of every flow.
    pub flows: Vec<SimFlow>,
}

impl FlowsFile {
    /// Reads a flows file.
    pub fn load(path: &Path) -> Result<FlowsFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes it.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The highest revision of each flow (published or not): what the money follows.
    pub fn latest(&self) -> Vec<&SimFlow> {
        let mut by: BTreeMap<(usize, &str), &SimFlow> = BTreeMap::new();
        for f in &self.flows {
            let e = by.entry((f.ordinal, f.fdr.as_str())).or_insert(f);
            if f.revision > e.revision {
                *e = f;
            }
        }
        by.into_values().collect()
    }
}

/// A fault `build` injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The flow is published as revision 1 missing its last row (a one-row flow: 1 cent short),
    /// and revision 2, the right one, is held until `POST /_sim/publish`.
    Revised,
    /// The flow's first row is repeated.
    DuplicateRows,
    /// A `NO_RPT` (code 9) row for an IUV nobody issued comes first, the normal rows follow.
    Code9,
    /// A row with an outcome code nobody knows, for an unknown IUV.
    UnknownCode,
    /// The header declares one payment and 10.00 EUR more than the rows.
    HeaderMismatch,
    /// The first row carries the PSP's own IUR instead of the receiptId.
    IurDiffers,
}

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            Self::Revised => "revised",
            Self::DuplicateRows => "duplicate-rows",
            Self::Code9 => "code9",
            Self::UnknownCode => "unknown-code",
            Self::HeaderMismatch => "header-mismatch",
            Self::IurDiffers => "iur-differs",
        }
    }
}

/// A fault and the flow (1-based ordinal) it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What.
    pub kind: FaultKind,
    /// Which flow.
    pub flow: usize,
}

impl std::str::FromStr for Fault {
    type Err = String;
    /// `KIND[@N]`: `revised`, `duplicate-rows`, `code9`, `unknown-code`, `header-mismatch`,
    /// `iur-differs`; N = the flow's ordinal (default 1).
    fn from_str(s: &str) -> Result<Fault, String> {
        let (k, n) = match s.split_once('@') {
            Some((k, n)) => (
                k,
                n.parse::<usize>()
                    .map_err(|e| format!("fault {s:?}: flow ordinal: {e}"))?,
            ),
            None => (s, 1),
        };
        let kind = [
            FaultKind::Revised,
            FaultKind::DuplicateRows,
            FaultKind::Code9,
            FaultKind::UnknownCode,
            FaultKind::HeaderMismatch,
            FaultKind::IurDiffers,
        ]
        .into_iter()
        .find(|f| f.name() == k)
        .ok_or_else(|| {
            format!("unknown fault {k:?} (revised, duplicate-rows, code9, unknown-code, header-mismatch, iur-differs)")
        })?;
        if n == 0 {
            return Err(format!("fault {s:?}: flows are numbered from 1"));
        }
        Ok(Fault { kind, flow: n })
    }
}

/// Instants as the FdR API writes them (`2025-01-01T12:00:30.900000Z`).
pub fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// The payment's local date-time (Europe/Rome, as `paymentDateTime` carries it).
fn local_time(p: &PaymentRecord) -> Result<NaiveDateTime, String> {
    let t = p.payment_date_time.trim();
    let head = t.get(..19).unwrap_or(t);
    NaiveDateTime::parse_from_str(head, "%Y-%m-%dT%H:%M:%S")
        .map_err(|e| format!("receipt {}: paymentDateTime {t:?}: {e}", p.receipt_id))
}

fn utc_of_local(n: NaiveDateTime) -> DateTime<Utc> {
    chrono_tz::Europe::Rome
        .from_local_datetime(&n)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| n.and_utc())
}

/// A stable number from a text (FNV-1a), for references that must not change between runs.
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Builds the flows of `payments`, with `faults`, published from `now` on (one second apart).
pub fn build_flows(
    payments: &[PaymentRecord],
    faults: &[Fault],
    now: DateTime<Utc>,
) -> Result<FlowsFile, String> {
    // (psp, receiver, iban, day) → rows
    type Key = (String, String, String, NaiveDate);
    let mut groups: BTreeMap<Key, Vec<(SimRow, &PaymentRecord)>> = BTreeMap::new();
    for p in payments {
        let local = local_time(p)?;
        let day = local.date();
        for t in &p.transfers {
            let Some(iban) = &t.iban else { continue };
            groups
                .entry((p.psp_id.clone(), t.organization.clone(), iban.clone(), day))
                .or_default()
                .push((
                    SimRow {
                        index: 0,
                        iuv: p.iuv.clone(),
                        iur: p.receipt_id.clone(),
                        id_transfer: t.id_transfer,
                        amount_cents: t.amount_cents,
                        pay_status: if p.stand_in { "STAND_IN" } else { "EXECUTED" }.into(),
                        pay_date: instant(utc_of_local(local)),
                    },
                    p,
                ));
        }
    }
    for f in faults {
        if f.flow > groups.len() {
            return Err(format!(
                "fault {}@{}: only {} flow(s) from these payments",
                f.kind.name(),
                f.flow,
                groups.len()
            ));
        }
    }
    let mut progressive: BTreeMap<(String, NaiveDate), u32> = BTreeMap::new();
    let mut out = FlowsFile::default();
    let mut held = Vec::new();
    for (i, ((psp, org, iban, day), mut rows)) in groups.into_iter().enumerate() {
        let ordinal = i + 1;
        rows.sort_by(|a, b| {
            (a.0.pay_date.as_str(), a.0.iuv.as_str(), a.0.id_transfer).cmp(&(
                b.0.pay_date.as_str(),
                b.0.iuv.as_str(),
                b.0.id_transfer,
            ))
        });
        let regulation_date = day + Duration::days(1);
        let prog = progressive
            .entry((psp.clone(), regulation_date))
            .or_insert(0);
        *prog += 1;
        let fdr = format!("{}{psp}-S{:07}", regulation_date.format("%Y-%m-%d"), *prog);
        let first = rows.first().map(|r| r.1);
        let (psp_name, channel) = first
            .map(|p| (p.psp_name.clone(), p.channel_id.clone()))
            .unwrap_or_default();
        let mut list: Vec<SimRow> = rows.into_iter().map(|r| r.0).collect();
        let mine: Vec<FaultKind> = faults
            .iter()
            .filter(|f| f.flow == ordinal)
            .map(|f| f.kind)
            .collect();
        let pay_date = list.first().map(|r| r.pay_date.clone()).unwrap_or_default();
        let unknown_iuv = |code: u64| format!("99{:015}", ordinal as u64 * 10 + code);
        if mine.contains(&FaultKind::IurDiffers) {
            if let Some(r) = list.first_mut() {
                r.iur = format!("IUR{:013}", stable_hash(&r.iur) % 10_000_000_000_000);
            }
        }
        if mine.contains(&FaultKind::Code9) {
            list.insert(
                0,
                SimRow {
                    index: 0,
                    iuv: unknown_iuv(9),
                    iur: format!("NORPT{ordinal:08}"),
                    id_transfer: 1,
                    amount_cents: 300,
                    pay_status: "NO_RPT".into(),
                    pay_date: pay_date.clone(),
                },
            );
        }
        if mine.contains(&FaultKind::UnknownCode) {
            list.push(SimRow {
                index: 0,
                iuv: unknown_iuv(7),
                iur: format!("UNK{ordinal:010}"),
                id_transfer: 1,
                amount_cents: 150,
                pay_status: "REFUNDED".into(),
                pay_date: pay_date.clone(),
            });
        }
        // the money: every row once
        let money_cents: i64 = list.iter().map(|r| r.amount_cents).sum();
        if mine.contains(&FaultKind::DuplicateRows) {
            if let Some(r) = list.iter().find(|r| r.iur != format!("NORPT{ordinal:08}")) {
                let copy = r.clone();
                let at = list.iter().position(|x| *x == copy).map_or(0, |p| p + 1);
                list.insert(at, copy);
            }
        }
        for (n, r) in list.iter_mut().enumerate() {
            r.index = n as u64 + 1;
        }
        let declared_count = list.len() as u64;
        let declared_cents: i64 = list.iter().map(|r| r.amount_cents).sum();
        let published = now + Duration::seconds(i64::try_from(ordinal).unwrap_or(0));
        let mut flow = SimFlow {
            ordinal,
            fdr: fdr.clone(),
            revision: 1,
            held: false,
            published: instant(published),
            flow_date: instant(published - Duration::minutes(30)),
            psp_id: psp.clone(),
            psp_name,
            channel_id: channel,
            organization: org,
            iban,
            payment_day: day,
            regulation_date,
            regulation: format!("TRN{:016}", stable_hash(&fdr) % 10_000_000_000_000_000),
            declared_count,
            declared_cents,
            money_cents,
            faults: mine.iter().map(|k| k.name().to_string()).collect(),
            rows: list,
        };
        if mine.contains(&FaultKind::HeaderMismatch) {
            flow.declared_count += 1;
            flow.declared_cents += 1_000;
        }
        if mine.contains(&FaultKind::Revised) {
            let right = flow.clone();
            // revision 1: the last row missing (a one-row flow: reported 1 cent short)
            if flow.rows.len() > 1 {
                if let Some(gone) = flow.rows.pop() {
                    flow.declared_count = flow.declared_count.saturating_sub(1);
                    flow.declared_cents -= gone.amount_cents;
                }
            } else if let Some(r) = flow.rows.first_mut() {
                let short = if r.amount_cents > 1 { 1 } else { -1 };
                r.amount_cents -= short;
                flow.declared_cents -= short;
            }
            flow.faults = vec!["revised: revision 1 (wrong)".into()];
            held.push(SimFlow {
                revision: 2,
                held: true,
                faults: right
                    .faults
                    .iter()
                    .map(|f| {
                        if f == "revised" {
                            "revised: revision 2 (right)".to_string()
                        } else {
                            f.clone()
                        }
                    })
                    .collect(),
                ..right
            });
        }
        out.flows.push(flow);
    }
    out.flows.extend(held);
    Ok(out)
}

/// The flows as a FlussoRiversamento 1.0.5 document (for the file import path and XSD checks).
pub fn flow_xml(f: &SimFlow) -> String {
    let esc = crate::xml::escape;
    let code = |s: &str| match s {
        "EXECUTED" => "0".to_string(),
        "REVOKED" => "3".to_string(),
        "STAND_IN" => "4".to_string(),
        "STAND_IN_NO_RPT" => "8".to_string(),
        "NO_RPT" => "9".to_string(),
        _ => "7".to_string(),
    };
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<FlussoRiversamento xmlns=\"http://www.digitpa.gov.it/schemas/2011/Pagamenti/\">\
<versioneOggetto>1.0</versioneOggetto><identificativoFlusso>{}</identificativoFlusso><dataOraFlusso>{}</dataOraFlusso>\
<identificativoUnivocoRegolamento>{}</identificativoUnivocoRegolamento><dataRegolamento>{}</dataRegolamento>\
<istitutoMittente><identificativoUnivocoMittente><tipoIdentificativoUnivoco>G</tipoIdentificativoUnivoco><codiceIdentificativoUnivoco>{}</codiceIdentificativoUnivoco></identificativoUnivocoMittente>\
<denominazioneMittente>{}</denominazioneMittente></istitutoMittente>\
<istitutoRicevente><identificativoUnivocoRicevente><tipoIdentificativoUnivoco>G</tipoIdentificativoUnivoco><codiceIdentificativoUnivoco>{}</codiceIdentificativoUnivoco></identificativoUnivocoRicevente></istitutoRicevente>\
<numeroTotalePagamenti>{}</numeroTotalePagamenti><importoTotalePagamenti>{}</importoTotalePagamenti>",
        esc(&f.fdr),
        f.flow_date.get(..19).unwrap_or(&f.flow_date),
        esc(&f.regulation),
        f.regulation_date,
        esc(&f.psp_id),
        esc(&f.psp_name),
        esc(&f.organization),
        f.declared_count,
        crate::amount::Cents(f.declared_cents).to_xml(),
    );
    for r in &f.rows {
        x.push_str(&format!(
            "<datiSingoliPagamenti><identificativoUnivocoVersamento>{}</identificativoUnivocoVersamento>\
<identificativoUnivocoRiscossione>{}</identificativoUnivocoRiscossione><indiceDatiSingoloPagamento>{}</indiceDatiSingoloPagamento>\
<singoloImportoPagato>{}</singoloImportoPagato><codiceEsitoSingoloPagamento>{}</codiceEsitoSingoloPagamento>\
<dataEsitoSingoloPagamento>{}</dataEsitoSingoloPagamento></datiSingoliPagamenti>",
            esc(&r.iuv),
            esc(&r.iur),
            r.id_transfer,
            crate::amount::Cents(r.amount_cents).to_xml(),
            code(&r.pay_status),
            f.payment_day,
        ));
    }
    x.push_str("</FlussoRiversamento>\n");
    x
}

// ---------------------------------------------------------------------------------------------
// The FdR REST API for organizations
// ---------------------------------------------------------------------------------------------

/// The server's state.
pub struct ServeState {
    /// Every revision.
    pub flows: Mutex<FlowsFile>,
    /// The flows file (read again by `POST /_sim/reload`).
    pub path: Option<PathBuf>,
    /// `Ocp-Apim-Subscription-Key` expected (none: not checked).
    pub subscription_key: Option<String>,
    /// Requests served, by kind (`list`, `flow`, `payments`): for the tests' curiosity.
    pub calls: Mutex<BTreeMap<String, u64>>,
}

/// The amount as the API writes it: a JSON number in euro (the API's own float; the simulator
/// keeps cents and converts only here, at the wire's edge).
fn euro_number(cents: i64) -> Value {
    let text = crate::amount::Cents(cents).to_xml();
    serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
}

fn error(status: u16, code: &str, message: &str) -> actix_web::HttpResponse {
    let st = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    actix_web::HttpResponse::build(st).json(json!({
        "errorId": format!("{:016x}", stable_hash(message)),
        "httpStatusCode": status,
        "httpStatusDescription": st.canonical_reason().unwrap_or(""),
        "appErrorCode": code,
        "errors": [{"message": message}],
    }))
}

type Query = actix_web::web::Query<BTreeMap<String, String>>;

fn authorized(st: &ServeState, req: &actix_web::HttpRequest, q: &Query) -> bool {
    let Some(want) = &st.subscription_key else {
        return true;
    };
    let got = req
        .headers()
        .get("Ocp-Apim-Subscription-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| q.get("subscription-key").cloned());
    got.as_deref() == Some(want.as_str())
}

fn denied() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Unauthorized().json(json!({
        "statusCode": 401,
        "message": "Access denied due to missing or invalid subscription key. Make sure to include subscription key when making requests to an API."
    }))
}

fn count(st: &ServeState, what: &str) {
    if let Ok(mut c) = st.calls.lock() {
        *c.entry(what.to_string()).or_insert(0) += 1;
    }
}

/// (page, size) from the query: page ≥ 1, 1 ≤ size ≤ 1000 (default 1000); the error's text.
fn paging(q: &Query) -> Result<(usize, usize), String> {
    let num = |k: &str, d: usize| -> Result<usize, String> {
        match q.get(k) {
            None => Ok(d),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| format!("{k}: not a number: {v}")),
        }
    };
    let page = num("page", 1)?;
    let size = num("size", 1000)?;
    if page < 1 || !(1..=1000).contains(&size) {
        return Err("page must be ≥ 1 and size between 1 and 1000".into());
    }
    Ok((page, size))
}

fn page_of<T: Clone>(items: &[T], page: usize, size: usize) -> (Vec<T>, usize) {
    let total = items.len().div_ceil(size).max(1);
    let from = (page - 1).saturating_mul(size);
    (items.iter().skip(from).take(size).cloned().collect(), total)
}

async fn list(
    st: actix_web::web::Data<ServeState>,
    req: actix_web::HttpRequest,
    path: actix_web::web::Path<String>,
    q: Query,
) -> actix_web::HttpResponse {
    if !authorized(&st, &req, &q) {
        return denied();
    }
    count(&st, "list");
    let org = path.into_inner();
    let (page, size) = match paging(&q) {
        Ok(p) => p,
        Err(e) => return error(400, "FDR-0702", &e),
    };
    let bound = |k: &str| -> Result<Option<DateTime<Utc>>, String> {
        match q.get(k) {
            None => Ok(None),
            Some(v) => parse_instant(v)
                .map(Some)
                .ok_or_else(|| format!("{k}: not an instant: {v}")),
        }
    };
    let (published_gt, flow_date) = match (bound("publishedGt"), bound("flowDate")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return error(400, "FDR-0702", &e),
    };
    // without date filters the API looks back 30 days (from the start of that day)
    let lookback = (published_gt.is_none() && flow_date.is_none()).then(|| {
        (Utc::now() - Duration::days(30))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|n| n.and_utc())
    });
    let psp = q.get("pspId").cloned();
    let flows = match st.flows.lock() {
        Ok(f) => f,
        Err(_) => return error(500, "FDR-0500", "state poisoned"),
    };
    // the latest published revision of each (flow, PSP) addressed to the organization
    let mut latest: BTreeMap<(&str, &str), &SimFlow> = BTreeMap::new();
    for f in flows
        .flows
        .iter()
        .filter(|f| !f.held && f.organization == org)
    {
        let e = latest
            .entry((f.fdr.as_str(), f.psp_id.as_str()))
            .or_insert(f);
        if f.revision > e.revision {
            *e = f;
        }
    }
    let mut items: Vec<&SimFlow> = latest
        .into_values()
        .filter(|f| psp.as_ref().is_none_or(|p| *p == f.psp_id))
        .filter(|f| {
            let p = parse_instant(&f.published);
            let fd = parse_instant(&f.flow_date);
            published_gt.is_none_or(|g| p.is_some_and(|p| p > g))
                && flow_date.is_none_or(|g| fd.is_some_and(|d| d >= g))
                && lookback.flatten().is_none_or(|g| p.is_some_and(|p| p >= g))
        })
        .collect();
    items.sort_by(|a, b| a.published.cmp(&b.published));
    let data: Vec<Value> = items
        .iter()
        .map(|f| {
            json!({"fdr": f.fdr, "pspId": f.psp_id, "revision": f.revision,
                   "published": f.published, "flowDate": f.flow_date})
        })
        .collect();
    let (data, total) = page_of(&data, page, size);
    actix_web::HttpResponse::Ok().json(json!({
        "metadata": {"pageSize": size, "pageNumber": page, "totPage": total},
        "count": data.len(),
        "data": data,
    }))
}

fn find<'a>(
    flows: &'a FlowsFile,
    org: &str,
    fdr: &str,
    rev: u32,
    psp: &str,
) -> Option<&'a SimFlow> {
    flows.flows.iter().find(|f| {
        !f.held && f.organization == org && f.fdr == fdr && f.revision == rev && f.psp_id == psp
    })
}

type FlowPath = actix_web::web::Path<(String, String, u32, String)>;

async fn header(
    st: actix_web::web::Data<ServeState>,
    req: actix_web::HttpRequest,
    path: FlowPath,
    q: Query,
) -> actix_web::HttpResponse {
    if !authorized(&st, &req, &q) {
        return denied();
    }
    count(&st, "flow");
    let (org, fdr, rev, psp) = path.into_inner();
    let flows = match st.flows.lock() {
        Ok(f) => f,
        Err(_) => return error(500, "FDR-0500", "state poisoned"),
    };
    let Some(f) = find(&flows, &org, &fdr, rev, &psp) else {
        return error(404, "FDR-3001", &format!("Flow with ID [{fdr}] not found."));
    };
    let computed: i64 = f.rows.iter().map(|r| r.amount_cents).sum();
    actix_web::HttpResponse::Ok().json(json!({
        "status": "PUBLISHED",
        "revision": f.revision,
        "created": f.flow_date,
        "updated": f.published,
        "fdr": f.fdr,
        "fdrDate": f.flow_date,
        "regulation": f.regulation,
        "regulationDate": f.regulation_date.to_string(),
        "bicCodePouringBank": "SIMUITM1XXX",
        "sender": {"type": "LEGAL_PERSON", "id": f.psp_id, "pspId": f.psp_id,
                   "pspName": f.psp_name, "pspBrokerId": f.psp_id, "channelId": f.channel_id},
        "receiver": {"id": f.organization, "organizationId": f.organization,
                     "organizationName": format!("Ente {}", f.organization)},
        "published": f.published,
        "computedTotPayments": f.rows.len(),
        "computedSumPayments": euro_number(computed),
        "totPayments": f.declared_count,
        "sumPayments": euro_number(f.declared_cents),
    }))
}

async fn payments(
    st: actix_web::web::Data<ServeState>,
    req: actix_web::HttpRequest,
    path: FlowPath,
    q: Query,
) -> actix_web::HttpResponse {
    if !authorized(&st, &req, &q) {
        return denied();
    }
    count(&st, "payments");
    let (org, fdr, rev, psp) = path.into_inner();
    let (page, size) = match paging(&q) {
        Ok(p) => p,
        Err(e) => return error(400, "FDR-0702", &e),
    };
    let flows = match st.flows.lock() {
        Ok(f) => f,
        Err(_) => return error(500, "FDR-0500", "state poisoned"),
    };
    let Some(f) = find(&flows, &org, &fdr, rev, &psp) else {
        return error(404, "FDR-3001", &format!("Flow with ID [{fdr}] not found."));
    };
    let rows: Vec<Value> = f
        .rows
        .iter()
        .map(|r| {
            json!({"index": r.index, "iuv": r.iuv, "iur": r.iur, "idTransfer": r.id_transfer,
                   "pay": euro_number(r.amount_cents), "payStatus": r.pay_status,
                   "payDate": r.pay_date})
        })
        .collect();
    let (data, total) = page_of(&rows, page, size);
    actix_web::HttpResponse::Ok().json(json!({
        "metadata": {"pageSize": size, "pageNumber": page, "totPage": total},
        "count": data.len(),
        "data": data,
    }))
}

/// `POST /_sim/publish`: the held revisions are published now (the simulator's own control).
async fn publish(st: actix_web::web::Data<ServeState>) -> actix_web::HttpResponse {
    let mut flows = match st.flows.lock() {
        Ok(f) => f,
        Err(_) => return error(500, "FDR-0500", "state poisoned"),
    };
    let last = flows
        .flows
        .iter()
        .filter_map(|f| parse_instant(&f.published))
        .max()
        .unwrap_or_else(Utc::now);
    let base = Utc::now().max(last);
    let mut n = 0i64;
    let mut published = Vec::new();
    for f in flows.flows.iter_mut().filter(|f| f.held) {
        n += 1;
        f.held = false;
        f.published = instant(base + Duration::seconds(n));
        published.push(json!({"fdr": f.fdr, "revision": f.revision, "published": f.published}));
    }
    actix_web::HttpResponse::Ok().json(json!({"published": published}))
}

/// `POST /_sim/reload`: the flows file is read again (after a new `fdr build`).
async fn reload(st: actix_web::web::Data<ServeState>) -> actix_web::HttpResponse {
    let Some(path) = &st.path else {
        return error(409, "SIM-0001", "no flows file to reload");
    };
    match FlowsFile::load(path) {
        Ok(f) => {
            let n = f.flows.len();
            match st.flows.lock() {
                Ok(mut g) => *g = f,
                Err(_) => return error(500, "FDR-0500", "state poisoned"),
            }
            actix_web::HttpResponse::Ok().json(json!({"flows": n}))
        }
        Err(e) => error(422, "SIM-0002", &e),
    }
}

/// `GET /_sim/calls`: how many requests of each kind were served.
async fn calls(st: actix_web::web::Data<ServeState>) -> actix_web::HttpResponse {
    let c = st.calls.lock().map(|c| c.clone()).unwrap_or_default();
    actix_web::HttpResponse::Ok().json(c)
}

/// The routes of the FdR API (base path `prefix`, e.g. `` or `/fdr-org/service/v1`).
pub fn routes(
    state: Arc<ServeState>,
    prefix: String,
) -> impl Fn(&mut actix_web::web::ServiceConfig) + Clone {
    let data = actix_web::web::Data::from(state);
    move |c: &mut actix_web::web::ServiceConfig| {
        use actix_web::web;
        c.app_data(data.clone())
            .route(
                &format!("{prefix}/organizations/{{org}}/fdrs"),
                web::get().to(list),
            )
            .route(
                &format!("{prefix}/organizations/{{org}}/fdrs/{{fdr}}/revisions/{{rev}}/psps/{{psp}}"),
                web::get().to(header),
            )
            .route(
                &format!(
                    "{prefix}/organizations/{{org}}/fdrs/{{fdr}}/revisions/{{rev}}/psps/{{psp}}/payments"
                ),
                web::get().to(payments),
            )
            .route("/_sim/publish", web::post().to(publish))
            .route("/_sim/reload", web::post().to(reload))
            .route("/_sim/calls", web::get().to(calls));
    }
}

/// Starts the FdR API on `listener`; returns the server to await.
pub fn serve(
    state: Arc<ServeState>,
    prefix: String,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let r = routes(state, prefix);
    Ok(
        actix_web::HttpServer::new(move || actix_web::App::new().configure(r.clone()))
            .workers(1)
            .listen(listener)?
            .run(),
    )
}

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

/// Per payment day: flows, rows, declared total and money (latest revisions).
pub fn summary(file: &FlowsFile) -> String {
    let mut days: BTreeMap<NaiveDate, (usize, usize, i64, i64)> = BTreeMap::new();
    for f in file.latest() {
        let e = days.entry(f.payment_day).or_default();
        e.0 += 1;
        e.1 += f.rows.len();
        e.2 += f.declared_cents;
        e.3 += f.money_cents;
    }
    let mut s = String::from("day         flows  rows   declared      money\n");
    let mut tot = (0, 0, 0i64, 0i64);
    for (d, (n, r, dc, m)) in &days {
        s.push_str(&format!(
            "{d}  {n:>5} {r:>5} {:>10} {:>10}\n",
            crate::amount::Cents(*dc).to_xml(),
            crate::amount::Cents(*m).to_xml()
        ));
        tot = (tot.0 + n, tot.1 + r, tot.2 + dc, tot.3 + m);
    }
    s.push_str(&format!(
        "total       {:>5} {:>5} {:>10} {:>10}\n",
        tot.0,
        tot.1,
        crate::amount::Cents(tot.2).to_xml(),
        crate::amount::Cents(tot.3).to_xml()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay(iuv: &str, rid: &str, when: &str, cents: i64) -> PaymentRecord {
        PaymentRecord {
            organization: "80001234568".into(),
            notice_number: format!("3{iuv}"),
            iuv: iuv.into(),
            receipt_id: rid.into(),
            psp_id: "88888888888".into(),
            psp_name: "PSP di Prova".into(),
            channel_id: "88888888888_01".into(),
            payment_date_time: when.into(),
            stand_in: false,
            transfers: vec![TransferRecord {
                id_transfer: 1,
                amount_cents: cents,
                organization: "80001234568".into(),
                iban: Some("IT47D0103002600000061234567".into()),
            }],
        }
    }

    #[test]
    fn flows_per_day_with_ids_totals_and_faults() {
        let p = vec![
            pay("12000000000000001", "R1", "2026-07-02T10:00:00", 1_000),
            pay("12000000000000002", "R2", "2026-07-02T11:00:00", 250),
            pay("12000000000000003", "R3", "2026-07-03T09:00:00", 700),
        ];
        let now = Utc::now();
        let f = build_flows(&p, &[], now).unwrap();
        assert_eq!(f.flows.len(), 2);
        assert_eq!(f.flows[0].fdr, "2026-07-0388888888888-S0000001");
        assert_eq!(f.flows[0].rows.len(), 2);
        assert_eq!(f.flows[0].declared_cents, 1_250);
        assert_eq!(f.flows[0].money_cents, 1_250);
        assert_eq!(f.flows[1].fdr, "2026-07-0488888888888-S0000001");
        assert_eq!(f.flows[0].rows[0].iur, "R1");

        let faults: Vec<Fault> = ["revised@2", "duplicate-rows", "code9", "header-mismatch@1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let f = build_flows(&p, &faults, now).unwrap();
        let one = &f.flows[0];
        // code 9 first, then R1, its repetition, R2
        let iurs: Vec<&str> = one.rows.iter().map(|r| r.iur.as_str()).collect();
        assert_eq!(iurs, vec!["NORPT00000001", "R1", "R1", "R2"]);
        assert_eq!(one.rows[0].pay_status, "NO_RPT");
        assert_eq!(one.money_cents, 300 + 1_250);
        assert_eq!(one.declared_count, 5);
        assert_eq!(one.declared_cents, 300 + 1_000 + 1_000 + 250 + 1_000);
        let idx: Vec<u64> = one.rows.iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![1, 2, 3, 4]);
        // revised: revision 1 a cent short, revision 2 held and right
        let revs: Vec<(u32, bool, i64)> = f
            .flows
            .iter()
            .filter(|x| x.ordinal == 2)
            .map(|x| (x.revision, x.held, x.rows[0].amount_cents))
            .collect();
        assert_eq!(revs, vec![(1, false, 699), (2, true, 700)]);
        assert_eq!(f.latest().len(), 2);
        assert_eq!(f.latest()[1].revision, 2);
        assert!("nonsense".parse::<Fault>().is_err());
        assert!("code9@0".parse::<Fault>().is_err());
        assert!(build_flows(&p, &["code9@3".parse().unwrap()], now).is_err());
    }

    #[test]
    fn amounts_are_json_numbers_from_cents() {
        assert_eq!(euro_number(29).to_string(), "0.29");
        assert_eq!(euro_number(12_000).to_string(), "120.0");
        assert_eq!(euro_number(1_029).to_string(), "10.29");
    }
}
