//! API keys of the REST API (GPD-style `Ocp-Apim-Subscription-Key` header only: a key in the
//! query string lands in proxy and access logs, so `?subscription-key=` is refused with 401 by
//! [`refuse_key_in_query`] before any route runs). Keys are configured as SHA-256 hashes.
//!
//! - An organization key opens only its own organization's resources.
//! - A broker key (`[[broker.api_keys]]`) opens every organization served by a station of that
//!   broker, optionally only the notices of some segregation codes.
//! - As with GPD's API management, a `segregationCodes` query parameter (comma-separated
//!   2-digit codes) narrows any key further.
//!
//! A notice outside the allowed segregation codes is refused with 403, as GPD does.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest};
use mpay_messages::{NoticeLayout, NoticeNumber, OrgFiscalCode};
use std::future::{ready, Ready};

use crate::problem::Problem;
use crate::state::{AppState, OrgContext};
use std::sync::Arc;

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";

/// The query parameter GPD's API management also read the key from; refused here (see
/// [`refuse_key_in_query`]).
pub const KEY_QUERY_PARAMETER: &str = "subscription-key";

/// Query parameter naming the segregation codes a call is limited to (GPD).
pub const SEGREGATION_CODES_PARAMETER: &str = "segregationCodes";

/// An authenticated caller acting on the organization named in the path
/// (`{organizationfiscalcode}`). Errors: 401 without or with an
/// unknown key, 403 when the key does not open that organization (also when the path's
/// organization does not exist), 400 for a malformed `segregationCodes`.
pub struct OrgAuth {
    /// The organization, as configured.
    pub org: Arc<OrgContext>,
    /// The segregation codes the caller may act on; `None` = every notice of the organization.
    pub segregation_codes: Option<Vec<u8>>,
}

impl OrgAuth {
    /// The organization's fiscal code.
    pub fn fiscal_code(&self) -> &OrgFiscalCode {
        &self.org.fiscal_code
    }

    /// Whether the caller may act on notice `nav` (its segregation code is allowed; a notice
    /// that has no segregation code — aux digit 0, 1, 2, or GPD's looser form — is outside any
    /// restriction).
    pub fn allows(&self, nav: &NoticeNumber) -> bool {
        match &self.segregation_codes {
            None => true,
            Some(_) if !nav.is_pagopa() => false,
            Some(codes) => match nav.layout() {
                NoticeLayout::Aux3 { segregation_code } => codes.contains(&segregation_code),
                _ => false,
            },
        }
    }

    /// Whether notices generated with `layout` fall within the caller's segregation codes.
    pub fn allows_layout(&self, layout: &NoticeLayout) -> bool {
        match (&self.segregation_codes, layout) {
            (None, _) => true,
            (Some(codes), NoticeLayout::Aux3 { segregation_code }) => {
                codes.contains(segregation_code)
            }
            (Some(_), _) => false,
        }
    }

    /// 403 for a position holding a notice outside the caller's segregation codes.
    pub fn check_position(&self, p: &mpay_messages::position::DebtPosition) -> Result<(), Problem> {
        self.check_notices(p.payment_options.iter().map(|o| &o.nav))
    }

    /// 403 naming the first notice outside the caller's segregation codes.
    pub fn check_notices<'a>(
        &self,
        navs: impl IntoIterator<Item = &'a NoticeNumber>,
    ) -> Result<(), Problem> {
        match navs.into_iter().find(|n| !self.allows(n)) {
            None => Ok(()),
            Some(n) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "notice {n} is outside the segregation codes this call may act on ({})",
                    self.codes_text()
                ),
            )
            .with_code("SEGREGATION_CODE_NOT_ALLOWED")),
        }
    }

    fn codes_text(&self) -> String {
        self.segregation_codes
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|c| format!("{c:02}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn presented_key(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// Whether the query string carries the API key (`subscription-key`, in any case).
fn key_in_query(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or("");
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        name.trim().eq_ignore_ascii_case(KEY_QUERY_PARAMETER)
    })
}

