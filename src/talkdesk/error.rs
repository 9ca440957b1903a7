//! Errors of the Talkdesk client, classified for the actuator's retry loop.
//!
//! Every failure is one [`TalkdeskError`]. The actuator only asks two
//! questions of it: [`TalkdeskError::is_retryable`] (try again later, or wait
//! for the config or desired state to change) and
//! [`TalkdeskError::retry_after`] (how long the server asked us to wait).
//! Messages never contain credentials or tokens: the only strings carried are
//! Talkdesk's own error bodies, URLs without query strings, and transport
//! error descriptions.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which Talkdesk call failed; also the `op` label of the request metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Token,
    GetSettings,
    PutSettings,
    GetActivation,
    PutActivation,
}

impl Op {
    pub const ALL: [Op; 5] = [
        Op::Token,
        Op::GetSettings,
        Op::PutSettings,
        Op::GetActivation,
        Op::PutActivation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Token => "token",
            Op::GetSettings => "get_settings",
            Op::PutSettings => "put_settings",
            Op::GetActivation => "get_activation",
            Op::PutActivation => "put_activation",
        }
    }

    /// True for calls that change Talkdesk (the ones `dry_run` suppresses).
    pub fn is_write(self) -> bool {
        matches!(self, Op::PutSettings | Op::PutActivation)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `fields` in a Talkdesk error body: which input was wrong and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// Talkdesk's documented error body: `{code, message, description, fields}`.
///
/// Every field is optional on parse: a proxy or load balancer in front of the
/// API may answer with HTML or an empty body, and we still want the status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

impl ApiErrorBody {
    /// Parse a response body; anything that is not the documented JSON shape
    /// is kept (shortened) as the message so operators still see it.
    pub fn parse(body: &[u8]) -> ApiErrorBody {
        if let Ok(parsed) = serde_json::from_slice::<ApiErrorBody>(body)
            && parsed != ApiErrorBody::default()
        {
            return parsed;
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        ApiErrorBody {
            message: (!text.is_empty()).then(|| shorten(text, 200)),
            ..ApiErrorBody::default()
        }
    }
}

impl fmt::Display for ApiErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(code) = &self.code {
            write!(f, "[{code}]")?;
            sep = " ";
        }
        if let Some(m) = &self.message {
            write!(f, "{sep}{m}")?;
            sep = " ";
        }
        if let Some(d) = &self.description {
            write!(f, "{sep}({d})")?;
            sep = " ";
        }
        if !self.fields.is_empty() {
            write!(f, "{sep}fields:")?;
            for (i, fe) in self.fields.iter().enumerate() {
                let comma = if i == 0 { " " } else { "; " };
                write!(f, "{comma}{}: {}", fe.name, fe.description)?;
            }
            sep = " ";
        }
        if sep.is_empty() {
            f.write_str("no error body")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TalkdeskError {
    /// The API answered with a non-success status.
    #[error("Talkdesk {op} failed with HTTP {status}: {body}")]
    Api {
        op: Op,
        status: u16,
        body: ApiErrorBody,
        retry_after: Option<Duration>,
    },
    /// The token endpoint refused to issue a token (`{error, error_description}`).
    #[error("Talkdesk token request failed with HTTP {status}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Token {
        status: u16,
        error: String,
        description: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("Talkdesk {op} timed out after {}", humantime::format_duration(*timeout))]
    Timeout { op: Op, timeout: Duration },
    /// Connection refused or reset, DNS failure, TLS failure, or the server
    /// closed the connection before answering.
    #[error("Talkdesk {op}: connection failed: {detail}")]
    Connection { op: Op, detail: String },
    /// A success status with a body we cannot understand.
    #[error("Talkdesk {op}: unexpected response (HTTP {status}): {detail}")]
    Decode { op: Op, status: u16, detail: String },
    /// A write was answered with success, but what Talkdesk stored (its
    /// answer, or a read-back) routes callers differently from what was sent.
    #[error(
        "Talkdesk {op} answered {status} but stored something else: sent {sent}, stored {stored}"
    )]
    Mismatch {
        op: Op,
        status: u16,
        sent: String,
        stored: String,
    },
    /// The desired state names a profile the configuration does not have.
    #[error("unknown profile {0:?}")]
    UnknownProfile(String),
    /// The client configuration is unusable (missing account, bad URL...).
    #[error("invalid Talkdesk configuration: {0}")]
    Config(String),
    /// Writing the break-glass report failed.
    #[error("cannot write output: {0}")]
    Output(String),
}

