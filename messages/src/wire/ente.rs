//! What an Ente receives when one of its payments is stored (issue 13): the modern signed JSON
//! webhook and MPay's legacy SOAP `notificaPagamento` (INTERFACES.md §6.1).
//!
//! **Webhook** — `POST <url>`, `Content-Type: application/json`, body [`PaymentNotification`]
//! (the receipt in pagoPA's field names, amounts in integer euro cents). Headers:
//! - `X-Mpay-Timestamp`: Unix time in seconds when the request was signed;
//! - `X-Mpay-Signature`: `v1=` + lowercase hex of HMAC-SHA256, keyed with the Ente's secret
//!   (its UTF-8 bytes), over the bytes `timestamp + "." + body` ([`signature`]). The Ente
//!   recomputes it over the raw body it received, compares in constant time, and refuses a
//!   timestamp too far from its clock (replay);
//! - `Idempotency-Key`: the notification's key ([`idempotency_key`]), the same on every attempt
//!   and resend of one notification: the Ente dedupes on it.
//!
//! Any 2xx answer is the acknowledgement.
//!
//! **Legacy SOAP** — `notificaPagamento` of the IntegraEnte family: document/literal SOAP 1.1,
//! `SOAPAction: ""`, element `NotificaPagamentoRequest` in the namespace
//! `http://dati.webservice.integraente.payer.seda.com`, children qualified, in the order of the
//! reconstructed WSDL; the acknowledgement is `risultato/retcode` = `00` (`01` = refused).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

use super::receipt_json::ReceiptModel;
use super::xml::{self, escape, Element};

/// Event name of a payment notification.
pub const PAYMENT_RECEIPT_EVENT: &str = "PAYMENT_RECEIPT";

/// Event name of a revocation (a payment already notified was revoked).
pub const PAYMENT_REVOKED_EVENT: &str = "PAYMENT_REVOKED";

/// Version of the webhook body.
pub const WEBHOOK_VERSION: u32 = 1;

/// Header with the signature.
pub const SIGNATURE_HEADER: &str = "X-Mpay-Signature";
/// Header with the signing time.
pub const TIMESTAMP_HEADER: &str = "X-Mpay-Timestamp";
/// Header with the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The webhook body: one stored receipt of the Ente.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentNotification {
    /// The notification's key (also the `Idempotency-Key` header).
    pub notification_id: String,
    /// `PAYMENT_RECEIPT`, or `PAYMENT_REVOKED` for the revocation of a payment notified
    /// before (same receipt, a new notification id).
    pub event: String,
    /// Body version (1).
    pub version: u32,
    /// The Ente.
    pub organization_fiscal_code: String,
    /// The debt position paid, when the notice belongs to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iupd: Option<String>,
    /// Notice number.
    pub notice_number: String,
    /// IUV.
    pub iuv: String,
    /// What the receipt did: `APPLIED`, `DOUBLE_PAYMENT` (collected twice: to refund) or
    /// `ORPHAN` (no position for the notice).
    pub disposition: String,
    /// `paSendRT` or `paSendRTV2`.
    pub operation: String,
    /// When the receipt reached the station (UTC).
    pub received_at: DateTime<Utc>,
    /// The receipt.
    pub receipt: ReceiptModel,
}

/// The idempotency key of notification `id` of organization `org`.
pub fn idempotency_key(org: &str, id: u64) -> String {
    format!("mpay-{org}-{id}")
}

/// `v1=` + hex HMAC-SHA256(secret, `timestamp + "." + body`).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header in constant time (what an Ente does; used by the receiver and
/// the tests).
pub fn verify_signature(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("v1=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Namespace of the IntegraEnte data types.
pub const INTEGRAENTE_NS: &str = "http://dati.webservice.integraente.payer.seda.com";

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// `tipoSpontaneo` of a spontaneous payment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TipoSpontaneo {
    /// causaleServizio.
    pub causale_servizio: String,
    /// annoRiferimento.
    pub anno_riferimento: String,
    /// cespite.
    pub cespite: String,
}

/// `pagamentoSpontaneo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PagamentoSpontaneo {
    /// denominazione (the payer's name).
    pub denominazione: String,
    /// indirizzo.
    pub indirizzo: String,
    /// codiceBelfioreComune.
    pub codice_belfiore_comune: String,
    /// siglaProvincia.
    pub sigla_provincia: String,
    /// CAP.
    pub cap: String,
    /// descrizioneTipologiaServizio (extended client only).
    pub descrizione_tipologia_servizio: String,
    /// codiceTipologiaServizio (extended client only).
    pub codice_tipologia_servizio: String,
    /// tipoSpontaneo.
    pub tipo_spontaneo: TipoSpontaneo,
}

