//! RFC 7807 problem JSON (`application/problem+json`), the one error shape of the REST API
//! (GPD `ProblemJson`: title, status, detail), extended with the offending field(s).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use mpay_storage::LedgerError;
use serde::Serialize;

/// One invalid field: a JSON path (`paymentOption[0].transfer[1].amount`) and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field in the request.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A problem answer (RFC 7807).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Problem type URI (`about:blank` when the title says it all).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary (e.g. `Invalid request`).
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Human-readable explanation of this occurrence.
    pub detail: String,
    /// Invalid fields, when the request was rejected for its content.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem with the given status, title and detail.
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank".into(),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 400 naming the invalid fields; `detail` repeats the first one.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .first()
            .map(|e| format!("{}: {}", e.field, e.message))
            .unwrap_or_else(|| "invalid request".into());
        Problem {
            errors,
            ..Problem::new(StatusCode::BAD_REQUEST, "Invalid request", detail)
        }
    }

    /// 400 for one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem::invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "Not found", detail)
    }

    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, "Conflict", detail)
    }

    /// 500 without internals in the answer (they go to the log).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "the request could not be completed; it has been logged",
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("application/problem+json")
            .json(self)
    }
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NotFound => Problem::not_found("debt position not found"),
            LedgerError::AlreadyExists(_)
            | LedgerError::NoticeInUse { .. }
            | LedgerError::IuvInUse { .. }
            | LedgerError::Rule(_) => Problem::conflict(e.to_string()),
            LedgerError::Contended => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Busy", e.to_string())
            }
            LedgerError::SequenceExhausted(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IUV sequence exhausted",
                e.to_string(),
            ),
            LedgerError::Storage(s) => Problem::internal(s),
        }
    }
}
