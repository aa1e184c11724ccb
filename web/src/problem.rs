//! RFC 7807 problem JSON (`application/problem+json`), the one error shape of the REST API
//! (GPD `ProblemJson`: title, status, detail), extended with a stable machine `code` and the
//! offending field(s). Messages are English and speak the user's terms (amounts are integer
//! cents, dates `YYYY-MM-DD`); JSON decoder and query-string errors are translated here, once.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use mpay_messages::domain::PositionError;
use mpay_storage::LedgerError;
use serde::{Deserialize, Serialize};

/// One invalid field: a JSON path (`paymentOption[0].transfer[1].amount`) and why.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Stable machine-readable code (`INVALID_REQUEST`, `INVALID_JSON`, `UNKNOWN_QUERY_PARAMETER`,
    /// `INVALID_QUERY`, `UNAUTHORIZED`, `FORBIDDEN`, `NOT_FOUND`, `METHOD_NOT_ALLOWED`, `CONFLICT`,
    /// `INVALID_STATE`, `PAYLOAD_TOO_LARGE`, `BUSY`, `INTERNAL_ERROR`, …).
    pub code: &'static str,
    /// Human-readable explanation of this occurrence (English).
    pub detail: String,
    /// Invalid fields, when the request was rejected for its content.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds for the `Retry-After` header (429 / 503), not in the body.
    #[serde(skip)]
    /// (`NonZeroU16` keeps `Problem` as small as before: it is the error of many `Result`s.)
    pub retry_after: Option<std::num::NonZeroU16>,
}

impl Problem {
    /// A problem with the given status, title and detail.
    /// The `code` is the status's default ([`default_code`]); see [`Problem::with_code`].
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank".into(),
            title: title.into(),
            status: status.as_u16(),
            code: default_code(status),
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// The same problem with a `Retry-After` header of `secs` seconds.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        let secs = u16::try_from(secs.max(1)).unwrap_or(u16::MAX);
        self.retry_after = std::num::NonZeroU16::new(secs);
        self
    }

    /// The same problem with another stable `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// 400 for a body that is not JSON at all (names the `body`, says where it breaks).
    pub fn from_json_error(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return Problem::field(
                "body",
                format!(
                    "is not valid JSON (line {}, column {}): {}",
                    inner.line(),
                    inner.column(),
                    strip_position(&inner.to_string())
                ),
            )
            .with_code("INVALID_JSON");
        }
        let (field, message) = translate_serde(&path, &strip_position(&inner.to_string()));
        Problem::field(field, message)
    }

    /// 400 for a query string serde could not read (the list endpoint reads its own).
    pub fn from_query_error(message: &str) -> Self {
        if let Some(name) = between(message, "unknown field `", "`") {
            return Problem::field(name, "unknown query parameter")
                .with_code("UNKNOWN_QUERY_PARAMETER");
        }
        let (field, message) = translate_serde(".", message);
        let field = if field == "body" {
            "query".to_string()
        } else {
            field
        };
        Problem::field(field, message).with_code("INVALID_QUERY")
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
        let mut res = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after {
            res.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        res.content_type("application/problem+json").json(self)
    }
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NotFound => Problem::not_found("debt position not found"),
            LedgerError::AlreadyExists(_)
            | LedgerError::NoticeInUse { .. }
            | LedgerError::IuvInUse { .. } => Problem::conflict(e.to_string()),
            LedgerError::Rule(rule) => {
                let code = match rule {
                    PositionError::InvalidState { .. } => "INVALID_STATE",
                    PositionError::ManagedByArchive => "MANAGED_BY_ARCHIVE",
                    PositionError::PaymentInProgress { .. } => "PAYMENT_IN_PROGRESS",
                };
                Problem::conflict(rule.to_string()).with_code(code)
            }
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

/// The default stable `code` of a status.
pub fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "CONFLICT",
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        422 => "UNPROCESSABLE",
        429 => "TOO_MANY_REQUESTS",
        503 => "BUSY",
        500..=599 => "INTERNAL_ERROR",
        _ => "ERROR",
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message.get(..i).unwrap_or(message).to_string(),
        None => message.to_string(),
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let rest = s.get(from..)?;
    rest.get(..rest.find(end)?)
}

fn join_path(path: &str, name: &str) -> String {
    if path.is_empty() || path == "." {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Whether a JSON field holds money (integer cents).
fn is_amount_field(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last).to_ascii_lowercase();
    last.ends_with("amount") || last.ends_with("fee")
}

/// A serde "expected" in user terms.
fn expected_in_words(path: &str, expected: &str) -> String {
    let integer = matches!(
        expected,
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize"
    );
    if integer && is_amount_field(path) {
        return "an amount in integer euro cents (e.g. 12050 for 120.50 euro)".into();
    }
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".into(),
        e if integer || e == "an integer" => "a whole number".into(),
        "a string" => "a text in double quotes".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list [ … ]".into(),
        e if e.starts_with("struct ") || e == "a map" => "an object { … }".into(),
        e => e.to_string(),
    }
}

