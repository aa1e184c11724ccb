//! The canonical writer of a decoded paForNode request, shared by the property tests
//! (`fuzz_decoder.rs`) and the fuzz targets (`fuzz.rs`): what `decode_request` accepted,
//! written back as a schema-valid message, must decode to the same value.

use base64::Engine as _;
use mpay_messages::wire::pafornode::*;
use mpay_messages::Amount;

pub const ENV_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><soapenv:Header/><soapenv:Body>"#;
pub const ENV_TAIL: &str = "</soapenv:Body></soapenv:Envelope>";

/// The request element `el` with `inner` in a SOAP 1.1 envelope.
pub fn wrap(el: &str, inner: &str) -> String {
    format!("{ENV_HEAD}<pafn:{el}>{inner}</pafn:{el}>{ENV_TAIL}")
}

// ---- canonical writer of a decoded request ------------------------------------------------------

/// Escapes text so that it parses back to exactly the same characters (CR included).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\r' => o.push_str("&#13;"),
            c => o.push(c),
        }
    }
    o
}

struct W(String);
impl W {
    fn el(&mut self, n: &str, v: &str) {
        self.0.push_str(&format!("<{n}>{}</{n}>", esc(v)));
    }
    fn opt(&mut self, n: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.el(n, v);
        }
    }
    fn open(&mut self, n: &str) {
        self.0.push_str(&format!("<{n}>"));
    }
    fn close(&mut self, n: &str) {
        self.0.push_str(&format!("</{n}>"));
    }
    fn metadata(&mut self, m: &[(String, String)]) {
        if m.is_empty() {
            return;
        }
        self.open("metadata");
        for (k, v) in m {
            self.open("mapEntry");
            self.el("key", k);
            self.el("value", v);
            self.close("mapEntry");
        }
        self.close("metadata");
    }
    fn subject(&mut self, n: &str, s: &Subject) {
        self.open(n);
        self.open("uniqueIdentifier");
        self.el("entityUniqueIdentifierType", &s.kind);
        self.el("entityUniqueIdentifierValue", &s.id_value);
        self.close("uniqueIdentifier");
        self.el("fullName", &s.full_name);
        self.opt("streetName", s.street_name.as_deref());
        self.opt("civicNumber", s.civic_number.as_deref());
        self.opt("postalCode", s.postal_code.as_deref());
        self.opt("city", s.city.as_deref());
        self.opt("stateProvinceRegion", s.state_province_region.as_deref());
        self.opt("country", s.country.as_deref());
        self.opt("e-mail", s.email.as_deref());
        self.close(n);
    }
}

fn amt(a: Amount) -> String {
    a.to_decimal_string()
}

/// A decoded request written back canonically.
pub fn write_request(op: Operation, r: &Request) -> String {
    let mut w = W(String::new());
    let ids = r.ids();
    w.el("idPA", &ids.id_pa);
    w.el("idBrokerPA", &ids.id_broker_pa);
    w.el("idStation", &ids.id_station);
    match r {
        Request::Verify { qr, .. } | Request::GetPayment { qr, .. } => {
            w.open("qrCode");
            w.el("fiscalCode", &qr.fiscal_code);
            w.el("noticeNumber", &qr.notice_number);
            w.close("qrCode");
            if let Request::GetPayment {
                amount,
                payment_note,
                transfer_type,
                ..
            } = r
            {
                w.opt("amount", amount.map(amt).as_deref());
                w.opt("paymentNote", payment_note.as_deref());
                w.opt(
                    "transferType",
                    transfer_type.map(|t| match t {
                        TransferType::Postal => "POSTAL",
                        TransferType::Pagopa => "PAGOPA",
                    }),
                );
            }
        }
        Request::SendRt { receipt: rc, .. } => {
            w.open("receipt");
            w.el("receiptId", &rc.receipt_id);
            w.el("noticeNumber", &rc.notice_number);
            w.el("fiscalCode", &rc.fiscal_code);
            w.el("outcome", &rc.outcome);
            w.el("creditorReferenceId", &rc.creditor_reference_id);
            w.el("paymentAmount", &amt(rc.payment_amount));
            w.el("description", &rc.description);
            w.el("companyName", &rc.company_name);
            w.opt("officeName", rc.office_name.as_deref());
            w.subject("debtor", &rc.debtor);
            w.open("transferList");
            for t in &rc.transfers {
                w.open("transfer");
                w.el("idTransfer", &t.id_transfer.to_string());
                w.el("transferAmount", &amt(t.amount));
                w.el("fiscalCodePA", &t.fiscal_code_pa);
                w.opt("companyName", t.company_name.as_deref());
                w.opt("IBAN", t.iban.as_deref());
                w.opt("MBDAttachment", t.mbd_attachment.as_deref());
                w.el("remittanceInformation", &t.remittance_information);
                w.el("transferCategory", &t.transfer_category);
                w.metadata(&t.metadata);
                w.close("transfer");
            }
            w.close("transferList");
            w.el("idPSP", &rc.id_psp);
            w.opt("pspFiscalCode", rc.psp_fiscal_code.as_deref());
            w.opt("pspPartitaIVA", rc.psp_partita_iva.as_deref());
            w.el("PSPCompanyName", &rc.psp_company_name);
            w.el("idChannel", &rc.id_channel);
            w.el("channelDescription", &rc.channel_description);
            if let Some(p) = &rc.payer {
                w.subject("payer", p);
            }
            w.opt("paymentMethod", rc.payment_method.as_deref());
            w.opt("paymentNote", rc.payment_note.as_deref());
            w.opt("fee", rc.fee.map(amt).as_deref());
            w.opt(
                "primaryCiIncurredFee",
                rc.primary_ci_incurred_fee.map(amt).as_deref(),
            );
            w.opt("idBundle", rc.id_bundle.as_deref());
            w.opt("idCiBundle", rc.id_ci_bundle.as_deref());
            w.opt("paymentDateTime", rc.payment_date_time.as_deref());
            w.opt("applicationDate", rc.application_date.as_deref());
            w.opt("transferDate", rc.transfer_date.as_deref());
            w.metadata(&rc.metadata);
            w.el("standIn", if rc.stand_in { "true" } else { "false" });
            w.close("receipt");
        }
        Request::Demand {
            id_servizio,
            id_soggetto_servizio,
            service_data,
            ..
        } => {
            w.el("idServizio", id_servizio);
            w.el("idSoggettoServizio", id_soggetto_servizio);
            w.el(
                "datiSpecificiServizioRequest",
                &base64::engine::general_purpose::STANDARD.encode(service_data),
            );
        }
    }
    wrap(op.request_element(), &w.0)
}
