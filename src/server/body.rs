//! Request bodies: read under a size limit and a timeout, then checked as
//! JSON (media type, encoding, nesting depth) before any typed decoding.
//!
//! Every body-taking route (the alert webhooks, `PUT /v1/override`) goes
//! through these, so they refuse the same things with the same answers: 413
//! over `agent.max_body`, 408 when the body is slow, 415 unless the body is
//! declared JSON and uncompressed, 400 when it is not well-formed, 422 when it
//! is well-formed but not what the route takes.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::error::{ApiError, truncate};

/// Why a JSON body was rejected. Syntax problems are the client's encoder's
/// fault (400); shape problems are the sender's configuration (422). The
/// webhook parsers (`alerts::Source::parse`) report their findings with it too.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed JSON (syntax, truncation, nesting deeper than 128, not UTF-8).
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but not what this route (or alert source) takes.
    #[error("{0}")]
    Invalid(String),
}

impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        // serde_json's message already says where ("at line 1 column 42").
        match e.classify() {
            Category::Data => ParseError::Invalid(e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => ParseError::Malformed(e.to_string()),
        }
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Malformed(d) => ApiError::Malformed(d),
            ParseError::Invalid(d) => ApiError::Invalid(d),
        }
    }
}

/// Deepest JSON nesting accepted. Real payloads nest fewer than 8 levels.
pub const MAX_DEPTH: usize = 64;

/// Rejects bodies that are not well-formed JSON, or nest deeper than
/// [`MAX_DEPTH`], *before* any typed parsing, so that:
/// - a syntax error anywhere is a 400, even when a type error comes first in
///   the document (the typed parsers stop at the first problem);
/// - deep nesting is a 400 everywhere. serde_json's own limit (128) covers
///   typed and `Value` parsing, but it skips ignored fields iteratively without
///   a limit; this byte scan (no recursion, no allocation) closes that gap.
pub fn check_well_formed(body: &[u8]) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::Malformed(format!(
                        "JSON nests deeper than {MAX_DEPTH} levels (at byte {i})"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    // Syntax of the whole document (iterative in serde_json: no stack risk).
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| ParseError::Malformed(e.to_string()))
}

/// The accepted JSON media types. Anything else is a 415.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    /// `application/json` or any other `application/*+json`.
    Json,
    /// `application/cloudevents+json`: one CloudEvent in structured mode.
    CloudEvent,
    /// `application/cloudevents-batch+json`: an array of CloudEvents.
    CloudEventBatch,
}

impl MediaType {
    /// Parses a `Content-Type` value. Parameters other than `charset` are
    /// ignored; a charset must be UTF-8, since JSON on the wire is UTF-8
    /// (RFC 8259 §8.1) and we decode nothing else.
    pub fn parse(value: &str) -> Result<MediaType, String> {
        let mut parts = value.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        for p in parts {
            let Some((name, v)) = p.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("charset") {
                let v = v.trim().trim_matches('"');
                if !v.eq_ignore_ascii_case("utf-8") && !v.eq_ignore_ascii_case("utf8") {
                    return Err(format!("charset {v:?} is not supported; send UTF-8"));
                }
            }
        }
        let Some((ty, subtype)) = essence.split_once('/') else {
            return Err(format!(
                "{essence:?} is not a media type; send application/json"
            ));
        };
        if ty != "application" {
            return Err(format!("{essence:?} is not JSON; send application/json"));
        }
        match subtype {
            "json" => Ok(MediaType::Json),
            "cloudevents+json" => Ok(MediaType::CloudEvent),
            "cloudevents-batch+json" => Ok(MediaType::CloudEventBatch),
            s if s.ends_with("+json") && s.len() > "+json".len() => Ok(MediaType::Json),
            _ => Err(format!("{essence:?} is not JSON; send application/json")),
        }
    }
}

