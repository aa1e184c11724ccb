//! A GPD request → the domain model: every field checked, errors collected with their JSON
//! paths (problem JSON names the field in the user's terms), texts normalised with a warning.

use super::*;

/// Collects field errors with their JSON paths.
#[derive(Default)]
pub struct Errors {
    /// Errors so far.
    pub list: Vec<FieldError>,
    /// Texts normalised (not refused): reported in the answer's `warnings`.
    pub warnings: Vec<FieldError>,
}

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// A text towards the Node: normalised (control characters and runs of whitespace → one
/// space, trimmed, cut to `max` characters) with a warning when that changed it; refused only
/// when nothing is left of a required text.
fn text(errs: &mut Errors, path: &str, value: &str, min: usize, max: usize) -> Option<String> {
    let (clean, changed) = mpay_messages::text::normalise(value, max);
    let n = clean.chars().count();
    if n < min {
        errs.push(path, format!("must be {min}..{max} characters, got {n}"));
        return None;
    }
    if changed {
        let what = if value.chars().count() > max && value.trim().chars().count() > max {
            format!("cut to {max} characters")
        } else {
            "control characters, repeated or surrounding blanks replaced".to_string()
        };
        errs.warnings.push(FieldError {
            field: path.to_string(),
            message: format!("text normalised ({what}): {clean:?}"),
        });
    }
    Some(clean)
}

/// A due, validity or retention date: parsed (`parse_api_datetime`) and within the range every
/// edge accepts (`domain::dates`: 1900-01-01 ..= 2999-12-31), else an error naming the field.
fn position_date(errs: &mut Errors, path: &str, value: &str) -> Option<DateTime<Utc>> {
    match parse_api_datetime(value) {
        Ok(d) => match mpay_messages::domain::dates::check_instant(d) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(path, e.message_en());
                None
            }
        },
        Err(e) => {
            errs.push(path, e.to_string());
            None
        }
    }
}

fn opt_text(errs: &mut Errors, path: &str, value: &Option<String>, max: usize) -> Option<String> {
    match value.as_deref() {
        None => None,
        Some(v) if mpay_messages::text::normalise(v, max).0.is_empty() => None,
        Some(v) => text(errs, path, v, 1, max),
    }
}

fn metadata(errs: &mut Errors, path: &str, list: &[MapEntryModel]) -> Vec<MapEntry> {
    if list.len() > 10 {
        errs.push(path, format!("at most 10 entries, got {}", list.len()));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let key = text(errs, &format!("{p}.key"), &e.key, 1, 140);
        let value = text(errs, &format!("{p}.value"), &e.value, 1, 140);
        if !seen.insert(e.key.clone()) {
            errs.push(format!("{p}.key"), format!("duplicate key {:?}", e.key));
        }
        if let (Some(key), Some(value)) = (key, value) {
            out.push(MapEntry { key, value });
        }
    }
    out
}

/// Validates the identifier of a position in a path or a body (1..256 characters, printable,
/// no `/`, `?`, `#`, `%`, `\`).
pub fn validate_iupd(iupd: &str) -> Result<(), String> {
    let n = iupd.chars().count();
    if n == 0 || n > 256 {
        return Err(format!("must be 1..256 characters, got {n}"));
    }
    if iupd
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '?' | '#' | '%' | '\\'))
    {
        return Err("must not contain control characters or / ? # % \\".into());
    }
    if iupd.trim() != iupd {
        return Err("must not start or end with spaces".into());
    }
    Ok(())
}