/// A notice paid, or a spontaneous payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagato {
    /// `numeroAvvisoPagoPA`.
    Avviso(String),
    /// `pagamentoSpontaneo`.
    Spontaneo(Box<PagamentoSpontaneo>),
}

/// The fields MPay's non-public client adds after the legacy ones (INTERFACES.md §6.1: sent
/// unless the endpoint URL contains `integraentesanita`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estesi {
    /// identificativoUnivocoRiscossione (IUR: the receipt id).
    pub iur: String,
    /// tassonomia (transfer category of the first transfer).
    pub tassonomia: String,
    /// identificativoUnivocoVersamento (IUV).
    pub iuv: String,
}

/// `NotificaPagamentoRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificaPagamento {
    /// codiceTransazionePagonet.
    pub codice_transazione: String,
    /// codiceDettaglioTransazionePagonet.
    pub codice_dettaglio_transazione: String,
    /// codiceEnte (MPay `chiaveEnte`, trimmed).
    pub codice_ente: String,
    /// codiceFiscale of the debtor.
    pub codice_fiscale: String,
    /// numeroDocumento.
    pub numero_documento: Option<String>,
    /// Notice or spontaneous payment.
    pub pagato: Pagato,
    /// importoPagato (long, cents).
    pub importo_pagato: i64,
    /// dataPagamento `yyyyMMddHHmmss` (Europe/Rome).
    pub data_pagamento: String,
    /// rtXML: the receipt as received from pagoPA.
    pub rt_xml: Option<String>,
    /// The extended fields, when sent.
    pub estesi: Option<Estesi>,
}

/// True when MPay would send the extended fields to this endpoint.
pub fn sends_extended_fields(url: &str) -> bool {
    !url.to_ascii_lowercase().contains("integraentesanita")
}

struct Out(String);

impl Out {
    fn el(&mut self, name: &str, value: &str) {
        self.0.push_str("<d:");
        self.0.push_str(name);
        self.0.push('>');
        self.0.push_str(&escape(value));
        self.0.push_str("</d:");
        self.0.push_str(name);
        self.0.push('>');
    }
    fn open(&mut self, name: &str) {
        self.0.push_str("<d:");
        self.0.push_str(name);
        self.0.push('>');
    }
    fn close(&mut self, name: &str) {
        self.0.push_str("</d:");
        self.0.push_str(name);
        self.0.push('>');
    }
}

impl NotificaPagamento {
    /// The SOAP 1.1 envelope.
    pub fn to_soap(&self) -> String {
        self.envelope("NotificaPagamentoRequest", None)
    }

    /// The SOAP 1.1 envelope of `notificaRevocaPagamento` (INTERFACES.md §6.1, port
    /// "IntegraEnteNotifica"): the same fields in the same order, `rtXML`, then `rrXML` (the
    /// revocation request, when there is one: a revocation learnt from a reporting flow has
    /// none). The port's schema is not public: the element names are MPay's field names.
    pub fn to_soap_revoca(&self, rr_xml: Option<&str>) -> String {
        self.envelope(
            "NotificaRevocaPagamentoRequest",
            Some(rr_xml.unwrap_or_default()),
        )
    }

