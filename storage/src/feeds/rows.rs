//! Row rules applied by the engine against the organization and the stored position, and the outcome line of a processed row.

use chrono::{NaiveDate, NaiveTime, Utc};
use mpay_messages::feeds::{
    ErrorCode, FeedMode, FeedRecord, IuvExchangeLine, IuvKind, NoticeRequest, OutcomeLine,
    RowAction, RowIssue, RowOutcome,
};
use mpay_messages::position::{
    DebtPosition, Destination, MapEntry, OptionStatus, PaymentOption, PositionStatus, Transfer,
};
use mpay_messages::time::rome_local_to_utc;
use mpay_messages::NoticeNumber;

use super::engine::*;
use super::types::*;

impl Ctx<'_> {
    pub(crate) fn service(&self, code: &str) -> Option<&FeedService> {
        self.org.services.iter().find(|s| s.code == code)
    }

    /// Row checks that need the organization's settings (FORMAT.md §5.4, §5.5).
    pub(crate) fn org_checks(&self, w: &mut Work) {
        let dup = self.dup_rows.contains(&w.row.number);
        let split = self.split_rows.contains(&w.row.number);
        if dup {
            w.issues.push(issue(
                ErrorCode::RowDuplicateIud,
                format!("IUD {} duplicato nel file", w.row.echo.iud),
            ));
        }
        if split {
            w.issues.push(issue(
                ErrorCode::RowOptionInconsistent,
                format!(
                    "le righe della posizione {} non sono contigue nel file",
                    w.row.echo.iupd
                ),
            ));
        }
        let row = w.row;
        let Ok(r) = &row.record else { return };
        if r.action == Some(RowAction::Annul) {
            return;
        }
        match self.service(&r.tipo_dovuto) {
            None => w.issues.push(issue(
                ErrorCode::RowUnknownTipoDovuto,
                format!("tipoDovuto {} inesistente per l'ente", r.tipo_dovuto),
            )),
            Some(s) if !s.active => w.issues.push(issue(
                ErrorCode::RowTipoDovutoDisabled,
                format!("tipoDovuto {} non attivo per l'ente", r.tipo_dovuto),
            )),
            Some(s) => {
                if s.due_date_required && r.due_date.is_none() {
                    w.issues.push(issue(
                        ErrorCode::RowBadDueDate,
                        "dataEsecuzionePagamento non presente (obbligatoria per il tipoDovuto)",
                    ));
                }
                if r.debtor.fiscal_code.is_anonymous() && !s.anonymous_allowed {
                    w.issues.push(issue(
                        ErrorCode::RowBadFiscalCode,
                        "debitore ANONIMO non ammesso per il tipoDovuto",
                    ));
                }
                if r.collection_data.is_none() && s.category.is_none() {
                    w.issues.push(issue(
                        ErrorCode::RowBadDatiRiscossione,
                        "datiSpecificiRiscossione assenti e nessuna tassonomia configurata",
                    ));
                }
                if s.iban.is_none() && self.org.ibans.is_empty() && r.primary.is_none() {
                    w.issues.push(issue(
                        ErrorCode::RowBadBeneficiary,
                        "nessun IBAN configurato per il tipoDovuto",
                    ));
                }
            }
        }
        if let Some(p) = &r.primary {
            if p.org_fiscal_code == self.org.fiscal_code
                && !self.org.ibans.is_empty()
                && !self.org.ibans.contains(&p.iban)
            {
                w.issues.push(issue(
                    ErrorCode::RowBadBeneficiary,
                    "ibanAccreditoEnte_1 non registrato per l'ente",
                ));
            }
        }
        if let NoticeRequest::Supplied { iuv, nav } = &r.notice {
            let recognised = std::iter::once(&self.org.layout)
                .chain(&self.org.other_layouts)
                .find_map(|l| NoticeNumber::from_iuv(iuv, l).ok());
            match recognised.ok_or(()) {
                Err(_) => w.issues.push(issue(
                    ErrorCode::RowBadIuv,
                    format!(
                        "codIuv non conforme alla configurazione dell'ente: {}",
                        iuv_layout_it(&self.org.layout)
                    ),
                )),
                Ok(n) => {
                    if nav.as_ref().is_some_and(|given| *given != n) {
                        w.issues.push(issue(
                            ErrorCode::RowBadIuv,
                            "numeroAvviso non conforme alla configurazione dell'ente",
                        ));
                    } else if self.opts.strict_iuv_check && !n.check_digit_ok() {
                        w.issues.push(issue(
                            ErrorCode::RowBadIuv,
                            "codIuv con cifra di controllo errata",
                        ));
                    }
                    w.nav = Some(n);
                }
            }
        }
    }

    pub(crate) fn dovuto(&self) -> bool {
        self.version.is_positional()
    }

    pub(crate) fn build_option(
        &self,
        r: &FeedRecord,
        nav: &NoticeNumber,
        kind: IuvKind,
    ) -> Option<PaymentOption> {
        let svc = self.service(&r.tipo_dovuto);
        let category = r
            .collection_data
            .clone()
            .or_else(|| svc.and_then(|s| s.category.clone()))
            .unwrap_or_default();
        let primary = match &r.primary {
            Some(p) => Transfer {
                id_transfer: 1,
                amount: r.primary_amount,
                organization_fiscal_code: (p.org_fiscal_code != self.org.fiscal_code)
                    .then(|| p.org_fiscal_code.clone()),
                remittance_information: p.remittance.clone(),
                category: p.category.clone().unwrap_or_else(|| category.clone()),
                destination: Destination::Iban {
                    iban: p.iban.clone(),
                    postal_iban: None,
                },
                company_name: p.name.clone(),
                metadata: Vec::new(),
            },
            None => {
                let iban = svc
                    .and_then(|s| s.iban.clone())
                    .or_else(|| self.org.ibans.first().cloned())?;
                Transfer {
                    id_transfer: 1,
                    amount: r.primary_amount,
                    organization_fiscal_code: None,
                    remittance_information: r.remittance.clone(),
                    category: category.clone(),
                    destination: Destination::Iban {
                        iban,
                        postal_iban: None,
                    },
                    company_name: None,
                    metadata: Vec::new(),
                }
            }
        };
        let mut transfers = vec![primary];
        for (i, t) in r.others.iter().enumerate() {
            transfers.push(Transfer {
                id_transfer: u8::try_from(i + 2).unwrap_or(5),
                amount: t.amount,
                organization_fiscal_code: (t.org_fiscal_code != self.org.fiscal_code)
                    .then(|| t.org_fiscal_code.clone()),
                remittance_information: t.remittance.clone(),
                category: t.category.clone().unwrap_or_else(|| category.clone()),
                destination: Destination::Iban {
                    iban: t.iban.clone(),
                    postal_iban: None,
                },
                company_name: t.name.clone(),
                metadata: Vec::new(),
            });
        }
        let m = |k: &str, v: String| MapEntry {
            key: k.to_string(),
            value: cut140(&v),
        };
        let mut metadata = vec![
            m(meta::IUD, r.iud.clone()),
            m(meta::FLOW, self.rec.flow_id.clone()),
            m(
                meta::IUV_KIND,
                match kind {
                    IuvKind::A => "A".into(),
                    IuvKind::B => "B".into(),
                },
            ),
            m(meta::OPTION_INDEX, r.option_index.to_string()),
            m(meta::OPTION_TYPE, r.option_type.as_str().to_string()),
            m(meta::GENERATE_IUV, r.generate_notice.to_string()),
        ];
        if let Some(d) = &r.option_description {
            metadata.push(m(meta::OPTION_DESCRIPTION, d.clone()));
        }
        if let Some(d) = &r.position_description {
            metadata.push(m(meta::POSITION_DESCRIPTION, d.clone()));
        }
        if let Some(d) = &r.collection_data {
            metadata.push(m(meta::DATI_RISCOSSIONE, d.clone()));
        }
        if let Some(d) = r.notification_date {
            metadata.push(m(meta::NOTIFICATION_DATE, d.to_string()));
        }
        let due_day = r
            .due_date
            .or(self.org.default_due_date)
            .or_else(|| NaiveDate::from_ymd_opt(2099, 12, 31))
            .unwrap_or(NaiveDate::MAX);
        Some(PaymentOption {
            nav: nav.clone(),
            iuv: nav.iuv(),
            amount: r.amount,
            description: cut140(&r.remittance),
            is_partial_payment: r.option_type.is_installments(),
            due_date: due_instant(due_day),
            retention_date: None,
            fee: mpay_messages::Amount::ZERO,
            notification_fee: mpay_messages::Amount::ZERO,
            status: OptionStatus::PoUnpaid,
            payment_date: None,
            transfers,
            metadata,
            details: Default::default(),
        })
    }

    pub(crate) fn new_position(&self, r: &FeedRecord) -> DebtPosition {
        let now = Utc::now();
        let validity = r
            .validity_date
            .and_then(|d| rome_local_to_utc(d.and_time(NaiveTime::MIN)))
            .filter(|v| *v > now);
        let status = if r.draft || !r.pagopa_payment {
            PositionStatus::Draft
        } else if validity.is_some() {
            PositionStatus::Published
        } else {
            PositionStatus::Valid
        };
        DebtPosition {
            organization_fiscal_code: self.org.fiscal_code.clone(),
            iupd: r.iupd.clone(),
            debtor: r.debtor.clone(),
            switch_to_expired: false,
            pay_stand_in: true,
            company_name: self.org.name.clone(),
            office_name: None,
            service_code: Some(r.tipo_dovuto.clone()),
            validity_date: validity,
            status,
            inserted_date: now,
            publish_date: (status != PositionStatus::Draft).then_some(now),
            last_updated_date: now,
            payment_date: None,
            payment_options: Vec::new(),
            revision: 0,
            origin: mpay_messages::position::Origin::Feed {
                flow_id: self.rec.flow_id.clone(),
            },
        }
    }

    /// Checks of a row against the stored position (FORMAT.md §5.6): existence, status,
    /// immutable fields. Returns issues placed before the syntax ones (§5.8 d).
    pub(crate) fn ledger_checks(&self, w: &Work, existing: Option<&DebtPosition>) -> Vec<RowIssue> {
        let mut out = Vec::new();
        let iud = match w.record() {
            Some(r) => r.iud.clone(),
            None => w.row.echo.iud.clone(),
        };
        let action = match w.record() {
            Some(r) => r.action,
            None => match w.row.echo.action.to_ascii_uppercase().as_str() {
                "I" => Some(RowAction::Insert),
                "M" => Some(RowAction::Modify),
                "A" => Some(RowAction::Annul),
                _ => None,
            },
        };
        if iud.is_empty() {
            return out;
        }
        let live = existing.filter(|p| p.status != PositionStatus::Invalid);
        let opt = live.and_then(|p| {
            p.payment_options
                .iter()
                .find(|o| meta_get(o, meta::IUD) == Some(iud.as_str()))
        });
        let ours = opt.is_some_and(|o| meta_get(o, meta::FLOW) == Some(self.rec.flow_id.as_str()));
        let dovuto = if self.dovuto() { "Dovuto" } else { "Rata" };
        match (self.opts.mode, action) {
            (FeedMode::Delta, Some(RowAction::Insert)) => {
                if let Some(p) = live {
                    if (opt.is_some() && !ours) || (!is_feed_position(p) && opt.is_none()) {
                        out.push(issue(
                            ErrorCode::RowAlreadyExists,
                            format!("{dovuto} con IUD {iud} già presente"),
                        ));
                    }
                }
            }
            (_, Some(RowAction::Modify)) | (_, Some(RowAction::Annul)) => {
                let annul = action == Some(RowAction::Annul);
                match (existing, opt) {
                    (None, _) => out.push(issue(
                        ErrorCode::RowNotFound,
                        format!("{dovuto} con IUD {iud} inesistente"),
                    )),
                    (Some(p), _) if p.status == PositionStatus::Invalid && annul => {}
                    (Some(p), _) if p.status == PositionStatus::Invalid => out.push(issue(
                        ErrorCode::RowInvalidStatus,
                        format!("{dovuto} con IUD {iud} annullato"),
                    )),
                    (Some(_), None) => out.push(issue(
                        ErrorCode::RowNotFound,
                        format!("{dovuto} con IUD {iud} inesistente"),
                    )),
                    (Some(p), Some(o)) => {
                        if p.status.has_payments() || o.status != OptionStatus::PoUnpaid {
                            out.push(issue(
                                ErrorCode::RowInvalidStatus,
                                format!(
                                    "{dovuto} con IUD {iud} in stato {}: non modificabile",
                                    p.status.as_str()
                                ),
                            ));
                        }
                    }
                }
            }
            (FeedMode::Full, None | Some(RowAction::Insert)) => {
                if let (Some(p), Some(o)) = (live, opt) {
                    if p.status.has_payments() || o.status != OptionStatus::PoUnpaid {
                        out.push(issue(
                            ErrorCode::RowInvalidStatus,
                            format!(
                                "{dovuto} con IUD {iud} in stato {}: non modificabile",
                                p.status.as_str()
                            ),
                        ));
                    }
                } else if let Some(p) = live {
                    if !is_feed_position(p) {
                        out.push(issue(
                            ErrorCode::RowAlreadyExists,
                            format!("posizione {} già presente (non da flusso)", p.iupd),
                        ));
                    }
                }
            }
            (FeedMode::Delta, None) => {}
        }
        out
    }
}

