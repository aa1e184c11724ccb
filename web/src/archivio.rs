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
use crate::state::{AppState, OrgContext};

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
            let org = state.org_for_key(&key).ok_or((
                StatusCode::UNAUTHORIZED,
                "credenziali non valide".to_string(),
            ))?;
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
                false,
            )
        }
    };
    if wrote {
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
    }
    answer
}

/// Runs one request on a blocking thread; returns the answer and whether the store was written.
fn run(state: &AppState, org: &OrgContext, base: &RequestBase, request: Request) -> (Answer, bool) {
    let print_echo = match &request {
        Request::RichiestaAvviso(s) => Some(s.clone()),
        _ => None,
    };
    let doc_echo = match &request {
        Request::Inserimento(r) | Request::Variazione(r) => Some(r.documento.clone()),
        _ => None,
    };
    let (key, result) = match request {
        Request::Inserimento(r) => {
            let key = r.documento.numero_documento.clone();
            (key, upsert(state, org, base, *r, false))
        }
        Request::Variazione(r) => {
            let key = r.documento.numero_documento.clone();
            (key, upsert(state, org, base, *r, true))
        }
        Request::Cancellazione { numero_documento } => {
            let r = cancel(state, org, &numero_documento);
            (numero_documento, r)
        }
        Request::Discarico {
            documento,
            list_tributi,
        } => {
            let key = documento.numero_documento.clone();
            let r = discharge(state, org, &documento.numero_documento, &list_tributi);
            (key, r)
        }
        Request::RichiestaAvviso(s) => {
            let key = s.numero_documento.clone();
            (key, notice_pdf(state, org, s))
        }
    };
    match result {
        Ok((message, body, wrote)) => (
            Answer {
                esito: Esito::Ok,
                message,
                body,
                key: Some(key),
            },
            wrote,
        ),
        Err(Fail(esito, message)) => {
            let body = match (print_echo, doc_echo) {
                (Some(s), _) => ResponseBody::Stampa(s, String::new()),
                (None, Some(d)) => {
                    // a duplicate answers with the stored document and its numbers, so an Ente
                    // that lost the first answer can recover them; other errors echo the request
                    let stored = (esito == Esito::Duplicato)
                        .then(|| archive::read(&state.store, &org.fiscal_code, &key).ok())
                        .flatten()
                        .and_then(|snap| snap.document)
                        .filter(|d| !d.cancelled)
                        .map(|d| d.request.documento);
                    ResponseBody::Documento(stored.unwrap_or(d))
                }
                (None, None) => ResponseBody::NumeroDocumento(key.clone()),
            };
            (
                Answer {
                    esito,
                    message,
                    body,
                    key: Some(key),
                },
                false,
            )
        }
    }
}

type Done = Result<(String, ResponseBody, bool), Fail>;

const OK_MESSAGE: &str = "Operazione eseguita correttamente";

fn storage_fail(e: impl std::fmt::Display) -> Fail {
    tracing::error!(error = %e, "archivio carichi storage failure");
    fail(Esito::Generico, "Errore generico")
}

fn read(state: &AppState, org: &OrgContext, numero: &str) -> Result<Snapshot, Fail> {
    archive::read(&state.store, &org.fiscal_code, numero).map_err(storage_fail)
}

fn has_payments(p: &DebtPosition) -> bool {
    p.status.has_payments()
        || p.payment_options
            .iter()
            .any(|o| o.status != OptionStatus::PoUnpaid)
}

