//! Warnings in a REST answer: what the platform normalised instead of refusing (texts with
//! control characters, blanks or over their pagoPA length). They travel in the JSON body as
//! `warnings: [{field, message}]` (only when there are some) and, for clients that only look at
//! headers, as one `Warning: 299 mpay "<field>: <message>"` header each (RFC 7234 form).

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::problem::FieldError;

/// The JSON answer `body` with `warnings` added when there are any.
pub fn json_with_warnings<T: Serialize>(
    status: StatusCode,
    body: &T,
    warnings: &[FieldError],
) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    if warnings.is_empty() {
        return res.json(body);
    }
    for w in warnings {
        let text = format!("299 mpay \"{}: {}\"", w.field, w.message)
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect::<String>();
        if let Ok(v) = HeaderValue::from_str(&text) {
            res.append_header((HeaderName::from_static("warning"), v));
        }
    }
    let mut value = serde_json::to_value(body).unwrap_or_default();
    if let Some(o) = value.as_object_mut() {
        o.insert(
            "warnings".into(),
            serde_json::to_value(warnings).unwrap_or_default(),
        );
    }
    res.json(value)
}
