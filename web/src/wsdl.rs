//! WSDL of the two SOAP endpoints, served at `?wsdl`, and the answers to methods other than
//! POST on them (405 with `Allow: POST`).
//!
//! - `/pagopa/paForNode`: the six operations of pagoPA's public `paForNode.wsdl` that the
//!   station implements, generated from [`PA_FOR_NODE_OPERATIONS`]; the types are pagoPA's
//!   public `paForNode.xsd`, imported from its published location (not served by us).
//! - `/ArchivioCarichiService/integraecdifferito`: ours, written from the five operations of
//!   MPay's `IntegraEcDifferitoInterface` we implement (same names, namespace, document/literal,
//!   empty `soapAction` as MPay's Axis service); the element contents are described in words
//!   (the decoder is lenient, as MPay's was), so the schema keeps them open.

use actix_web::http::header::{HeaderValue, ALLOW};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use mpay_messages::archivio::{Operation as ArchivioOperation, NS_DATI};

use crate::problem::Problem;

/// The station's path.
pub const PA_FOR_NODE_PATH: &str = "/pagopa/paForNode";

/// Where pagoPA publishes the `paForNode.xsd` the station's messages follow.
pub const PA_FOR_NODE_XSD_URL: &str =
    "https://raw.githubusercontent.com/pagopa/pagopa-api/develop/wsdl/xsd/paForNode.xsd";

/// The station's operations: (operation = soapAction, request element, response element).
pub const PA_FOR_NODE_OPERATIONS: &[(&str, &str, &str)] = &[
    (
        "paVerifyPaymentNotice",
        "paVerifyPaymentNoticeReq",
        "paVerifyPaymentNoticeRes",
    ),
    ("paGetPayment", "paGetPaymentReq", "paGetPaymentRes"),
    (
        "paGetPaymentV2",
        "paGetPaymentV2Request",
        "paGetPaymentV2Response",
    ),
    ("paSendRT", "paSendRTReq", "paSendRTRes"),
    ("paSendRTV2", "paSendRTV2Request", "paSendRTV2Response"),
    (
        "paDemandPaymentNotice",
        "paDemandPaymentNoticeRequest",
        "paDemandPaymentNoticeResponse",
    ),
];

const ARCHIVIO_OPERATIONS: [ArchivioOperation; 5] = [
    ArchivioOperation::Inserimento,
    ArchivioOperation::Variazione,
    ArchivioOperation::Cancellazione,
    ArchivioOperation::Discarico,
    ArchivioOperation::RichiestaAvviso,
];

fn binding_operations(ops: &[(String, String)], with_action: bool) -> String {
    ops.iter()
        .map(|(name, _)| {
            let action = if with_action { name.as_str() } else { "" };
            format!(
                "    <wsdl:operation name=\"{name}\">\n      <soap:operation soapAction=\"{action}\"/>\n      <wsdl:input><soap:body use=\"literal\"/></wsdl:input>\n      <wsdl:output><soap:body use=\"literal\"/></wsdl:output>\n    </wsdl:operation>\n"
            )
        })
        .collect()
}

fn messages_and_port_type(
    ops: &[(&str, &str, &str)],
    prefix: &str,
    port_type: &str,
) -> (String, String) {
    let mut messages = String::new();
    let mut port = format!("  <wsdl:portType name=\"{port_type}\">\n");
    for (op, req, res) in ops {
        messages.push_str(&format!(
            "  <wsdl:message name=\"{req}\"><wsdl:part name=\"bodyrequest\" element=\"{prefix}:{req}\"/></wsdl:message>\n  <wsdl:message name=\"{res}\"><wsdl:part name=\"bodyresponse\" element=\"{prefix}:{res}\"/></wsdl:message>\n"
        ));
        port.push_str(&format!(
            "    <wsdl:operation name=\"{op}\">\n      <wsdl:input message=\"tns:{req}\"/>\n      <wsdl:output message=\"tns:{res}\"/>\n    </wsdl:operation>\n"
        ));
    }
    port.push_str("  </wsdl:portType>\n");
    (messages, port)
}

/// The station's WSDL, with `address` (e.g. `http://host:8080/pagopa/paForNode`) as endpoint.
pub fn pa_for_node(address: &str) -> String {
    let (messages, port) =
        messages_and_port_type(PA_FOR_NODE_OPERATIONS, "pafn", "paForNode_PortType");
    let ops: Vec<(String, String)> = PA_FOR_NODE_OPERATIONS
        .iter()
        .map(|(o, _, _)| (o.to_string(), String::new()))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- mpay pagoPA station: the operations of pagoPA's paForNode interface it implements.
     Messages: pagoPA's public paForNode.xsd (imported below). SOAP 1.1, document/literal. -->
<wsdl:definitions xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
  xmlns:tns="http://pagopa-api.pagopa.gov.it/paForNode"
  xmlns:pafn="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"
  targetNamespace="http://pagopa-api.pagopa.gov.it/paForNode">
  <wsdl:types>
    <xsd:schema>
      <xsd:import namespace="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"
        schemaLocation="{xsd}"/>
    </xsd:schema>
  </wsdl:types>
{messages}{port}  <wsdl:binding name="paForNodeBinding" type="tns:paForNode_PortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
{binding}  </wsdl:binding>
  <wsdl:service name="paForNodeService">
    <wsdl:port name="paForNodePort" binding="tns:paForNodeBinding">
      <soap:address location="{address}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#,
        xsd = PA_FOR_NODE_XSD_URL,
        binding = binding_operations(&ops, true),
        address = escape_attr(address),
    )
}

