//! Per-organization API keys (GPD-style `Ocp-Apim-Subscription-Key` header, or the
//! `subscription-key` query parameter). Keys are configured as SHA-256 hashes; a key opens only
//! its own organization's resources.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest};
use mpay_messages::OrgFiscalCode;
use std::future::{ready, Ready};

use crate::problem::Problem;
use crate::state::{AppState, OrgContext};
use std::sync::Arc;

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";

/// An authenticated caller acting on the organization named in the path
/// (`{organizationfiscalcode}`). Errors: 401 without or with an unknown key, 403 when the key
/// belongs to another organization (also when the path's organization does not exist).
pub struct OrgAuth {
    /// The organization, as configured.
    pub org: Arc<OrgContext>,
}

impl OrgAuth {
    /// The organization's fiscal code.
    pub fn fiscal_code(&self) -> &OrgFiscalCode {
        &self.org.fiscal_code
    }
}

fn presented_key(req: &HttpRequest) -> Option<String> {
    if let Some(v) = req.headers().get(API_KEY_HEADER) {
        return v.to_str().ok().map(|s| s.trim().to_string());
    }
    let q = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()?;
    q.get("subscription-key").cloned()
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
    let owner = state
        .org_for_key(&key)
        .ok_or_else(|| Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", "unknown API key"))?;
    let path_org = req.match_info().get("organizationfiscalcode").unwrap_or("");
    if owner.fiscal_code.as_str() != path_org {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("this API key does not give access to organization {path_org}"),
        ));
    }
    Ok(OrgAuth { org: owner })
}

impl FromRequest for OrgAuth {
    type Error = Problem;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}
