//! The durable input queue: what senders will not repeat (alerts, overrides,
//! flap releases), written to the store *before* the sender gets its 2xx.
//!
//! Any replica may append; the replica whose loop owns the engine reads the
//! queue in id order and applies each input once. Which input the engine has
//! applied is recorded inside the engine snapshot document (see
//! `daemon/document.rs`), so after a crash or a takeover the new owner
//! replays exactly the inputs the snapshot does not contain yet.
//!
//! Ids only grow, and they become visible in id order: SQLite has one writer
//! at a time, and PostgreSQL appends for one account under a transaction
//! advisory lock, so an id is never committed after a larger one was read.
//! Applied inputs older than [`RETENTION`] are pruned.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{AlertKey, Timestamp};
use crate::engine::{Event, Override};

/// How long applied inputs are kept (for inspection after an incident);
/// inputs not yet applied are never pruned.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// One input, as stored (JSON, tagged by `input`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    AlertFiring {
        key: AlertKey,
        labels: BTreeMap<String, String>,
        #[serde(default)]
        summary: Option<String>,
        /// The sender's event time, if it says (see `alerts::order`).
        #[serde(default)]
        at: Option<Timestamp>,
    },
    AlertResolved {
        key: AlertKey,
        #[serde(default)]
        at: Option<Timestamp>,
    },
    OverrideSet(Override),
    OverrideCleared {
        actor: String,
        #[serde(default)]
        reason: Option<String>,
    },
    FlapRelease {
        actor: String,
    },
}

impl Input {
    /// The alert and the sender's event time, for inputs that carry one.
    pub fn event_time(&self) -> Option<(&AlertKey, Timestamp)> {
        match self {
            Input::AlertFiring { key, at, .. } | Input::AlertResolved { key, at } => {
                at.map(|at| (key, at))
            }
            _ => None,
        }
    }

    /// The engine event this input becomes.
    pub fn into_event(self) -> Event {
        match self {
            Input::AlertFiring {
                key,
                labels,
                summary,
                ..
            } => Event::AlertFiring {
                key,
                labels,
                summary,
            },
            Input::AlertResolved { key, .. } => Event::AlertResolved { key },
            Input::OverrideSet(ov) => Event::OverrideSet(ov),
            Input::OverrideCleared { actor, reason } => Event::OverrideCleared { actor, reason },
            Input::FlapRelease { actor } => Event::FlapRelease { actor },
        }
    }
}

/// An input as read back from the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredInput {
    pub id: i64,
    /// When a replica accepted it (wall clock).
    pub accepted_at: Timestamp,
    pub input: Input,
}

/// Where handlers append inputs: the store, then a wake-up for this
/// replica's loop (other replicas learn of them through
/// `Store::watch_inputs` or their once-a-second poll).
#[derive(Clone)]
pub struct Queue {
    store: std::sync::Arc<dyn super::Store>,
    wake: std::sync::Arc<tokio::sync::Notify>,
}

impl Queue {
    pub fn new(
        store: std::sync::Arc<dyn super::Store>,
        wake: std::sync::Arc<tokio::sync::Notify>,
    ) -> Queue {
        Queue { store, wake }
    }

    /// Appends `inputs` durably (all or none) and wakes the loop; returns
    /// their ids.
    pub async fn append(&self, inputs: Vec<Input>) -> Result<Vec<i64>, super::StoreError> {
        let ids = self.store.append_inputs(inputs).await?;
        self.wake.notify_one();
        Ok(ids)
    }
}
