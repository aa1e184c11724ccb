//! MPay-compatible Archivio Carichi SOAP service (drop-in for Enti integrated with MPay):
//! `POST /ArchivioCarichiService/integraecdifferito` (INTERFACES.md §5.1; WSDL
//! `integraecdifferito.wsdl`). Italian names are kept at this boundary only.
//!
//! A document becomes a debt position of the ledger (`iupd` = `numeroDocumento`, status VALID,
//! payable at once through the station): the single solution (the document's notice) plus one
//! installment option per rata when there is more than one. Tributi are grouped by beneficiary
//! domain (at most 2) into the transfers of every option, split in proportion to the domains'
//! shares (rounding on the last transfer). The MPay view of the document is stored next to the
//! position in the same transaction (`mpay_storage::archive`).
//!
//! Layout: this file is the SOAP edge (body limit, decoding, authentication, journal, faults);
//! `use_case` runs the five operations on the store; `mapping` turns an MPay document into a
//! debt position (numbers, debtor, beneficiaries, options and transfers).
//!
//! Answers: business outcomes are a normal response with `codiceEsito` `00`..`07` (HTTP 200);
//! a request that is not XML, not SOAP or not an operation of the service gets a SOAP Fault with
//! `srv:Fault{code, message}` (HTTP 500).
//!
//! Authentication: the organization's API key, in the `Ocp-Apim-Subscription-Key` header or as
//! the password of HTTP Basic authentication (any user name); the request's `codiceUtente` /
//! `codiceEnte` must be the key's organization's MPay codes. An organization may opt out
//! (`mpay.archivio_carichi_open = true`) for deployments that protect the endpoint by network,
//! as MPay did.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use futures_util::StreamExt;
use mpay_messages::archivio::{
    self as ac, ArchivedDocument, DecodeError, Discharge, DocumentRequest, Esito, Operation,
    Request, RequestBase, ResponseBody, StampaDocumento,
};
use mpay_messages::journal::JournalEntry;
use mpay_messages::position::{
    DebtPosition, Debtor, DebtorType, Destination, MapEntry, OptionStatus, PaymentOption,
    PositionStatus, Transfer,
};
use mpay_messages::time::rome_local_to_utc;
use mpay_messages::{
    Amount, FiscalCode, Iban, Iuv, NoticeLayout, NoticeNumber, OrgFiscalCode, PersonFiscalCode,
};
use mpay_storage::archive::{self, ArchiveError, FlowRecord, Snapshot};
use mpay_storage::{DurabilityPoint, LedgerError, PositionRepository};

use crate::auth::API_KEY_HEADER;
use crate::state::{AppState, OrgContext, PositionChange};

mod mapping;
mod use_case;

use mapping::*;
use use_case::*;

/// The endpoint path (MPay's).
pub const PATH: &str = "/ArchivioCarichiService/integraecdifferito";

/// Attempts of a read-check-write cycle before answering `01` (concurrent changes).
const MAX_ATTEMPTS: usize = 8;

/// Routes of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(PATH, web::post().to(handle));
}

/// A business outcome: `codiceEsito` + `messaggioEsito`.
#[derive(Debug)]
struct Fail(Esito, String);

fn fail(esito: Esito, msg: impl Into<String>) -> Fail {
    Fail(esito, msg.into())
}

/// What the handler answers and journals.
struct Answer {
    esito: Esito,
    message: String,
    body: ResponseBody,
    key: Option<String>,
}

fn empty_body(op: Operation) -> ResponseBody {
    match op {
        Operation::Inserimento | Operation::Variazione => {
            ResponseBody::Documento(ac::Documento::default())
        }
        Operation::Cancellazione | Operation::Discarico => {
            ResponseBody::NumeroDocumento(String::new())
        }
        Operation::RichiestaAvviso => {
            ResponseBody::Stampa(StampaDocumento::default(), String::new())
        }
    }
}

fn soap_fault(status: StatusCode, code: i32, msg: &str, soap12: bool) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        r.insert_header(("WWW-Authenticate", "Basic realm=\"mpay\""));
    }
    r.content_type(content_type(soap12))
        .body(ac::encode_fault(code, msg, soap12))
}

