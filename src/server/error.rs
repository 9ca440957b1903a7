//! The API's error answer: `{ "error": "...", "detail": "..." }` with the
//! status code of the contract (400 malformed, 401 credentials, 403 scope,
//! 413 too large, 415 content type, 422 invalid, 429 rate, 503 overloaded).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {error}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
    /// Seconds, for 429/503.
    pub retry_after: Option<u64>,
    /// Scheme for 401 (`Bearer`, `Basic realm="continuity-agent"`).
    pub www_authenticate: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    detail: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            detail: detail.into(),
            retry_after: None,
            www_authenticate: None,
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError {
            www_authenticate: Some("Bearer"),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
        }
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn invalid(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(Body {
                error: self.error,
                detail: &self.detail,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(scheme) = self.www_authenticate {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
        }
        resp
    }
}

/// axum's JSON extractor failures, in the contract's terms.
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad_request(format!("body is not valid JSON: {}", e.body_text()))
            }
            JsonRejection::JsonDataError(e) => ApiError::invalid(e.body_text()),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "request body exceeds agent.max_body",
                )
            }
            other => ApiError::bad_request(other.body_text()),
        }
    }
}
