//! Persistence: the engine snapshot (probe and rule states, timers, alerts,
//! override, flap latch) and the audit log.
//!
//! `Store` is the seam for the backends: SQLite (embedded default, one
//! replica) now; PostgreSQL (several replicas, leader election) later. The
//! engine snapshot is stored as an opaque JSON document so the store does not
//! depend on engine internals, and a changed engine can migrate its own format.
//!
//! **Invariant:** the daemon persists the snapshot *before* it hands a new
//! desired state to the actuator. After a crash (even `kill -9`) the restored
//! desired state is therefore never behind what Talkdesk was told, so a
//! restart causes no extra on/off.

pub mod audit;
mod error;
pub mod sqlite;

use futures::future::BoxFuture;

pub use audit::StoreAudit;
pub use error::StoreError;
pub use sqlite::SqliteStore;

use crate::telemetry::AuditRecord;

/// An audit record as stored, with its id (the paging cursor of `/v1/events`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredEvent {
    pub id: i64,
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// What every backend provides. Methods are async so network backends fit;
/// the SQLite backend runs its blocking calls on the blocking pool.
pub trait Store: Send + Sync + 'static {
    /// The last saved engine snapshot, if any.
    fn load_snapshot(&self) -> BoxFuture<'_, Result<Option<serde_json::Value>, StoreError>>;
    /// Replaces the engine snapshot durably (returns after the data is on disk).
    fn save_snapshot(&self, snapshot: serde_json::Value) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Appends audit records in one transaction.
    fn append_audit(&self, records: Vec<AuditRecord>) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Audit records newest first; `before` is an id cursor from a previous page.
    fn events(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>>;
    /// Cheap liveness check for `/readyz`.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// Opens the store named by `store.url`.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = SqliteStore::open(std::path::Path::new(path)).await?;
        Ok(std::sync::Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Err(StoreError::Unsupported(
            "the PostgreSQL store (several replicas) is not available in this build yet".into(),
        ))
    } else {
        Err(StoreError::Unsupported(format!(
            "unknown store URL scheme in {url:?}"
        )))
    }
}
