//! The API's contract with whoever answers it (the daemon's main loop):
//! requests that need an answer, each with a reply channel. Operator changes
//! do not travel here: the handler appends them to the durable input queue
//! (`store::inputs`) and then asks the loop, with [`Control::Applied`], to
//! say once it has applied that input. Defined here, on the server's side,
//! so the dependency runs one way: `daemon` -> `server`.

use serde::Serialize;
use tokio::sync::oneshot;

use crate::domain::{Actual, Desired};
use crate::engine::{EngineView, Mode};
use crate::talkdesk::actuator::ActuatorStatus;

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
    /// Reload the configuration file (`POST /-/reload`, SIGHUP).
    Reload {
        actor: String,
        reply: oneshot::Sender<Result<Reloaded, ReloadError>>,
    },
}

/// A configuration reload that was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    /// The file that was read.
    pub origin: String,
    /// The sections that changed (`probes`, `rules`, `talkdesk`, ...), empty
    /// when the file is the same.
    pub changed: Vec<String>,
}

/// Why a reload was refused; the running configuration is kept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The new file does not validate: every error, as `check-config` lists them.
    #[error("the new configuration is invalid ({} error(s)); the running configuration is kept", .0.len())]
    Invalid(Vec<String>),
    /// It changes what only a restart can change.
    #[error(
        "the new configuration changes settings that need a restart; the running configuration is kept"
    )]
    NeedsRestart(Vec<String>),
    /// The agent was started without a configuration file (tests, demo).
    #[error("the agent was not started from a configuration file; nothing to reload")]
    NoFile,
    #[error("the agent is shutting down")]
    ShuttingDown,
}

impl ReloadError {
    /// Every problem, one line each.
    pub fn errors(&self) -> Vec<String> {
        match self {
            ReloadError::Invalid(v) | ReloadError::NeedsRestart(v) => v.clone(),
            other => vec![other.to_string()],
        }
    }
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
    /// The Talkdesk account this document is about (`default` for a
    /// configuration without `[[accounts]]`).
    pub account: String,
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
    pub engine: EngineView,
    /// The actuator's view: last error, attempts, last success.
    pub actuator: ActuatorStatus,
}

/// `GET /v1/status` when several accounts are configured and none is named
/// `default`: one line per account the token may read.
#[derive(Clone, Debug, Serialize)]
pub struct AccountsDoc {
    pub version: &'static str,
    pub instance_id: String,
    pub accounts: Vec<AccountSummary>,
}

/// One account at a glance: who leads it, what is decided, what Talkdesk has.
#[derive(Clone, Debug, Serialize)]
pub struct AccountSummary {
    pub account: String,
    pub mode: Mode,
    /// This replica leads the account.
    pub leader: bool,
    pub leader_id: Option<String>,
    pub epoch: i64,
    pub desired: Desired,
    pub actual: Actual,
    pub converged: bool,
}

impl From<&StatusDoc> for AccountSummary {
    fn from(doc: &StatusDoc) -> AccountSummary {
        AccountSummary {
            account: doc.account.clone(),
            mode: doc.mode,
            leader: doc.leader,
            leader_id: doc.leader_id.clone(),
            epoch: doc.epoch,
            desired: doc.desired.clone(),
            actual: doc.actual.clone(),
            converged: doc.converged,
        }
    }
}