/// Validates a request against the organization's settings and converts it into a [`Draft`]
/// (options whose notice number the caller must still generate have `nav: None`).
/// `prefix` is prepended to field paths (for bulk bodies). Errors: every invalid field, with its
/// JSON path.
pub fn to_domain(
    m: &PaymentPositionModel,
    org: &OrgContext,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<Draft, Vec<FieldError>> {
    let mut errs = Errors::default();
    let f = |k: &str| format!("{prefix}{k}");
    if let Err(e) = validate_iupd(&m.iupd) {
        errs.push(f("iupd"), e);
    }
    let kind = match m.kind.as_str() {
        "F" => Some(DebtorType::F),
        "G" => Some(DebtorType::G),
        other => {
            errs.push(f("type"), format!("must be F or G, not {other:?}"));
            None
        }
    };
    let fiscal_code = match FiscalCode::parse_unchecked(m.fiscal_code.trim()) {
        Ok(c) => Some(c),
        Err(e) => {
            errs.push(f("fiscalCode"), e.to_string());
            None
        }
    };
    let full_name = text(&mut errs, &f("fullName"), &m.full_name, 1, 70);
    let company_name = text(&mut errs, &f("companyName"), &m.company_name, 1, 140);
    let office_name = opt_text(&mut errs, &f("officeName"), &m.office_name, 140);
    let street_name = opt_text(&mut errs, &f("streetName"), &m.street_name, 70);
    let civic_number = opt_text(&mut errs, &f("civicNumber"), &m.civic_number, 16);
    let postal_code = opt_text(&mut errs, &f("postalCode"), &m.postal_code, 16);
    let city = opt_text(&mut errs, &f("city"), &m.city, 35);
    let region = opt_text(&mut errs, &f("region"), &m.region, 35);
    let province = opt_text(&mut errs, &f("province"), &m.province, 2);
    if let Some(p) = &province {
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_uppercase()) {
            errs.push(f("province"), "must be 2 capital letters");
        }
    }
    let country = opt_text(&mut errs, &f("country"), &m.country, 2);
    if let Some(c) = &country {
        if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            errs.push(f("country"), "must be 2 capital letters (ISO 3166)");
        }
    }
    let email = opt_text(&mut errs, &f("email"), &m.email, 256);
    if let Some(e) = &email {
        let ok = e.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
                && !d.is_empty()
                && d.split('.').all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        });
        if !ok {
            errs.push(f("email"), "is not an e-mail address");
        }
    }
    let phone = opt_text(&mut errs, &f("phone"), &m.phone, 19);
    let validity_date = match m.validity_date.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => position_date(&mut errs, &f("validityDate"), v),
    };
    let service_code = opt_text(&mut errs, &f("serviceCode"), &m.service_code, 35);

    if m.payment_option.is_empty() {
        errs.push(
            f("paymentOption"),
            "at least one payment option is required",
        );
    }
    if m.payment_option.len() > 100 {
        errs.push(f("paymentOption"), "at most 100 payment options");
    }
    if m.payment_option
        .iter()
        .filter(|o| !o.is_partial_payment)
        .count()
        > 1
    {
        errs.push(
            f("paymentOption"),
            "at most one single-solution option (isPartialPayment=false); the others are installments",
        );
    }
    let mut options = Vec::new();
    let mut seen_navs = std::collections::HashSet::new();
    for (i, o) in m.payment_option.iter().enumerate() {
        let p = format!("{prefix}paymentOption[{i}].");
        if let Some(opt) = option(&mut errs, &p, o, org) {
            if let Some(nav) = &opt.nav {
                if !seen_navs.insert(nav.to_string()) {
                    errs.push(format!("{p}nav"), "the same notice number appears twice");
                }
            }
            options.push(opt);
        }
    }
    if !errs.list.is_empty() {
        return Err(errs.list);
    }
    let warnings = std::mem::take(&mut errs.warnings);
    let (Some(kind), Some(fiscal_code), Some(full_name), Some(company_name)) =
        (kind, fiscal_code, full_name, company_name)
    else {
        return Err(errs.list);
    };
    Ok(Draft {
        position: DebtPosition {
            organization_fiscal_code: org.fiscal_code.clone(),
            iupd: m.iupd.clone(),
            debtor: Debtor {
                kind,
                fiscal_code,
                full_name,
                street_name,
                civic_number,
                postal_code,
                city,
                province,
                region,
                country,
                email,
                phone,
            },
            switch_to_expired: m.switch_to_expired,
            pay_stand_in: m.pay_stand_in.unwrap_or(true),
            company_name,
            office_name,
            service_code,
            validity_date,
            status: PositionStatus::Draft,
            inserted_date: now,
            publish_date: None,
            last_updated_date: now,
            payment_date: None,
            payment_options: Vec::new(),
            revision: 0,
            origin: mpay_messages::position::Origin::Rest,
        },
        options,
        warnings,
    })
}

/// A validated position whose options may still lack their notice number.
pub struct Draft {
    /// The position without options.
    pub position: DebtPosition,
    /// The options.
    pub options: Vec<DraftOption>,
    /// Texts normalised on the way in (field + what was done), for the answer's `warnings`.
    pub warnings: Vec<FieldError>,
}

