//! The pagoPA station (EC side): `POST /pagopa/paForNode`, SOAP 1.1 (SPEC §4–§6, §13).
//!
//! decode (namespace-aware, XSD facts) → authorise (broker → station → organization) → one
//! ledger read (verify, getPayment: read-only, answered on the worker thread without an actor
//! hop) or one atomic ledger write acknowledged after the flush (sendRT, demand) → encode.
//! Every exchange goes to the journal. Business errors are `outcome KO` + fault with HTTP 200.

use std::time::Instant;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, Utc};
use futures_util::StreamExt;
use mpay_messages::intermediary::{Route, StationRelation};
use mpay_messages::journal::JournalEntry;
use mpay_messages::position::{
    DebtPosition, Debtor, DebtorType, Destination, Origin, PaymentOption, Transfer,
};
use mpay_messages::receipt_check::{self, Decision, Expected, ExpectedTransfer, ReceiptFacts};
use mpay_messages::wire::faults::{Fault, FaultCode};
use mpay_messages::wire::pafornode::{
    self as pf, Account, NoticeDescription, Operation, OptionDescription, PaymentData,
    PaymentTransfer, QrCode, Request, Response, StationIds, Subject, TransferType,
};
use mpay_messages::{Amount, FiscalCode, NoticeLayout, NoticeNumber};
use mpay_storage::{
    DurabilityPoint, LedgerError, PositionRepository, ReceiptDisposition, StoredReceipt,
};

use crate::state::{AppState, OrgContext};

/// Routes of the station.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/pagopa/paForNode", web::post().to(handle));
}

/// What the handler answers and journals.
struct Outcome {
    op: Option<Operation>,
    body: String,
    status: u16,
    org: Option<String>,
    key: Option<String>,
    code: String,
    note: Option<String>,
    /// A Stand-In probe: counted in a metric, not journaled.
    probe: bool,
}

fn ko(op: Operation, code: FaultCode, id: &str, description: impl Into<String>) -> Outcome {
    let fault = Fault {
        code,
        id: id.to_string(),
        description: description.into(),
    };
    Outcome {
        op: Some(op),
        body: pf::encode_fault(op, &fault),
        status: 200,
        org: None,
        key: None,
        code: code.code().to_string(),
        note: None,
        probe: false,
    }
}

/// The one mapping of an internal failure (storage, worker pool, flush, misconfiguration) to the
/// Node: logged with its cause, answered `PAA_SYSTEM_ERROR` so that the Node retries.
fn system_error(op: Operation, id: &str, context: &str, cause: &dyn std::fmt::Display) -> Outcome {
    tracing::error!(error = %cause, operation = op.name(), "{context}");
    ko(op, FaultCode::SystemError, id, "temporary failure, retry")
}

fn ok(op: Operation, response: &Response) -> Outcome {
    Outcome {
        op: Some(op),
        body: pf::encode_ok(op, response),
        status: 200,
        org: None,
        key: None,
        code: "OK".into(),
        note: None,
        probe: false,
    }
}

