//! Audit records: every decision with its reasons and every Talkdesk call with
//! its result. Components emit records into an [`AuditSink`]; the store
//! persists them (`GET /v1/events` reads them back, newest first).
//!
//! A record's kind is an [`AuditKind`], a closed set written as short
//! snake_case strings. The strings are the stored and served form, so they
//! never change; a kind this version does not know (read back from a store
//! written by another version) is kept verbatim rather than failing the read.

use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::Timestamp;

/// What an audit record is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// The desired fallback state changed (`SetDesired`).
    Decision,
    /// A probe's health changed, or a result was rejected.
    Probe,
    /// A rule's phase changed.
    Rule,
    /// An alert fired, was updated, resolved or expired.
    Alert,
    /// A manual override was set, cleared, rejected or expired.
    Override,
    /// A maintenance window started or ended.
    Maintenance,
    /// A drill started, ended or was rejected.
    Drill,
    /// The flap latch was set or released.
    Flap,
    /// The blind guard engaged or released.
    Blind,
    /// The engine state was restored (or could not be).
    Restore,
    /// The agent started.
    Start,
    /// The agent stopped.
    Stop,
    /// The engine snapshot could not be persisted, or a damaged store file
    /// was moved aside at start (the agent started with a fresh store).
    Store,
    /// The actuator applied a desired state, failed to, or stopped.
    Actuation,
    /// Talkdesk was changed outside the agent.
    Drift,
    /// One Talkdesk API call.
    Talkdesk,
    /// A configuration reload was applied or refused.
    Reload,
    /// This replica took or lost the lease, or a write was fenced off.
    Leadership,
    /// A notification was sent, given up, or dropped.
    Notification,
    /// A kind this version does not write, read back from a store.
    Other(UnknownKind),
}

/// The text of a kind this version does not know. It can only be read back
/// (see [`AuditKind::from`]), never made up by a writer, so the kinds this
/// version writes stay the closed set above.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnknownKind(String);

impl AuditKind {
    /// Every kind this version writes.
    pub const KNOWN: [AuditKind; 19] = [
        AuditKind::Decision,
        AuditKind::Probe,
        AuditKind::Rule,
        AuditKind::Alert,
        AuditKind::Override,
        AuditKind::Maintenance,
        AuditKind::Drill,
        AuditKind::Flap,
        AuditKind::Blind,
        AuditKind::Restore,
        AuditKind::Start,
        AuditKind::Stop,
        AuditKind::Store,
        AuditKind::Actuation,
        AuditKind::Drift,
        AuditKind::Talkdesk,
        AuditKind::Reload,
        AuditKind::Leadership,
        AuditKind::Notification,
    ];

    /// The stored and served form.
    pub fn as_str(&self) -> &str {
        match self {
            AuditKind::Decision => "decision",
            AuditKind::Probe => "probe",
            AuditKind::Rule => "rule",
            AuditKind::Alert => "alert",
            AuditKind::Override => "override",
            AuditKind::Maintenance => "maintenance",
            AuditKind::Drill => "drill",
            AuditKind::Flap => "flap",
            AuditKind::Blind => "blind",
            AuditKind::Restore => "restore",
            AuditKind::Start => "start",
            AuditKind::Stop => "stop",
            AuditKind::Store => "store",
            AuditKind::Actuation => "actuation",
            AuditKind::Drift => "drift",
            AuditKind::Talkdesk => "talkdesk",
            AuditKind::Reload => "reload",
            AuditKind::Leadership => "leadership",
            AuditKind::Notification => "notification",
            AuditKind::Other(UnknownKind(s)) => s,
        }
    }
}

/// Reading a stored kind never fails: unknown text becomes `Other`.
impl From<String> for AuditKind {
    fn from(s: String) -> Self {
        AuditKind::KNOWN
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(AuditKind::Other(UnknownKind(s)))
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: callers align kinds in columns (`{:<9}`).
        f.pad(self.as_str())
    }
}

impl Serialize for AuditKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuditKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(AuditKind::from)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: Timestamp,
    pub kind: AuditKind,
    /// One human-readable line.
    pub message: String,
    /// Structured details (reasons, request/response summary). Never secrets.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl AuditRecord {
    pub fn new(at: Timestamp, kind: AuditKind, message: impl Into<String>) -> Self {
        AuditRecord {
            at,
            kind,
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
}

/// Where audit records go. Implementations must not block for long: callers
/// are on the decision path. The store's implementation queues and batches.
pub trait AuditSink: Send + Sync + 'static {
    fn record(&self, record: AuditRecord);
}

/// Keeps records in memory; for tests and the demo.
#[derive(Clone, Default)]
pub struct MemoryAudit(Arc<Mutex<Vec<AuditRecord>>>);

impl MemoryAudit {
    pub fn records(&self) -> Vec<AuditRecord> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, record: AuditRecord) {
        if let Ok(mut v) = self.0.lock() {
            v.push(record);
        }
    }
}

/// Discards records (`dry` tools, break-glass CLI).
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _record: AuditRecord) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings are the stored and served form: they must never change.
    #[test]
    fn audit_kinds_keep_their_stored_strings_and_round_trip() {
        let expected = [
            "decision",
            "probe",
            "rule",
            "alert",
            "override",
            "maintenance",
            "drill",
            "flap",
            "blind",
            "restore",
            "start",
            "stop",
            "store",
            "actuation",
            "drift",
            "talkdesk",
            "reload",
            "leadership",
            "notification",
        ];
        let got: Vec<&str> = AuditKind::KNOWN.iter().map(AuditKind::as_str).collect();
        assert_eq!(got, expected);
        for kind in AuditKind::KNOWN {
            let json = serde_json::to_value(&kind).unwrap();
            assert_eq!(json, serde_json::json!(kind.as_str()));
            assert_eq!(serde_json::from_value::<AuditKind>(json).unwrap(), kind);
            assert_eq!(AuditKind::from(kind.as_str().to_string()), kind);
        }
    }

    #[test]
    fn audit_record_with_an_unknown_kind_reads_back_verbatim() {
        let stored = r#"{"at": 5, "kind": "config_reload", "message": "m"}"#;
        let r: AuditRecord = serde_json::from_str(stored).unwrap();
        assert_eq!(r.kind.as_str(), "config_reload");
        assert!(matches!(r.kind, AuditKind::Other(_)));
        assert_eq!(
            serde_json::to_value(&r).unwrap()["kind"],
            serde_json::json!("config_reload")
        );
    }

    #[test]
    fn audit_kind_display_honours_width() {
        assert_eq!(format!("[{:<9}]", AuditKind::Drift), "[drift    ]");
    }
}
