//! Logs, metrics and the audit trail: how the agent explains itself.

pub mod audit;
pub mod logging;
pub mod metrics;

pub use audit::{AuditKind, AuditRecord, AuditSink};
pub use metrics::{AccountMetrics, KnownLabels, Metrics};
