//! `Persister`: the one place that writes the engine snapshot.
//!
//! It decides *when* to write (what senders will not repeat at once, probe
//! counters at most every `SNAPSHOT_EVERY`), and a writer task of its own
//! does the writing, so a slow store never stalls the loop: the loop hands
//! over the newest document and goes on (probes, inputs, status, the API);
//! the writer writes the newest document it has, retrying for as long as
//! the store refuses. The writer owns the readiness flag `/readyz` reports:
//! false while the store refuses writes.
//!
//! Each document handed over gets a version; the writer reports the highest
//! version it has *settled*: written, or still refused after
//! `PERSIST_ATTEMPTS` attempts. The loop publishes a new desired state to
//! the actuator only once the document holding it is settled
//! (`event_loop.rs`), which keeps the invariant "persisted before the
//! actuator is told" without the loop waiting. When the store refuses, the
//! decision still reaches Talkdesk after those attempts (dropping calls
//! because a disk is full would be worse), loudly: `/readyz` 503 and an
//! audit record.
//!
//! The document is the engine snapshot plus the loop's [`Progress`]
//! (`document.rs`): which queued input it has applied, and the alerts'
//! event-time memory. Operator changes and alerts are durable before they
//! are applied (they are in the input queue); the snapshot only bounds how
//! many of them a restart replays.
//! Only the leader writes: on a follower every save is a no-op
//! (`set_leading`), and losing the lease cancels what the writer had not
//! written yet, since the next leader's document is the one that counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::document::{self, Progress};
use crate::domain::Timestamp;
use crate::engine::Engine;
use crate::store::{SnapshotDoc, Store};
use crate::telemetry::{AuditKind, AuditRecord, AuditSink};

/// Probe counters change constantly; they are persisted at most this often
/// when nothing else changed (losing them on a crash only restarts counting).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// Attempts to write a document before it counts as settled (refused): the
/// store is reported failing and the decision it holds goes out anyway.
const PERSIST_ATTEMPTS: u32 = 3;
/// Longest pause between two attempts while the store refuses writes.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// A document for the writer. `doc: None` cancels: nothing to write (this
/// replica stopped leading).
#[derive(Clone, Default)]
struct Job {
    version: u64,
    doc: Option<(SnapshotDoc, i64)>,
}

/// What the writer has done, as the loop reads it.
#[derive(Clone, Copy, Debug, Default)]
struct Written {
    /// Every version up to this one is written, refused or cancelled.
    settled: u64,
    /// Whether the settled version was written.
    ok: bool,
    /// `inputs_applied` of the last document written: inputs up to it may
    /// be pruned from the queue.
    saved_inputs: i64,
}

pub(super) struct Persister {
    jobs: watch::Sender<Job>,
    written: watch::Receiver<Written>,
    /// `/readyz`: false until the first write, and while writes fail.
    ready: Arc<AtomicBool>,
    /// Shutdown began: the writer no longer reports ready.
    stopped: Arc<AtomicBool>,
    /// State changed since the last snapshot (probe counters: written lazily).
    dirty: bool,
    /// An input that must survive a crash changed (alert, override, window,
    /// drill, blind guard, flap release): write the snapshot now.
    must_persist: bool,
    /// Only the leader writes the snapshot: a follower's engine is for
    /// display, and must not overwrite what the leader decided.
    leading: bool,
    last_snapshot: Instant,
    /// The length of the last document encoded: the next one's buffer
    /// starts that large (and an eighth more), so it is not grown while a
    /// text of megabytes is written.
    last_len: usize,
    /// The version of the last document handed over (or cancellation).
    version: u64,
}

