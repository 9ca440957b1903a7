//! The durable input queue: what senders will not repeat (alerts, overrides,
//! flap releases), written to the store *before* the sender gets its 2xx.
//!
//! Any replica may append; the replica whose loop owns the engine reads the
//! queue in id order and applies each input once. Which input the engine has
//! applied is recorded inside the engine snapshot document (see
//! `daemon/document.rs`), so after a crash or a takeover the new owner
//! replays exactly the inputs the snapshot does not contain yet.
//!
//! Each account has its own queue, and one more is shared by all of them:
//! inputs appended with `Store::append_shared_inputs` (stored under the
//! account [`SHARED_ACCOUNT`], e.g. an alert every account's rules read)
//! are returned by every account's `inputs_after`, interleaved with its own
//! in id order, and wake every account's loop.
//!
//! Ids only grow, and they become visible in id order to every reader: an id
//! is never committed after a larger id the same reader can see was read.
//! SQLite has one writer at a time. PostgreSQL appends for one account under
//! the shared mode of a global transaction advisory lock plus that
//! account's own exclusive lock (accounts append side by side, one account's
//! appends one at a time), and shared appends under the global lock
//! exclusively (alone), so a shared id is never committed after a larger
//! id of any account.
//!
//! Pruning: an account prunes its own applied inputs older than
//! [`RETENTION`]. It cannot know whether every other account has applied a
//! shared input, so shared inputs are deleted by age only, once older than
//! [`SHARED_RETENTION`] (by any account's prune): an account whose loop has
//! not applied a shared input for that long misses it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{AlertKey, Timestamp};
use crate::engine::{Event, Override};

/// How long applied inputs are kept (for inspection after an incident);
/// inputs not yet applied are never pruned.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How long shared inputs are kept: twice [`RETENTION`], applied or not
/// (see the module docs).
pub const SHARED_RETENTION: Duration = Duration::from_secs(2 * 24 * 3600);

/// The account shared inputs are stored under. Not a valid account id
/// (`[[accounts]] id` is letters, digits, '.', '_' and '-'), so no account's
/// own rows can be mistaken for shared ones.
pub const SHARED_ACCOUNT: &str = "*";

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

/// How long an append may take, from the call to the commit. Past it the
/// request is answered "not accepted" and nothing of it is committed later
/// (see [`Queue::append`]). Shorter than the API's request timeout, so the
/// caller hears the outcome from the handler.
pub const APPEND_WITHIN: Duration = Duration::from_secs(5);

/// Inputs appended in one transaction at most (one delivery may carry up
/// to `alerts::intake::MAX_DELIVERY`; a group never splits one).
const GROUP_MAX: usize = 4096;
/// Requests waiting for the group writer; handlers wait when it is full.
const PENDING_MAX: usize = 1024;

/// Where handlers append inputs: the store, then a wake-up for this
/// replica's loop (other replicas learn of them through
/// `Store::watch_inputs` or their once-a-second poll).
///
/// Group commit: one writer task appends; requests that arrive while a
/// transaction commits go together in the next one, so a flood of webhooks
/// costs one commit (one fsync) per group instead of one per request. Each
/// caller still gets its own ids, and an error fails every request of the
/// group (none of them was accepted).
///
/// Bounded: each request has a deadline ([`APPEND_WITHIN`] after the call).
/// One whose deadline passed while it waited (behind a slow transaction) is
/// answered "not accepted" and never written; a group's transaction must
/// commit by the earliest deadline of its requests or is rolled back
/// (`Store::append_inputs`). So with a slow store an answer is always one
/// of "committed, here are the ids" or "nothing was kept", never a timeout
/// followed by a commit the caller was not told about.
#[derive(Clone)]
pub struct Queue {
    pending: tokio::sync::mpsc::Sender<Pending>,
}

struct Pending {
    inputs: Vec<Input>,
    deadline: std::time::Instant,
    reply: tokio::sync::oneshot::Sender<Result<Vec<i64>, AppendError>>,
}

/// Why an append failed; nothing of the request was accepted.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct AppendError(String);

impl Queue {
    /// Starts the group writer (it ends once every `Queue` clone is dropped).
    pub fn new(
        store: std::sync::Arc<dyn super::Store>,
        wake: std::sync::Arc<tokio::sync::Notify>,
    ) -> Queue {
        Queue::start(store, Destination::Account(wake))
    }

    /// A queue whose inputs every account's loop applies (alerts: each
    /// account's rules match them), waking every loop in `wakes`.
    pub fn shared(
        store: std::sync::Arc<dyn super::Store>,
        wakes: Vec<std::sync::Arc<tokio::sync::Notify>>,
    ) -> Queue {
        Queue::start(store, Destination::Shared(wakes))
    }

    fn start(store: std::sync::Arc<dyn super::Store>, to: Destination) -> Queue {
        let (pending, rx) = tokio::sync::mpsc::channel(PENDING_MAX);
        tokio::spawn(write_groups(store, to, rx));
        Queue { pending }
    }

