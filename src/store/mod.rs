//! Persistence: the engine snapshot (probe and rule states, timers, alerts,
//! override, flap latch), the durable input queue (`inputs.rs`: alerts and
//! operator changes, written before their sender gets a 2xx) and the audit
//! log.
//!
//! `Store` is the seam for the backends: SQLite (`sqlite.rs`, embedded
//! default, one replica) and PostgreSQL (`postgres/`, a database several
//! replicas can share). Both hold the same
//! model: every row carries the account it belongs to, a store handle reads
//! and writes one account (`store::open` returns `DEFAULT_ACCOUNT`'s;
//! [`Store::for_account`] gives another account's handle over the same
//! connections), and both refuse a database migrated by a newer build. What
//! is not one account's: shared inputs (`inputs.rs`), the audit log read
//! across accounts ([`Store::events_for`]), and cluster membership
//! (`lease.rs`: the `replicas` table and every account's lease). The engine
//! snapshot is stored as an opaque JSON document so the store does not
//! depend on engine internals, and a changed engine can migrate its own format.
//!
//! [`open`] does not fail on a damaged or read-only SQLite file (see
//! `sqlite/open.rs`): the first is moved aside for a fresh one, the second
//! opened read-only; [`Store::open_outcome`] says which.
//!
//! **Invariant:** the daemon persists the snapshot *before* it hands a new
//! desired state to the actuator. After a crash (even `kill -9`) the restored
//! desired state is therefore never behind what Talkdesk was told, so a
//! restart causes no extra on/off.

pub mod audit;
mod error;
pub mod inputs;
pub mod lease;
pub mod postgres;
pub mod sqlite;
mod wake;

use futures::future::BoxFuture;

pub use audit::StoreAudit;
pub use error::StoreError;
pub use inputs::{Input, SHARED_ACCOUNT, StoredInput};
pub use lease::{LeaseClaim, LeaseRow, LeaseState, WriteClaim, WriteGrant};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::domain::Timestamp;
use crate::telemetry::AuditRecord;

/// An engine snapshot document as the store writes it: JSON text, encoded
/// once by the loop and shared (a clone is a reference count) until a store
/// has written it. Text rather than a `serde_json::Value` tree: at 10,000
/// probes the tree was about 9 MB of small allocations per snapshot, kept
/// alive between snapshots by the writer's channel and copied once more for
/// each write (BENCHMARKS.md, "SIP OPTIONS").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotDoc(std::sync::Arc<String>);