/// `POST /pagopa/paForNode`.
pub async fn handle(
    req: HttpRequest,
    state: web::Data<AppState>,
    mut payload: web::Payload,
) -> HttpResponse {
    if let Err(why) = state.station_access.admit(&req) {
        // refused before the body is read: no journal entry, a metric and a rate-limited log
        return state.station_access.refuse(&req, &why);
    }
    let started = Instant::now();
    let at = Utc::now();
    let action = req
        .headers()
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limit = state.settings.station.body_limit_bytes;
    let mut body = web::BytesMut::new();
    let mut too_large = false;
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(c) => {
                if body.len() + c.len() > limit {
                    too_large = true;
                    break;
                }
                body.extend_from_slice(&c);
            }
            Err(_) => {
                too_large = body.len() >= limit;
                break;
            }
        }
    }
    let mut outcome = if too_large {
        let op = action.as_deref().and_then(Operation::from_soap_action);
        rejected(
            op,
            &state,
            None,
            FaultCode::SintassiExtraXsd,
            format!("request larger than {limit} bytes"),
        )
    } else {
        process(&state, &body, action.as_deref()).await
    };
    let latency = started.elapsed();
    let op_name = outcome.op.map(|o| o.name()).unwrap_or("unknown");
    metrics::counter!("mpay_station_requests_total", "operation" => op_name, "outcome" => outcome.code.clone())
        .increment(1);
    metrics::histogram!("mpay_station_request_seconds", "operation" => op_name)
        .record(latency.as_secs_f64());
    if outcome.probe {
        // Stand-In probes come every few seconds per station: a metric, not the journal
        let mut res = HttpResponse::Ok();
        return res.content_type(ContentType(mime_xml())).body(outcome.body);
    }
    if let Some(note) = &outcome.note {
        tracing::warn!(operation = op_name, organization = ?outcome.org, key = ?outcome.key, "{note}");
    }
    let entry = JournalEntry {
        at,
        channel: "soap".into(),
        operation: op_name.to_string(),
        organization: outcome.org.take(),
        key: outcome.key.take(),
        status: outcome.status,
        outcome: outcome.code.clone(),
        latency_us: latency.as_micros().min(u128::from(u64::MAX)) as u64,
        request_id: crate::middleware::RequestId::of(&req),
        note: outcome.note.take(),
        payload: None,
    };
    state.journal_exchange(entry, &body).await;
    let mut res = if outcome.status == 200 {
        HttpResponse::Ok()
    } else {
        HttpResponse::InternalServerError()
    };
    res.content_type(ContentType(mime_xml())).body(outcome.body)
}

fn mime_xml() -> actix_web::mime::Mime {
    "text/xml; charset=utf-8"
        .parse()
        .unwrap_or(actix_web::mime::TEXT_XML)
}

/// An answer for a request that could not be decoded: the operation's KO when it is known,
/// else a SOAP Fault (HTTP 500, as SOAP 1.1 requires for faults).
fn rejected(
    op: Option<Operation>,
    state: &AppState,
    id_pa: Option<&str>,
    code: FaultCode,
    description: String,
) -> Outcome {
    // SPEC §5.7: `id` = the EC's fiscal code, i.e. the idPA received (ours or not); the
    // broker's only when the request carries none
    let id = id_pa
        .filter(|id| !id.trim().is_empty())
        .map(str::to_string)
        .or_else(|| state.catalogue.brokers().next().map(str::to_string))
        .unwrap_or_else(|| "-".into());
    match op {
        Some(op) => {
            let mut o = ko(op, code, &id, description);
            o.org = id_pa.map(str::to_string);
            o
        }
        None => Outcome {
            op: None,
            body: pf::encode_soap_fault(&description),
            status: 500,
            org: None,
            key: None,
            code: code.code().to_string(),
            note: None,
            probe: false,
        },
    }
}

async fn process(state: &web::Data<AppState>, body: &[u8], action: Option<&str>) -> Outcome {
    let (op, request) = match pf::decode_request(body, action) {
        Ok(x) => x,
        Err(r) => {
            return rejected(
                r.operation,
                state,
                r.id_pa.as_deref(),
                r.error.fault_code(),
                r.error.to_string(),
            )
        }
    };
    let mut outcome = match request {
        Request::Verify { ids, qr } => verify(state, op, &ids, &qr),
        Request::GetPayment {
            ids,
            qr,
            transfer_type,
            ..
        } => get_payment(state, op, &ids, &qr, transfer_type),
        Request::SendRt {
            ids,
            receipt,
            departures,
            ..
        } => send_rt(state, op, &ids, *receipt, &departures, body).await,
        Request::Demand {
            ids,
            id_servizio,
            service_data,
            ..
        } => demand(state, op, &ids, &id_servizio, &service_data).await,
    };
    outcome.op = Some(op);
    outcome
}