    fn envelope(&self, root: &str, rr_xml: Option<&str>) -> String {
        let mut w = Out(String::with_capacity(
            1024 + self.rt_xml.as_ref().map_or(0, |r| r.len() * 5 / 4),
        ));
        w.0.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        w.0.push_str(&format!(
            r#"<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:d="{INTEGRAENTE_NS}"><soapenv:Header/><soapenv:Body>"#
        ));
        w.open(root);
        w.el("codiceTransazionePagonet", &self.codice_transazione);
        w.el(
            "codiceDettaglioTransazionePagonet",
            &self.codice_dettaglio_transazione,
        );
        w.el("codiceEnte", self.codice_ente.trim());
        w.el("codiceFiscale", &self.codice_fiscale);
        if let Some(n) = &self.numero_documento {
            w.el("numeroDocumento", n);
        }
        match &self.pagato {
            Pagato::Avviso(nav) => w.el("numeroAvvisoPagoPA", nav),
            Pagato::Spontaneo(s) => {
                w.open("pagamentoSpontaneo");
                w.el("denominazione", &s.denominazione);
                w.el("indirizzo", &s.indirizzo);
                w.el("codiceBelfioreComune", &s.codice_belfiore_comune);
                w.el("siglaProvincia", &s.sigla_provincia);
                w.el("CAP", &s.cap);
                if self.estesi.is_some() {
                    w.el(
                        "descrizioneTipologiaServizio",
                        &s.descrizione_tipologia_servizio,
                    );
                    w.el("codiceTipologiaServizio", &s.codice_tipologia_servizio);
                }
                w.open("tipoSpontaneo");
                w.el("causaleServizio", &s.tipo_spontaneo.causale_servizio);
                w.el("annoRiferimento", &s.tipo_spontaneo.anno_riferimento);
                w.el("cespite", &s.tipo_spontaneo.cespite);
                w.close("tipoSpontaneo");
                w.close("pagamentoSpontaneo");
            }
        }
        w.el("importoPagato", &self.importo_pagato.to_string());
        w.el("dataPagamento", &self.data_pagamento);
        if let Some(rt) = &self.rt_xml {
            w.el("rtXML", rt);
        }
        if let Some(rr) = rr_xml.filter(|r| !r.is_empty()) {
            w.el("rrXML", rr);
        }
        if let Some(e) = &self.estesi {
            w.el("identificativoUnivocoRiscossione", &e.iur);
            w.el("tassonomia", &e.tassonomia);
            w.el("identificativoUnivocoVersamento", &e.iuv);
        }
        w.close(root);
        w.0.push_str("</soapenv:Body></soapenv:Envelope>");
        w.0
    }
}

/// The Ente's answer to `notificaPagamento`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Risultato {
    /// `00` (acknowledged) or `01` (refused).
    pub retcode: String,
    /// retmessage.
    pub retmessage: String,
}

impl Risultato {
    /// `retcode 00`: the acknowledgement.
    pub fn is_ack(&self) -> bool {
        self.retcode.trim() == "00"
    }
}

fn find<'a>(e: &'a Element, local: &str) -> Option<&'a Element> {
    if e.local == local {
        return Some(e);
    }
    e.children.iter().find_map(|c| find(c, local))
}

/// Reads `NotificaPagamentoResponse/risultato` (any prefix) or a SOAP Fault from an answer.
/// Errors: not XML, a Fault (its `faultstring`), no `retcode`.
pub fn decode_risultato(body: &[u8]) -> Result<Risultato, String> {
    let doc = xml::parse(body).map_err(|e| e.to_string())?;
    if let Some(fault) = find(&doc, "Fault").filter(|f| f.ns.as_deref() == Some(SOAP_ENV)) {
        let text = fault
            .child("faultstring")
            .map(|f| f.text.trim().to_string())
            .unwrap_or_else(|| "SOAP Fault".into());
        return Err(format!("SOAP Fault: {text}"));
    }
    let Some(risultato) = find(&doc, "risultato") else {
        return Err("no risultato in the answer".into());
    };
    let text = |name: &str| {
        risultato
            .children
            .iter()
            .find(|c| c.local == name)
            .map(|c| c.text.trim().to_string())
    };
    let retcode = text("retcode").ok_or("no retcode in the answer")?;
    Ok(Risultato {
        retcode,
        retmessage: text("retmessage").unwrap_or_default(),
    })
}

/// The answer an Ente's server gives (used by `mpay dev ente-receiver` and the tests).
pub fn risultato_soap(retcode: &str, retmessage: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:d="{INTEGRAENTE_NS}"><soapenv:Body><d:NotificaPagamentoResponse><d:risultato><d:retcode>{}</d:retcode><d:retmessage>{}</d:retmessage></d:risultato></d:NotificaPagamentoResponse></soapenv:Body></soapenv:Envelope>"#,
        escape(retcode),
        escape(retmessage)
    )
}

