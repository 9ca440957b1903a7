//! `Persister`: the one place that writes the engine snapshot.
//!
//! It decides *when* to write (what senders will not repeat at once, probe
//! counters at most every `SNAPSHOT_EVERY`), retries briefly, and owns the
//! readiness flag `/readyz` reports: false while the store refuses writes.
//! The document it writes is the engine snapshot plus the loop's
//! [`Progress`] (`document.rs`): which queued input it has applied, and the
//! alerts' event-time memory. Operator changes and alerts are durable before
//! they are applied (they are in the input queue); the snapshot only bounds
//! how many of them a restart replays.
//! Only the leader writes: on a follower every save is a no-op
//! (`set_leading`), since the leader's document is the one that counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::document::{self, Progress};
use crate::domain::Timestamp;
use crate::engine::Engine;
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
    /// `inputs_applied` of the last document written: inputs up to it may
    /// be pruned from the queue.
    saved_inputs: i64,
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
            saved_inputs: 0,
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
    pub(super) async fn start(&mut self, engine: &Engine, progress: &Progress) {
        self.save(engine, progress).await;
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
    pub(super) async fn save_if_due(&mut self, engine: &Engine, progress: &Progress) {
        if self.must_persist || (self.dirty && self.last_snapshot.elapsed() >= SNAPSHOT_EVERY) {
            self.save(engine, progress).await;
        }
    }

    /// The last input id a written document records as applied.
    pub(super) fn saved_inputs(&self) -> i64 {
        self.saved_inputs
    }

    /// Writes the snapshot, retrying briefly. On failure the agent reports
    /// not ready (`/readyz` 503) and audits it; decisions still reach Talkdesk
    /// (dropping calls because a disk is full would be worse). Inputs stay in
    /// the queue meanwhile, so none is lost.
    pub(super) async fn save(&mut self, engine: &Engine, progress: &Progress) -> bool {
        if !self.leading {
            // Nothing of a follower's is durable: the leader's document is.
            self.saved();
            return true;
        }
        let json = match serde_json::to_value(engine.snapshot())
            .and_then(|engine| document::encode(engine, progress))
        {
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
                    self.saved_inputs = progress.inputs_applied;
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
    use crate::store::{
        Input, LeaseClaim, LeaseState, StoreError, StoredEvent, StoredInput, WriteClaim, WriteGrant,
    };
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
        fn append_inputs(&self, _: Vec<Input>) -> BoxFuture<'_, Result<Vec<i64>, StoreError>> {
            Box::pin(async { Err(StoreError::Unsupported("no queue here".into())) })
        }
        fn inputs_after(
            &self,
            _: i64,
            _: usize,
        ) -> BoxFuture<'_, Result<Vec<StoredInput>, StoreError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn prune_inputs(&self, _: i64, _: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
            Box::pin(async { Ok(0) })
        }
        fn prune_audit(&self, _: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
            Box::pin(async { Ok(0) })
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
        fn for_account(&self, _: &str) -> Arc<dyn Store> {
            unreachable!("the persister writes one account")
        }
        fn events_for(
            &self,
            _: Option<&[String]>,
            _: usize,
            _: Option<i64>,
        ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
            unreachable!("the persister reads no audit")
        }
        fn append_shared_inputs(
            &self,
            _: Vec<Input>,
        ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>> {
            unreachable!("the persister appends no input")
        }
        fn watch_inputs(
            &self,
            _: Arc<tokio::sync::Notify>,
            _: tokio_util::sync::CancellationToken,
        ) {
            unreachable!("the persister watches no input")
        }
        fn heartbeat(&self, _: &LeaseClaim) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
            unreachable!("the persister takes no part in leadership")
        }
        fn leave(&self, _: &LeaseClaim) -> BoxFuture<'_, Result<(), StoreError>> {
            unreachable!("the persister takes no part in leadership")
        }
        fn leases(&self) -> BoxFuture<'_, Result<Vec<crate::store::LeaseRow>, StoreError>> {
            unreachable!("the persister takes no part in leadership")
        }
    }

    fn engine() -> Engine {
        let config =
            crate::config::from_toml_str("[profiles.backup]\ndefault = \"+14155550100\"\n", "test")
                .expect("test config is valid");
        Engine::new(config.engine_spec())
    }

    fn ready(p: &Persister) -> bool {
        p.readiness().load(Ordering::Acquire)
    }

    #[tokio::test(start_paused = true)]
    async fn failing_store_reports_not_ready_audits_once_and_recovers() {
        let store = Arc::new(FlakyStore::default());
        let audit = MemoryAudit::default();
        let mut p = Persister::new(store.clone(), Arc::new(audit.clone()));
        let engine = engine();
        let progress = Progress {
            inputs_applied: 7,
            ..Progress::default()
        };
        assert!(!ready(&p), "not ready before the first write");
        p.start(&engine, &Progress::default()).await;
        assert!(ready(&p));

        store.failing.store(true, Ordering::SeqCst);
        assert!(!p.save(&engine, &progress).await);
        assert!(!ready(&p));
        assert_eq!(p.saved_inputs(), 0, "what was not written cannot be pruned");
        let store_audits = |a: &MemoryAudit| {
            a.records()
                .iter()
                .filter(|r| r.kind == AuditKind::Store)
                .count()
        };
        assert_eq!(store_audits(&audit), 1);
        assert!(!p.save(&engine, &progress).await);
        assert_eq!(store_audits(&audit), 1, "audited once per outage");

        store.failing.store(false, Ordering::SeqCst);
        assert!(p.save(&engine, &progress).await);
        assert!(ready(&p));
        assert_eq!(p.saved_inputs(), 7);
        let saved = store.snapshot.lock().unwrap().clone().expect("written");
        assert_eq!(
            saved["inputs_applied"], 7,
            "the progress rides in the document"
        );
        assert_eq!(saved["desired"], serde_json::json!({"state": "inactive"}));
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_writes_no_document_until_it_leads() {
        let store = Arc::new(FlakyStore::default());
        let mut p = Persister::new(store.clone(), Arc::new(MemoryAudit::default()));
        let engine = engine();
        let progress = Progress {
            inputs_applied: 9,
            ..Progress::default()
        };
        p.set_leading(false);
        p.start(&engine, &progress).await;
        assert!(ready(&p), "a follower is ready once it knows the lease");
        p.stepped(true);
        assert!(p.save(&engine, &progress).await);
        assert!(
            store.snapshot.lock().unwrap().is_none(),
            "the leader's document is not overwritten"
        );
        assert_eq!(p.saved_inputs(), 0, "nothing written, nothing to prune");

        p.set_leading(true);
        assert!(p.save(&engine, &progress).await);
        let saved = store.snapshot.lock().unwrap().clone().expect("written");
        assert_eq!(saved["inputs_applied"], 9);
        assert_eq!(p.saved_inputs(), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn durable_inputs_are_due_at_once_counters_only_later() {
        let store = Arc::new(FlakyStore::default());
        let mut p = Persister::new(store.clone(), Arc::new(MemoryAudit::default()));
        let engine = engine();
        let progress = Progress::default();
        p.start(&engine, &progress).await;
        *store.snapshot.lock().unwrap() = None;

        p.stepped(false);
        p.save_if_due(&engine, &progress).await;
        assert!(store.snapshot.lock().unwrap().is_none(), "counters wait");
        tokio::time::advance(SNAPSHOT_EVERY).await;
        p.save_if_due(&engine, &progress).await;
        assert!(
            store.snapshot.lock().unwrap().take().is_some(),
            "written after SNAPSHOT_EVERY"
        );

        p.stepped(true);
        p.save_if_due(&engine, &progress).await;
        assert!(
            store.snapshot.lock().unwrap().is_some(),
            "durable input written at once"
        );
    }
}