fn content_type(soap12: bool) -> &'static str {
    if soap12 {
        "application/soap+xml; charset=utf-8"
    } else {
        "text/xml; charset=utf-8"
    }
}

/// `POST /ArchivioCarichiService/integraecdifferito`.
pub async fn handle(
    req: HttpRequest,
    state: web::Data<AppState>,
    mut payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let at = Utc::now();
    let request_id = crate::middleware::RequestId::of(&req);
    let limit = state.settings.http.body_limit_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(c) if body.len() + c.len() <= limit => body.extend_from_slice(&c),
            Ok(_) => {
                return soap_fault(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    413,
                    &format!("richiesta più grande di {limit} byte"),
                    false,
                )
            }
            Err(e) => {
                return soap_fault(StatusCode::BAD_REQUEST, 400, &e.to_string(), false);
            }
        }
    }
    let body = body.freeze();
    let decoded = match ac::decode(&body) {
        Ok(d) => Ok(d),
        Err(DecodeError::Missing {
            operation,
            base,
            path,
            soap12,
        }) => Err((operation, base, path, soap12)),
        Err(e) => {
            metrics::counter!("mpay_archivio_requests_total", "operation" => "unknown", "outcome" => "FAULT").increment(1);
            journal(
                &state,
                &request_id,
                at,
                started,
                "unknown",
                None,
                None,
                500,
                "FAULT",
                &body,
            )
            .await;
            // answer in the envelope version the caller used, when it can be seen
            let soap12 =
                String::from_utf8_lossy(body.get(..body.len().min(512)).unwrap_or_default())
                    .contains(ac::NS_SOAP12);
            return soap_fault(StatusCode::INTERNAL_SERVER_ERROR, 1, &e.to_string(), soap12);
        }
    };
    let (op, base, soap12) = match &decoded {
        Ok(d) => (d.operation, d.base.clone(), d.soap12),
        Err((op, base, _, soap12)) => (*op, (**base).clone(), *soap12),
    };
    let org = match authenticate(&req, &state, &base) {
        Ok(org) => org,
        Err((status, msg)) => {
            metrics::counter!("mpay_archivio_requests_total", "operation" => op.name(), "outcome" => "DENIED").increment(1);
            journal(
                &state,
                &request_id,
                at,
                started,
                op.name(),
                None,
                None,
                status.as_u16(),
                "DENIED",
                &body,
            )
            .await;
            return soap_fault(status, i32::from(status.as_u16()), &msg, soap12);
        }
    };
    let answer = match decoded {
        Err((_, _, path, _)) => Answer {
            esito: Esito::Validazione,
            message: format!("elemento obbligatorio mancante: {path}"),
            body: empty_body(op),
            key: None,
        },
        Ok(d) => process(&state, &org, &d.base, d.request).await,
    };
    let xml = ac::encode_response(
        op,
        &base,
        answer.esito,
        &answer.message,
        &answer.body,
        soap12,
    );
    metrics::counter!("mpay_archivio_requests_total", "operation" => op.name(), "outcome" => answer.esito.code())
        .increment(1);
    journal(
        &state,
        &request_id,
        at,
        started,
        op.name(),
        Some(org.fiscal_code.to_string()),
        answer.key,
        200,
        answer.esito.code(),
        &body,
    )
    .await;
    HttpResponse::Ok()
        .content_type(content_type(soap12))
        .body(xml)
}

