//! Connection and body limits of the HTTP server (issue 9.6): slow clients cannot hold the
//! descriptors.
//!
//! - The request head must arrive within `http.head_timeout_ms` (actix
//!   `client_request_timeout`); idle keep-alive connections close after `http.keep_alive_secs`.
//! - The body must arrive within `http.body_timeout_ms` plus one second per
//!   [`BODY_MIN_RATE`] bytes already received (so a large upload on a sane link is not cut, a
//!   trickle is): past the deadline the body fails, the request is answered 408
//!   `BODY_TIMEOUT` and the connection closed ([`body_deadline`]).
//! - A client IP may hold `http.max_connections_per_ip` connections ([`ConnTracker`], counted
//!   at accept through actix's `on_connect`); a request on a further one is answered 429
//!   `TOO_MANY_CONNECTIONS` and that connection closed.
//!
//! - Every route but the station's shares `http.max_inflight_other` requests in flight
//!   ([`other_inflight`]); one more is answered 503 `BUSY` with `Retry-After`, so REST,
//!   portal, Archivio Carichi or ops traffic cannot take the capacity the station needs
//!   (issue 9.6).
//!
//! Metrics: `mpay_http_body_timeouts_total`, `mpay_http_connections_refused_total`,
//! `mpay_http_busy_total`.

use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError};
use futures_util::Stream;

use crate::problem::Problem;

/// Bytes per second a body must keep up beyond its base allowance.
pub const BODY_MIN_RATE: u64 = 64 * 1024;

/// Open connections per client IP.
#[derive(Debug)]
pub struct ConnTracker {
    limit: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place (in the connection's extensions: freed when it closes).
#[derive(Debug)]
pub struct ConnTicket {
    tracker: Arc<ConnTracker>,
    ip: IpAddr,
    /// The connection is beyond its IP's limit: its requests are refused.
    pub over: bool,
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        if let Ok(mut m) = self.tracker.per_ip.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

impl ConnTracker {
    /// `limit` connections per IP (0 = none).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ConnTracker {
            limit,
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    fn open(self: &Arc<Self>, ip: IpAddr) -> ConnTicket {
        let mut over = false;
        if let Ok(mut m) = self.per_ip.lock() {
            let n = m.entry(ip).or_insert(0);
            *n += 1;
            over = self.limit > 0 && *n > self.limit;
        }
        ConnTicket {
            tracker: self.clone(),
            ip,
            over,
        }
    }

    /// The `on_connect` hook: counts a new TCP connection against its IP.
    pub fn on_connect(self: &Arc<Self>, conn: &dyn Any, ext: &mut Extensions) {
        type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
        let peer = conn
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .or_else(|| conn.downcast_ref::<Tls>().map(|t| t.get_ref().0))
            .and_then(|s| s.peer_addr().ok());
        if let Some(peer) = peer {
            ext.insert(Arc::new(self.open(peer.ip())));
        }
    }
}

/// A request body that fails once its deadline passes.
struct Deadline {
    inner: Payload,
    base: Duration,
    started: tokio::time::Instant,
    received: u64,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl Deadline {
    fn deadline(&self) -> tokio::time::Instant {
        self.started + self.base + Duration::from_millis(self.received * 1000 / BODY_MIN_RATE)
    }
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                this.received += b.len() as u64;
                let d = this.deadline();
                this.sleep.as_mut().reset(d);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.timed_out.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request body too slow",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

use std::future::Future as _;

/// Counter of bodies cut (also exported as a metric).
pub static BODY_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Middleware: refuses requests on connections beyond their IP's limit, and gives every body
/// its deadline (`base` = `http.body_timeout_ms`).
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let over = req.conn_data::<Arc<ConnTicket>>().is_some_and(|t| t.over);
    if over {
        metrics::counter!("mpay_http_connections_refused_total").increment(1);
        let mut res = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many connections",
            "too many open connections from this address",
        )
        .with_code("TOO_MANY_CONNECTIONS")
        .with_retry_after(1)
        .error_response();
        res.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Ok(req.into_response(res).map_into_right_body());
    }
    let base = req
        .app_data::<actix_web::web::Data<BodyTimeout>>()
        .map(|b| b.0)
        .unwrap_or(Duration::from_secs(10));
    let timed_out = Arc::new(AtomicBool::new(false));
    let started = tokio::time::Instant::now();
    let inner = req.take_payload();
    let deadline = Deadline {
        inner,
        base,
        started,
        received: 0,
        sleep: Box::pin(tokio::time::sleep_until(started + base)),
        timed_out: timed_out.clone(),
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(deadline),
    });
    let res = next.call(req).await?;
    if timed_out.load(Ordering::Acquire) {
        BODY_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("mpay_http_body_timeouts_total").increment(1);
        let (req, _) = res.into_parts();
        let mut res = Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "Request timeout",
            format!(
                "the request body did not arrive in time ({} ms, then one second per {} bytes)",
                base.as_millis(),
                BODY_MIN_RATE
            ),
        )
        .with_code("BODY_TIMEOUT")
        .error_response();
        res.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Ok(ServiceResponse::new(req, res).map_into_right_body());
    }
    Ok(res.map_into_left_body())
}

/// The base body allowance, as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Requests in flight on the routes other than the station's (`http.max_inflight_other`).
#[derive(Debug)]
pub struct OtherInflight {
    limit: usize,
    now: std::sync::atomic::AtomicUsize,
}

impl OtherInflight {
    /// `limit` requests at once (0 = no limit).
    pub fn new(limit: usize) -> Self {
        OtherInflight {
            limit,
            now: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn enter(self: &Arc<Self>) -> Option<InflightSlot> {
        let n = self.now.fetch_add(1, Ordering::AcqRel);
        let slot = InflightSlot(self.clone());
        (self.limit == 0 || n < self.limit).then_some(slot)
    }
}

/// One request's place, given back when the response is done (or the request dropped).
struct InflightSlot(Arc<OtherInflight>);

impl Drop for InflightSlot {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Middleware: every route but the station's (`POST /pagopa/paForNode`) and the health
/// probes (`/health/…`) takes a place among
/// `http.max_inflight_other`; none left → 503 `BUSY`, `Retry-After: 1`. Station requests
/// never wait for one.
pub async fn other_inflight(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    // the station, and the probes a supervisor reads (a busy node is not a dead one)
    let station = (req.path() == crate::wsdl::PA_FOR_NODE_PATH
        && req.method() == actix_web::http::Method::POST)
        || req.path().starts_with("/health/");
    let gate = req
        .app_data::<actix_web::web::Data<OtherInflight>>()
        .map(|d| d.clone().into_inner());
    let slot = match (station, gate) {
        (false, Some(gate)) => match gate.enter() {
            Some(slot) => Some(slot),
            None => {
                metrics::counter!("mpay_http_busy_total").increment(1);
                let res = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Busy",
                    "too many requests in progress, retry shortly",
                )
                .with_code("BUSY")
                .with_retry_after(1)
                .error_response();
                return Ok(req.into_response(res).map_into_right_body());
            }
        },
        _ => None,
    };
    let res = next.call(req).await?;
    // the place is held until the body is sent
    Ok(res
        .map_body(move |_, body| HoldSlot {
            body: actix_web::body::BoxBody::new(body),
            _slot: slot,
        })
        .map_into_left_body())
}

/// A response body that holds its request's in-flight place until it is sent.
struct HoldSlot {
    body: actix_web::body::BoxBody,
    _slot: Option<InflightSlot>,
}

impl MessageBody for HoldSlot {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}