/// The request's media type: exactly one `Content-Type`, JSON (415 otherwise).
pub fn media_type(headers: &HeaderMap) -> Result<MediaType, ApiError> {
    let mut content_types = headers.get_all(header::CONTENT_TYPE).iter();
    let media = content_types.next().ok_or_else(|| {
        ApiError::UnsupportedMediaType("missing Content-Type; send application/json".into())
    })?;
    if content_types.next().is_some() {
        // Proxies and parsers may disagree on which one counts: refuse to guess.
        return Err(ApiError::UnsupportedMediaType(
            "several Content-Type headers; send exactly one".into(),
        ));
    }
    media
        .to_str()
        .map_err(|_| ApiError::UnsupportedMediaType("Content-Type is not ASCII".into()))
        .and_then(|v| MediaType::parse(v).map_err(ApiError::UnsupportedMediaType))
}

/// Decodes a JSON request body (override...) with the same rules as the
/// webhooks: 415 unless the media type is JSON and the body uncompressed, 400
/// if not well-formed (or nested deeper than [`MAX_DEPTH`]), 422 if it does
/// not fit `T`. Read the body with [`read_body`] first.
pub fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    media_type(headers)?;
    check_content_encoding(headers)?;
    check_well_formed(body)?;
    Ok(serde_json::from_slice(body).map_err(ParseError::from)?)
}

/// Compressed bodies are refused (415) rather than misread as bad JSON: no
/// supported sender compresses webhooks, and inflating would bypass the
/// body limit.
pub fn check_content_encoding(headers: &HeaderMap) -> Result<(), ApiError> {
    for v in headers.get_all(header::CONTENT_ENCODING) {
        let v = v.to_str().unwrap_or("?").trim();
        if !v.is_empty() && !v.eq_ignore_ascii_case("identity") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding {:?} is not supported; send the body uncompressed",
                truncate(v, 32)
            )));
        }
    }
    Ok(())
}

/// Reads the body, refusing it as soon as it passes `max` bytes (a declared
/// `Content-Length` over the limit is refused before reading anything), and
/// giving up with 408 after `timeout`. Every body-taking route reads with it,
/// so each answers 413/408 with the same JSON error.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::TooLarge(format!(
            "the body is over the {max}-byte limit (agent.max_body)"
        ))
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(too_large());
    }
    let read = async {
        let mut buf = BytesMut::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::Malformed(format!("could not read the body: {e}")))?;
            if buf.len() + chunk.len() > max {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| {
        ApiError::Timeout(format!(
            "the body did not arrive within {}s",
            timeout.as_secs()
        ))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_limit() {
        let nest = |n: usize| {
            format!(
                "{{\"id\":\"a\",\"status\":\"firing\",\"x\":{}1{}}}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(matches!(
            check_well_formed(nest(MAX_DEPTH - 1).as_bytes()),
            Ok(())
        ));
        assert!(matches!(
            check_well_formed(nest(MAX_DEPTH).as_bytes()),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn json_body_helper_for_other_routes() {
        use axum::http::{HeaderMap, HeaderValue, StatusCode};
        #[derive(Debug, serde::Deserialize)]
        struct Override {
            #[allow(dead_code)]
            state: String,
        }
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        assert!(json_body::<Override>(&h, br#"{"state":"active"}"#).is_ok());
        let status =
            |body: &[u8], h: &HeaderMap| json_body::<Override>(h, body).unwrap_err().status();
        assert_eq!(status(b"{", &h), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(br#"{"state":1}"#, &h),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(br#"{"state":"x"}"#, &HeaderMap::new()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn media_types() {
        for (ct, want) in [
            ("application/json", Some(MediaType::Json)),
            ("application/json; charset=utf-8", Some(MediaType::Json)),
            ("Application/JSON;charset=\"UTF-8\"", Some(MediaType::Json)),
            ("application/vnd.pagerduty+json", Some(MediaType::Json)),
            ("application/cloudevents+json", Some(MediaType::CloudEvent)),
            (
                "application/cloudevents-batch+json",
                Some(MediaType::CloudEventBatch),
            ),
            ("application/json; charset=latin1", None),
            ("text/plain", None),
            ("application/x-www-form-urlencoded", None),
            ("application/+json", None),
            ("", None),
            ("json", None),
        ] {
            assert_eq!(MediaType::parse(ct).ok(), want, "{ct}");
        }
    }
}