impl Persister {
    /// A persister and its writer task (it ends with the persister).
    pub(super) fn new(store: Arc<dyn Store>, audit: Arc<dyn AuditSink>) -> Persister {
        let (jobs, job_rx) = watch::channel(Job::default());
        let (written_tx, written) = watch::channel(Written::default());
        let ready = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            store,
            audit,
            ready: ready.clone(),
            stopped: stopped.clone(),
            written: written_tx,
            failing: false,
        };
        tokio::spawn(writer.run(job_rx));
        Persister {
            jobs,
            written,
            ready,
            stopped,
            dirty: false,
            must_persist: false,
            leading: true,
            last_snapshot: Instant::now(),
            last_len: 0,
            version: 0,
        }
    }

    /// Whether this replica leads (and so writes the snapshot). Losing the
    /// lead cancels what was not written yet.
    pub(super) fn set_leading(&mut self, leading: bool) {
        if self.leading && !leading {
            self.version += 1;
            self.jobs.send_replace(Job {
                version: self.version,
                doc: None,
            });
        }
        self.leading = leading;
    }

    /// The flag `/readyz` reads.
    pub(super) fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// The first write after start-up, awaited; the agent is ready once it
    /// succeeded (a follower at once: it writes nothing).
    pub(super) async fn start(&mut self, engine: &Engine, progress: &Progress) {
        let version = self.save(engine, progress);
        let ok = self.wait_settled(version).await;
        self.ready.store(ok || !self.leading, Ordering::Release);
    }

    /// Shutdown: `/readyz` answers 503 from now on.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
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
    pub(super) fn save_if_due(&mut self, engine: &Engine, progress: &Progress) {
        if self.must_persist || (self.dirty && self.last_snapshot.elapsed() >= SNAPSHOT_EVERY) {
            self.save(engine, progress);
        }
    }

    /// The last input id a written document records as applied.
    pub(super) fn saved_inputs(&self) -> i64 {
        self.written.borrow().saved_inputs
    }

    /// Hands the document to the writer and returns its version, at once
    /// ([`Persister::is_settled`] says when it is written). On a follower
    /// nothing is written and the version is settled already.
    pub(super) fn save(&mut self, engine: &Engine, progress: &Progress) -> u64 {
        self.dirty = false;
        self.must_persist = false;
        self.last_snapshot = Instant::now();
        if !self.leading {
            // Nothing of a follower's is durable: the leader's document is.
            return self.written.borrow().settled;
        }
        let capacity = self.last_len + self.last_len / 8;
        let doc = match document::encode(&engine.snapshot_view(), progress, capacity) {
            Ok(j) => {
                self.last_len = j.as_str().len();
                j
            }
            Err(error) => {
                tracing::error!(message = "Failed to serialize the engine snapshot.", %error);
                return self.written.borrow().settled;
            }
        };
        self.version += 1;
        self.jobs.send_replace(Job {
            version: self.version,
            doc: Some((doc, progress.inputs_applied)),
        });
        self.version
    }

    /// Whether the document of `version` (and every earlier one) is written,
    /// or refused for now (see the module docs).
    pub(super) fn is_settled(&self, version: u64) -> bool {
        self.written.borrow().settled >= version
    }

    /// Returns when the writer has settled something new (for the loop's
    /// `select!`); never if the writer is gone.
    pub(super) async fn changed(&mut self) {
        if self.written.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until `version` is settled; whether it was written.
    pub(super) async fn wait_settled(&mut self, version: u64) -> bool {
        match self.written.wait_for(|w| w.settled >= version).await {
            Ok(w) => w.ok,
            Err(_) => false,
        }
    }

    /// Hands the document over and waits until it is settled (shutdown's
    /// last write); whether it was written.
    pub(super) async fn flush(&mut self, engine: &Engine, progress: &Progress) -> bool {
        let version = self.save(engine, progress);
        self.wait_settled(version).await
    }
}

/// The writer task: writes the newest document it was handed, retrying
/// while the store refuses, and reports what it settled.
struct Writer {
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
    ready: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    written: watch::Sender<Written>,
    /// The store refused the last attempts (logged and audited once).
    failing: bool,
}

