//! The API's contract with whoever answers it (the daemon's main loop):
//! requests that need an answer, each with a reply channel. Operator changes
//! do not travel here: the handler appends them to the durable input queue
//! (`store::inputs`) and then asks the loop, with [`Control::Applied`], to
//! say once it has applied that input. Defined here, on the server's side,
//! so the dependency runs one way: `daemon` -> `server`.

use serde::Serialize;
use tokio::sync::oneshot;

use crate::domain::{Actual, Desired};
use crate::engine::Mode;

pub enum Control {
    /// Answer once queued input `id` is applied to this replica's engine.
    /// The loop drops `reply` if it will not apply it (the handler then
    /// reports the input as queued).
    Applied {
        id: i64,
        reply: oneshot::Sender<Applied>,
    },
    Status {
        reply: oneshot::Sender<StatusDoc>,
    },
}

/// What applying a queued operator input did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// A clear: an override was set. A flap release: the latch was set.
    /// Anything else: true. `None` if the loop no longer remembers (more
    /// than `event_loop::OUTCOMES` inputs were applied since).
    pub changed: Option<bool>,
}

/// `GET /v1/status`: the whole picture in one document.
#[derive(Clone, Debug, Serialize)]
pub struct StatusDoc {
    pub version: &'static str,
    /// `automatic`, `override`, `flapping`, `drill`, `maintenance`, `blind`.
    pub mode: Mode,
    pub dry_run: bool,
    pub leader: bool,
    pub desired: Desired,
    pub actual: Actual,
    pub converged: bool,
    /// The engine's view: probes, rules, alerts, override, flap latch, reasons.
    pub engine: serde_json::Value,
    /// The actuator's view: last error, attempts, last success.
    pub actuator: serde_json::Value,
}