/// A validated option; `nav`/`iuv` are `None` when the platform must generate them.
pub struct DraftOption {
    /// Notice number, if given.
    pub nav: Option<NoticeNumber>,
    /// IUV, when it is not the notice number's (GPD's looser identifiers only).
    pub iuv: Option<Iuv>,
    /// The rest of the option (its `nav`/`iuv` are filled by [`DraftOption::finish`]).
    pub amount: Amount,
    /// Description.
    pub description: String,
    /// Installment?
    pub is_partial_payment: bool,
    /// Due.
    pub due_date: DateTime<Utc>,
    /// Retention.
    pub retention_date: Option<DateTime<Utc>>,
    /// Transfers.
    pub transfers: Vec<Transfer>,
    /// Metadata.
    pub metadata: Vec<MapEntry>,
    /// Plan and dates (filled by the v3 API and at creation).
    pub details: mpay_messages::position::OptionDetails,
}

impl DraftOption {
    /// The domain option with its notice number.
    pub fn finish(self, nav: NoticeNumber) -> PaymentOption {
        PaymentOption {
            iuv: self.iuv.unwrap_or_else(|| nav.iuv()),
            nav,
            amount: self.amount,
            description: self.description,
            is_partial_payment: self.is_partial_payment,
            due_date: self.due_date,
            retention_date: self.retention_date,
            fee: Amount::ZERO,
            notification_fee: Amount::ZERO,
            status: OptionStatus::PoUnpaid,
            payment_date: None,
            transfers: self.transfers,
            metadata: self.metadata,
            details: self.details,
        }
    }
}

fn option(
    errs: &mut Errors,
    p: &str,
    o: &PaymentOptionModel,
    org: &OrgContext,
) -> Option<DraftOption> {
    let before = errs.list.len();
    let f = |k: &str| format!("{p}{k}");
    let (nav, iuv) = match gpd_notice(errs, p, o, org) {
        Some(ids) => ids,
        None => (notice(errs, p, o, org), None),
    };
    let amount = match Amount::from_cents(o.amount) {
        Ok(a) if a.cents() > 0 => Some(a),
        _ => {
            errs.push(f("amount"), "must be 1..99999999999 euro cents");
            None
        }
    };
    let description = text(errs, &f("description"), &o.description, 1, 140);
    let due_date = position_date(errs, &f("dueDate"), &o.due_date);
    let retention_date = match o.retention_date.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => position_date(errs, &f("retentionDate"), v),
    };
    if o.transfer.is_empty() || o.transfer.len() > MAX_TRANSFERS {
        errs.push(
            f("transfer"),
            format!(
                "must hold 1..{MAX_TRANSFERS} transfers, got {}",
                o.transfer.len()
            ),
        );
    }
    let mut transfers = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (j, t) in o.transfer.iter().enumerate() {
        let tp = format!("{p}transfer[{j}].");
        if let Some(t) = transfer(errs, &tp, t, org) {
            if !ids.insert(t.id_transfer) {
                errs.push(format!("{tp}idTransfer"), "duplicate idTransfer");
            }
            transfers.push(t);
        }
    }
    if let Some(a) = amount {
        if transfers.len() == o.transfer.len() && !transfers.is_empty() {
            let sum = Amount::checked_sum(transfers.iter().map(|t| t.amount));
            if sum != Some(a) {
                errs.push(
                    f("amount"),
                    format!(
                        "must equal the sum of the transfers ({} cents), got {} cents",
                        sum.map(|s| s.cents().to_string())
                            .unwrap_or_else(|| "overflow".into()),
                        a.cents()
                    ),
                );
            }
        }
    }
    let metadata = metadata(
        errs,
        &f("paymentOptionMetadata"),
        &o.payment_option_metadata,
    );
    if errs.list.len() > before {
        return None;
    }
    Some(DraftOption {
        nav,
        iuv,
        amount: amount?,
        description: description?,
        is_partial_payment: o.is_partial_payment,
        due_date: due_date?,
        retention_date,
        transfers,
        metadata,
        details: Default::default(),
    })
}

