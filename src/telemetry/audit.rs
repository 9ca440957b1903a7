//! Audit records: every decision with its reasons and every Talkdesk call with
//! its result. Components emit records into an [`AuditSink`]; the store
//! persists them (`GET /v1/events` reads them back, newest first).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::domain::Timestamp;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: Timestamp,
    /// Short machine-readable kind: `decision`, `probe`, `rule`, `alert`, `override`,
    /// `talkdesk`, `drift`, `maintenance`, `drill`, `flap`, `blind`, `config`, ...
    pub kind: String,
    /// One human-readable line.
    pub message: String,
    /// Structured details (reasons, request/response summary). Never secrets.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl AuditRecord {
    pub fn new(at: Timestamp, kind: impl Into<String>, message: impl Into<String>) -> Self {
        AuditRecord {
            at,
            kind: kind.into(),
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