/// Broker → station → organization (SPEC §5.7 order). `org_fc` is the organization the
/// request is about (qrCode.fiscalCode or receipt.fiscalCode); `layout` the notice's, when
/// the request names one (codes may be routed to different stations).
fn route(state: &AppState, ids: &StationIds, org_fc: &str, layout: Option<&NoticeLayout>) -> Route {
    let cat = &state.catalogue;
    // identifiers are matched trimmed (a receipt read with departures may carry blanks)
    let (broker, station_id) = (ids.id_broker_pa.trim(), ids.id_station.trim());
    if !cat.is_broker(broker) {
        return Route::ForeignBroker;
    }
    let Some(station) = cat.station(station_id) else {
        return Route::UnknownStation;
    };
    if station.broker.as_str() != broker {
        return Route::StationOfAnotherBroker {
            owner: station.broker.to_string(),
        };
    }
    for fc in [org_fc.trim(), ids.id_pa.trim()] {
        if !state.orgs.contains_key(fc) {
            return Route::UnknownOrganization {
                fiscal_code: fc.to_string(),
            };
        }
    }
    Route::Ours(
        cat.relation(org_fc.trim(), station_id, layout)
            .unwrap_or(StationRelation::Unrelated),
    )
}

/// [`route`] for operations other than receipts: a route that is not ours is refused with the
/// code of [`Route::refusal`], `id` = the idPA received (SPEC §5.7).
fn authorise<'a>(
    state: &'a AppState,
    op: Operation,
    ids: &StationIds,
    org_fc: &str,
    layout: Option<&NoticeLayout>,
) -> Result<(&'a std::sync::Arc<OrgContext>, StationRelation), Box<Outcome>> {
    let r = route(state, ids, org_fc, layout);
    if let Some((code, why)) = r.refusal(&ids.id_broker_pa, &ids.id_station) {
        return Err(Box::new(ko(op, code, &ids.id_pa, why)));
    }
    match (r, state.orgs.get(org_fc)) {
        (Route::Ours(relation), Some(org)) => Ok((org, relation)),
        _ => Err(Box::new(ko(
            op,
            FaultCode::IdDominioErrato,
            &ids.id_pa,
            format!("organization {org_fc} is not served by this platform"),
        ))),
    }
}

/// The journal warning for a request served on a station that is not the organization's
/// current one for it (`None` when it is).
fn station_note(relation: &StationRelation, station: &str, org: &str) -> Option<String> {
    match relation {
        StationRelation::Current => None,
        StationRelation::Previous => Some(format!(
            "served on previous station {station} of organization {org} (station migration)"
        )),
        StationRelation::OtherCodeStation { expected } => Some(format!(
            "served on station {station}; the notice's code of organization {org} is routed to {expected}"
        )),
        StationRelation::Unrelated => Some(format!(
            "served on station {station}, which does not serve organization {org}"
        )),
    }
}

fn with_keys(mut o: Outcome, org: &str, key: &str) -> Outcome {
    o.org = Some(org.to_string());
    o.key = Some(key.to_string());
    o
}

/// The domain's payability rule ([`DebtPosition::payable`]) at the request's instant, with
/// the fault the Node gets for each reason ([`FaultCode::from`]).
fn payable<'p>(
    p: &'p DebtPosition,
    nav: &str,
) -> Result<&'p PaymentOption, (FaultCode, &'static str)> {
    p.payable(nav, Utc::now())
        .map_err(|why| (FaultCode::from(why), why.description()))
}

/// Looks up the notice for verify/getPayment (read-only; on the worker thread: one index read
/// and one record read from sled's page cache).
/// The organization, the position and the journal warning for a station that is not the
/// organization's current one.
type Found<'a> = (&'a std::sync::Arc<OrgContext>, DebtPosition, Option<String>);

