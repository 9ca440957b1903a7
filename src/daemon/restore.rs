//! Store -> engine: the engine as the last snapshot left it (with the loop's
//! `Progress`: the last input applied, the alerts' event-time memory), or
//! fresh. Used at start and again by a replica taking the lease over.

use super::announce::Seen;
use super::document::{self, Progress};
use crate::config::Config;
use crate::domain::Timestamp;
use crate::engine::{Command, Engine, Snapshot};
use crate::store::{Store, StoreError};
use crate::telemetry::{AuditKind, AuditRecord, AuditSink};

pub(super) struct Restored {
    pub engine: Engine,
    /// What the loop executes first: the restored engine's commands, or a
    /// fresh engine's initial probe cadences.
    pub commands: Vec<Command>,
    /// Whether a snapshot was restored (the start gate is open at once).
    pub from_snapshot: bool,
    /// Inputs after `progress.inputs_applied` are replayed by the loop.
    pub progress: Progress,
    /// The engine as stored, before the restore applied what happened while
    /// no engine ran: notifications announce those changes.
    pub seen: Seen,
}

/// Restores the engine from the stored snapshot. An unreadable snapshot is
/// logged and audited, and the engine starts fresh (Talkdesk is not changed
/// until the engine has fresh evidence, see `StartGate`).
pub(super) async fn restore(
    config: &Config,
    store: &dyn Store,
    audit: &dyn AuditSink,
) -> Result<Restored, StoreError> {
    let spec = config.engine_spec();
    let now = Timestamp::now();
    let doc = store.load_snapshot().await?;
    // Kept even when the engine's part is unreadable: the inputs it lists as
    // applied are in no state we can restore, but replaying them onto a
    // fresh engine would act on stale alerts and overrides as if new.
    let progress = doc.as_ref().map(document::progress).unwrap_or_default();
    let mut seen = Seen::default();
    let (engine, mut commands, from_snapshot) = match doc {
        Some(json) => match serde_json::from_value::<Snapshot>(json) {
            Ok(snap) => {
                seen = Seen::stored(&snap);
                let (e, c) = Engine::restore(spec, snap, now);
                (e, c, true)
            }
            Err(error) => {
                tracing::error!(message = "Stored engine snapshot is unreadable; starting fresh (Talkdesk is not changed until the engine has fresh evidence).", %error);
                audit.record(AuditRecord::new(
                    now,
                    AuditKind::Restore,
                    format!("stored snapshot unreadable ({error}); starting fresh"),
                ));
                (Engine::new(spec), Vec::new(), false)
            }
        },
        None => (Engine::new(spec), Vec::new(), false),
    };
    if commands.is_empty() {
        // A fresh engine: ask for the initial probe cadences (restore returns them itself).
        commands = engine.probe_cadences();
    }
    tracing::info!(message = "Engine ready.", desired = %engine.desired(), probes = config.probes.len(), rules = config.rules.len());
    Ok(Restored {
        engine,
        commands,
        from_snapshot,
        progress,
        seen,
    })
}