/// `inserimentoEC` (`replace` = false) and `variazioneEC` (`replace` = true).
fn upsert(
    state: &AppState,
    org: &OrgContext,
    base: &RequestBase,
    mut req: DocumentRequest,
    replace: bool,
) -> Done {
    let numero = req.documento.numero_documento.clone();
    validate_numero(&numero)?;
    let flow = req.configurazione.identificativo_flusso.trim().to_string();
    if flow.is_empty() {
        return Err(fail(
            Esito::Validazione,
            "configurazione/identificativoFlusso: valore mancante",
        ));
    }
    let flow_id = if replace {
        format!("{flow}_v")
    } else {
        flow.clone()
    };
    let generate = match req.configurazione.flag_generazione_iuv.trim() {
        "Y" | "y" => true,
        "N" | "n" => false,
        other => {
            return Err(fail(
                Esito::Validazione,
                format!("configurazione/flagGenerazioneIUV: valore «{other}» non ammesso (Y o N)"),
            ))
        }
    };
    let layout = iuv_layout(org, &req)?;
    // Everything is validated before numbers are handed out (a generated number is never
    // reused, so a request refused afterwards would waste it).
    let placeholder = layout
        .generate(1)
        .map_err(|e| fail(Esito::Configurazione, e.to_string()))?;
    let now = Utc::now();
    {
        let mut probe = req.clone();
        if generate {
            fill_numbers(&mut probe, &mut || Ok(placeholder.clone()))?;
        } else {
            check_supplied_numbers(org, &mut probe)?;
        }
        position_of(state, org, &probe, &HashMap::new(), now, now)?;
    }
    for _ in 0..MAX_ATTEMPTS {
        let snap = read(state, org, &numero)?;
        let previous = match (&snap.document, &snap.position) {
            (Some(d), Some(p)) if !d.cancelled => Some((d, p)),
            _ => None,
        };
        if replace {
            let Some((doc, pos)) = previous else {
                return Err(fail(
                    Esito::NonTrovato,
                    format!("documento {numero} non presente in archivio"),
                ));
            };
            if !doc.discharged.is_empty() {
                return Err(fail(
                    Esito::DiscarichiPresenti,
                    format!("variazione non consentita: il documento {numero} ha discarichi"),
                ));
            }
            if has_payments(pos) {
                return Err(fail(
                    Esito::PagamentiPresenti,
                    format!("variazione non consentita: il documento {numero} ha pagamenti"),
                ));
            }
        } else if previous.is_some() || (snap.document.is_none() && snap.position.is_some()) {
            return Err(fail(
                Esito::Duplicato,
                format!("documento {numero} già presente"),
            ));
        }
        if archive::flow_exists(&state.store, &org.fiscal_code, &flow_id).map_err(storage_fail)? {
            return Err(flow_duplicate(&flow_id));
        }
        let mut numbered = req.clone();
        if generate {
            let ledger = state.store.ledger.clone();
            fill_numbers(&mut numbered, &mut || {
                ledger
                    .next_notice(&org.fiscal_code, &layout)
                    .map_err(|e| match e {
                        LedgerError::SequenceExhausted(_) => {
                            fail(Esito::Configurazione, "sequenza IUV esaurita per l'ente")
                        }
                        other => storage_fail(other),
                    })
            })?;
        } else {
            check_supplied_numbers(org, &mut numbered)?;
        }
        let inserted = match (&snap.position, replace) {
            (Some(p), true) => p.inserted_date,
            _ => now,
        };
        let mut position = position_of(state, org, &numbered, &HashMap::new(), inserted, now)?;
        if let Some(p) = &snap.position {
            position.revision = p.revision.saturating_add(1);
        }
        let mut flows = match (&snap.document, replace) {
            (Some(d), true) => d.flows.clone(),
            _ => Vec::new(),
        };
        flows.push(flow_id.clone());
        let document = ArchivedDocument {
            base: base.clone(),
            request: numbered.clone(),
            discharged: Vec::new(),
            flows,
            cancelled: false,
        };
        let record = FlowRecord {
            operation: if replace {
                "variazioneEC"
            } else {
                "inserimentoEC"
            }
            .into(),
            numero_documento: numero.clone(),
            at: now,
        };
        match archive::write(
            &state.store,
            &snap,
            Some((&flow_id, &record)),
            &document,
            &position,
        ) {
            Ok(()) => {
                let mut message = OK_MESSAGE.to_string();
                if same(&req.configurazione.flag_stampa_avviso, "Y") {
                    message.push_str("; stampa avviso non disponibile");
                }
                req.documento = numbered.documento;
                return Ok((message, ResponseBody::Documento(req.documento), true));
            }
            Err(ArchiveError::Contended) => continue,
            Err(ArchiveError::FlowDuplicate(_)) => return Err(flow_duplicate(&flow_id)),
            Err(ArchiveError::DocumentExists(_)) => {
                return Err(fail(
                    Esito::Duplicato,
                    format!("documento {numero} già presente"),
                ))
            }
            Err(ArchiveError::Ledger(LedgerError::NoticeInUse { nav, iupd })) => {
                return Err(fail(
                    Esito::Validazione,
                    format!("numero avviso {nav} già utilizzato dal documento {iupd}"),
                ))
            }
            Err(ArchiveError::Ledger(LedgerError::IuvInUse { iuv, iupd })) => {
                return Err(fail(
                    Esito::Validazione,
                    format!("IUV {iuv} già utilizzato dal documento {iupd}"),
                ))
            }
            Err(ArchiveError::Ledger(e)) => return Err(storage_fail(e)),
        }
    }
    Err(fail(
        Esito::Generico,
        "documento modificato contemporaneamente da un'altra richiesta: ripetere",
    ))
}

/// `numeroDocumento`: 1..=50 characters, no control characters, no surrounding spaces. Any
/// other character is allowed (`123/2026` is common); such positions are reachable through
/// the REST list, and by `GET` with the `/` percent-encoded.
fn validate_numero(numero: &str) -> Result<(), Fail> {
    let n = numero.chars().count();
    if n == 0 || n > 50 || numero.chars().any(char::is_control) || numero.trim() != numero {
        return Err(fail(
            Esito::Validazione,
            format!(
                "numeroDocumento «{numero}» non valido (da 1 a 50 caratteri, senza caratteri di controllo né spazi iniziali o finali)"
            ),
        ));
    }
    Ok(())
}

fn flow_duplicate(flow: &str) -> Fail {
    fail(
        Esito::Validazione,
        format!("identificativo flusso {flow} già presente"),
    )
}