/// Returns the organization, the position and the journal warning for a station that is not the
/// organization's current one (previous station, or another code's station: served).
fn lookup<'a>(
    state: &'a AppState,
    op: Operation,
    ids: &StationIds,
    qr: &QrCode,
) -> Result<Found<'a>, Box<Outcome>> {
    let parsed = NoticeNumber::parse_unchecked(&qr.notice_number);
    let layout = parsed.as_ref().ok().map(|n| n.layout());
    let (org, relation) = authorise(state, op, ids, &qr.fiscal_code, layout.as_ref())?;
    let id = org.fiscal_code.as_str();
    if relation == StationRelation::Unrelated {
        return Err(Box::new(ko(
            op,
            FaultCode::StazioneIntErrata,
            id,
            format!(
                "organization {id} is not served by station {}",
                ids.id_station
            ),
        )));
    }
    let note = station_note(&relation, &ids.id_station, id);
    let nav =
        parsed.map_err(|e| Box::new(ko(op, FaultCode::PagamentoSconosciuto, id, e.to_string())))?;
    match state.store.ledger.find_by_notice(&org.fiscal_code, &nav) {
        // a position with GPD's looser identifiers is never a pagoPA notice (REST-only)
        Ok(Some(p)) if !p.rest_only() => Ok((org, p, note)),
        Ok(_) => Err(Box::new(ko(
            op,
            FaultCode::PagamentoSconosciuto,
            id,
            "notice not found",
        ))),
        Err(e) => Err(Box::new(system_error(op, id, "ledger read failed", &e))),
    }
}

/// The taxonomy code sent in `transferCategory` (SPEC §11): the bare code, e.g. `0101100IM`.
/// Categories written in the GPD/RPT form `9/0101100IM/` (accounting type, code) keep the code.
pub fn taxonomy_code(category: &str) -> String {
    let parts: Vec<&str> = category
        .split('/')
        .filter(|p| !p.trim().is_empty())
        .collect();
    match parts.as_slice() {
        [kind, code] if kind.len() == 1 && kind.bytes().all(|b| b.is_ascii_digit()) => {
            code.trim().to_string()
        }
        _ => parts.concat(),
    }
}

fn subject_of(d: &Debtor) -> Subject {
    Subject {
        kind: match d.kind {
            DebtorType::F => "F".into(),
            DebtorType::G => "G".into(),
        },
        id_value: d.fiscal_code.to_string(),
        full_name: d.full_name.clone(),
        street_name: d.street_name.clone(),
        civic_number: d.civic_number.clone(),
        postal_code: d.postal_code.clone(),
        city: d.city.clone(),
        state_province_region: d.province.clone().or_else(|| d.region.clone()),
        country: d.country.clone(),
        email: d.email.clone(),
    }
}

fn postal_capable(t: &Transfer) -> bool {
    matches!(
        t.destination,
        Destination::PostalIban { .. }
            | Destination::Iban {
                postal_iban: Some(_),
                ..
            }
    )
}

fn describe(p: &DebtPosition, o: &PaymentOption) -> NoticeDescription {
    NoticeDescription {
        option: OptionDescription {
            amount: o.amount,
            due_date: Some(o.due_day()),
            detail_description: Some(o.description.clone()),
            all_ccp: !o.transfers.is_empty() && o.transfers.iter().all(postal_capable),
        },
        payment_description: o.description.clone(),
        fiscal_code_pa: p.organization_fiscal_code.to_string(),
        company_name: p.company_name.clone(),
        office_name: p.office_name.clone(),
    }
}

/// The notice number pagoPA's Stand-In manager probes stations with.
pub const STAND_IN_PROBE_NOTICE: &str = "000000000000000000";

fn verify(state: &AppState, op: Operation, ids: &StationIds, qr: &QrCode) -> Outcome {
    if qr.notice_number == STAND_IN_PROBE_NOTICE {
        return stand_in_probe(state, op, ids, qr);
    }
    let (org, p, note) = match lookup(state, op, ids, qr) {
        Ok(x) => x,
        Err(o) => return with_keys(*o, &qr.fiscal_code, &qr.notice_number),
    };
    let mut out = match payable(&p, &qr.notice_number) {
        Ok(o) => ok(op, &Response::Verify(describe(&p, o))),
        Err((code, why)) => ko(op, code, org.fiscal_code.as_str(), why),
    };
    out.note = note;
    with_keys(out, &qr.fiscal_code, &qr.notice_number)
}