/// GPD's looser identifiers of an option (`gpd_compat.free_identifiers`,
/// `mpay_messages::ids::gpd`): `None` when the organization has not opted in or the option's
/// identifiers are pagoPA's (a notice number of 18 digits from aux 0..3, or no notice number and
/// an IUV of 15 or 17 digits), which [`notice`] reads as for any organization. Otherwise the
/// notice number sent (else the IUV) and the IUV sent (else the notice number), each 1 to 30
/// digits; `(None, None)` after an error.
fn gpd_notice(
    errs: &mut Errors,
    p: &str,
    o: &PaymentOptionModel,
    org: &OrgContext,
) -> Option<(Option<NoticeNumber>, Option<Iuv>)> {
    if !org.settings.gpd_compat.free_identifiers {
        return None;
    }
    let nav_in = o.nav.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let iuv_in = o.iuv.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let gpd = match (nav_in, iuv_in) {
        (Some(n), _) => NoticeNumber::parse_unchecked(n).is_err(),
        (None, Some(i)) => Iuv::parse(i).is_err(),
        (None, None) => false,
    };
    if !gpd {
        return None;
    }
    let (field, text) = match (nav_in, iuv_in) {
        (Some(n), _) => ("nav", n),
        (None, Some(i)) => ("iuv", i),
        (None, None) => return None,
    };
    let nav = match NoticeNumber::parse_gpd(text) {
        Ok(n) => n,
        Err(e) => {
            errs.push(format!("{p}{field}"), e.to_string());
            return Some((None, None));
        }
    };
    let iuv = match iuv_in.map(Iuv::parse_gpd) {
        None => nav.iuv(),
        Some(Ok(i)) => i,
        Some(Err(e)) => {
            errs.push(format!("{p}iuv"), e.to_string());
            return Some((None, None));
        }
    };
    Some((Some(nav), Some(iuv)))
}

/// Reads `nav`/`iuv` of an option against the organization's layout.
fn notice(
    errs: &mut Errors,
    p: &str,
    o: &PaymentOptionModel,
    org: &OrgContext,
) -> Option<NoticeNumber> {
    let nav_in = o.nav.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let iuv_in = o.iuv.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let nav = match (nav_in, iuv_in) {
        (None, None) => return None,
        (Some(n), iuv) => {
            let nav = match NoticeNumber::parse_unchecked(n) {
                Ok(nav) => nav,
                Err(e) => {
                    errs.push(format!("{p}nav"), e.to_string());
                    return None;
                }
            };
            if let Some(i) = iuv {
                if nav.iuv().as_str() != i {
                    errs.push(
                        format!("{p}iuv"),
                        format!(
                            "does not match the notice number (its IUV is {})",
                            nav.iuv()
                        ),
                    );
                    return None;
                }
            }
            nav
        }
        (None, Some(i)) => {
            let iuv = match Iuv::parse(i) {
                Ok(iuv) => iuv,
                Err(e) => {
                    errs.push(format!("{p}iuv"), e.to_string());
                    return None;
                }
            };
            if org.settings.gpd_compat.any_iuv_prefix {
                // GPD: any IUV; the notice number is the aux digit + the IUV
                let layout = match (org.layout, iuv.as_str().get(..2).map(str::parse::<u8>)) {
                    (NoticeLayout::Aux3 { .. }, Some(Ok(segregation_code))) => {
                        NoticeLayout::Aux3 { segregation_code }
                    }
                    (l, _) => l,
                };
                return match NoticeNumber::from_iuv(&iuv, &layout) {
                    Ok(nav) => Some(nav),
                    Err(e) => {
                        errs.push(format!("{p}iuv"), e.to_string());
                        None
                    }
                };
            }
            // the default code first, then the organization's other codes
            let other = org
                .entry
                .codes
                .iter()
                .find_map(|(l, _)| NoticeNumber::from_iuv(&iuv, l).ok());
            match NoticeNumber::from_iuv(&iuv, &org.layout).map_err(|e| (e, other)) {
                Ok(nav) | Err((_, Some(nav))) => nav,
                Err((e, None)) => {
                    errs.push(
                        format!("{p}iuv"),
                        format!(
                            "does not fit the organization's layout ({}): {e}",
                            org.layout
                        ),
                    );
                    return None;
                }
            }
        }
    };
    if !org.recognises(&nav.layout()) && !org.settings.gpd_compat.any_iuv_prefix {
        let codes: Vec<String> = org.entry.codes.iter().map(|(l, _)| l.to_string()).collect();
        errs.push(
            format!("{p}nav"),
            format!(
                "notice number {nav} has layout \"{}\" but the organization uses \"{}\"",
                nav.layout(),
                codes.join("\", \"")
            ),
        );
        return None;
    }
    if !nav.check().is_valid() {
        // matched, not judged (DESIGN §3): accepted, but worth a line in the log
        tracing::warn!(organization = %org.fiscal_code, nav = %nav, "received notice number fails the check digit");
    }
    Some(nav)
}

