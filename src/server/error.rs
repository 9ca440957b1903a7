//! The JSON error every HTTP endpoint answers with: `{ "error": "<short>",
//! "detail": "<what and where>" }` plus the matching status code.
//!
//! Every route uses [`ApiError`] (alert webhooks, override, status...), so a
//! client (or an operator with curl) sees one error shape across the whole
//! API. `error` is a stable machine-readable code; `detail` is for humans and
//! never contains a credential. The CLI client reads the same [`ErrorBody`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// `WWW-Authenticate` challenge for bearer tokens (API tokens, source bearer tokens).
pub const CHALLENGE_BEARER: &str = "Bearer realm=\"continuity-agent\"";
/// `WWW-Authenticate` challenge for HTTP Basic.
pub const CHALLENGE_BASIC: &str = "Basic realm=\"continuity-agent\", charset=\"UTF-8\"";

/// Which `WWW-Authenticate` challenges a 401 carries (RFC 9110 §11.6.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Challenges {
    pub bearer: bool,
    pub basic: bool,
}

/// An error answered to an API client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the body is not well-formed (bad JSON syntax, too deep, not UTF-8).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// 401: credentials are missing or wrong.
    #[error("unauthorized: {detail}")]
    Unauthorized {
        detail: String,
        challenges: Challenges,
    },
    /// 403: the credentials are valid but lack the scope this route needs.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such route, or a route that is not configured (deliberately
    /// indistinguishable, so probing does not reveal which sources are enabled).
    #[error("not found: {0}")]
    NotFound(String),
    /// 408: the client did not send its body in time.
    #[error("request timeout: {0}")]
    Timeout(String),
    /// 413: the body is over `agent.max_body`.
    #[error("payload too large: {0}")]
    TooLarge(String),
    /// 415: the body is not declared as JSON.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid (missing fields, wrong types, unknown values).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// 429: this client sends too fast.
    #[error("rate limited: retry after {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    /// 503: the agent cannot take the request now (event queue full); nothing was applied.
    #[error("overloaded: {detail}")]
    Overloaded {
        detail: String,
        retry_after_secs: u64,
    },
    /// 500: a bug or an unexpected internal failure; nothing was applied.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error, as the handlers write it and the CLI client
/// reads it.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
}

impl ApiError {
    /// Convenience for a 401 with the given challenges.
    pub fn unauthorized(detail: impl Into<String>, challenges: Challenges) -> ApiError {
        ApiError::Unauthorized {
            detail: detail.into(),
            challenges,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable short code in the `error` field. It doubles as the `result`
    /// label of `continuity_alerts_received_total`, so logs, metrics and
    /// answers use the same words.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Malformed(_) => "malformed",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Timeout(_) => "timeout",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Invalid(_) => "invalid",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Internal(_) => "internal",
        }
    }

    /// `Retry-After` seconds (429, 503).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Overloaded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// `WWW-Authenticate` challenges (401), one per scheme.
    pub fn www_authenticate(&self) -> Vec<&'static str> {
        match self {
            ApiError::Unauthorized { challenges, .. } => [
                (challenges.bearer, CHALLENGE_BEARER),
                (challenges.basic, CHALLENGE_BASIC),
            ]
            .into_iter()
            .filter_map(|(on, c)| on.then_some(c))
            .collect(),
            _ => Vec::new(),
        }
    }

    /// The human explanation in the `detail` field.
    pub fn detail(&self) -> String {
        match self {
            ApiError::Malformed(d)
            | ApiError::Forbidden(d)
            | ApiError::NotFound(d)
            | ApiError::Timeout(d)
            | ApiError::TooLarge(d)
            | ApiError::UnsupportedMediaType(d)
            | ApiError::Invalid(d)
            | ApiError::Internal(d) => d.clone(),
            ApiError::Unauthorized { detail, .. } | ApiError::Overloaded { detail, .. } => {
                detail.clone()
            }
            ApiError::RateLimited { retry_after_secs } => {
                format!("too many requests from this client; retry after {retry_after_secs}s")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code().to_string(),
            detail: self.detail(),
        };
        let mut resp = (self.status(), axum::Json(&body)).into_response();
        let headers = resp.headers_mut();
        // Several challenges go in separate header fields, one per scheme.
        for c in self.www_authenticate() {
            headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(s) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// First `max` characters of `s` (on a char boundary): client-supplied text is
/// echoed in details and logs only this far.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_carries_one_challenge_per_scheme() {
        let resp = ApiError::unauthorized(
            "missing credentials",
            Challenges {
                bearer: true,
                basic: true,
            },
        )
        .into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let ch: Vec<_> = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(ch, vec![CHALLENGE_BEARER, CHALLENGE_BASIC]);
    }

    #[test]
    fn throttling_errors_carry_retry_after() {
        let resp = ApiError::RateLimited {
            retry_after_secs: 3,
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        let resp = ApiError::Overloaded {
            detail: "queue full".into(),
            retry_after_secs: 1,
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }

    /// The CLI client reads error answers as `ErrorBody`: the handlers'
    /// body must decode as one, code and detail intact.
    #[tokio::test]
    async fn the_body_is_an_error_body() {
        let resp = ApiError::Invalid("ttl: bad".into()).into_response();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            ErrorBody {
                error: "invalid".into(),
                detail: "ttl: bad".into()
            }
        );
    }
}
