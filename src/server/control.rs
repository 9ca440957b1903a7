//! The API's contract with whoever answers it (the daemon's main loop):
//! requests that need an answer, each with a reply channel. The API answers
//! only once the loop has applied the change and the snapshot is on disk
//! ("nothing is half-applied"). Defined here, on the server's side, so the
//! dependency runs one way: `daemon` -> `server`.

use serde::Serialize;
use tokio::sync::oneshot;

use crate::domain::{Actual, Desired};
use crate::engine::{Mode, Override};

pub enum Control {
    SetOverride {
        ov: Override,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    ClearOverride {
        actor: String,
        reason: Option<String>,
        reply: oneshot::Sender<Result<bool, ControlError>>,
    },
    /// Release the flap latch (the operator checked the probes).
    ReleaseFlap {
        actor: String,
        reply: oneshot::Sender<Result<bool, ControlError>>,
    },
    Status {
        reply: oneshot::Sender<StatusDoc>,
    },
}

/// Why the loop refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The agent cannot apply it durably now (store failing): 503.
    #[error("{0}")]
    Unavailable(String),
}

/// `GET /v1/status`: the whole picture in one document.
#[derive(Clone, Debug, Serialize)]
pub struct StatusDoc {
    pub version: &'static str,
    /// `automatic`, `override`, `flapping`, `drill`, `maintenance`, `blind`.
    pub mode: Mode,
    pub dry_run: bool,
    /// This replica holds the lease and may write to Talkdesk (computed
    /// from the lease, like `continuity_leader`).
    pub leader: bool,
    /// The instance holding the lease as last seen (`null` before the first
    /// claim was answered); this replica's own id when it leads.
    pub leader_id: Option<String>,
    /// The lease epoch last seen: each change of leader adds one.
    pub epoch: i64,
    /// This replica's `cluster.instance_id`.
    pub instance_id: String,
    pub desired: Desired,
    pub actual: Actual,
    pub converged: bool,
    /// The engine's view: probes, rules, alerts, override, flap latch, reasons.
    pub engine: serde_json::Value,
    /// The actuator's view: last error, attempts, last success.
    pub actuator: serde_json::Value,
}