/// The Stand-In manager's health probe: HTTP 200 with PAA_PAGAMENTO_SCONOSCIUTO for any
/// organization we serve on any of our stations; no ledger access, no journal entry (a metric).
fn stand_in_probe(state: &AppState, op: Operation, ids: &StationIds, qr: &QrCode) -> Outcome {
    let mut out = match authorise(state, op, ids, &qr.fiscal_code, None) {
        Ok((org, _)) => ko(
            op,
            FaultCode::PagamentoSconosciuto,
            org.fiscal_code.as_str(),
            "Stand-In probe: no such notice",
        ),
        Err(o) => return with_keys(*o, &qr.fiscal_code, &qr.notice_number),
    };
    metrics::counter!("mpay_station_standin_probes_total", "station" => ids.id_station.clone())
        .increment(1);
    out.probe = true;
    out
}

fn get_payment(
    state: &AppState,
    op: Operation,
    ids: &StationIds,
    qr: &QrCode,
    transfer_type: Option<TransferType>,
) -> Outcome {
    let (org, p, note) = match lookup(state, op, ids, qr) {
        Ok(x) => x,
        Err(o) => return with_keys(*o, &qr.fiscal_code, &qr.notice_number),
    };
    let id = org.fiscal_code.as_str();
    let o = match payable(&p, &qr.notice_number) {
        Ok(o) => o,
        Err((code, why)) => {
            return with_keys(ko(op, code, id, why), &qr.fiscal_code, &qr.notice_number)
        }
    };
    let v2 = op == Operation::GetPaymentV2;
    let mut transfers = Vec::new();
    for (i, t) in o.transfers.iter().enumerate() {
        let postal = transfer_type == Some(TransferType::Postal);
        let account = match &t.destination {
            Destination::Iban { iban, postal_iban } => Account::Iban(
                match (postal, postal_iban) {
                    (true, Some(pi)) => pi,
                    _ => iban,
                }
                .to_string(),
            ),
            Destination::PostalIban { postal_iban } => Account::Iban(postal_iban.to_string()),
            Destination::Stamp(s) => {
                if !v2 {
                    return with_keys(
                        ko(
                            op,
                            FaultCode::Semantica,
                            id,
                            "this notice includes a marca da bollo, which only paGetPaymentV2 can carry",
                        ),
                        &qr.fiscal_code,
                        &qr.notice_number,
                    );
                }
                Account::Stamp {
                    hash_document: s.hash_document.clone(),
                    stamp_type: s.stamp_type.clone(),
                    province: s.provincial_residence.clone(),
                }
            }
        };
        let beneficiary = t
            .organization_fiscal_code
            .as_ref()
            .unwrap_or(&p.organization_fiscal_code);
        transfers.push(PaymentTransfer {
            id_transfer: u8::try_from(i + 1).unwrap_or(5),
            amount: t.amount,
            fiscal_code_pa: beneficiary.to_string(),
            company_name: t.company_name.clone().or_else(|| {
                (beneficiary == &p.organization_fiscal_code).then(|| p.company_name.clone())
            }),
            account,
            remittance_information: t.remittance_information.clone(),
            transfer_category: taxonomy_code(&t.category),
            metadata: t
                .metadata
                .iter()
                .map(|m| (m.key.clone(), m.value.clone()))
                .collect(),
        });
    }
    let data = PaymentData {
        creditor_reference_id: o.iuv.to_string(),
        payment_amount: o.amount,
        due_date: o.due_day(),
        description: o.description.clone(),
        company_name: p.company_name.clone(),
        office_name: p.office_name.clone(),
        debtor: subject_of(&p.debtor),
        transfers,
        metadata: p
            .node_metadata(o)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    // the payment is in progress from now: its notice and amounts stay as answered until the
    // receipt (or the token's expiry), whatever the Ente's systems send meanwhile
    let until = Utc::now() + mpay_messages::domain::position::payment_in_progress_window();
    if let Err(e) =
        state
            .store
            .ledger
            .begin_payment(&org.fiscal_code, &p.iupd, &o.nav, p.revision, until)
    {
        return with_keys(
            system_error(op, id, "recording the payment in progress failed", &e),
            &qr.fiscal_code,
            &qr.notice_number,
        );
    }
    let mut out = ok(op, &Response::GetPayment(Box::new(data)));
    out.note = note;
    with_keys(out, &qr.fiscal_code, &qr.notice_number)
}

/// What we sent for a notice (its option's transfers, as getPayment numbers them), to compare
/// a receipt with.
fn expected_of(p: &DebtPosition, nav: &str) -> Option<Expected> {
    let o = p.payment_options.iter().find(|o| o.nav.as_str() == nav)?;
    Some(Expected {
        transfers: o
            .transfers
            .iter()
            .enumerate()
            .map(|(i, t)| ExpectedTransfer {
                id_transfer: u8::try_from(i + 1).unwrap_or(u8::MAX),
                amount: t.amount,
                fiscal_code: t
                    .organization_fiscal_code
                    .as_ref()
                    .unwrap_or(&p.organization_fiscal_code)
                    .to_string(),
                remittance_information: t.remittance_information.clone(),
                ibans: match &t.destination {
                    Destination::Iban { iban, postal_iban } => std::iter::once(iban.to_string())
                        .chain(postal_iban.iter().map(|x| x.to_string()))
                        .collect(),
                    Destination::PostalIban { postal_iban } => vec![postal_iban.to_string()],
                    Destination::Stamp(_) => vec![],
                },
            })
            .collect(),
    })
}

async fn send_rt(
    state: &web::Data<AppState>,
    op: Operation,
    ids: &StationIds,
    receipt: pf::Receipt,
    departures: &[String],
    raw: &[u8],
) -> Outcome {
    let org_fc = receipt.fiscal_code.clone();
    let nav = receipt.notice_number.clone();
    let keys = |o: Outcome| with_keys(o, &org_fc, &nav);
    let parsed_nav = NoticeNumber::parse_unchecked(nav.trim()).ok();
    let layout = parsed_nav.as_ref().map(|n| n.layout());
    let served =
        state.orgs.contains_key(org_fc.trim()) && state.orgs.contains_key(ids.id_pa.trim());
    let route = route(state, ids, &org_fc, layout.as_ref()).for_receipt(served);
    let org = state.orgs.get(&org_fc);
    // what we sent, when the notice is ours (a read outside the receipt's transaction: it
    // only feeds the flags)
    let expected = match (&route, org, &parsed_nav) {
        (Route::Ours(_), Some(org), Some(n)) => state
            .store
            .ledger
            .find_by_notice(&org.fiscal_code, n)
            .ok()
            .flatten()
            .and_then(|p| expected_of(&p, n.as_str())),
        _ => None,
    };
    let decision = receipt_check::decide(&ReceiptFacts {
        route: &route,
        id_broker_pa: &ids.id_broker_pa,
        station: &ids.id_station,
        receipt: &receipt,
        departures,
        expected: expected.as_ref(),
    });
    let flags = match decision {
        Decision::Refuse { code, reason } => return keys(ko(op, code, &ids.id_pa, reason)),
        Decision::Accept { flags } => flags,
    };
    let Some(org) = org else {
        return keys(ko(
            op,
            FaultCode::IdDominioErrato,
            &ids.id_pa,
            "organization not served",
        ));
    };
    let id = org.fiscal_code.as_str().to_string();
    let note = {
        let station = match &route {
            Route::Ours(relation) => station_note(relation, &ids.id_station, &id),
            _ => None,
        };
        let departures = flags.iter().filter(|f| !f.is_station()).count();
        let departures = (departures > 0)
            .then_some(departures)
            .map(|n| format!("receipt accepted with {n} departure(s) flagged for an operator"));
        match (station, departures) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        }
    };
    let cart_hint = (
        receipt.receipt_id.trim().to_string(),
        receipt.payment_note.clone(),
    );
    // the address the citizen gave in the portal's cart (the receipt e-mail goes there too)
    let contact_email = match (&state.carts, state.store.ledger.receipt_mail_enabled()) {
        (Some(carts), true) => {
            carts.contact_email(&id, nav.trim(), receipt.payment_note.as_deref())
        }
        _ => None,
    };
    let stored = StoredReceipt {
        receipt_id: receipt.receipt_id.clone(),
        organization: org_fc.clone(),
        id_pa: ids.id_pa.clone(),
        id_station: ids.id_station.clone(),
        notice_number: nav.clone(),
        iupd: None,
        operation: op.name().to_string(),
        received_at: Utc::now(),
        disposition: ReceiptDisposition::Applied,
        raw_xml: String::from_utf8_lossy(raw).into_owned(),
        receipt,
        flags,
        contact_email,
        recovered: false,
    };
    let receipt_id = stored.receipt_id.clone();
    let disposition = match state.store.apply_receipt(stored).await {
        Ok(d) => d,
        Err(e) => return keys(system_error(op, &id, "receipt not stored", &e)),
    };
    if let Err(e) = state
        .store
        .durability
        .commit(DurabilityPoint::Receipt)
        .await
    {
        return keys(system_error(op, &id, "receipt flush failed", &e));
    }
    // the portal's cart that took the notice learns it is paid (from the receipt, never from
    // the browser's return)
    if let (Some(carts), false) = (&state.carts, disposition == ReceiptDisposition::Orphan) {
        let (receipt_id, note) = &cart_hint;
        if let Err(e) = carts.receipt_stored(&id, nav.trim(), receipt_id, note.as_deref()) {
            tracing::warn!(error = %e, notice = %nav.trim(), "receipt stored, cart not told (it checks the store itself)");
        }
    }
    // the receipt (and its notification, when the Ente has an endpoint) is on disk: tell
    if let (Some(bus), false) = (&state.bus, disposition == ReceiptDisposition::Duplicate) {
        bus.publish(mpay_actors::bus::Event::ReceiptStored {
            organization: org_fc.clone(),
            receipt_id,
        });
    }
    let mut out = match disposition {
        ReceiptDisposition::Applied | ReceiptDisposition::Orphan => ok(op, &Response::SendRt),
        ReceiptDisposition::Duplicate => {
            if state.settings.station.duplicate_receipt_is_ko {
                ko(
                    op,
                    FaultCode::ReceiptDuplicata,
                    &id,
                    "receipt already received",
                )
            } else {
                ok(op, &Response::SendRt)
            }
        }
        // collected money is never refused: stored with a double-payment anomaly for refund
        ReceiptDisposition::DoublePayment => ok(op, &Response::SendRt),
    };
    out.note = note.or_else(|| match disposition {
        ReceiptDisposition::Orphan => Some("orphan receipt: no position for this notice".into()),
        ReceiptDisposition::DoublePayment => Some("possible double payment".into()),
        ReceiptDisposition::Duplicate => Some("same receipt again".into()),
        ReceiptDisposition::Applied => None,
    });
    keys(out)
}