#[allow(clippy::too_many_arguments)]
async fn journal(
    state: &AppState,
    request_id: &str,
    at: DateTime<Utc>,
    started: Instant,
    operation: &str,
    organization: Option<String>,
    key: Option<String>,
    status: u16,
    outcome: &str,
    body: &[u8],
) {
    let entry = JournalEntry {
        at,
        channel: "archivio-carichi".into(),
        operation: operation.to_string(),
        organization,
        key,
        status,
        outcome: outcome.to_string(),
        latency_us: started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64,
        request_id: request_id.to_string(),
        note: None,
        payload: None,
    };
    state.journal_exchange(entry, body).await;
}

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Whether the request's MPay codes designate this organization (office codes only checked
/// when configured).
fn codes_match(org: &OrgContext, base: &RequestBase) -> bool {
    let m = &org.settings.mpay;
    // an organization code in GPD's looser form (`gpd_compat.free_identifiers`) is REST-only
    org.fiscal_code.is_pagopa()
        && !m.codice_utente.is_empty()
        && same(&m.codice_utente, &base.codice_utente)
        && same(&m.codice_ente, &base.codice_ente)
        && (m.tipo_ufficio.is_empty() || same(&m.tipo_ufficio, &base.tipo_ufficio))
        && (m.codice_ufficio.is_empty() || same(&m.codice_ufficio, &base.codice_ufficio))
}

fn presented_key(req: &HttpRequest) -> Option<String> {
    if let Some(k) = req
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    {
        return Some(k);
    }
    let auth = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, value) = auth.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (_, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

/// The organization the request acts for. Errors: 401 without a credential (unless the
/// organization is configured open) or with an unknown one; 403 when the key's organization is
/// not the one the MPay codes designate.
fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    base: &RequestBase,
) -> Result<Arc<OrgContext>, (StatusCode, String)> {
    match presented_key(req) {
        Some(key) => {
            let attempt =
                crate::throttle::Attempt::api_key(state.station_access.request_client_ip(req), &key);
            if let Some(wait) = state.throttle.check(&attempt) {
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "troppi tentativi di autenticazione falliti: riprovare tra {} s",
                        wait.as_secs().max(1)
                    ),
                ));
            }
            let Some(org) = state.org_for_key(&key) else {
                state.throttle.failed(&attempt);
                return Err((
                    StatusCode::UNAUTHORIZED,
                    "credenziali non valide".to_string(),
                ));
            };
            if codes_match(&org, base) {
                Ok(org)
            } else {
                Err((
                    StatusCode::FORBIDDEN,
                    format!(
                        "le credenziali non danno accesso all'ente codiceUtente {} codiceEnte {}",
                        base.codice_utente, base.codice_ente
                    ),
                ))
            }
        }
        None => state
            .orgs
            .values()
            .find(|o| codes_match(o, base) && o.settings.mpay.archivio_carichi_open)
            .cloned()
            .ok_or((
                StatusCode::UNAUTHORIZED,
                format!(
                    "credenziali mancanti: inviare la chiave API nell'header {API_KEY_HEADER} o come password HTTP Basic"
                ),
            )),
    }
}

async fn process(
    state: &web::Data<AppState>,
    org: &Arc<OrgContext>,
    base: &RequestBase,
    request: Request,
) -> Answer {
    let st = state.clone();
    let o = org.clone();
    let b = base.clone();
    let op = match &request {
        Request::Inserimento(_) => Operation::Inserimento,
        Request::Variazione(_) => Operation::Variazione,
        Request::Cancellazione { .. } => Operation::Cancellazione,
        Request::Discarico { .. } => Operation::Discarico,
        Request::RichiestaAvviso(_) => Operation::RichiestaAvviso,
    };
    let result = web::block(move || run(&st, &o, &b, request)).await;
    let (answer, wrote) = match result {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "archivio carichi worker failed");
            (
                Answer {
                    esito: Esito::Generico,
                    message: "Errore generico".into(),
                    body: empty_body(op),
                    key: None,
                },
                None,
            )
        }
    };
    if let Some(written) = wrote {
        if let Err(e) = state
            .store
            .durability
            .commit(DurabilityPoint::RestWrite)
            .await
        {
            tracing::error!(error = %e, "flush failed after an archivio carichi write");
            return Answer {
                esito: Esito::Generico,
                message: "Errore generico: salvataggio non confermato, ripetere la richiesta"
                    .into(),
                body: empty_body(op),
                key: answer.key,
            };
        }
        // durable: the bus hears it (as for the REST API's writes)
        state.tell_position_id(written.change, org.fiscal_code.as_str(), &written.iupd);
    }
    answer
}