    /// Appends `inputs` durably (all or none) and wakes the loop; returns
    /// their ids. Answers within about [`APPEND_WITHIN`] (plus the time a
    /// commit already under way takes to be confirmed): an error means
    /// nothing was kept, now or later.
    pub async fn append(&self, inputs: Vec<Input>) -> Result<Vec<i64>, AppendError> {
        let deadline = std::time::Instant::now() + APPEND_WITHIN;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let closed = || AppendError("the input queue is closed (shutting down)".into());
        let queued = tokio::time::timeout_at(
            deadline.into(),
            self.pending.send(Pending {
                inputs,
                deadline,
                reply,
            }),
        )
        .await;
        match queued {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(closed()),
            // Never handed to the writer: nothing can commit.
            Err(_) => return Err(too_late()),
        }
        answer.await.map_err(|_| closed())?
    }
}

/// Whose inputs a queue appends, and which loops it wakes.
enum Destination {
    /// The store handle's account.
    Account(std::sync::Arc<tokio::sync::Notify>),
    /// Every account (`Store::append_shared_inputs`).
    Shared(Vec<std::sync::Arc<tokio::sync::Notify>>),
}

impl Destination {
    async fn append(
        &self,
        store: &dyn super::Store,
        inputs: Vec<Input>,
        deadline: std::time::Instant,
    ) -> Result<Vec<i64>, super::StoreError> {
        match self {
            Destination::Account(_) => store.append_inputs(inputs, deadline).await,
            Destination::Shared(_) => store.append_shared_inputs(inputs, deadline).await,
        }
    }

    fn wake(&self) {
        match self {
            Destination::Account(wake) => wake.notify_one(),
            Destination::Shared(wakes) => wakes.iter().for_each(|w| w.notify_one()),
        }
    }
}

/// The answer to a request whose deadline passed before it could commit.
fn too_late() -> AppendError {
    AppendError(format!(
        "the store did not take it within {}s; nothing was kept",
        APPEND_WITHIN.as_secs()
    ))
}

