//! A generic JSON webhook, optionally signed.
//!
//! The body (schema `version` 1; fields are only ever added) carries the
//! message in words and the facts behind it:
//!
//! ```json
//! {"version": 1, "id": "…", "event": "activate", "resolved": false,
//!  "severity": "critical", "at": "2025-11-30T22:00:00.000Z",
//!  "instance": "replica-a", "account": "acme", "dry_run": false,
//!  "title": "Fallback ON: backup", "text": "The fallback was switched ON …",
//!  "reasons": ["trunks-down: …"], "callers_get": "…",
//!  "status_url": "https://…", "incident_key": "continuity-agent/acme/fallback/…",
//!  "fallback": {"state": "active", "profile": "backup"},
//!  "detail": {…}}
//! ```
//!
//! `detail` depends on `event` (see `docs/notifications.md`).
//!
//! **Signature.** With `hmac_secret`, each attempt carries
//! `X-Continuity-Timestamp: <unix seconds>` and
//! `X-Continuity-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`:
//! the receiver recomputes it over the raw body, compares in constant time,
//! and refuses a timestamp older than a few minutes, so a captured request
//! cannot be replayed later.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::message::Message;
use super::notice::{Notice, StuckPhase, What};

/// The schema version of the body.
pub const VERSION: u32 = 1;
pub const SIGNATURE_HEADER: &str = "X-Continuity-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Continuity-Timestamp";

pub fn payload(m: &Message, n: &Notice) -> Value {
    json!({
        "version": VERSION,
        "id": m.id,
        "event": m.event.as_str(),
        "resolved": m.resolved,
        "severity": m.severity.as_str(),
        "at": m.at.to_string(),
        "instance": m.instance,
        "account": m.account,
        "dry_run": m.dry_run,
        "title": m.title,
        "text": m.changed,
        "reasons": m.why,
        "callers_get": m.callers,
        "status_url": m.link,
        "incident_key": m.incident,
        "fallback": n.desired,
        "detail": detail(n),
    })
}

/// The facts behind each kind of notice.
fn detail(n: &Notice) -> Value {
    let at = |t: Option<crate::domain::Timestamp>| t.map(|t| t.to_string());
    match &n.what {
        What::Decision {
            previous,
            cause,
            reasons,
            activation,
        } => json!({
            "previous": previous,
            "cause": cause.as_str(),
            "reasons": reasons,
            "active_since": at(*activation),
        }),
        What::Stuck {
            phase,
            after,
            since,
            attempts,
            last_error,
            blocked,
            talkdesk_enabled,
        } => json!({
            "phase": match phase {
                StuckPhase::Started => "started",
                StuckPhase::Ended => "ended",
                StuckPhase::Settled => "settled",
            },
            "stuck_after_s": after.as_secs(),
            "since": at(*since),
            "attempts": attempts,
            "last_error": last_error,
            "blocked": blocked,
            "talkdesk_enabled": talkdesk_enabled,
        }),
        What::Flap {
            since,
            profile,
            detail,
            resolved,
        } => json!({
            "latched_since": since.to_string(),
            "profile": profile,
            "reason": detail,
            "released": resolved,
        }),
        What::Blind {
            since,
            detail,
            resolved,
        } => json!({
            "since": since.to_string(),
            "reason": detail,
            "released": resolved,
        }),
        What::Drift {
            action,
            talkdesk,
            until,
        } => json!({
            "action": action.as_str(),
            "talkdesk": talkdesk,
            "until": at(*until),
        }),
    }
}

/// `sha256=<hex>`: HMAC-SHA256 with `secret` of `"<timestamp>.<body>"`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::tests::{activation, context};

    #[test]
    fn the_webhook_body_has_the_documented_shape() {
        let n = activation();
        let m = Message::new(&n, &context(), "0123abcd".into());
        let want = json!({
            "version": 1,
            "id": "0123abcd",
            "event": "activate",
            "resolved": false,
            "severity": "critical",
            "at": "2025-11-30T22:00:00.000Z",
            "instance": "replica-a",
            "account": "acme",
            "dry_run": false,
            "title": "Fallback ON: backup",
            "text": "The fallback was switched ON with profile backup (cause: rule).",
            "reasons": ["trunks-down: 2 of 2 probes matching \"trunk-*\" down"],
            "callers_get": "+14155550100 forwarded to +14155559999; every other number forwarded to +14155558888; others hear (en-US): \"We are sorry\"",
            "status_url": "https://continuity.example.net/",
            "incident_key": "continuity-agent/acme/fallback/1764540000000",
            "fallback": {"state": "active", "profile": "backup"},
            "detail": {
                "previous": {"state": "inactive"},
                "cause": "rule",
                "reasons": [{"source": "trunks-down", "text": "trunks-down: 2 of 2 probes matching \"trunk-*\" down"}],
                "active_since": "2025-11-30T22:00:00.000Z",
            },
        });
        assert_eq!(payload(&m, &n), want);
    }

    /// The example of docs/notifications.md, computed independently
    /// (`printf '1764540000.{"version":1}' | openssl dgst -sha256 -hmac s3cret`).
    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        assert_eq!(
            signature(b"s3cret", 1_764_540_000, br#"{"version":1}"#),
            "sha256=b954f62c06c4644a59e4fee54dbbb8fe9fda4d217bd1d341ab8b2949c862bf4b"
        );
        assert_ne!(
            signature(b"s3cret", 1_764_540_001, br#"{"version":1}"#),
            signature(b"s3cret", 1_764_540_000, br#"{"version":1}"#),
            "another timestamp, another signature"
        );
    }
}