impl SnapshotDoc {
    /// Encodes `value` as JSON (the only way to build one: the text is
    /// always a JSON document), into a buffer of `capacity` bytes to start
    /// with: given the previous document's length, a text of megabytes is
    /// written without growing (each growth held the old buffer and one
    /// twice its size at once).
    pub fn encode<T: serde::Serialize + ?Sized>(
        value: &T,
        capacity: usize,
    ) -> Result<Self, serde_json::Error> {
        let mut buf = Vec::with_capacity(capacity);
        serde_json::to_writer(&mut buf, value)?;
        // serde_json writes only valid UTF-8.
        let text = String::from_utf8(buf).map_err(serde::ser::Error::custom)?;
        // Arc<String>, not Arc<str>: no second copy of a text of megabytes.
        Ok(SnapshotDoc(std::sync::Arc::new(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<serde_json::Value> for SnapshotDoc {
    fn from(value: serde_json::Value) -> Self {
        SnapshotDoc(std::sync::Arc::new(value.to_string()))
    }
}

/// An audit record as stored, with its id (the paging cursor of `/v1/events`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredEvent {
    pub id: i64,
    /// The account the record belongs to.
    pub account: String,
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// Rows deleted per statement when pruning.
pub const PRUNE_BATCH: i64 = 5_000;

/// What every backend provides. Methods are async so network backends fit;
/// the SQLite backend runs its blocking calls on the blocking pool.
pub trait Store: Send + Sync + 'static {
    /// A handle for `account` over this store's connections (pool, LISTEN
    /// connection, SQLite file): many accounts, one set of connections.
    fn for_account(&self, account: &str) -> std::sync::Arc<dyn Store>;
    /// The last saved engine snapshot, if any.
    fn load_snapshot(&self) -> BoxFuture<'_, Result<Option<serde_json::Value>, StoreError>>;
    /// Replaces the engine snapshot durably (returns after the data is on disk).
    fn save_snapshot(&self, snapshot: SnapshotDoc) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Appends audit records in one transaction, committed on return;
    /// except on SQLite, which parks them to ride in its next write
    /// transaction (`sqlite/riders.rs`) and commits them within 50 ms
    /// either way. A read of the audit log sees them at once; to commit
    /// them now, [`Store::flush_audit`].
    fn append_audit(&self, records: Vec<AuditRecord>) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Commits audit records appended but not committed yet (see
    /// [`Store::append_audit`]); the audit writer's last act on shutdown.
    fn flush_audit(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    /// Audit records newest first; `before` is an id cursor from a previous page.
    fn events(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>>;
    /// Audit records of several accounts (`None`: every account), newest
    /// first; `before` is an id cursor from a previous page.
    fn events_for(
        &self,
        accounts: Option<&[String]>,
        limit: usize,
        before: Option<i64>,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>>;
    /// Cheap liveness check for `/readyz`.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Appends inputs to the queue in one transaction (all or none) and
    /// returns their ids, in order. Durable on return. Nothing commits
    /// after `deadline`: a transaction that could not begin (a lock held
    /// elsewhere, a slow server) or finish its statements by then is rolled
    /// back and answered [`StoreError::Deadline`], so a caller told "not
    /// accepted" is never contradicted by a late commit. (Only a COMMIT
    /// already sent whose answer is lost on the network stays unknown.)
    fn append_inputs(
        &self,
        inputs: Vec<Input>,
        deadline: std::time::Instant,
    ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>>;
    /// Appends inputs every account reads ([`SHARED_ACCOUNT`]), in one
    /// transaction (all or none), and wakes every account's loop; returns
    /// their ids, in order. Durable on return; `deadline` as for
    /// [`Store::append_inputs`].
    fn append_shared_inputs(
        &self,
        inputs: Vec<Input>,
        deadline: std::time::Instant,
    ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>>;
    /// Up to `limit` inputs with an id above `after`, in id order: this
    /// account's and the shared ones.
    fn inputs_after(
        &self,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredInput>, StoreError>>;
    /// Deletes this account's inputs with an id up to `applied` accepted
    /// before `before`, and shared inputs older than
    /// [`inputs::SHARED_RETENTION`]; returns how many.
    fn prune_inputs(
        &self,
        applied: i64,
        before: Timestamp,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Deletes this account's audit records from before `before`, in
    /// batches so no single statement holds the store long; returns how many.
    fn prune_audit(&self, before: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Wakes `wake` whenever inputs for this account or shared inputs are
    /// appended (by this process or, with PostgreSQL, another one), until
    /// `cancel` fires. The loop also polls every second.
    fn watch_inputs(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        cancel: tokio_util::sync::CancellationToken,
    );
    /// Renews or takes this account's lease (see [`lease`] for the rules).
    fn claim_lease(&self, claim: &LeaseClaim) -> BoxFuture<'_, Result<LeaseState, StoreError>>;
    /// Ends this process's lease now (graceful shutdown), so another
    /// replica need not wait for it to expire. A lease it does not hold is
    /// left alone.
    fn release_lease(&self, claim: &LeaseClaim) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Checks that `claim` may write now and records the write if so.
    fn claim_write(&self, claim: &WriteClaim) -> BoxFuture<'_, Result<WriteGrant, StoreError>>;
    /// Cluster membership (any handle; not one account's): keeps this
    /// replica's row alive for `me.ttl` by the store's clock and returns the
    /// instance ids of every live replica, sorted (this one included).
    fn heartbeat(&self, me: &LeaseClaim) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    /// Removes this process's membership row (graceful stop), so the other
    /// replicas rebalance at once.
    fn leave(&self, me: &LeaseClaim) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Every account's lease as the store has it now (any handle).
    fn leases(&self) -> BoxFuture<'_, Result<Vec<LeaseRow>, StoreError>>;
    /// What opening the store found (any handle): the daemon audits a
    /// recovery, `/readyz` reports a read-only store.
    fn open_outcome(&self) -> OpenOutcome {
        OpenOutcome::Writable
    }
}

/// What `store::open` found besides a store to use as usual (SQLite only,
/// `sqlite/open.rs`). PostgreSQL is always `Writable`: a server that refuses
/// writes is an outage (saves and lease claims fail and are retried until it
/// accepts them again), not a damaged file to move aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenOutcome {
    /// Opened (and migrated) as usual.
    Writable,
    /// The file at `path` was damaged: it (and its `-wal`/`-shm`) was moved
    /// to `moved_to`, and this store is a fresh file.
    Recovered {
        path: std::path::PathBuf,
        moved_to: std::path::PathBuf,
        reason: String,
    },
    /// The file, its directory or the filesystem refuses writes: opened
    /// read-only. Reads work; every write fails, the lease claim included.
    ReadOnly { reason: String },
}

/// The account of a configuration without several Talkdesk accounts.
pub use crate::config::DEFAULT_ACCOUNT;

/// Opens the store named by `store.url` for `DEFAULT_ACCOUNT`, creating or
/// migrating its schema.
pub async fn open(
    config: &crate::config::schema::StoreConfig,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let url = config.url.as_str();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = SqliteStore::open(std::path::Path::new(path)).await?;
        Ok(std::sync::Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::open(url, config.password.as_ref(), DEFAULT_ACCOUNT).await?;
        Ok(std::sync::Arc::new(store))
    } else {
        // Only the scheme: the rest of a URL may hold a password.
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        Err(StoreError::Unsupported(format!(
            "unknown store URL scheme {scheme:?}; use sqlite:// or postgres://"
        )))
    }
}