/// The layout of the numbers generated for a document: the one `configurazioneIUV` chooses
/// when it is sent — any of the organization's codes (an organization with several segregation
/// or application codes picks one per back office) — else the organization's default. A domain,
/// aux digit or code the organization does not have is refused (`02`).
fn iuv_layout(org: &OrgContext, req: &DocumentRequest) -> Result<NoticeLayout, Fail> {
    let Some(c) = &req.configurazione.configurazione_iuv else {
        return Ok(org.layout);
    };
    let conf = |m: String| fail(Esito::Configurazione, m);
    if !c.identificativo_dominio.is_empty()
        && c.identificativo_dominio.trim() != org.fiscal_code.as_str()
    {
        return Err(conf(format!(
            "identificativoDominio {} diverso dal codice fiscale dell'ente {}",
            c.identificativo_dominio, org.fiscal_code
        )));
    }
    let two = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .and_then(|s| s.parse::<u8>().ok())
    };
    let aux = c.aux_digit.trim().parse::<u8>().ok();
    let code = match aux {
        Some(0) => two(&c.application_code),
        Some(3) => two(&c.segregation_code),
        _ => None,
    };
    let configured = || {
        org.entry
            .codes
            .iter()
            .map(|(l, _)| match l.code() {
                Some(code) => format!("auxDigit {} codice {code:02}", l.aux_digit().as_u8()),
                None => format!("auxDigit {}", l.aux_digit().as_u8()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    org.entry
        .codes
        .iter()
        .map(|(l, _)| *l)
        .find(|l| Some(l.aux_digit().as_u8()) == aux && (l.code().is_none() || l.code() == code))
        .ok_or_else(|| {
            let what = match aux {
                Some(0) => format!(
                    "auxDigit 0, applicationCode {}",
                    c.application_code.as_deref().unwrap_or("")
                ),
                Some(3) => format!(
                    "auxDigit 3, segregationCode {}",
                    c.segregation_code.as_deref().unwrap_or("")
                ),
                _ => format!("auxDigit {}", c.aux_digit.trim()),
            };
            conf(format!(
                "configurazioneIUV ({what}) diversa da quelle configurate per l'ente ({})",
                configured()
            ))
        })
}

/// Generated numbers: one for the document (single solution); one per rata when there is more
/// than one, else the rata takes the document's.
fn fill_numbers(
    req: &mut DocumentRequest,
    next: &mut dyn FnMut() -> Result<NoticeNumber, Fail>,
) -> Result<(), Fail> {
    let doc = next()?;
    req.documento.numero_bollettino_pago_pa = Some(doc.as_str().to_string());
    req.documento.identificativo_univoco_versamento = Some(doc.iuv().as_str().to_string());
    let single = req.list_scadenze.len() == 1;
    for s in &mut req.list_scadenze {
        let n = if single { doc.clone() } else { next()? };
        s.numero_bollettino_pago_pa = Some(n.as_str().to_string());
        s.identificativo_univoco_versamento = Some(n.iuv().as_str().to_string());
    }
    Ok(())
}

/// Supplied numbers (`flagGenerazioneIUV=N`): notice and IUV mandatory on the document and on
/// every rata (a single rata may omit them and takes the document's, or must repeat them);
/// check digits valid, layout of the organization, IUV = the notice's IUV.
fn check_supplied_numbers(org: &OrgContext, req: &mut DocumentRequest) -> Result<(), Fail> {
    check_supplied_numbers_inner(org, req)?;
    // one notice number per option: the single solution and every installment differ
    if req.list_scadenze.len() > 1 {
        let mut seen = std::collections::HashSet::new();
        let all = std::iter::once(&req.documento.numero_bollettino_pago_pa).chain(
            req.list_scadenze
                .iter()
                .map(|s| &s.numero_bollettino_pago_pa),
        );
        for n in all.flatten() {
            if !seen.insert(n.clone()) {
                return Err(fail(
                    Esito::Validazione,
                    format!(
                        "numero avviso {n} ripetuto nel documento: documento e rate devono avere numeri diversi"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_supplied_numbers_inner(org: &OrgContext, req: &mut DocumentRequest) -> Result<(), Fail> {
    let doc = supplied(
        org,
        "documento",
        &req.documento.numero_bollettino_pago_pa,
        &req.documento.identificativo_univoco_versamento,
    )?;
    req.documento.identificativo_univoco_versamento = Some(doc.iuv().as_str().to_string());
    let single = req.list_scadenze.len() == 1;
    for (i, s) in req.list_scadenze.iter_mut().enumerate() {
        let path = format!("listScadenze[{}]", i + 1);
        let n = if single && s.numero_bollettino_pago_pa.is_none() {
            if s.identificativo_univoco_versamento.is_some()
                && s.identificativo_univoco_versamento.as_deref() != Some(doc.iuv().as_str())
            {
                return Err(fail(
                    Esito::Validazione,
                    format!("{path}: IUV diverso da quello del documento (rata unica)"),
                ));
            }
            doc.clone()
        } else {
            let n = supplied(
                org,
                &path,
                &s.numero_bollettino_pago_pa,
                &s.identificativo_univoco_versamento,
            )?;
            if single && n != doc {
                return Err(fail(
                    Esito::Validazione,
                    format!("{path}: numero avviso diverso da quello del documento (rata unica)"),
                ));
            }
            n
        };
        s.numero_bollettino_pago_pa = Some(n.as_str().to_string());
        s.identificativo_univoco_versamento = Some(n.iuv().as_str().to_string());
    }
    Ok(())
}

fn supplied(
    org: &OrgContext,
    path: &str,
    nav: &Option<String>,
    iuv: &Option<String>,
) -> Result<NoticeNumber, Fail> {
    let v = |m: String| fail(Esito::Validazione, m);
    let nav_text = nav.as_deref().ok_or_else(|| {
        v(format!(
            "{path}/numeroBollettinoPagoPA obbligatorio con flagGenerazioneIUV=N"
        ))
    })?;
    // matched, not judged (DESIGN §3): legacy notices failing mod 93 are accepted
    let n = NoticeNumber::parse_unchecked(nav_text)
        .map_err(|e| v(format!("{path}/numeroBollettinoPagoPA {nav_text}: {e}")))?;
    if !n.check_digit_ok() {
        tracing::warn!(notice = %nav_text, "supplied notice number fails the check digit (accepted)");
    }
    if !org.recognises(&n.layout()) {
        return Err(v(format!(
            "{path}/numeroBollettinoPagoPA {nav_text}: aux digit o codice di segregazione/applicazione diverso da quello dell'ente"
        )));
    }
    let iuv_text = iuv.as_deref().ok_or_else(|| {
        v(format!(
            "{path}/identificativoUnivocoVersamento obbligatorio con flagGenerazioneIUV=N"
        ))
    })?;
    let given = Iuv::parse_unchecked(iuv_text).map_err(|e| {
        v(format!(
            "{path}/identificativoUnivocoVersamento {iuv_text}: {e}"
        ))
    })?;
    if given != n.iuv() {
        return Err(v(format!(
            "{path}/identificativoUnivocoVersamento {iuv_text} non corrisponde al numero avviso {nav_text}"
        )));
    }
    Ok(n)
}

/// Business due instant: 23:59:59 Europe/Rome of the day.
fn due_instant(day: NaiveDate) -> DateTime<Utc> {
    rome_local_to_utc(day.and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN)))
        .unwrap_or_else(Utc::now)
}

fn debtor_of(req: &DocumentRequest) -> Result<Debtor, Fail> {
    let a = &req.anagrafica;
    let v = |m: String| fail(Esito::Validazione, m);
    let cf = a.codice_fiscale.trim().to_ascii_uppercase();
    let kind = a.tipo_anagrafica.trim().to_ascii_uppercase();
    let fiscal_code = match kind.as_str() {
        "A" => OrgFiscalCode::parse_unchecked(&cf)
            .map(FiscalCode::Organization)
            .map_err(|e| v(format!("anagrafica/codiceFiscale: partita IVA non valida per tipoAnagrafica A: {e}")))?,
        "D" => FiscalCode::parse_unchecked(&cf)
            .ok()
            .filter(|c| !c.is_anonymous())
            .ok_or_else(|| v("anagrafica/codiceFiscale non valido per tipoAnagrafica D (codice fiscale o partita IVA)".into()))?,
        "F" | "M" => {
            let p = PersonFiscalCode::parse_unchecked(&cf).map_err(|e| {
                v(format!(
                    "anagrafica/codiceFiscale: codice fiscale di persona fisica non valido: {e}"
                ))
            })?;
            if p.is_female() != (kind == "F") {
                return Err(v(format!(
                    "anagrafica/codiceFiscale: il sesso codificato non corrisponde a tipoAnagrafica {kind}"
                )));
            }
            if let Some(d) = &a.data_nascita {
                let day = ac::parse_date("anagrafica/dataNascita", d).map_err(v)?;
                use chrono::Datelike;
                let (yy, mm, dd) = p.birth();
                if (day.year() % 100) as u8 != yy || day.month() as u8 != mm || day.day() as u8 != dd
                {
                    return Err(v(
                        "anagrafica/dataNascita non corrisponde al codice fiscale".to_string(),
                    ));
                }
            }
            FiscalCode::Person(p)
        }
        other => {
            return Err(v(format!(
                "anagrafica/tipoAnagrafica: valore «{other}» non ammesso (A, D, F o M)"
            )))
        }
    };
    let name = a.denominazione.trim();
    if name.is_empty() {
        return Err(v("anagrafica/denominazione: valore mancante".into()));
    }
    let opt = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let address = a.indirizzo_fiscale.trim();
    Ok(Debtor {
        kind: match &fiscal_code {
            FiscalCode::Person(_) => DebtorType::F,
            _ => DebtorType::G,
        },
        fiscal_code,
        full_name: name.chars().take(70).collect(),
        street_name: (!address.is_empty()).then(|| address.chars().take(70).collect()),
        civic_number: None,
        postal_code: None,
        city: None,
        province: None,
        region: None,
        country: Some("IT".into()),
        email: opt(&a.email).or_else(|| opt(&a.email_pec)),
        phone: None,
    })
}

/// One beneficiary of the document: the tributi of one domain.
struct Beneficiary {
    domain: Option<OrgFiscalCode>,
    /// Residual cents (after discharges).
    cents: i64,
    /// Cents before discharges.
    original: i64,
    destination: Destination,
    category: String,
    metadata: Vec<MapEntry>,
}

fn service_of<'a>(
    state: &'a AppState,
    org: &str,
    code: &str,
) -> Option<&'a mpay_config::ServiceSettings> {
    state
        .settings
        .services
        .iter()
        .find(|s| s.organization == org && same(&s.code, code))
}

fn category_of(tassonomia: &Option<String>, fallback: &str) -> Result<String, Fail> {
    match tassonomia
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => Ok(fallback.to_string()),
        Some(t) => {
            let code = crate::station::taxonomy_code(t);
            let ok = code.len() == 9
                && code.bytes().take(7).all(|b| b.is_ascii_digit())
                && code.bytes().skip(7).all(|b| b.is_ascii_uppercase());
            if ok {
                Ok(format!("9/{code}/"))
            } else {
                Err(fail(
                    Esito::Validazione,
                    format!("documento/tassonomia «{t}» non valida (7 cifre e 2 lettere, es. 0101002IM)"),
                ))
            }
        }
    }
}

/// Builds the ledger position of a numbered document, `discharged` = cents discharged per
/// tributo key. Validates amounts, totals, dates, debtor, beneficiaries and services.
fn position_of(
    state: &AppState,
    org: &OrgContext,
    req: &DocumentRequest,
    discharged: &HashMap<String, i64>,
    inserted: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DebtPosition, Fail> {
    let v = |m: String| fail(Esito::Validazione, m);
    let doc = &req.documento;
    let total = ac::parse_euros(
        "documento/impBollettinoTotaleDocumento",
        &doc.imp_bollettino_totale_documento,
    )
    .map_err(v)?;
    if total.is_zero() {
        return Err(v(
            "documento/impBollettinoTotaleDocumento deve essere maggiore di zero".into(),
        ));
    }
    if let Some(d) = &doc.data_notifica {
        ac::parse_date("documento/dataNotifica", d).map_err(v)?;
    }
    // installments
    let mut rate: Vec<(u32, NaiveDate, i64, NoticeNumber)> = Vec::new();
    for (i, s) in req.list_scadenze.iter().enumerate() {
        let path = format!("listScadenze[{}]", i + 1);
        let n: u32 = s
            .numero_rata
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=99).contains(n))
            .ok_or_else(|| {
                v(format!(
                    "{path}/numeroRata «{}» non valido (1..99)",
                    s.numero_rata
                ))
            })?;
        if rate.iter().any(|r| r.0 == n) {
            return Err(v(format!("{path}/numeroRata {n} ripetuto")));
        }
        let day = ac::parse_date(&format!("{path}/dataScadenzaRata"), &s.data_scadenza_rata)
            .map_err(v)?;
        let amount = ac::parse_euros(&format!("{path}/impBollettinoRata"), &s.imp_bollettino_rata)
            .map_err(v)?;
        if amount.is_zero() {
            return Err(v(format!(
                "{path}/impBollettinoRata deve essere maggiore di zero"
            )));
        }
        let nav = s
            .numero_bollettino_pago_pa
            .as_deref()
            .and_then(|t| NoticeNumber::parse_unchecked(t).ok())
            .ok_or_else(|| fail(Esito::Generico, format!("{path}: numero avviso mancante")))?;
        rate.push((n, day, amount.cents(), nav));
    }
    rate.sort_by_key(|r| r.0);
    let sum_rate: i64 = rate.iter().map(|r| r.2).sum();
    if sum_rate != total.cents() {
        return Err(v(format!(
            "totale documento {} diverso dalla somma delle rate {}",
            total.to_decimal_string(),
            cents_text(sum_rate)
        )));
    }
    // tributi, grouped by beneficiary domain (ours first)
    let ruolo_code = req.ruolo.codice_tipologia_servizio.trim().to_string();
    // (secondary?, domain) → (tributo index, residual cents, original cents)
    type Lines = Vec<(usize, i64, i64)>;
    let mut groups: BTreeMap<(bool, String), Lines> = BTreeMap::new();
    let mut keys = std::collections::HashSet::new();
    let mut sum_tributi = 0i64;
    let mut residual_total = 0i64;
    for (i, t) in req.list_tributi.iter().enumerate() {
        let path = format!("listTributi[{}]", i + 1);
        let p: u32 = t
            .progressivo_tributo
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=999).contains(n))
            .ok_or_else(|| {
                v(format!(
                    "{path}/progressivoTributo «{}» non valido (1..999)",
                    t.progressivo_tributo
                ))
            })?;
        let _ = p;
        if t.codice_tributo.trim().is_empty() {
            return Err(v(format!("{path}/codiceTributo: valore mancante")));
        }
        if !keys.insert(ac::tributo_key(t)) {
            return Err(v(format!(
                "{path}: tributo {} ripetuto (codice, anno, progressivo)",
                ac::tributo_key(t)
            )));
        }
        let amount = ac::parse_euros(&format!("{path}/impTributo"), &t.imp_tributo).map_err(v)?;
        if amount.is_zero() {
            return Err(v(format!("{path}/impTributo deve essere maggiore di zero")));
        }
        sum_tributi += amount.cents();
        let residual = amount.cents() - discharged.get(&ac::tributo_key(t)).copied().unwrap_or(0);
        residual_total += residual;
        let domain = t
            .identificativo_dominio
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != org.fiscal_code.as_str())
            .unwrap_or("")
            .to_string();
        groups
            .entry((!domain.is_empty(), domain))
            .or_default()
            .push((i, residual, amount.cents()));
    }
    if sum_tributi != total.cents() {
        return Err(v(format!(
            "totale documento {} diverso dalla somma dei tributi {}",
            total.to_decimal_string(),
            cents_text(sum_tributi)
        )));
    }
    if groups.len() > 2 {
        return Err(v(format!(
            "i tributi si riferiscono a {} enti beneficiari: al massimo 2",
            groups.len()
        )));
    }
    let own_service_code = req
        .list_tributi
        .iter()
        .filter(|t| {
            t.identificativo_dominio
                .as_deref()
                .map(str::trim)
                .is_none_or(|d| d.is_empty() || d == org.fiscal_code.as_str())
        })
        .find_map(|t| t.codice_tipologia_servizio.clone())
        .unwrap_or_else(|| ruolo_code.clone());
    let service =
        service_of(state, org.fiscal_code.as_str(), &own_service_code).ok_or_else(|| {
            fail(
                Esito::Configurazione,
                format!(
                    "tipologia servizio {own_service_code} non configurata per l'ente {}",
                    org.fiscal_code
                ),
            )
        })?;
    let base_category = category_of(&doc.tassonomia, &service.category)?;
    let mut beneficiaries = Vec::new();
    for ((secondary, domain), lines) in &groups {
        let tributi: Vec<&ac::Tributo> = lines
            .iter()
            .filter_map(|(i, _, _)| req.list_tributi.get(*i))
            .collect();
        let consistent = |f: &dyn Fn(&ac::Tributo) -> Option<String>,
                          what: &str|
         -> Result<Option<String>, Fail> {
            let mut vals = tributi.iter().filter_map(|t| {
                f(t).map(|s| s.trim().to_ascii_uppercase())
                    .filter(|s| !s.is_empty())
            });
            let first = vals.next();
            if let Some(x) = &first {
                if vals.any(|y| &y != x) {
                    return Err(v(format!(
                        "i tributi dell'ente beneficiario {} hanno {what} diversi",
                        if domain.is_empty() {
                            org.fiscal_code.as_str()
                        } else {
                            domain
                        }
                    )));
                }
            }
            Ok(first)
        };
        let bank = consistent(&|t| t.iban_bancario.clone(), "IBAN bancari")?;
        let postal = consistent(&|t| t.iban_postale.clone(), "IBAN postali")?;
        let tipologia = consistent(
            &|t| t.codice_tipologia_servizio.clone(),
            "tipologie di servizio",
        )?;
        let metadata: Vec<MapEntry> = tributi
            .iter()
            .find_map(
                |t| match (&t.metadati_tari_tefa_key, &t.metadati_tari_tefa_value) {
                    (Some(k), Some(val)) => Some(vec![MapEntry {
                        key: k.trim().chars().take(140).collect(),
                        value: val.trim().chars().take(140).collect(),
                    }]),
                    _ => None,
                },
            )
            .unwrap_or_default();
        let cents: i64 = lines.iter().map(|(_, c, _)| *c).sum();
        let original: i64 = lines.iter().map(|(_, _, o)| *o).sum();
        let parse_iban = |what: &str, s: &str| {
            Iban::parse(s).map_err(|e| v(format!("{what} {s} non valido: {e}")))
        };
        if !secondary {
            let bank_text = bank
                .clone()
                .unwrap_or_else(|| doc.iban_accredito.trim().to_ascii_uppercase());
            let bank = if bank_text.is_empty() {
                None
            } else {
                Some(parse_iban("IBAN", &bank_text)?)
            };
            let postal = postal
                .as_deref()
                .map(|p| parse_iban("IBAN postale", p))
                .transpose()?;
            for i in bank.iter().chain(postal.iter()) {
                if !org.ibans.contains(i) {
                    return Err(v(format!(
                        "IBAN {i} non registrato per l'ente {}",
                        org.fiscal_code
                    )));
                }
            }
            let destination = match (bank, postal) {
                (Some(iban), postal_iban) => Destination::Iban { iban, postal_iban },
                (None, Some(postal_iban)) => Destination::PostalIban { postal_iban },
                (None, None) => {
                    return Err(v("documento/ibanAccredito: valore mancante".into()));
                }
            };
            beneficiaries.push(Beneficiary {
                domain: None,
                cents,
                original,
                destination,
                category: base_category.clone(),
                metadata,
            });
        } else {
            let fc = OrgFiscalCode::parse_unchecked(domain)
                .map_err(|e| v(format!("identificativoDominio {domain} non valido: {e}")))?;
            let mut category = base_category.clone();
            if let Some(code) = &tipologia {
                if state.orgs.contains_key(domain) {
                    let s = service_of(state, domain, code).ok_or_else(|| {
                        fail(
                            Esito::Configurazione,
                            format!(
                                "tipologia servizio {code} non configurata per l'ente {domain}"
                            ),
                        )
                    })?;
                    category = s.category.clone();
                }
            }
            let bank = bank
                .as_deref()
                .map(|b| parse_iban("IBANBancario", b))
                .transpose()?;
            let postal = postal
                .as_deref()
                .map(|p| parse_iban("IBANPostale", p))
                .transpose()?;
            let destination = match (bank, postal) {
                (Some(iban), postal_iban) => Destination::Iban { iban, postal_iban },
                (None, Some(postal_iban)) => Destination::PostalIban { postal_iban },
                (None, None) => {
                    return Err(v(format!(
                        "IBANBancario o IBANPostale obbligatorio per l'ente beneficiario {domain}"
                    )))
                }
            };
            beneficiaries.push(Beneficiary {
                domain: Some(fc),
                cents,
                original,
                destination,
                category,
                metadata,
            });
        }
    }
    let debtor = debtor_of(req)?;
    let description: String = doc
        .causale
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let d = req.ruolo.descrizione_tipologia_servizio.trim();
            if d.is_empty() {
                service.label.as_str()
            } else {
                d
            }
        })
        .chars()
        .take(140)
        .collect();
    // Discharges reduce the installments from the last one backwards; a rata brought to zero
    // is no longer offered.
    let mut to_cut = total.cents() - residual_total;
    let mut rate_now: Vec<(u32, NaiveDate, i64, NoticeNumber)> = rate.clone();
    for r in rate_now.iter_mut().rev() {
        let cut = to_cut.min(r.2);
        r.2 -= cut;
        to_cut -= cut;
    }
    rate_now.retain(|r| r.2 > 0);
    let doc_nav = doc
        .numero_bollettino_pago_pa
        .as_deref()
        .and_then(|t| NoticeNumber::parse_unchecked(t).ok())
        .ok_or_else(|| fail(Esito::Generico, "documento: numero avviso mancante"))?;
    let first_due = rate
        .iter()
        .map(|r| r.1)
        .min()
        .unwrap_or_else(|| now.date_naive());
    let numero = doc.numero_documento.clone();
    let fully_discharged = residual_total == 0;
    // split weights: residual shares; a fully discharged document keeps its original split
    let weights: Vec<i64> = beneficiaries
        .iter()
        .map(|b| {
            if fully_discharged {
                b.original
            } else {
                b.cents
            }
        })
        .collect();
    let plan_total = if fully_discharged {
        total.cents()
    } else {
        residual_total
    };
    let option = |nav: &NoticeNumber,
                  before: i64,
                  cents: i64,
                  day: NaiveDate,
                  partial: bool,
                  rata: Option<u32>|
     -> Result<PaymentOption, Fail> {
        let transfers = split(
            &beneficiaries,
            &weights,
            before,
            cents,
            plan_total,
            &description,
        )?;
        let mut metadata = vec![MapEntry {
            key: "numeroDocumento".into(),
            value: numero.chars().take(140).collect(),
        }];
        if let Some(n) = rata {
            metadata.push(MapEntry {
                key: "numeroRata".into(),
                value: n.to_string(),
            });
        }
        Ok(PaymentOption {
            nav: nav.clone(),
            iuv: nav.iuv(),
            amount: Amount::from_cents(cents).map_err(|e| v(e.to_string()))?,
            description: description.clone(),
            is_partial_payment: partial,
            due_date: due_instant(day),
            retention_date: None,
            fee: Amount::ZERO,
            notification_fee: Amount::ZERO,
            status: OptionStatus::PoUnpaid,
            payment_date: None,
            transfers,
            metadata,
            details: Default::default(),
        })
    };
    let mut options = Vec::new();
    if !fully_discharged {
        options.push(option(&doc_nav, 0, residual_total, first_due, false, None)?);
        if rate.len() > 1 {
            let mut before = 0;
            for r in &rate_now {
                options.push(option(&r.3, before, r.2, r.1, true, Some(r.0))?);
                before += r.2;
            }
        }
    } else {
        // nothing left to pay: keep the single solution for the record, not payable
        options.push(option(&doc_nav, 0, total.cents(), first_due, false, None)?);
    }
    Ok(DebtPosition {
        organization_fiscal_code: org.fiscal_code.clone(),
        iupd: numero,
        debtor,
        switch_to_expired: false,
        pay_stand_in: true,
        company_name: org.name.clone(),
        office_name: None,
        service_code: Some(service.code.clone()),
        validity_date: None,
        status: if fully_discharged {
            PositionStatus::Invalid
        } else {
            PositionStatus::Valid
        },
        inserted_date: inserted,
        publish_date: Some(inserted),
        last_updated_date: now,
        payment_date: None,
        payment_options: options,
        revision: 1,
        origin: mpay_messages::position::Origin::ArchivioCarichi,
    })
}

