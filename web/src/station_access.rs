//! Who may talk to the station (issue 9.12, SPEC §14): an IP allow-list of pagoPA's egress
//! ranges (`[station] allowed_networks`), optional mutual TLS on a listener of its own
//! (`[station] tls_bind`: the client certificate must chain to `client_ca` and, when
//! `client_subjects` is not empty, name one of them as subject CN or DNS SAN), and the node's
//! `[node] environment`.
//!
//! Decision for a request to `POST /pagopa/paForNode` ([`StationAccess::admit`]):
//! 1. it came through the mTLS listener → allowed if its certificate's names pass (the
//!    handshake already refused a missing certificate or one of another CA);
//! 2. an allow-list is configured → allowed if the client address is in it;
//! 3. no allow-list → refused in `production`, allowed in `development` (one warning at
//!    start-up, [`StationAccess::warn_if_open`]).
//!
//! The client address is the TCP peer, unless the peer is one of `[http] trusted_proxies`:
//! then `X-Forwarded-For` (or, without it, `Forwarded: for=`) is read right to left and the
//! first address that is not itself a trusted proxy is the client. From any other peer those
//! headers are ignored.
//!
//! A refusal is HTTP 403 with a SOAP 1.1 fault (`PAA_STAZIONE_INT_ERRATA` from the one fault
//! table), counted in `mpay_station_refused_total`, logged once per address per minute.

use std::any::Any;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::Extensions;
use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse};
use ipnet::IpNet;
use mpay_config::access::Environment;
use mpay_config::Settings;
use mpay_messages::wire::faults::FaultCode;
use mpay_messages::wire::pafornode as pf;

/// How often one refused address is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Addresses remembered for the log's rate limit (then forgotten all at once).
const LOG_MEMORY: usize = 4096;

/// What a connection of the mTLS listener proved (in the connection's extensions).
#[derive(Debug, Clone)]
pub struct StationTlsClient {
    /// The certificate's subject CN and DNS SANs.
    pub names: Vec<String>,
    /// The names pass `[station] client_subjects` (always, when the list is empty).
    pub subject_allowed: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The client address is not in `allowed_networks` (or none is configured in production).
    Address(IpAddr),
    /// An mTLS client whose certificate names none of `client_subjects`.
    Subject(Vec<String>),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Address(ip) => write!(f, "address {ip} is not allowed to call the station"),
            Refusal::Subject(names) => write!(
                f,
                "client certificate {names:?} is not one of the allowed subjects"
            ),
        }
    }
}

/// The station's access policy, built once from the settings.
#[derive(Debug)]
pub struct StationAccess {
    environment: Environment,
    allowed: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    mtls: bool,
    logged: Mutex<HashMap<IpAddr, Instant>>,
}

impl StationAccess {
    /// The policy of `settings`.
    pub fn new(settings: &Settings) -> Self {
        StationAccess {
            environment: settings.node.environment,
            allowed: settings.station.allowed_networks.clone(),
            trusted_proxies: settings.http.trusted_proxies.clone(),
            mtls: !settings.station.tls_bind.trim().is_empty(),
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// One warning when the station answers anyone (development, no allow-list).
    pub fn warn_if_open(&self) {
        if self.allowed.is_empty() && self.environment == Environment::Development {
            tracing::warn!(
                "the station answers any peer: no [station] allowed_networks and [node] environment = \"development\"; set both for production (docs/DEPLOYMENT.md)"
            );
        } else if self.allowed.is_empty() && !self.mtls {
            tracing::warn!(
                "production without [station] allowed_networks nor tls_bind: the station refuses every request"
            );
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the peer, or, behind trusted proxies, the right-most forwarded
    /// address that is not a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let hops = forwarded_hops(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = *ip;
                    if !self.trusted(*ip) {
                        return *ip;
                    }
                }
                // an entry that is not an address: stop at the last hop we could believe
                None => return client,
            }
        }
        client
    }