/// The Archivio Carichi WSDL (ours), with `address` as endpoint.
pub fn archivio_carichi(address: &str) -> String {
    let table: Vec<(&str, &str, &str)> = ARCHIVIO_OPERATIONS
        .iter()
        .map(|o| (o.name(), o.request_element(), o.response_element()))
        .collect();
    let (messages, port) = messages_and_port_type(&table, "dati", "IntegraEcDifferitoInterface");
    let ops: Vec<(String, String)> = table
        .iter()
        .map(|(o, _, _)| (o.to_string(), String::new()))
        .collect();
    let elements: String = table
        .iter()
        .flat_map(|(op, req, res)| {
            [
                (req.to_string(), format!("request of {op}")),
                (res.to_string(), format!("answer of {op}: codiceEsito (00-07) and messaggioEsito, with the operation's data")),
            ]
        })
        .map(|(name, doc)| {
            format!(
                "      <xsd:element name=\"{name}\">\n        <xsd:annotation><xsd:documentation>{doc}</xsd:documentation></xsd:annotation>\n        <xsd:complexType><xsd:sequence><xsd:any namespace=\"##any\" processContents=\"lax\" minOccurs=\"0\" maxOccurs=\"unbounded\"/></xsd:sequence></xsd:complexType>\n      </xsd:element>\n"
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- mpay: MPay Archivio Carichi (IntegraEcDifferitoService), the operations mpay implements.
     SOAP 1.1 (1.2 accepted), document/literal, children in the dati namespace (unqualified
     also accepted). Authentication: the organization's API key in the Ocp-Apim-Subscription-Key
     header or as the HTTP Basic password. Element contents follow MPay's integraecdifferito.xsd;
     the service reads them leniently, as MPay did, so the schema below leaves them open. -->
<wsdl:definitions xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
  xmlns:tns="{ns}" xmlns:dati="{ns}" targetNamespace="{ns}">
  <wsdl:types>
    <xsd:schema targetNamespace="{ns}" elementFormDefault="qualified">
{elements}    </xsd:schema>
  </wsdl:types>
{messages}{port}  <wsdl:binding name="IntegraEcDifferitoSOAPBinding" type="tns:IntegraEcDifferitoInterface">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
{binding}  </wsdl:binding>
  <wsdl:service name="IntegraEcDifferitoService">
    <wsdl:port name="IntegraEcDifferitoSOAP" binding="tns:IntegraEcDifferitoSOAPBinding">
      <soap:address location="{address}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#,
        ns = NS_DATI,
        binding = binding_operations(&ops, false),
        address = escape_attr(address),
    )
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// The endpoint URL as the client sees it (scheme and host of the request).
fn address(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}{}", info.scheme(), info.host(), req.path())
}

fn wants_wsdl(req: &HttpRequest) -> bool {
    req.query_string().split('&').any(|p| {
        p.split('=')
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("wsdl"))
    })
}

/// 405 with `Allow: POST` (SOAP endpoints take POST; `GET ?wsdl` gives the WSDL).
fn post_only(req: &HttpRequest) -> HttpResponse {
    let problem = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        format!(
            "{} is a SOAP endpoint: send SOAP requests with POST; GET {}?wsdl gives its WSDL",
            req.path(),
            req.path()
        ),
    );
    let mut res = actix_web::ResponseError::error_response(&problem);
    res.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST"));
    res
}

async fn station_other(req: HttpRequest) -> HttpResponse {
    if req.method() == actix_web::http::Method::GET && wants_wsdl(&req) {
        return HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body(pa_for_node(&address(&req)));
    }
    post_only(&req)
}

async fn archivio_other(req: HttpRequest) -> HttpResponse {
    if req.method() == actix_web::http::Method::GET && wants_wsdl(&req) {
        return HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body(archivio_carichi(&address(&req)));
    }
    post_only(&req)
}

/// Routes: every method but POST on the SOAP paths (register after the POST routes).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(PA_FOR_NODE_PATH).default_service(web::to(station_other)))
        .service(web::resource(crate::archivio::PATH).default_service(web::to(archivio_other)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn station_wsdl_lists_every_operation_with_its_action() {
        let w = pa_for_node("http://h:1/pagopa/paForNode");
        for (op, req, res) in PA_FOR_NODE_OPERATIONS {
            assert!(
                w.contains(&format!("<wsdl:operation name=\"{op}\">")),
                "{op}"
            );
            assert!(w.contains(&format!("soapAction=\"{op}\"")), "{op}");
            assert!(w.contains(&format!("element=\"pafn:{req}\"")), "{req}");
            assert!(w.contains(&format!("element=\"pafn:{res}\"")), "{res}");
        }
        assert!(w.contains("location=\"http://h:1/pagopa/paForNode\""));
    }

    #[test]
    fn archivio_wsdl_declares_its_elements() {
        let w = archivio_carichi("http://h:1/ArchivioCarichiService/integraecdifferito");
        for o in ARCHIVIO_OPERATIONS {
            assert!(w.contains(&format!("<xsd:element name=\"{}\">", o.request_element())));
            assert!(w.contains(&format!("element=\"dati:{}\"", o.response_element())));
        }
    }
}
