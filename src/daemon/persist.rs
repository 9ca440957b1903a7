//! `Persister`: the one place that writes the engine snapshot.
//!
//! It decides *when* to write (what senders will not repeat at once, probe
//! counters at most every `SNAPSHOT_EVERY`), retries briefly, and owns the
//! readiness flag `/readyz` reports: false while the store refuses writes.
//! Operator changes go through [`Persister::step_durably`]: written before
//! anything acts on them, or rolled back and refused. Only the leader writes:
//! on a follower every save is a no-op (`set_leading`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::Timestamp;
use crate::engine::{Command, Engine, Event};
use crate::server::control::ControlError;
use crate::store::Store;
use crate::telemetry::{AuditKind, AuditRecord, AuditSink};

/// Probe counters change constantly; they are persisted at most this often
/// when nothing else changed (losing them on a crash only restarts counting).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// Attempts to write a snapshot before reporting the store as failing.
const PERSIST_ATTEMPTS: u32 = 3;

pub(super) struct Persister {
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
    /// `/readyz`: false until the first write, and while writes fail.
    ready: Arc<AtomicBool>,
    /// State changed since the last snapshot (probe counters: written lazily).
    dirty: bool,
    /// An input that must survive a crash changed (alert, override, window,
    /// drill, blind guard, flap release): write the snapshot now.
    must_persist: bool,
    /// Whether the last snapshot write succeeded.
    persisted: bool,
    /// Only the leader writes the snapshot: a follower's engine is for
    /// display, and must not overwrite what the leader decided.
    leading: bool,
    last_snapshot: Instant,
}

impl Persister {
    pub(super) fn new(store: Arc<dyn Store>, audit: Arc<dyn AuditSink>) -> Persister {
        Persister {
            store,
            audit,
            ready: Arc::new(AtomicBool::new(false)),
            dirty: false,
            must_persist: false,
            persisted: true,
            leading: true,
            last_snapshot: Instant::now(),
        }
    }

    /// Whether this replica leads (and so writes the snapshot).
    pub(super) fn set_leading(&mut self, leading: bool) {
        self.leading = leading;
    }

    /// The flag `/readyz` reads.
    pub(super) fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// The first write after start-up; the agent is ready once it succeeded.
    pub(super) async fn start(&mut self, engine: &Engine) {
        self.save(engine).await;
        self.ready.store(self.persisted, Ordering::Release);
    }