impl Ctx<'_> {
    /// The outcome line (and IUV exchange line) of a processed row (FORMAT.md §5.7, §5.5).
    pub(crate) fn line(&self, w: &Work) -> (OutcomeLine, Option<IuvExchangeLine>) {
        let e = &w.row.echo;
        let requested = e.action.to_ascii_uppercase();
        if !w.issues.is_empty() || w.row.record.is_err() {
            let mut issues = w.issues.clone();
            if let Err(syntax) = &w.row.record {
                issues.extend(syntax.iter().cloned());
            }
            let mut codes: Vec<String> = Vec::new();
            let mut descriptions = Vec::new();
            for i in &issues {
                if !codes.iter().any(|c| c == i.code.as_str()) {
                    codes.push(i.code.as_str().to_string());
                    descriptions.push(i.message.clone());
                }
            }
            return (
                OutcomeLine {
                    row: Some(w.row.number),
                    iupd: e.iupd.clone(),
                    iud: e.iud.clone(),
                    requested,
                    outcome: RowOutcome::Ko,
                    performed: "SCARTATO".into(),
                    iuv: e.iuv.clone(),
                    nav: String::new(),
                    amount: e.amount.clone(),
                    due_date: e.due_date.clone(),
                    codes,
                    descriptions,
                },
                None,
            );
        }
        let Some(r) = w.record() else {
            return (self.internal_line(w), None);
        };
        let dovuto = self.dovuto();
        let (m, f) = if dovuto {
            ("Dovuto", "o")
        } else {
            ("Rata", "a")
        };
        let generated = w.kind == Some(IuvKind::B) && w.performed == "INSERITO";
        let mut desc = match w.performed {
            "INSERITO" => format!("{m} inserit{f}"),
            "MODIFICATO" => format!("{m} aggiornat{f}"),
            "ANNULLATO" => format!("{m} annullat{f}"),
            "INVARIATO" if r.action == Some(RowAction::Annul) => {
                format!("{m} già annullat{f} o assente")
            }
            _ => "Nessuna variazione".to_string(),
        };
        if generated {
            desc.push_str(", IUV generato");
        }
        if self.opts.dry_run {
            desc.push_str(" (simulazione: nulla applicato)");
        }
        let mut codes = vec!["OK".to_string()];
        let mut descriptions = vec![desc];
        let mut outcome = RowOutcome::Ok;
        if !w.row.warnings.is_empty() {
            outcome = RowOutcome::Warn;
            codes = w
                .row
                .warnings
                .iter()
                .map(|i| i.code.as_str().to_string())
                .collect();
            descriptions.extend(w.row.warnings.iter().map(|i| i.message.clone()));
        }
        let (iuv, nav) = match (&w.nav, self.opts.dry_run && generated) {
            (Some(n), false) => (n.iuv().to_string(), n.to_string()),
            _ => (String::new(), String::new()),
        };
        let due = w.due.map(|d| d.to_string()).unwrap_or_default();
        let line = OutcomeLine {
            row: Some(w.row.number),
            iupd: r.iupd.clone(),
            iud: r.iud.clone(),
            requested: r.action.map(|a| a.letter().to_string()).unwrap_or_default(),
            outcome,
            performed: w.performed.to_string(),
            iuv: iuv.clone(),
            nav: nav.clone(),
            amount: r.amount.to_decimal_string(),
            due_date: due.clone(),
            codes,
            descriptions,
        };
        let xl =
            (!iuv.is_empty() && w.performed != "ANNULLATO" && r.action != Some(RowAction::Annul))
                .then(|| IuvExchangeLine {
                    row: w.row.number,
                    iupd: r.iupd.clone(),
                    iud: r.iud.clone(),
                    option_index: r.option_index,
                    kind: w.kind.unwrap_or(IuvKind::A),
                    iuv,
                    nav,
                    org_fiscal_code: self.org.fiscal_code.to_string(),
                    amount: r.amount.to_decimal_string(),
                    due_date: due,
                    performed: w.performed.to_string(),
                });
        (line, xl)
    }

    pub(crate) fn internal_line(&self, w: &Work) -> OutcomeLine {
        OutcomeLine {
            row: Some(w.row.number),
            iupd: w.row.echo.iupd.clone(),
            iud: w.row.echo.iud.clone(),
            requested: w.row.echo.action.clone(),
            outcome: RowOutcome::Ko,
            performed: "SCARTATO".into(),
            iuv: String::new(),
            nav: String::new(),
            amount: w.row.echo.amount.clone(),
            due_date: w.row.echo.due_date.clone(),
            codes: vec![ErrorCode::InternalError.as_str().into()],
            descriptions: vec!["errore interno".into()],
        }
    }
}