/// The problem JSON for a key sent in the query string (401 `API_KEY_IN_QUERY`).
pub fn key_in_query_problem() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        format!(
            "the API key is not accepted in the query string ({KEY_QUERY_PARAMETER}): it would \
             be written to proxy and access logs; send it in the {API_KEY_HEADER} header"
        ),
    )
    .with_code("API_KEY_IN_QUERY")
}

/// Middleware of the REST scopes: a request carrying `subscription-key` in its query string is
/// answered 401 (`API_KEY_IN_QUERY`), whether or not the header is also present, before any
/// extractor or handler runs.
pub async fn refuse_key_in_query(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    if key_in_query(req.query_string()) {
        let res = actix_web::ResponseError::error_response(&key_in_query_problem());
        return Ok(req.into_response(res).map_into_right_body());
    }
    next.call(req).await.map(|r| r.map_into_left_body())
}

/// Reads `segregationCodes=47,97` (repeated parameters are merged). `None` when absent.
fn query_codes(req: &HttpRequest) -> Result<Option<Vec<u8>>, Problem> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let mut codes: Option<Vec<u8>> = None;
    for (_, v) in pairs
        .iter()
        .filter(|(n, _)| n == SEGREGATION_CODES_PARAMETER)
    {
        let list = codes.get_or_insert_with(Vec::new);
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<u8>() {
                Ok(c) if c <= 99 && part.len() <= 2 => list.push(c),
                _ => {
                    return Err(Problem::field(
                        SEGREGATION_CODES_PARAMETER,
                        format!(
                            "must be 2-digit segregation codes separated by commas, got {part:?}"
                        ),
                    )
                    .with_code("INVALID_QUERY"))
                }
            }
        }
    }
    Ok(codes)
}

/// 429 `AUTH_THROTTLED` with `Retry-After` for a client with too many failed authentications.
pub fn throttled_problem(wait: std::time::Duration) -> Problem {
    let secs = wait.as_secs().max(1);
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        format!("too many failed authentications from this client: retry in {secs} s"),
    )
    .with_code("AUTH_THROTTLED")
    .with_retry_after(secs)
}

fn path_org(req: &HttpRequest) -> &str {
    req.match_info().get("organizationfiscalcode").unwrap_or("")
}

fn authenticate(req: &HttpRequest) -> Result<OrgAuth, Problem> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| Problem::internal("application state missing"))?;
    let key = presented_key(req)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                format!("missing API key: send it in the {API_KEY_HEADER} header"),
            )
        })?;
    let attempt =
        crate::throttle::Attempt::api_key(state.station_access.request_client_ip(req), &key);
    if let Some(wait) = state.throttle.check(&attempt) {
        return Err(throttled_problem(wait));
    }
    let path_org = path_org(req);
    let forbidden = || {
        Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("this API key does not give access to organization {path_org}"),
        )
    };
    let (org, key_codes) = if let Some(owner) = state.org_for_key(&key) {
        if owner.fiscal_code.as_str() != path_org {
            return Err(forbidden());
        }
        (owner, None)
    } else if let Some(broker) = state.broker_for_key(&key) {
        if !broker.organizations.contains(path_org) {
            return Err(forbidden());
        }
        let org = state.orgs.get(path_org).cloned().ok_or_else(forbidden)?;
        let codes =
            (!broker.segregation_codes.is_empty()).then(|| broker.segregation_codes.clone());
        (org, codes)
    } else {
        state.throttle.failed(&attempt);
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "unknown API key",
        ));
    };
    let segregation_codes = match (key_codes, query_codes(req)?) {
        (None, q) => q,
        (Some(k), None) => Some(k),
        (Some(k), Some(q)) => Some(q.into_iter().filter(|c| k.contains(c)).collect()),
    };
    Ok(OrgAuth {
        org,
        segregation_codes,
    })
}

impl FromRequest for OrgAuth {
    type Error = Problem;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}