    /// The client's address of a request ([`Self::client_ip`] of its TCP peer): what the
    /// authentication throttle counts failures against, so that clients behind a trusted
    /// reverse proxy are not one bucket.
    pub fn request_client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        req.peer_addr()
            .map(|a| self.client_ip(a.ip(), req.headers()))
    }

    /// Admits a station request or says why not (see the module's documentation).
    pub fn admit(&self, req: &HttpRequest) -> Result<(), Refusal> {
        if let Some(tls) = req.conn_data::<StationTlsClient>() {
            return if tls.subject_allowed {
                Ok(())
            } else {
                Err(Refusal::Subject(tls.names.clone()))
            };
        }
        let peer = req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let client = self.client_ip(peer, req.headers());
        if !self.allowed.is_empty() {
            return if self.allowed.iter().any(|n| n.contains(&client)) {
                Ok(())
            } else {
                Err(Refusal::Address(client))
            };
        }
        match self.environment {
            Environment::Development => Ok(()),
            Environment::Production => Err(Refusal::Address(client)),
        }
    }

    /// The answer to a refused request: metric, a log line at most once a minute per address,
    /// HTTP 403 with a SOAP fault; the connection is closed.
    pub fn refuse(&self, req: &HttpRequest, why: &Refusal) -> HttpResponse {
        metrics::counter!("mpay_station_refused_total").increment(1);
        let peer = req.peer_addr().map(|a| a.ip());
        let key = match why {
            Refusal::Address(ip) => *ip,
            Refusal::Subject(_) => peer.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        };
        let now = Instant::now();
        let log = match self.logged.lock() {
            Ok(mut m) => {
                if m.len() >= LOG_MEMORY {
                    m.clear();
                }
                match m.get(&key) {
                    Some(t) if now.duration_since(*t) < LOG_EVERY => false,
                    _ => {
                        m.insert(key, now);
                        true
                    }
                }
            }
            Err(_) => false,
        };
        if log {
            tracing::warn!(peer = ?peer, reason = %why, "station request refused (logged once a minute per address; see mpay_station_refused_total)");
        }
        let body = pf::encode_soap_fault_code(
            FaultCode::StazioneIntErrata,
            &format!("access refused: {why}"),
        );
        let mut res = HttpResponse::Forbidden()
            .content_type("text/xml; charset=utf-8")
            .body(body);
        res.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        res
    }
}

/// The forwarded chain, left (client) to right (nearest proxy); `None` for an entry that is
/// not an address. `X-Forwarded-For` (every instance, in order), else `Forwarded: for=`.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .flat_map(|v| {
            v.to_str()
                .unwrap_or("\u{0}")
                .split(',')
                .map(|s| parse_hop(s.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    headers
        .get_all("forwarded")
        .flat_map(|v| {
            v.to_str()
                .unwrap_or("\u{0}")
                .split(',')
                .filter_map(|element| {
                    element.split(';').find_map(|pair| {
                        let (k, v) = pair.trim().split_once('=')?;
                        k.trim()
                            .eq_ignore_ascii_case("for")
                            .then(|| parse_hop(v.trim().trim_matches('"')))
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:4711`, `203.0.113.7:4711`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.split_once(']'))
                .and_then(|(ip, _)| ip.parse().ok())
        })
}

/// The rustls configuration of the station's mTLS listener: our certificate and key, client
/// certificates required and verified against `client_ca` (ring provider, no process-wide
/// default needed). Errors name the key.
pub fn tls_server_config(settings: &Settings) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let st = &settings.station;
    let read = |key: &str, path: &str| {
        std::fs::read(path).map_err(|e| format!("station.{key}: cannot read {path}: {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(&read("tls_cert", &st.tls_cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("station.tls_cert: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&read("tls_key", &st.tls_key)?)
        .map_err(|e| format!("station.tls_key: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read("client_ca", &st.client_ca)?) {
        let ca = ca.map_err(|e| format!("station.client_ca: {e}"))?;
        roots
            .add(ca)
            .map_err(|e| format!("station.client_ca: {e}"))?;
    }
    if roots.is_empty() {
        return Err("station.client_ca: no certificate in the file".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("station.client_ca: {e}"))?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("station TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("station.tls_cert / tls_key: {e}"))
}

/// The subject CN and DNS SANs of a DER certificate.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push((*d).to_string());
            }
        }
    }
    names
}

/// The `on_connect` part of the mTLS listener: records what the client certificate proved.
/// `subjects` = `[station] client_subjects`.
pub fn on_tls_connect(conn: &dyn Any, ext: &mut Extensions, subjects: &[String]) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let Some(tls) = conn.downcast_ref::<Tls>() else {
        return;
    };
    let (_, session) = tls.get_ref();
    let names = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| certificate_names(c.as_ref()))
        .unwrap_or_default();
    let subject_allowed = !names.is_empty()
        && (subjects.is_empty() || names.iter().any(|n| subjects.iter().any(|s| s == n)));
    ext.insert(StationTlsClient {
        names,
        subject_allowed,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn access(proxies: &[&str]) -> StationAccess {
        StationAccess {
            environment: Environment::Production,
            allowed: vec![],
            trusted_proxies: proxies
                .iter()
                .map(|p| mpay_config::access::parse_network(p).unwrap())
                .collect(),
            mtls: false,
            logged: Mutex::new(HashMap::new()),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy_right_most_untrusted_wins() {
        let a = access(&["10.0.0.0/8", "2001:db8:ff::/48"]);
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.7")]);
        // untrusted peer: headers ignored
        assert_eq!(a.client_ip(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        // trusted peer: right to left, skipping trusted proxies; the spoofed 1.1.1.1 is not it
        assert_eq!(a.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        // several header lines are one list
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.10"),
        ]);
        assert_eq!(a.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.10"));
        // Forwarded (RFC 7239) when there is no X-Forwarded-For, IPv6 with port
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8::5]:4711\"",
        )]);
        assert_eq!(a.client_ip(ip("2001:db8:ff::1"), &h), ip("2001:db8::5"));
        // garbage on the right: the proxy itself is the client
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown")]);
        assert_eq!(a.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        // no header from a trusted proxy: the proxy
        assert_eq!(
            a.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }
}