fn cents_text(c: i64) -> String {
    Amount::from_cents(c)
        .map(|a| a.to_decimal_string())
        .unwrap_or_else(|_| c.to_string())
}

/// The transfers of one option worth `cents` that follows options worth `before` in a plan
/// whose options add up to `total` (the single solution: `before` = 0, `cents` = `total`).
/// Each beneficiary gets the difference of its cumulative shares
/// `floor((before + cents) × weight / total) − floor(before × weight / total)` and the last one
/// the rest, so over the whole plan every beneficiary receives exactly its weight (no cent
/// drifts between Enti). A beneficiary whose share of this option is zero is left out of it.
fn split(
    bens: &[Beneficiary],
    weights: &[i64],
    before: i64,
    cents: i64,
    total: i64,
    description: &str,
) -> Result<Vec<Transfer>, Fail> {
    let total = total.max(1);
    let cumulative = |upto: i64, w: i64| -> i64 {
        i64::try_from(i128::from(upto) * i128::from(w) / i128::from(total)).unwrap_or(0)
    };
    let mut shares = Vec::with_capacity(bens.len());
    let mut given = 0i64;
    for (i, w) in weights.iter().enumerate() {
        let share = if i + 1 == weights.len() {
            cents - given
        } else {
            cumulative(before + cents, *w) - cumulative(before, *w)
        };
        given += share;
        shares.push(share);
    }
    let mut out = Vec::with_capacity(bens.len());
    for (b, share) in bens.iter().zip(shares) {
        if share <= 0 {
            continue;
        }
        out.push(Transfer {
            id_transfer: u8::try_from(out.len() + 1).unwrap_or(1),
            amount: Amount::from_cents(share)
                .map_err(|e| fail(Esito::Validazione, e.to_string()))?,
            organization_fiscal_code: b.domain.clone(),
            remittance_information: description.to_string(),
            category: b.category.clone(),
            destination: b.destination.clone(),
            company_name: None,
            metadata: b.metadata.clone(),
        });
    }
    if out.is_empty() {
        return Err(fail(
            Esito::Generico,
            "ripartizione tra gli enti beneficiari impossibile",
        ));
    }
    Ok(out)
}