/// The group writer: takes what is waiting, appends it in one transaction
/// bounded by the group's earliest deadline, answers each request with its
/// ids. Requests already past their deadline are answered "not accepted"
/// without being written.
async fn write_groups(
    store: std::sync::Arc<dyn super::Store>,
    to: Destination,
    mut rx: tokio::sync::mpsc::Receiver<Pending>,
) {
    while let Some(first) = rx.recv().await {
        let mut size = first.inputs.len();
        let mut group = vec![first];
        while size < GROUP_MAX {
            match rx.try_recv() {
                Ok(next) => {
                    size += next.inputs.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let now = std::time::Instant::now();
        let (live, late): (Vec<Pending>, Vec<Pending>) = group
            .into_iter()
            .partition(|p| p.deadline > now && !p.reply.is_closed());
        for p in late {
            let _ = p.reply.send(Err(too_late()));
        }
        let Some(deadline) = live.iter().map(|p| p.deadline).min() else {
            continue;
        };
        let lengths: Vec<usize> = live.iter().map(|p| p.inputs.len()).collect();
        let mut replies = Vec::with_capacity(live.len());
        let mut all = Vec::with_capacity(size);
        for p in live {
            all.extend(p.inputs);
            replies.push(p.reply);
        }
        match to.append(&*store, all, deadline).await {
            Ok(ids) => {
                to.wake();
                let mut ids = ids.into_iter();
                for (reply, n) in replies.into_iter().zip(lengths) {
                    let _ = reply.send(Ok(ids.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                let e = AppendError(e.to_string());
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::{Arc, Mutex};

    use futures::future::BoxFuture;
    use tokio::sync::{Notify, Semaphore};

    use super::*;
    use crate::store::{Store, StoreError, StoredEvent};
    use crate::telemetry::AuditRecord;

    /// A queue-only store whose appends wait for a permit, recording the
    /// size of each transaction.
    struct GatedStore {
        gate: Semaphore,
        transactions: Mutex<Vec<usize>>,
        next_id: AtomicI64,
        failing: AtomicBool,
    }

    impl Default for GatedStore {
        fn default() -> Self {
            GatedStore {
                gate: Semaphore::new(0),
                transactions: Mutex::default(),
                next_id: AtomicI64::new(0),
                failing: AtomicBool::new(false),
            }
        }
    }

    impl Store for GatedStore {
        fn append_inputs(
            &self,
            inputs: Vec<Input>,
            _: std::time::Instant,
        ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>> {
            Box::pin(async move {
                self.transactions.lock().unwrap().push(inputs.len());
                self.gate.acquire().await.unwrap().forget();
                if self.failing.load(Ordering::SeqCst) {
                    return Err(StoreError::Unsupported("disk full".into()));
                }
                let first = self
                    .next_id
                    .fetch_add(inputs.len() as i64, Ordering::SeqCst)
                    + 1;
                Ok((first..first + inputs.len() as i64).collect())
            })
        }
        fn load_snapshot(&self) -> BoxFuture<'_, Result<Option<serde_json::Value>, StoreError>> {
            unreachable!("the queue only appends")
        }
        fn save_snapshot(
            &self,
            _: crate::store::SnapshotDoc,
        ) -> BoxFuture<'_, Result<(), StoreError>> {
            unreachable!("the queue only appends")
        }
        fn append_audit(&self, _: Vec<AuditRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
            unreachable!("the queue only appends")
        }
        fn events(
            &self,
            _: usize,
            _: Option<i64>,
        ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
            unreachable!("the queue only appends")
        }
        fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
            unreachable!("the queue only appends")
        }
        fn inputs_after(
            &self,
            _: i64,
            _: usize,
        ) -> BoxFuture<'_, Result<Vec<StoredInput>, StoreError>> {
            unreachable!("the queue only appends")
        }
        fn prune_inputs(&self, _: i64, _: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
            unreachable!("the queue only appends")
        }
        fn prune_audit(&self, _: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
            unreachable!("the queue only appends")
        }
        fn claim_lease(
            &self,
            _: &crate::store::LeaseClaim,
        ) -> BoxFuture<'_, Result<crate::store::LeaseState, StoreError>> {
            unreachable!("the queue only appends")
        }
        fn release_lease(
            &self,
            _: &crate::store::LeaseClaim,
        ) -> BoxFuture<'_, Result<(), StoreError>> {
            unreachable!("the queue only appends")
        }
        fn claim_write(
            &self,
            _: &crate::store::WriteClaim,
        ) -> BoxFuture<'_, Result<crate::store::WriteGrant, StoreError>> {
            unreachable!("the queue only appends")
        }
        fn for_account(&self, _: &str) -> Arc<dyn Store> {
            unreachable!("the queue only appends")
        }
        fn events_for(
            &self,
            _: Option<&[String]>,
            _: usize,
            _: Option<i64>,
        ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
            unreachable!("the queue only appends")
        }
        fn append_shared_inputs(
            &self,
            _: Vec<Input>,
            _: std::time::Instant,
        ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>> {
            unreachable!("the queue only appends")
        }
        fn watch_inputs(&self, _: Arc<Notify>, _: tokio_util::sync::CancellationToken) {
            unreachable!("the queue only appends")
        }
        fn heartbeat(
            &self,
            _: &crate::store::LeaseClaim,
        ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
            unreachable!("the queue only appends")
        }
        fn leave(&self, _: &crate::store::LeaseClaim) -> BoxFuture<'_, Result<(), StoreError>> {
            unreachable!("the queue only appends")
        }
        fn leases(&self) -> BoxFuture<'_, Result<Vec<crate::store::LeaseRow>, StoreError>> {
            unreachable!("the queue only appends")
        }
    }

    fn release(actor: &str) -> Input {
        Input::FlapRelease {
            actor: actor.into(),
        }
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn requests_arriving_during_a_commit_share_the_next_transaction() {
        let store = Arc::new(GatedStore::default());
        let wake = Arc::new(Notify::new());
        let queue = Queue::new(store.clone(), wake.clone());

        let first = tokio::spawn({
            let q = queue.clone();
            async move { q.append(vec![release("first")]).await }
        });
        settle().await;
        assert_eq!(
            *store.transactions.lock().unwrap(),
            [1],
            "first is committing"
        );
        let waiting: Vec<_> = (0..10)
            .map(|i| {
                let q = queue.clone();
                tokio::spawn(async move { q.append(vec![release(&i.to_string()); 2]).await })
            })
            .collect();
        settle().await;

        store.gate.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap(), [1]);
        let mut ids = Vec::new();
        for w in waiting {
            let got = w.await.unwrap().unwrap();
            assert_eq!(got.len(), 2, "each caller gets its own ids");
            ids.extend(got);
        }
        assert_eq!(
            *store.transactions.lock().unwrap(),
            [1, 20],
            "the ten waiting requests went in one transaction"
        );
        ids.sort_unstable();
        assert_eq!(ids, (2..=21).collect::<Vec<i64>>());
        // The loop was told.
        tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified())
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn a_failed_transaction_fails_every_request_of_its_group() {
        let store = Arc::new(GatedStore::default());
        store.failing.store(true, Ordering::SeqCst);
        let queue = Queue::new(store.clone(), Arc::new(Notify::new()));
        let a = tokio::spawn({
            let q = queue.clone();
            async move { q.append(vec![release("a")]).await }
        });
        settle().await;
        let b = tokio::spawn({
            let q = queue.clone();
            async move { q.append(vec![release("b")]).await }
        });
        let c = tokio::spawn({
            let q = queue.clone();
            async move { q.append(vec![release("c")]).await }
        });
        settle().await;
        store.gate.add_permits(2);
        for r in [a, b, c] {
            let err = r.await.unwrap().unwrap_err();
            assert!(err.to_string().contains("disk full"), "{err}");
        }
        assert_eq!(*store.transactions.lock().unwrap(), [1, 2]);
    }
}