/// A serde "unexpected" value in user terms.
fn got_in_words(got: &str) -> String {
    if let Some(v) = got.strip_prefix("floating point ") {
        return format!("the decimal number {}", v.trim_matches('`'));
    }
    if let Some(v) = got.strip_prefix("integer ") {
        return format!("the number {}", v.trim_matches('`'));
    }
    if let Some(v) = got.strip_prefix("string ") {
        return format!("the text {v}");
    }
    if let Some(v) = got.strip_prefix("boolean ") {
        return v.trim_matches('`').to_string();
    }
    match got {
        "null" => "null".into(),
        "sequence" => "a list".into(),
        "map" => "an object".into(),
        g => g.to_string(),
    }
}

/// Translates a serde error message at `path` into (field, message) in the user's terms.
fn translate_serde(path: &str, message: &str) -> (String, String) {
    let field = if path.is_empty() || path == "." {
        "body".to_string()
    } else {
        path.to_string()
    };
    if let Some(name) = between(message, "missing field `", "`") {
        return (join_path(path, name), "is required".into());
    }
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    {
        if let Some((got, expected)) = rest.split_once(", expected ") {
            return (
                field.clone(),
                format!(
                    "must be {}, got {}",
                    expected_in_words(&field, expected),
                    got_in_words(got)
                ),
            );
        }
    }
    if let Some(variant) = between(message, "unknown variant `", "`") {
        let expected = message
            .split_once("expected ")
            .map(|(_, e)| e.replace('`', ""))
            .unwrap_or_default();
        return (
            field,
            format!("{variant:?} is not allowed; expected {expected}"),
        );
    }
    if message.contains("invalid digit") || message.contains("cannot parse integer") {
        return (field, "must be a whole number".into());
    }
    if message.contains("number out of range") || message.contains("too large") {
        return (field, "the number is out of range".into());
    }
    (field, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> Problem {
        let mut de = serde_json::Deserializer::from_str(body);
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Opt {
            amount: i64,
            label: String,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            #[serde(rename = "type")]
            kind: String,
            #[serde(rename = "paymentOption")]
            payment_option: Vec<Opt>,
        }
        match serde_path_to_error::deserialize::<_, Body>(&mut de) {
            Ok(b) => panic!("decoded {b:?}"),
            Err(e) => Problem::from_json_error(e),
        }
    }

    #[test]
    fn a_decimal_amount_is_explained_in_cents() {
        let p = decode(r#"{"type":"F","paymentOption":[{"amount":120.50,"label":"x"}]}"#);
        assert_eq!(p.code, "INVALID_REQUEST");
        assert_eq!(p.errors[0].field, "paymentOption[0].amount");
        assert_eq!(
            p.errors[0].message,
            "must be an amount in integer euro cents (e.g. 12050 for 120.50 euro), got the decimal number 120.5"
        );
        assert!(!p.detail.contains("i64"), "{}", p.detail);
    }

    #[test]
    fn a_missing_field_is_named_with_its_path() {
        let p = decode(r#"{"paymentOption":[{"amount":1,"label":"x"}]}"#);
        assert_eq!(p.errors[0].field, "type");
        assert_eq!(p.errors[0].message, "is required");
        let p = decode(r#"{"type":"F","paymentOption":[{"amount":1}]}"#);
        assert_eq!(p.errors[0].field, "paymentOption[0].label");
        assert!(!p.detail.contains("line"), "{}", p.detail);
    }

    #[test]
    fn a_syntax_error_names_the_body_and_the_place() {
        let p = decode(r#"{"type":"F",}"#);
        assert_eq!(p.code, "INVALID_JSON");
        assert_eq!(p.errors[0].field, "body");
        assert!(
            p.errors[0]
                .message
                .starts_with("is not valid JSON (line 1, column 13)"),
            "{}",
            p.errors[0].message
        );
    }

    #[test]
    fn a_wrong_type_says_what_is_expected() {
        let p = decode(r#"{"type":5,"paymentOption":[]}"#);
        assert_eq!(p.errors[0].field, "type");
        assert_eq!(
            p.errors[0].message,
            "must be a text in double quotes, got the number 5"
        );
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let p = Problem::from_query_error("unknown field `topublish`, expected `toPublish`");
        assert_eq!(p.code, "UNKNOWN_QUERY_PARAMETER");
        assert_eq!(p.errors[0].field, "topublish");
    }
}