/// A change of an archive document: (current document, current position) → new ones.
type Step<'a> = dyn FnMut(&ArchivedDocument, &DebtPosition) -> Result<(ArchivedDocument, DebtPosition), Fail>
    + 'a;

/// Read-check-write cycle on an existing, active document without payments (`05` absent or
/// cancelled, `06` `refused` when payments exist); `step` returns the new document and
/// position; retried when another request changed the document meanwhile.
fn change_document(
    state: &AppState,
    org: &OrgContext,
    numero: &str,
    refused: &str,
    step: &mut Step<'_>,
) -> Done {
    for _ in 0..MAX_ATTEMPTS {
        let snap = read(state, org, numero)?;
        let (Some(doc), Some(pos)) = (&snap.document, &snap.position) else {
            return Err(not_found(numero));
        };
        if doc.cancelled {
            return Err(not_found(numero));
        }
        if has_payments(pos) {
            return Err(fail(
                Esito::PagamentiPresenti,
                format!("{refused}: il documento {numero} ha pagamenti"),
            ));
        }
        let (document, mut position) = step(doc, pos)?;
        position.revision = pos.revision.saturating_add(1);
        position.last_updated_date = Utc::now();
        match archive::write(&state.store, &snap, None, &document, &position) {
            Ok(()) => {
                return Ok((
                    OK_MESSAGE.into(),
                    ResponseBody::NumeroDocumento(numero.to_string()),
                    true,
                ))
            }
            Err(ArchiveError::Contended) => continue,
            Err(e) => return Err(storage_fail(e)),
        }
    }
    Err(fail(
        Esito::Generico,
        "documento modificato contemporaneamente: ripetere",
    ))
}