fn transfer(errs: &mut Errors, p: &str, t: &TransferModel, org: &OrgContext) -> Option<Transfer> {
    let before = errs.list.len();
    let f = |k: &str| format!("{p}{k}");
    let id_transfer = match t.id_transfer.trim().parse::<u8>() {
        Ok(n @ 1..=5) => Some(n),
        _ => {
            errs.push(f("idTransfer"), "must be \"1\"..\"5\"");
            None
        }
    };
    let amount = match Amount::from_cents(t.amount) {
        Ok(a) if a.cents() > 0 => Some(a),
        _ => {
            errs.push(f("amount"), "must be 1..99999999999 euro cents");
            None
        }
    };
    let beneficiary = match t.organization_fiscal_code.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(cf) => match org.settings.gpd_compat.org_code(cf) {
            Ok(c) => Some(c),
            Err(e) => {
                errs.push(f("organizationFiscalCode"), e.to_string());
                None
            }
        },
    };
    let own = beneficiary.as_ref().is_none_or(|b| *b == org.fiscal_code);
    let remittance = text(
        errs,
        &f("remittanceInformation"),
        &t.remittance_information,
        1,
        140,
    );
    let category = text(errs, &f("category"), t.category.trim(), 1, 140);
    let present = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (iban_in, postal_in) = (present(&t.iban), present(&t.postal_iban));
    let mut iban_of = |field: &str, v: &Option<String>| -> Option<Iban> {
        let v = v.as_deref()?;
        let loose = org.settings.gpd_compat.iban_format_only;
        let parsed = if loose {
            Iban::parse_unchecked(v)
        } else {
            Iban::parse(v)
        };
        match parsed {
            Ok(i) => {
                if !loose && own && !org.ibans.is_empty() && !org.ibans.contains(&i) {
                    errs.push(
                        f(field),
                        format!("{i} is not registered for organization {}", org.fiscal_code),
                    );
                    return None;
                }
                Some(i)
            }
            Err(e) => {
                errs.push(f(field), e.to_string());
                None
            }
        }
    };
    let iban = iban_of("iban", &iban_in);
    let postal = iban_of("postalIban", &postal_in);
    let destination = match (&iban_in, &postal_in, &t.stamp) {
        (_, _, Some(s)) => {
            if iban_in.is_some() || postal_in.is_some() {
                errs.push(f("stamp"), "a stamp excludes iban and postalIban");
                None
            } else {
                stamp(errs, &f("stamp."), s).map(Destination::Stamp)
            }
        }
        (Some(_), _, None) => iban.map(|iban| Destination::Iban {
            iban,
            postal_iban: postal,
        }),
        (None, Some(_), None) => postal.map(|postal_iban| Destination::PostalIban { postal_iban }),
        (None, None, None) => {
            errs.push(f("iban"), "one of iban, postalIban or stamp is required");
            None
        }
    };
    let company_name = opt_text(errs, &f("companyName"), &t.company_name, 140);
    let metadata = metadata(errs, &f("transferMetadata"), &t.transfer_metadata);
    if errs.list.len() > before {
        return None;
    }
    Some(Transfer {
        id_transfer: id_transfer?,
        amount: amount?,
        organization_fiscal_code: beneficiary.filter(|b| *b != org.fiscal_code),
        remittance_information: remittance?,
        category: category?,
        destination: destination?,
        company_name,
        metadata,
    })
}

fn stamp(errs: &mut Errors, p: &str, s: &StampModel) -> Option<Stamp> {
    let before = errs.list.len();
    let h = s.hash_document.trim();
    if h.len() < 4
        || h.len() > 72
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    {
        errs.push(
            format!("{p}hashDocument"),
            "must be base64, 4..72 characters",
        );
    }
    if s.stamp_type.trim() != "01" {
        errs.push(
            format!("{p}stampType"),
            "must be \"01\" (stTipoBolloDigitale)",
        );
    }
    let pr = s.provincial_residence.trim();
    if pr.len() != 2 || !pr.bytes().all(|b| b.is_ascii_uppercase()) {
        errs.push(
            format!("{p}provincialResidence"),
            "must be 2 capital letters",
        );
    }
    if errs.list.len() > before {
        return None;
    }
    Some(Stamp {
        hash_document: h.to_string(),
        stamp_type: "01".into(),
        provincial_residence: pr.to_string(),
    })
}
