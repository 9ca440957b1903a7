//! One place that turns a finished Talkdesk call into a log line, two metric
//! samples and an audit record, so the three never disagree (Vector's
//! "internal events" habit). Nothing here ever sees a credential: callers pass
//! the operation, the path and a body summary they chose to expose.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::error::{Op, TalkdeskError};
use crate::domain::Timestamp;
use crate::telemetry::{AccountMetrics, AuditKind, AuditRecord, AuditSink};

#[derive(Clone)]
pub(crate) struct Observer {
    pub metrics: AccountMetrics,
    pub audit: Arc<dyn AuditSink>,
}

/// How a call ended, as far as telemetry cares.
pub(crate) enum CallOutcome<'a> {
    /// The server answered with this status (success or not).
    Status(u16, Option<&'a TalkdeskError>),
    /// No answer: timeout or transport failure.
    Failed(&'a TalkdeskError),
}

impl Observer {
    pub fn call(
        &self,
        op: Op,
        method: &str,
        target: &str,
        outcome: CallOutcome<'_>,
        elapsed: Duration,
        request: Option<serde_json::Value>,
    ) {
        // A credentials rejection repeats on every retry until an operator
        // fixes the config: whoever made the call reports it once (the
        // actuator, on each change; break-glass, as its error).
        let quiet = matches!(&outcome, CallOutcome::Status(_, Some(e)) if e.rejects_credentials());
        let (status_label, status, error) = match outcome {
            CallOutcome::Status(s, err) => (s.to_string(), Some(s), err.map(|e| e.to_string())),
            CallOutcome::Failed(err) => {
                let label = match err {
                    TalkdeskError::Timeout { .. } => "timeout",
                    _ => "error",
                };
                (label.to_string(), None, Some(err.to_string()))
            }
        };
        self.metrics
            .talkdesk_requests_total
            .with_label_values(&[op.as_str(), &status_label])
            .inc();
        self.metrics
            .talkdesk_request_duration_seconds
            .with_label_values(&[op.as_str()])
            .observe(elapsed.as_secs_f64());
        let ms = elapsed.as_millis();
        match &error {
            None => {
                tracing::debug!(op = %op, %method, %target, status = %status_label, elapsed_ms = %ms, "Talkdesk call succeeded.")
            }
            Some(error) if quiet => {
                tracing::debug!(op = %op, %method, %target, status = %status_label, elapsed_ms = %ms, %error, "Talkdesk call failed.")
            }
            Some(error) => {
                tracing::warn!(op = %op, %method, %target, status = %status_label, elapsed_ms = %ms, %error, "Talkdesk call failed.")
            }
        }
        let message = format!("{method} {target} -> {status_label} in {ms}ms");
        self.audit.record(
            AuditRecord::new(Timestamp::now(), AuditKind::Talkdesk, message).with_data(json!({
                "op": op.as_str(),
                "method": method,
                "target": target,
                "status": status,
                "result": status_label,
                "elapsed_ms": ms as u64,
                "error": error,
                "request": request,
            })),
        );
    }

    /// A write that `dry_run` suppressed: audited like a call, never sent.
    pub fn dry_run(&self, op: Op, method: &str, target: &str, request: serde_json::Value) {
        tracing::info!(op = %op, %method, %target, request = %request, "dry_run: Talkdesk write not sent.");
        self.audit.record(
            AuditRecord::new(
                Timestamp::now(),
                AuditKind::Talkdesk,
                format!("dry_run: would {method} {target}"),
            )
            .with_data(json!({
                "op": op.as_str(),
                "method": method,
                "target": target,
                "dry_run": true,
                "request": request,
            })),
        );
    }
}
