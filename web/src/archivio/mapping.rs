//! An MPay document → a debt position of the ledger: IUV layout and numbers, debtor,
//! beneficiaries (at most two domains), options and transfers split in proportion.

use super::*;

/// The layout of the numbers generated for a document: the one `configurazioneIUV` chooses
/// when it is sent — any of the organization's codes (an organization with several segregation
/// or application codes picks one per back office) — else the organization's default. A domain,
/// aux digit or code the organization does not have is refused (`02`).
pub(super) fn iuv_layout(org: &OrgContext, req: &DocumentRequest) -> Result<NoticeLayout, Fail> {
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
pub(super) fn fill_numbers(
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
pub(super) fn check_supplied_numbers(
    org: &OrgContext,
    req: &mut DocumentRequest,
) -> Result<(), Fail> {
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

pub(super) fn check_supplied_numbers_inner(
    org: &OrgContext,
    req: &mut DocumentRequest,
) -> Result<(), Fail> {
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

pub(super) fn supplied(
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
pub(super) fn due_instant(day: NaiveDate) -> DateTime<Utc> {
    rome_local_to_utc(day.and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN)))
        .unwrap_or_else(Utc::now)
}

pub(super) fn debtor_of(req: &DocumentRequest) -> Result<Debtor, Fail> {
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
pub(super) struct Beneficiary {
    pub(super) domain: Option<OrgFiscalCode>,
    /// Residual cents (after discharges).
    pub(super) cents: i64,
    /// Cents before discharges.
    pub(super) original: i64,
    pub(super) destination: Destination,
    pub(super) category: String,
    pub(super) metadata: Vec<MapEntry>,
}

pub(super) fn service_of<'a>(
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

pub(super) fn category_of(tassonomia: &Option<String>, fallback: &str) -> Result<String, Fail> {
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
pub(super) fn position_of(
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

pub(super) fn cents_text(c: i64) -> String {
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
pub(super) fn split(
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