/// `cancellazioneEC`: the position becomes INVALID (the Node then gets
/// PAA_PAGAMENTO_ANNULLATO); the document may be inserted again later.
fn cancel(state: &AppState, org: &OrgContext, numero: &str) -> Done {
    change_document(
        state,
        org,
        numero,
        "cancellazione non consentita",
        &mut |doc, pos| {
            let mut document = doc.clone();
            document.cancelled = true;
            let mut position = pos.clone();
            position.status = PositionStatus::Invalid;
            Ok((document, position))
        },
    )
}

fn not_found(numero: &str) -> Fail {
    fail(
        Esito::NonTrovato,
        format!("documento {numero} non presente in archivio"),
    )
}

/// `discaricoEC`: each tributo's `impTributo` is the amount to discharge from that tributo.
fn discharge(state: &AppState, org: &OrgContext, numero: &str, lines: &[ac::Tributo]) -> Done {
    let v = |m: String| fail(Esito::Validazione, m);
    change_document(
        state,
        org,
        numero,
        "discarico non consentito",
        &mut |doc, pos| {
            let mut done: HashMap<String, i64> = HashMap::new();
            for d in &doc.discharged {
                *done.entry(d.tributo.clone()).or_default() += d.cents;
            }
            let now = Utc::now();
            let mut added = Vec::new();
            for (i, t) in lines.iter().enumerate() {
                let path = format!("listTributi[{}]", i + 1);
                let key = ac::tributo_key(t);
                let original = doc
                    .request
                    .list_tributi
                    .iter()
                    .find(|o| ac::tributo_key(o) == key)
                    .ok_or_else(|| {
                        fail(
                            Esito::NonTrovato,
                            format!("{path}: tributo {key} non presente nel documento {numero}"),
                        )
                    })?;
                let orig = ac::parse_euros("impTributo", &original.imp_tributo).map_err(v)?;
                let amount =
                    ac::parse_euros(&format!("{path}/impTributo"), &t.imp_tributo).map_err(v)?;
                if amount.is_zero() {
                    return Err(v(format!("{path}/impTributo deve essere maggiore di zero")));
                }
                let already = done.get(&key).copied().unwrap_or(0);
                let residual = orig.cents() - already;
                if amount.cents() > residual {
                    return Err(v(format!(
                    "{path}: importo da discaricare {} superiore al residuo {} del tributo {key}",
                    amount.to_decimal_string(),
                    cents_text(residual)
                )));
                }
                *done.entry(key.clone()).or_default() += amount.cents();
                added.push(Discharge {
                    tributo: key,
                    cents: amount.cents(),
                    at: now,
                });
            }
            let position = position_of(state, org, &doc.request, &done, pos.inserted_date, now)?;
            let mut document = doc.clone();
            document.discharged.extend(added);
            Ok((document, position))
        },
    )
}

