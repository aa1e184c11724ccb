//! The five operations of Archivio Carichi on the store: insert/replace, cancel, discharge,
//! notice print; each a read-check-write cycle retried on concurrent changes.

use super::*;

/// Runs one request on a blocking thread; returns the answer and the position written, if any.
pub(super) fn run(
    state: &AppState,
    org: &OrgContext,
    base: &RequestBase,
    request: Request,
) -> (Answer, Option<Written>) {
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
                None,
            )
        }
    }
}

pub(super) type Done = Result<(String, ResponseBody, Option<Written>), Fail>;

/// The position a request wrote (published on the bus once the write is durable).
#[derive(Debug, Clone)]
pub(super) struct Written {
    /// Created, updated or cancelled.
    pub change: PositionChange,
    /// The position's iupd.
    pub iupd: String,
}

impl Written {
    /// What writing `position` over `previous` (`None`: there was none) was.
    fn of(previous: Option<&DebtPosition>, position: &DebtPosition) -> Self {
        let change = if position.status == PositionStatus::Invalid {
            PositionChange::Cancelled
        } else if previous.is_some() {
            PositionChange::Updated
        } else {
            PositionChange::Created
        };
        Written {
            change,
            iupd: position.iupd.clone(),
        }
    }
}

pub(super) const OK_MESSAGE: &str = "Operazione eseguita correttamente";

pub(super) fn storage_fail(e: impl std::fmt::Display) -> Fail {
    tracing::error!(error = %e, "archivio carichi storage failure");
    fail(Esito::Generico, "Errore generico")
}

pub(super) fn read(state: &AppState, org: &OrgContext, numero: &str) -> Result<Snapshot, Fail> {
    archive::read(&state.store, &org.fiscal_code, numero).map_err(storage_fail)
}

pub(super) fn has_payments(p: &DebtPosition) -> bool {
    p.status.has_payments()
        || p.payment_options
            .iter()
            .any(|o| o.status != OptionStatus::PoUnpaid)
}

/// `inserimentoEC` (`replace` = false) and `variazioneEC` (`replace` = true).
pub(super) fn upsert(
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
                    .map_err(Fail::from)
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
                let written = Written::of(snap.position.as_ref(), &position);
                return Ok((
                    message,
                    ResponseBody::Documento(req.documento),
                    Some(written),
                ));
            }
            Err(ArchiveError::Contended) => continue,
            Err(ArchiveError::FlowDuplicate(_)) => return Err(flow_duplicate(&flow_id)),
            Err(ArchiveError::DocumentExists(_)) => {
                return Err(fail(
                    Esito::Duplicato,
                    format!("documento {numero} già presente"),
                ))
            }
            Err(ArchiveError::Ledger(e)) => return Err(e.into()),
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
pub(super) fn validate_numero(numero: &str) -> Result<(), Fail> {
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

pub(super) fn flow_duplicate(flow: &str) -> Fail {
    fail(
        Esito::Validazione,
        format!("identificativo flusso {flow} già presente"),
    )
}

/// A change of an archive document: (current document, current position) → new ones.
pub(super) type Step<'a> = dyn FnMut(&ArchivedDocument, &DebtPosition) -> Result<(ArchivedDocument, DebtPosition), Fail>
    + 'a;

/// Read-check-write cycle on an existing, active document without payments (`05` absent or
/// cancelled, `06` `refused` when payments exist); `step` returns the new document and
/// position; retried when another request changed the document meanwhile.
pub(super) fn change_document(
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
                    Some(Written::of(Some(pos), &position)),
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
pub(super) fn cancel(state: &AppState, org: &OrgContext, numero: &str) -> Done {
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

pub(super) fn not_found(numero: &str) -> Fail {
    fail(
        Esito::NonTrovato,
        format!("documento {numero} non presente in archivio"),
    )
}

/// `discaricoEC`: each tributo's `impTributo` is the amount to discharge from that tributo.
pub(super) fn discharge(
    state: &AppState,
    org: &OrgContext,
    numero: &str,
    lines: &[ac::Tributo],
) -> Done {
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
/// not matching), then its pagoPA notice (every option, as `GET …/notices/pdf` prints it) is
/// rendered and answered in `stampaPDFDocumentoPagoPA` (base64); a rendering failure is `01`.
pub(super) fn notice_pdf(state: &AppState, org: &OrgContext, s: StampaDocumento) -> Done {
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
    use base64::Engine as _;
    let input = crate::documents::notice_input(&org.settings, pos, None);
    let pdf = mpay_documents::render_notice(&input).map_err(|e| {
        tracing::error!(error = %e, document = %s.numero_documento, "notice PDF not rendered");
        fail(
            Esito::Generico,
            "generazione dell'avviso pagoPA non riuscita",
        )
    })?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(pdf);
    Ok((
        "avviso pagoPA generato".into(),
        ResponseBody::Stampa(s, encoded),
        None,
    ))
}