    /// Shutdown: `/readyz` answers 503 from now on.
    pub(super) fn stop(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// The engine took an input. `durable` inputs (ones their senders will not
    /// repeat) make the next [`Persister::save_if_due`] write at once.
    pub(super) fn stepped(&mut self, durable: bool) {
        self.dirty = true;
        self.must_persist |= durable;
    }

    /// Called before the loop sleeps: durable inputs are written now, probe
    /// counters at most every `SNAPSHOT_EVERY`.
    pub(super) async fn save_if_due(&mut self, engine: &Engine) {
        if self.must_persist || (self.dirty && self.last_snapshot.elapsed() >= SNAPSHOT_EVERY) {
            self.save(engine).await;
        }
    }

    /// Applies an operator's change: the engine steps, the snapshot is
    /// written, and only then are the commands returned to act on. If the
    /// write fails the engine is put back as it was and the change refused
    /// (503), so an acknowledged change is never lost.
    pub(super) async fn step_durably(
        &mut self,
        engine: &mut Engine,
        ev: Event,
        now: Timestamp,
    ) -> Result<Vec<Command>, ControlError> {
        let before = engine.clone();
        let cmds = engine.step(ev, now);
        if !self.save(engine).await {
            *engine = before;
            return Err(ControlError::Unavailable(
                "the change could not be written to the store; nothing was applied".into(),
            ));
        }
        Ok(cmds)
    }

    /// Writes the snapshot, retrying briefly. On failure the agent reports
    /// not ready (`/readyz` 503) and audits it; decisions still reach Talkdesk
    /// (dropping calls because a disk is full would be worse), but operator
    /// changes are refused until the store works again.
    pub(super) async fn save(&mut self, engine: &Engine) -> bool {
        if !self.leading {
            // Nothing of a follower's is durable: the leader's snapshot is.
            self.saved();
            return true;
        }
        let json = match serde_json::to_value(engine.snapshot()) {
            Ok(j) => j,
            Err(error) => {
                tracing::error!(message = "Failed to serialize the engine snapshot.", %error);
                return false;
            }
        };
        let mut last_error = String::new();
        for attempt in 0..PERSIST_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            match self.store.save_snapshot(json.clone()).await {
                Ok(()) => {
                    self.saved();
                    return true;
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        self.failed(&last_error);
        false
    }

    fn saved(&mut self) {
        self.dirty = false;
        self.must_persist = false;
        self.last_snapshot = Instant::now();
        if !self.persisted {
            tracing::info!(message = "The store accepts writes again.");
            self.ready.store(true, Ordering::Release);
        }
        self.persisted = true;
    }

    /// Logs and audits the first failure of a run of failures, not each retry.
    fn failed(&mut self, error: &str) {
        if self.persisted {
            tracing::error!(message = "Failed to persist the engine snapshot; reporting not ready.", %error);
            self.audit.record(AuditRecord::new(
                Timestamp::now(),
                AuditKind::Store,
                format!("engine snapshot not persisted: {error}"),
            ));
        }
        self.persisted = false;
        self.ready.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::future::BoxFuture;

    use super::*;
    use crate::domain::Desired;
    use crate::engine::Override;
    use crate::store::{LeaseClaim, LeaseState, StoreError, StoredEvent, WriteClaim, WriteGrant};
    use crate::telemetry::audit::MemoryAudit;

    /// A store whose snapshot writes fail while `failing` is set.
    #[derive(Default)]
    struct FlakyStore {
        failing: AtomicBool,
        snapshot: Mutex<Option<serde_json::Value>>,
    }

    impl Store for FlakyStore {
        fn load_snapshot(&self) -> BoxFuture<'_, Result<Option<serde_json::Value>, StoreError>> {
            Box::pin(async { Ok(self.snapshot.lock().unwrap().clone()) })
        }
        fn save_snapshot(
            &self,
            snapshot: serde_json::Value,
        ) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(async move {
                if self.failing.load(Ordering::SeqCst) {
                    return Err(StoreError::Unsupported("disk full".into()));
                }
                *self.snapshot.lock().unwrap() = Some(snapshot);
                Ok(())
            })
        }
        fn append_audit(&self, _: Vec<AuditRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn events(
            &self,
            _: usize,
            _: Option<i64>,
        ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn claim_lease(&self, claim: &LeaseClaim) -> BoxFuture<'_, Result<LeaseState, StoreError>> {
            let holder = claim.instance_id.clone();
            Box::pin(async move {
                Ok(LeaseState {
                    holder,
                    epoch: 1,
                    held: true,
                })
            })
        }
        fn release_lease(&self, _: &LeaseClaim) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn claim_write(&self, _: &WriteClaim) -> BoxFuture<'_, Result<WriteGrant, StoreError>> {
            Box::pin(async { Ok(WriteGrant::Refused) })
        }
    }

    fn engine() -> Engine {
        let config =
            crate::config::from_toml_str("[profiles.backup]\ndefault = \"+14155550100\"\n", "test")
                .expect("test config is valid");
        Engine::new(config.engine_spec())
    }

    fn set_override(now: Timestamp) -> Event {
        Event::OverrideSet(Override {
            desired: Desired::Active {
                profile: "backup".into(),
            },
            reason: "test".into(),
            actor: "ops".into(),
            set_at: now,
            until: Timestamp(now.0 + 3_600_000),
        })
    }

    fn ready(p: &Persister) -> bool {
        p.readiness().load(Ordering::Acquire)
    }

    #[tokio::test(start_paused = true)]
    async fn failing_store_refuses_operator_changes_until_it_recovers() {
        let store = Arc::new(FlakyStore::default());
        let audit = MemoryAudit::default();
        let mut p = Persister::new(store.clone(), Arc::new(audit.clone()));
        let mut engine = engine();
        assert!(!ready(&p), "not ready before the first write");
        p.start(&engine).await;
        assert!(ready(&p));

        // The store fails: the override is rolled back and refused.
        store.failing.store(true, Ordering::SeqCst);
        let now = Timestamp(1_000_000);
        let refused = p.step_durably(&mut engine, set_override(now), now).await;
        assert!(matches!(refused, Err(ControlError::Unavailable(_))));
        assert!(!ready(&p));
        assert_eq!(engine.desired(), &Desired::Inactive, "rolled back");
        assert!(engine.view(now).override_.is_none(), "rolled back");
        let store_audits = |a: &MemoryAudit| {
            a.records()
                .iter()
                .filter(|r| r.kind == AuditKind::Store)
                .count()
        };
        assert_eq!(store_audits(&audit), 1);

        // Still failing: refused again, audited only once per outage.
        assert!(
            p.step_durably(&mut engine, set_override(now), now)
                .await
                .is_err()
        );
        assert_eq!(store_audits(&audit), 1);

        // The store recovers: the change is written before it is returned.
        store.failing.store(false, Ordering::SeqCst);
        let cmds = p
            .step_durably(&mut engine, set_override(now), now)
            .await
            .expect("accepted once the store works");
        assert!(ready(&p));
        assert!(engine.desired().is_active());
        assert!(cmds.iter().any(|c| matches!(c, Command::SetDesired { .. })));
        let saved = store
            .snapshot
            .lock()
            .unwrap()
            .clone()
            .expect("snapshot written");
        assert_eq!(saved, serde_json::to_value(engine.snapshot()).unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn durable_inputs_are_due_at_once_counters_only_later() {
        let store = Arc::new(FlakyStore::default());
        let mut p = Persister::new(store.clone(), Arc::new(MemoryAudit::default()));
        let engine = engine();
        p.start(&engine).await;
        *store.snapshot.lock().unwrap() = None;

        p.stepped(false);
        p.save_if_due(&engine).await;
        assert!(store.snapshot.lock().unwrap().is_none(), "counters wait");
        tokio::time::advance(SNAPSHOT_EVERY).await;
        p.save_if_due(&engine).await;
        assert!(
            store.snapshot.lock().unwrap().take().is_some(),
            "written after SNAPSHOT_EVERY"
        );

        p.stepped(true);
        p.save_if_due(&engine).await;
        assert!(
            store.snapshot.lock().unwrap().is_some(),
            "durable input written at once"
        );
    }
}