impl Writer {
    async fn run(mut self, mut jobs: watch::Receiver<Job>) {
        'wait: while jobs.changed().await.is_ok() {
            'job: loop {
                let job = jobs.borrow_and_update().clone();
                let Some((doc, inputs)) = job.doc else {
                    self.settle(job.version, false, None);
                    continue 'wait;
                };
                // A store already failing gets one attempt per new document
                // before it counts as refused: the decision is not held back
                // PERSIST_ATTEMPTS times over.
                let mut attempt = if self.failing {
                    PERSIST_ATTEMPTS - 1
                } else {
                    0
                };
                loop {
                    match self.store.save_snapshot(doc.clone()).await {
                        Ok(()) => {
                            self.saved();
                            self.settle(job.version, true, Some(inputs));
                            continue 'wait;
                        }
                        Err(error) => {
                            attempt += 1;
                            if attempt == PERSIST_ATTEMPTS {
                                self.failed(&error.to_string());
                                self.settle(job.version, false, None);
                            }
                        }
                    }
                    let pause = (Duration::from_millis(100) * attempt).min(RETRY_MAX);
                    tokio::select! {
                        // A newer document replaces this one (or cancels it).
                        changed = jobs.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            continue 'job;
                        }
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    fn settle(&self, version: u64, ok: bool, inputs: Option<i64>) {
        self.written.send_modify(|w| {
            w.settled = w.settled.max(version);
            w.ok = ok;
            if let Some(inputs) = inputs {
                w.saved_inputs = inputs;
            }
        });
    }

    fn saved(&mut self) {
        if self.failing {
            tracing::info!(message = "The store accepts writes again.");
        }
        self.failing = false;
        if !self.stopped.load(Ordering::Acquire) {
            self.ready.store(true, Ordering::Release);
        }
    }

    /// Logs and audits the first failure of a run of failures, not each retry.
    fn failed(&mut self, error: &str) {
        if !self.failing {
            tracing::error!(message = "Failed to persist the engine snapshot; reporting not ready.", %error);
            self.audit.record(AuditRecord::new(
                Timestamp::now(),
                AuditKind::Store,
                format!("engine snapshot not persisted: {error}"),
            ));
        }
        self.failing = true;
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

    /// A store whose snapshot writes fail while `failing` is set, and wait
    /// for a permit of `gate` while `gated` is set (a slow store).
    struct FlakyStore {
        failing: AtomicBool,
        gated: AtomicBool,
        gate: tokio::sync::Semaphore,
        writes: std::sync::atomic::AtomicUsize,
        snapshot: Mutex<Option<serde_json::Value>>,
    }

    impl Default for FlakyStore {
        fn default() -> Self {
            FlakyStore {
                failing: AtomicBool::new(false),
                gated: AtomicBool::new(false),
                gate: tokio::sync::Semaphore::new(0),
                writes: Default::default(),
                snapshot: Mutex::default(),
            }
        }
    }

    impl Store for FlakyStore {
        fn load_snapshot(&self) -> BoxFuture<'_, Result<Option<serde_json::Value>, StoreError>> {
            Box::pin(async { Ok(self.snapshot.lock().unwrap().clone()) })
        }
        fn save_snapshot(&self, snapshot: SnapshotDoc) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(async move {
                let snapshot = serde_json::from_str(snapshot.as_str()).unwrap();
                if self.gated.load(Ordering::SeqCst) {
                    self.gate.acquire().await.unwrap().forget();
                }
                if self.failing.load(Ordering::SeqCst) {
                    return Err(StoreError::Unsupported("disk full".into()));
                }
                self.writes.fetch_add(1, Ordering::SeqCst);
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
        fn append_inputs(
            &self,
            _: Vec<Input>,
            _: std::time::Instant,
        ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>> {
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
            _: std::time::Instant,
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

    /// Waits until the writer has settled everything handed over so far.
    async fn settled(p: &mut Persister) -> bool {
        let version = p.version;
        p.wait_settled(version).await
    }

    fn saved(store: &FlakyStore) -> Option<serde_json::Value> {
        store.snapshot.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn failing_store_reports_not_ready_audits_once_and_is_retried_until_it_recovers() {
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
        p.save(&engine, &progress);
        assert!(!settled(&mut p).await, "refused after its attempts");
        assert!(!ready(&p));
        assert_eq!(p.saved_inputs(), 0, "what was not written cannot be pruned");
        let store_audits = |a: &MemoryAudit| {
            a.records()
                .iter()
                .filter(|r| r.kind == AuditKind::Store)
                .count()
        };
        assert_eq!(store_audits(&audit), 1);
        p.save(&engine, &progress);
        assert!(!settled(&mut p).await);
        assert_eq!(store_audits(&audit), 1, "audited once per outage");

        // Nothing new to write: the writer retries the last document by
        // itself once the store takes writes again.
        store.failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(RETRY_MAX * 2).await;
        assert!(ready(&p), "ready again without another save");
        assert_eq!(p.saved_inputs(), 7);
        let saved = saved(&store).expect("written");
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
        let version = p.save(&engine, &progress);
        assert!(p.is_settled(version), "nothing to wait for");
        assert!(
            saved(&store).is_none(),
            "the leader's document is not overwritten"
        );
        assert_eq!(p.saved_inputs(), 0, "nothing written, nothing to prune");

        p.set_leading(true);
        assert!(p.flush(&engine, &progress).await);
        assert_eq!(saved(&store).expect("written")["inputs_applied"], 9);
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
        p.save_if_due(&engine, &progress);
        settled(&mut p).await;
        assert!(saved(&store).is_none(), "counters wait");
        tokio::time::advance(SNAPSHOT_EVERY).await;
        p.save_if_due(&engine, &progress);
        settled(&mut p).await;
        assert!(
            store.snapshot.lock().unwrap().take().is_some(),
            "written after SNAPSHOT_EVERY"
        );

        p.stepped(true);
        p.save_if_due(&engine, &progress);
        settled(&mut p).await;
        assert!(saved(&store).is_some(), "durable input written at once");
    }

    /// Issue 15: a slow store held the loop for each snapshot. Handing a
    /// document over returns at once; while a write is slow, newer documents
    /// replace the waiting one (the newest is what counts), and losing the
    /// lead cancels what was not written.
    #[tokio::test(start_paused = true)]
    async fn a_slow_store_holds_no_caller_and_the_newest_document_wins() {
        let store = Arc::new(FlakyStore::default());
        let mut p = Persister::new(store.clone(), Arc::new(MemoryAudit::default()));
        let engine = engine();
        p.start(&engine, &Progress::default()).await;
        let writes_before = store.writes.load(Ordering::SeqCst);

        store.gated.store(true, Ordering::SeqCst);
        let first = p.save(&engine, &progress(1));
        // The writer takes it up and waits for the store.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = p.save(&engine, &progress(2));
        let third = p.save(&engine, &progress(3));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!p.is_settled(first), "the store has not answered");
        store.gate.add_permits(2);
        assert!(p.wait_settled(third).await);
        assert!(p.is_settled(second));
        assert_eq!(
            store.writes.load(Ordering::SeqCst) - writes_before,
            2,
            "the first document, then the newest; the second was never written"
        );
        assert_eq!(saved(&store).unwrap()["inputs_applied"], 3);

        let fourth = p.save(&engine, &progress(4));
        // The writer takes it up and waits for the store.
        tokio::time::sleep(Duration::from_millis(10)).await;
        p.set_leading(false);
        store.gate.add_permits(1);
        p.wait_settled(fourth).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            store.writes.load(Ordering::SeqCst) - writes_before,
            3,
            "the write in flight ends; nothing is retried or written after losing the lead"
        );
    }

    fn progress(inputs_applied: i64) -> Progress {
        Progress {
            inputs_applied,
            ..Progress::default()
        }
    }
}