/// Reads a value from the service-specific XML of paDemandPaymentNotice by local name.
fn find_text(e: &mpay_messages::wire::xml::Element, names: &[&str]) -> Option<String> {
    if names.contains(&e.local.as_str()) && e.children.is_empty() && !e.text.trim().is_empty() {
        return Some(e.text.trim().to_string());
    }
    e.children.iter().find_map(|c| find_text(c, names))
}

async fn demand(
    state: &web::Data<AppState>,
    op: Operation,
    ids: &StationIds,
    id_servizio: &str,
    service_data: &[u8],
) -> Outcome {
    let org_fc = ids.id_pa.clone();
    let (org, relation) = match authorise(state, op, ids, &org_fc, None) {
        Ok(x) => x,
        Err(o) => return with_keys(*o, &org_fc, id_servizio),
    };
    let id = org.fiscal_code.as_str().to_string();
    let keys = |o: Outcome| with_keys(o, &id, id_servizio);
    if relation != StationRelation::Current {
        return keys(ko(
            op,
            FaultCode::StazioneIntErrata,
            &id,
            "organization not served by this station",
        ));
    }
    let Some(service) = state
        .settings
        .services
        .iter()
        .find(|s| s.organization == id && s.demand_service_id.as_deref() == Some(id_servizio))
    else {
        return keys(ko(
            op,
            FaultCode::Semantica,
            &id,
            format!(
                "service {id_servizio} cannot be paid spontaneously at a PSP for this organization"
            ),
        ));
    };
    let data = mpay_messages::wire::xml::parse(service_data).ok();
    let amount = match service.amount {
        mpay_config::AmountRule::Fixed { cents } => Amount::from_cents(cents).ok(),
        mpay_config::AmountRule::Range {
            min_cents,
            max_cents,
        } => data
            .as_ref()
            .and_then(|d| find_text(d, &["importo", "Importo", "amount"]))
            .and_then(|t| Amount::parse_decimal_lenient(&t).ok())
            .filter(|a| a.cents() >= min_cents && a.cents() <= max_cents),
        mpay_config::AmountRule::Free => data
            .as_ref()
            .and_then(|d| find_text(d, &["importo", "Importo", "amount"]))
            .and_then(|t| Amount::parse_decimal_lenient(&t).ok())
            .filter(|a| a.cents() > 0),
    };
    let Some(amount) = amount else {
        return keys(ko(
            op,
            FaultCode::Semantica,
            &id,
            "the service data carry no valid amount",
        ));
    };
    let debtor_fc = data
        .as_ref()
        .and_then(|d| find_text(d, &["codiceFiscale", "CodiceFiscale", "fiscalCode"]))
        .and_then(|t| FiscalCode::parse_unchecked(&t).ok())
        .unwrap_or(FiscalCode::Anonymous);
    let iban = match state
        .catalogue
        .organization(&id)
        .and_then(|o| o.service_iban(&service.code))
    {
        Some(iban) => iban.clone(),
        None => {
            return keys(system_error(
                op,
                &id,
                "demand: service missing from the catalogue",
                &service.code,
            ))
        }
    };
    let now = Utc::now();
    let due = now + Duration::days(i64::from(state.settings.station.demand_due_days));
    let ledger = state.store.ledger.clone();
    let org2 = org.clone();
    let label = service.label.clone();
    let category = service.category.clone();
    let code = service.code.clone();
    let created = web::block(move || -> Result<DebtPosition, LedgerError> {
        let nav = ledger.next_notice(&org2.fiscal_code, &org2.layout_for_service(Some(&code)))?;
        let mut position = DebtPosition::new(
            org2.fiscal_code.clone(),
            format!("PSP-{}-{}", code, nav),
            Debtor::new(
                debtor_fc.clone(),
                if debtor_fc.is_anonymous() {
                    "ANONIMO".into()
                } else {
                    debtor_fc.to_string()
                },
            ),
            org2.name.clone(),
            Origin::PspDemand {
                service: code.clone(),
            },
            now,
        );
        position.switch_to_expired = true;
        position.pay_stand_in = false;
        position.service_code = Some(code.clone());
        let mut option = PaymentOption::new(nav, amount, label.clone(), due);
        option
            .transfers
            .push(Transfer::to_iban(1, amount, iban, label, category));
        position.payment_options.push(option);
        position.mark_published(now);
        ledger.create(position)
    })
    .await;
    let p = match created {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return keys(system_error(op, &id, "demand: position not created", &e)),
        Err(e) => return keys(system_error(op, &id, "demand worker failed", &e)),
    };
    if let Err(e) = state
        .store
        .durability
        .commit(DurabilityPoint::RestWrite)
        .await
    {
        return keys(system_error(op, &id, "demand flush failed", &e));
    }
    let Some(o) = p.payment_options.first() else {
        return keys(system_error(
            op,
            &id,
            "demand",
            &"created position has no option",
        ));
    };
    let qr = QrCode {
        fiscal_code: id.clone(),
        notice_number: o.nav.to_string(),
    };
    with_keys(
        ok(op, &Response::Demand(qr, describe(&p, o))),
        &id,
        o.nav.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taxonomy_codes_are_sent_bare() {
        assert_eq!(taxonomy_code("9/0101100IM/"), "0101100IM");
        assert_eq!(taxonomy_code("0101100IM"), "0101100IM");
        assert_eq!(taxonomy_code("/0101100IM/"), "0101100IM");
    }
}