/// `richiestaAvvisoPagoPa`: the document is checked (`05` absent, `04` fiscal code or total
/// not matching); the notice PDF is not produced by this platform yet, so the answer is `02`
/// with an empty `stampaPDFDocumentoPagoPA` — never a fake PDF.
fn notice_pdf(state: &AppState, org: &OrgContext, s: StampaDocumento) -> Done {
    let snap = read(state, org, &s.numero_documento)?;
    let (Some(doc), Some(pos)) = (&snap.document, &snap.position) else {
        return Err(not_found(&s.numero_documento));
    };
    if doc.cancelled {
        return Err(not_found(&s.numero_documento));
    }
    if !same(&doc.request.anagrafica.codice_fiscale, &s.codice_fiscale) {
        return Err(fail(
            Esito::Validazione,
            "codiceFiscale non corrispondente al documento",
        ));
    }
    let current: i64 = pos
        .payment_options
        .iter()
        .filter(|o| !o.is_partial_payment)
        .map(|o| o.amount.cents())
        .sum();
    let asked = s.importo_totale_documento.trim();
    let asked_cents: Option<i64> = asked.parse().ok();
    let original = ac::parse_euros("", &doc.request.documento.imp_bollettino_totale_documento)
        .map(|a| a.cents())
        .ok();
    if asked_cents.is_none() || (asked_cents != Some(current) && asked_cents != original) {
        return Err(fail(
            Esito::Validazione,
            format!("importoTotaleDocumento {asked} (centesimi) non corrispondente al documento"),
        ));
    }
    Err(fail(
        Esito::Configurazione,
        "generazione PDF dell'avviso pagoPA non disponibile su questa piattaforma",
    ))
}