/// Reads a `NotificaPagamentoRequest` (the Ente's side: the receiver and the tests).
/// Errors: not XML or not the element.
pub fn decode_notifica(body: &[u8]) -> Result<NotificaPagamento, String> {
    let doc = xml::parse(body).map_err(|e| e.to_string())?;
    let req = find(&doc, "NotificaPagamentoRequest")
        .filter(|r| r.ns.as_deref() == Some(INTEGRAENTE_NS))
        .ok_or("no NotificaPagamentoRequest in the integraente namespace")?;
    let get = |e: &Element, name: &str| {
        e.children
            .iter()
            .find(|c| c.local == name && c.ns.as_deref() == Some(INTEGRAENTE_NS))
            .map(|c| c.text.clone())
    };
    let req_text = |name: &str| get(req, name);
    let pagato = if let Some(nav) = req_text("numeroAvvisoPagoPA") {
        Pagato::Avviso(nav)
    } else {
        let s = req
            .children
            .iter()
            .find(|c| c.local == "pagamentoSpontaneo")
            .ok_or("neither numeroAvvisoPagoPA nor pagamentoSpontaneo")?;
        let t = s.children.iter().find(|c| c.local == "tipoSpontaneo");
        let tt = |name: &str| t.and_then(|t| get(t, name)).unwrap_or_default();
        Pagato::Spontaneo(Box::new(PagamentoSpontaneo {
            denominazione: get(s, "denominazione").unwrap_or_default(),
            indirizzo: get(s, "indirizzo").unwrap_or_default(),
            codice_belfiore_comune: get(s, "codiceBelfioreComune").unwrap_or_default(),
            sigla_provincia: get(s, "siglaProvincia").unwrap_or_default(),
            cap: get(s, "CAP").unwrap_or_default(),
            descrizione_tipologia_servizio: get(s, "descrizioneTipologiaServizio")
                .unwrap_or_default(),
            codice_tipologia_servizio: get(s, "codiceTipologiaServizio").unwrap_or_default(),
            tipo_spontaneo: TipoSpontaneo {
                causale_servizio: tt("causaleServizio"),
                anno_riferimento: tt("annoRiferimento"),
                cespite: tt("cespite"),
            },
        }))
    };
    let importo = req_text("importoPagato")
        .ok_or("no importoPagato")?
        .trim()
        .parse::<i64>()
        .map_err(|e| format!("importoPagato: {e}"))?;
    let estesi = req_text("identificativoUnivocoRiscossione").map(|iur| Estesi {
        iur,
        tassonomia: req_text("tassonomia").unwrap_or_default(),
        iuv: req_text("identificativoUnivocoVersamento").unwrap_or_default(),
    });
    Ok(NotificaPagamento {
        codice_transazione: req_text("codiceTransazionePagonet").unwrap_or_default(),
        codice_dettaglio_transazione: req_text("codiceDettaglioTransazionePagonet")
            .unwrap_or_default(),
        codice_ente: req_text("codiceEnte").unwrap_or_default(),
        codice_fiscale: req_text("codiceFiscale").unwrap_or_default(),
        numero_documento: req_text("numeroDocumento"),
        pagato,
        importo_pagato: importo,
        data_pagamento: req_text("dataPagamento").unwrap_or_default(),
        rt_xml: req_text("rtXML"),
        estesi,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn sample(estesi: bool) -> NotificaPagamento {
        NotificaPagamento {
            codice_transazione: "tok-1".into(),
            codice_dettaglio_transazione: "42".into(),
            codice_ente: " 05671 ".into(),
            codice_fiscale: "RSSMRA80A01H501U".into(),
            numero_documento: Some("DOC-1".into()),
            pagato: Pagato::Avviso("312000000000000099".into()),
            importo_pagato: 12345,
            data_pagamento: "20261130100000".into(),
            rt_xml: Some("<pafn:paSendRTV2Request>a & b</pafn:paSendRTV2Request>".into()),
            estesi: estesi.then(|| Estesi {
                iur: "tok-1".into(),
                tassonomia: "9/0101100IM/".into(),
                iuv: "12000000000000099".into(),
            }),
        }
    }

    #[test]
    fn notifica_pagamento_follows_the_wsdl_order_and_round_trips() {
        let n = sample(true);
        let xml = n.to_soap();
        let order = [
            "codiceTransazionePagonet",
            "codiceDettaglioTransazionePagonet",
            "codiceEnte>",
            "codiceFiscale",
            "numeroDocumento",
            "numeroAvvisoPagoPA",
            "importoPagato",
            "dataPagamento",
            "rtXML",
            "identificativoUnivocoRiscossione",
            "tassonomia",
            "identificativoUnivocoVersamento",
        ];
        let pos: Vec<usize> = order.iter().map(|e| xml.find(e).unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{xml}");
        assert!(xml.contains("<d:codiceEnte>05671</d:codiceEnte>"));
        assert!(xml.contains("a &amp; b"), "rtXML escaped as text");
        let back = decode_notifica(xml.as_bytes()).unwrap();
        assert_eq!(
            back,
            NotificaPagamento {
                codice_ente: "05671".into(),
                ..n
            }
        );
        let legacy = sample(false).to_soap();
        assert!(!legacy.contains("identificativoUnivocoRiscossione"));
        assert!(sends_extended_fields("https://ente.example/ws/notifica"));
        assert!(!sends_extended_fields(
            "https://ente.example/IntegraenteService/integraentesanita"
        ));
    }

    #[test]
    fn spontaneous_payments_carry_pagamento_spontaneo() {
        let mut n = sample(false);
        n.pagato = Pagato::Spontaneo(Box::new(PagamentoSpontaneo {
            denominazione: "Mario Rossi".into(),
            tipo_spontaneo: TipoSpontaneo {
                causale_servizio: "Loculo".into(),
                anno_riferimento: "2026".into(),
                cespite: String::new(),
            },
            codice_tipologia_servizio: "AOC".into(),
            ..Default::default()
        }));
        let xml = n.to_soap();
        assert!(!xml.contains("numeroAvvisoPagoPA"));
        assert!(!xml.contains("codiceTipologiaServizio"), "legacy subset");
        let back = decode_notifica(xml.as_bytes()).unwrap();
        let Pagato::Spontaneo(s) = back.pagato else {
            panic!("not spontaneous")
        };
        assert_eq!(s.tipo_spontaneo.anno_riferimento, "2026");
        assert_eq!(s.denominazione, "Mario Rossi");
    }

    #[test]
    fn retcode_00_is_the_ack_01_and_faults_are_not() {
        let ok = decode_risultato(risultato_soap("00", "OK").as_bytes()).unwrap();
        assert!(ok.is_ack());
        let ko =
            decode_risultato(risultato_soap("01", "posizione sconosciuta").as_bytes()).unwrap();
        assert!(!ko.is_ack());
        assert_eq!(ko.retmessage, "posizione sconosciuta");
        let fault = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>boom</faultstring></s:Fault></s:Body></s:Envelope>"#;
        assert_eq!(
            decode_risultato(fault.as_bytes()).unwrap_err(),
            "SOAP Fault: boom"
        );
        assert!(decode_risultato(b"not xml").is_err());
        assert!(decode_risultato(b"<a/>").is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        let sig = signature(b"secret", 1_700_000_000, br#"{"a":1}"#);
        // computed independently (Python's hmac module) over b'1700000000.{"a":1}'
        assert_eq!(
            sig,
            "v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
        assert!(verify_signature(
            b"secret",
            1_700_000_000,
            br#"{"a":1}"#,
            &sig
        ));
        assert!(!verify_signature(
            b"secret",
            1_700_000_001,
            br#"{"a":1}"#,
            &sig
        ));
        assert!(!verify_signature(
            b"other",
            1_700_000_000,
            br#"{"a":1}"#,
            &sig
        ));
        assert!(!verify_signature(
            b"secret",
            1_700_000_000,
            br#"{"a":2}"#,
            &sig
        ));
        assert!(!verify_signature(
            b"secret",
            1_700_000_000,
            br#"{"a":1}"#,
            "zz"
        ));
        assert_eq!(idempotency_key("80001234568", 7), "mpay-80001234568-7");
    }

    #[test]
    fn notifica_revoca_has_the_payment_fields_then_rt_and_rr() {
        let n = sample(true);
        let x = n.to_soap_revoca(Some("<RR/>"));
        assert!(x.contains("<d:NotificaRevocaPagamentoRequest>"));
        assert!(x.contains("</d:NotificaRevocaPagamentoRequest>"));
        let pay = n.to_soap();
        let body = |s: &str, root: &str| {
            s.split(&format!("<d:{root}>"))
                .nth(1)
                .and_then(|r| r.split(&format!("</d:{root}>")).next())
                .unwrap()
                .to_string()
        };
        let (p, r) = (
            body(&pay, "NotificaPagamentoRequest"),
            body(&x, "NotificaRevocaPagamentoRequest"),
        );
        let rt_end = p.find("</d:rtXML>").unwrap() + "</d:rtXML>".len();
        assert_eq!(
            r.get(..rt_end),
            p.get(..rt_end),
            "same fields, same order, up to rtXML"
        );
        assert!(r[rt_end..].starts_with("<d:rrXML>&lt;RR/&gt;</d:rrXML>"));
        assert!(
            !n.to_soap_revoca(None).contains("rrXML"),
            "no RR: no element"
        );
    }
}