impl TalkdeskError {
    /// Whether trying the same call again later can succeed.
    ///
    /// - 5xx, 429, 408, timeouts, connection failures: yes (transient).
    /// - 401 (after the client already refreshed its token once): yes, with
    ///   backoff. Talkdesk documents that a newly granted scope takes minutes
    ///   to apply and returns 401 meanwhile; giving up would leave the
    ///   fallback in the wrong state.
    /// - 400, 403, 404, 405, 409, 422 and other 4xx: no. The same request will
    ///   fail the same way until the config or the desired state changes.
    /// - An unparsable success body: yes (a proxy's error page, a deploy).
    pub fn is_retryable(&self) -> bool {
        match self {
            TalkdeskError::Api { status, .. } | TalkdeskError::Token { status, .. } => {
                status_is_retryable(*status)
            }
            TalkdeskError::Timeout { .. }
            | TalkdeskError::Connection { .. }
            | TalkdeskError::Decode { .. }
            | TalkdeskError::Mismatch { .. } => true,
            TalkdeskError::UnknownProfile(_)
            | TalkdeskError::Config(_)
            | TalkdeskError::Output(_) => false,
        }
    }

    /// The token endpoint refused our client credentials (401/403): only the
    /// operator can fix it (`talkdesk.client_id` / `client_secret`).
    pub fn rejects_credentials(&self) -> bool {
        matches!(
            self,
            TalkdeskError::Token {
                status: 401 | 403,
                ..
            }
        )
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TalkdeskError::Api { retry_after, .. } | TalkdeskError::Token { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            TalkdeskError::Api { status, .. }
            | TalkdeskError::Token { status, .. }
            | TalkdeskError::Decode { status, .. }
            | TalkdeskError::Mismatch { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Talkdesk's field errors (validation failures), if any.
    pub fn fields(&self) -> &[FieldError] {
        match self {
            TalkdeskError::Api { body, .. } => &body.fields,
            _ => &[],
        }
    }

    /// Short machine-readable kind: the `kind` label of `actuation_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            TalkdeskError::Api { status, .. } => match status {
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                429 => "rate_limited",
                500..=599 => "server_error",
                _ => "rejected",
            },
            TalkdeskError::Token { .. } => "token",
            TalkdeskError::Timeout { .. } => "timeout",
            TalkdeskError::Connection { .. } => "connection",
            TalkdeskError::Decode { .. } => "decode",
            TalkdeskError::Mismatch { .. } => "mismatch",
            TalkdeskError::UnknownProfile(_) => "unknown_profile",
            TalkdeskError::Config(_) => "config",
            TalkdeskError::Output(_) => "output",
        }
    }
}

fn status_is_retryable(status: u16) -> bool {
    matches!(status, 401 | 408 | 429) || (500..=599).contains(&status)
}

pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> TalkdeskError {
        TalkdeskError::Api {
            op: Op::PutSettings,
            status,
            body: ApiErrorBody::default(),
            retry_after: None,
        }
    }

    #[test]
    fn retryable_classification() {
        for s in [401, 408, 429, 500, 502, 503, 504] {
            assert!(api(s).is_retryable(), "{s}");
        }
        for s in [400, 403, 404, 405, 409, 422] {
            assert!(!api(s).is_retryable(), "{s}");
        }
        assert!(
            TalkdeskError::Timeout {
                op: Op::Token,
                timeout: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(!TalkdeskError::UnknownProfile("x".into()).is_retryable());
    }

    #[test]
    fn error_body_parses_talkdesk_shape_and_falls_back_to_text() {
        let b = ApiErrorBody::parse(
            br#"{"code":"1400","message":"Bad request","fields":[{"name":"forward.+1","description":"not E.164"}]}"#,
        );
        assert_eq!(b.code.as_deref(), Some("1400"));
        assert_eq!(b.fields.len(), 1);
        assert_eq!(
            b.to_string(),
            "[1400] Bad request fields: forward.+1: not E.164"
        );
        let b = ApiErrorBody::parse(b"<html>bad gateway</html>");
        assert_eq!(b.message.as_deref(), Some("<html>bad gateway</html>"));
        assert_eq!(ApiErrorBody::parse(b"").to_string(), "no error body");
        // JSON of another shape is kept as text rather than lost.
        let b = ApiErrorBody::parse(br#"{"error":"rate limited"}"#);
        assert_eq!(b.message.as_deref(), Some(r#"{"error":"rate limited"}"#));
    }
}
