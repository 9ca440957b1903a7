//! The embedded store: one SQLite file in WAL mode with `synchronous = FULL`,
//! so a committed transaction survives a power cut, and operators can inspect
//! it with the `sqlite3` CLI. Opening it (`open.rs`) moves a damaged file
//! aside and serves a read-only one read-only, rather than failing the start.

mod open;
mod riders;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::inputs::{SHARED_ACCOUNT, SHARED_RETENTION};
use super::wake::Wakers;
use super::{
    Input, LeaseClaim, LeaseRow, LeaseState, OpenOutcome, SnapshotDoc, Store, StoreError,
    StoredEvent, StoredInput, WriteClaim, WriteGrant,
};
use crate::domain::Timestamp;
use crate::telemetry::AuditRecord;

/// Schema steps, applied once each and in order, all in one transaction;
/// `meta.schema_version` records the last one applied. The same model as the
/// PostgreSQL store (`postgres/migrations/`): never edit a released step.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, V1_INITIAL),
    (2, V2_ACCOUNT),
    (3, V3_INPUTS),
    (4, V4_LEASES),
    (5, V5_CLUSTER),
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

const V1_INITIAL: &str = "
CREATE TABLE IF NOT EXISTS engine_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    snapshot   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    message TEXT NOT NULL,
    data    TEXT
);
CREATE INDEX IF NOT EXISTS audit_kind ON audit (kind, id);
";

/// Every row carries its Talkdesk account; existing rows are `default`'s.
const V2_ACCOUNT: &str = "
ALTER TABLE audit ADD COLUMN account TEXT NOT NULL DEFAULT 'default';
DROP INDEX audit_kind;
CREATE INDEX audit_account_id ON audit (account, id);
CREATE INDEX audit_account_kind ON audit (account, kind, id);
CREATE TABLE engine_state_v2 (
    account    TEXT PRIMARY KEY,
    snapshot   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO engine_state_v2 (account, snapshot, updated_at)
    SELECT 'default', snapshot, updated_at FROM engine_state;
DROP TABLE engine_state;
ALTER TABLE engine_state_v2 RENAME TO engine_state;
";

/// The durable input queue (`store/inputs.rs`). `AUTOINCREMENT`: an id is
/// never reused, even after the newest rows were pruned, so a cursor never
/// skips a new input.
const V3_INPUTS: &str = "
CREATE TABLE inputs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account     TEXT NOT NULL,
    accepted_at INTEGER NOT NULL,
    input       TEXT NOT NULL
);
CREATE INDEX inputs_account_id ON inputs (account, id);
";

/// Leadership, as in the PostgreSQL store (`store::lease`). A SQLite file
/// serves one replica, which always wins its claim (a restarted process
/// takes over at once); the epoch still counts its terms, and its writes are
/// recorded alike. Times are this host's
/// wall-clock milliseconds: there is no other clock to disagree with.
const V4_LEASES: &str = "
CREATE TABLE leases (
    account     TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    token       TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE TABLE writes (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    epoch   INTEGER NOT NULL,
    holder  TEXT NOT NULL,
    op      TEXT NOT NULL,
    at      INTEGER NOT NULL
);
";

/// Sharded leadership, as in the PostgreSQL store (`store::lease`): who
/// asked for a lease, and the replicas' membership rows. One replica per
/// file: its heartbeat removes every other row.
const V5_CLUSTER: &str = "
ALTER TABLE leases ADD COLUMN wanted_by TEXT;
ALTER TABLE leases ADD COLUMN wanted_at INTEGER;
CREATE TABLE replicas (
    instance_id TEXT PRIMARY KEY,
    token       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
";

/// A handle: one account's view of a file every handle shares.
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads that must not wait behind a write (`open::reader`); the
    /// writing connection itself when the file is open read-only.
    /// Declared before `conn` so it is dropped first: SQLite checkpoints and
    /// removes the WAL when the last connection closes, and a read-only
    /// connection closing last cannot, which would leave `-wal` and `-shm`
    /// behind after a clean stop.
    reader: Arc<Mutex<Connection>>,
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    account: Arc<str>,
    wakers: Arc<Wakers>,
    /// Audit records waiting to ride in the next write transaction
    /// (`riders.rs`).
    parked: Arc<riders::Parked>,
    /// What the open found (every handle of the file shares it).
    outcome: Arc<OpenOutcome>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("account", &self.account)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating directories and the file as needed) and migrates, for
    /// `store::DEFAULT_ACCOUNT`; a damaged file is moved aside first, a
    /// read-only one opened read-only (`open.rs`, [`Store::open_outcome`]).
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_for_account(path, super::DEFAULT_ACCOUNT).await
    }

    /// Like `open`, for the rows of `account` only.
    pub async fn open_for_account(path: &Path, account: &str) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        let p = path.clone();
        let (conn, reader, outcome) = tokio::task::spawn_blocking(move || {
            let (conn, outcome) = open::open(&p)?;
            let reader = match outcome {
                OpenOutcome::ReadOnly { .. } => None,
                _ => Some(open::reader(&p)?),
            };
            Ok::<_, StoreError>((conn, reader, outcome))
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))??;
        let conn = Arc::new(Mutex::new(conn));
        let reader = reader.map_or_else(|| conn.clone(), |r| Arc::new(Mutex::new(r)));
        Ok(SqliteStore {
            conn,
            reader,
            path,
            account: account.into(),
            wakers: Arc::default(),
            parked: Arc::default(),
            outcome: Arc::new(outcome),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    fn with<T, F>(&self, f: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::on(self.conn.clone(), f)
    }

    /// Like [`with`](Self::with), but waits for the connection only until
    /// `deadline` ([`StoreError::Deadline`] then, nothing done): an input
    /// append must not wait past its deadline behind other writes of this
    /// process (audit rows, snapshots), each of which may wait up to the busy
    /// timeout for another process's lock.
    fn with_until<T, F>(
        &self,
        deadline: std::time::Instant,
        f: F,
    ) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        Box::pin(async move {
            let guard = tokio::time::timeout_at(deadline.into(), conn.lock_owned())
                .await
                .map_err(|_| StoreError::Deadline)?;
            Self::run_blocking(guard, f).await
        })
    }

    /// Commits the parked audit records (`riders.rs`) with the writing
    /// connection held: on return, every record parked before the call is
    /// committed, by a transaction it rode in or by this one.
    fn commit_parked(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let parked = self.parked.clone();
        self.with(move |c| parked.flush(c))
    }

    /// `read` of the audit log after committing what is parked, so a reader
    /// sees every record appended before it asked. Always through the
    /// writing connection, even when nothing is parked: records a flush or
    /// a transaction has taken are not parked any more, yet not committed
    /// until that connection is free. Skipping the commit when nothing was
    /// parked let a read overtake the scheduled flush and miss them
    /// (`store_suite`'s audit pruning test, once in a full run).
    fn flushed_then<T: Send + 'static>(
        &self,
        read: BoxFuture<'static, Result<T, StoreError>>,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let flush = self.commit_parked();
        Box::pin(async move {
            flush.await?;
            read.await
        })
    }

    /// Runs the read `f` with the reading connection on the blocking pool.
    fn read<T, F>(&self, f: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::on(self.reader.clone(), f)
    }

    fn on<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Box::pin(async move { Self::run_blocking(conn.lock_owned().await, f).await })
    }

    /// Runs `f` on the blocking pool with the connection held. An async
    /// lock: a caller waiting for it can give up (`with_until`), and a panic
    /// in `f` releases it (the connection itself is still usable).
    async fn run_blocking<T, F>(
        mut guard: OwnedMutexGuard<Connection>,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || f(&mut guard))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }
}

/// Appends `inputs` under `account` in one transaction; their ids in order.
/// Bounded by `deadline` (`Store::append_inputs`): the write lock is waited
/// for only until then (another process's transaction, or this one's
/// connection busy with a slow write, make it late), and once held the
/// inserts and the commit need no other lock. Late means not begun, so
/// nothing is kept.
fn append(
    c: &mut Connection,
    parked: &riders::Parked,
    account: &str,
    inputs: &[Input],
    deadline: std::time::Instant,
) -> Result<Vec<i64>, StoreError> {
    let late = || StoreError::Deadline;
    let left = deadline
        .checked_duration_since(std::time::Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(late)?;
    c.busy_timeout(left)?;
    let appended = insert(c, parked, account, inputs);
    c.busy_timeout(open::BUSY_TIMEOUT)?;
    appended.map_err(|e| match &e {
        StoreError::Sqlite(s)
            if matches!(
                s.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            late()
        }
        _ => e,
    })
}

/// The transaction of [`append`]: `IMMEDIATE` takes the write lock first
/// (waiting at most the busy timeout), so nothing after it waits for a
/// lock. Any error before the commit rolls it back.
fn insert(
    c: &mut Connection,
    parked: &riders::Parked,
    account: &str,
    inputs: &[Input],
) -> Result<Vec<i64>, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = Timestamp::now().as_millis();
    let mut ids = Vec::with_capacity(inputs.len());
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO inputs (account, accepted_at, input) VALUES (?1, ?2, ?3)",
        )?;
        for input in inputs {
            let text = serde_json::to_string(input)?;
            stmt.execute(params![account, now, text])?;
            ids.push(tx.last_insert_rowid());
        }
    }
    parked.commit(tx)?;
    Ok(ids)
}

/// Audit rows (`id, account, at, kind, message, data`) as events.
fn read_events(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, account, at, kind, message, data) = row?;
        let data = match data {
            Some(d) => serde_json::from_str(&d)?,
            None => serde_json::Value::Null,
        };
        out.push(StoredEvent {
            id,
            account,
            record: AuditRecord {
                at: Timestamp(at),
                kind: kind.into(),
                message,
                data,
            },
        });
    }
    Ok(out)
}

/// Brings the file to `SCHEMA_VERSION` or refuses a newer one. `IMMEDIATE`
/// takes the write lock first, so two processes opening one file cannot both
/// apply a step.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )?;
    let found = schema_version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (_, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        tx.execute_batch(sql)?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![SCHEMA_VERSION.to_string()],
    )?;
    tx.commit()?;
    Ok(())
}

/// The schema version the file records (0: none yet).
fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

impl Store for SqliteStore {
    fn for_account(&self, account: &str) -> Arc<dyn Store> {
        Arc::new(SqliteStore {
            account: account.into(),
            ..self.clone()
        })
    }

    fn load_snapshot(&self) -> BoxFuture<'_, Result<Option<serde_json::Value>, StoreError>> {
        let account = self.account.clone();
        self.read(move |c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT snapshot FROM engine_state WHERE account = ?1",
                    params![&*account],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match text {
                Some(t) => Some(serde_json::from_str(&t)?),
                None => None,
            })
        })
    }

    fn save_snapshot(&self, snapshot: SnapshotDoc) -> BoxFuture<'_, Result<(), StoreError>> {
        let account = self.account.clone();
        let parked = self.parked.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO engine_state (account, snapshot, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at",
                params![&*account, snapshot.as_str(), Timestamp::now().as_millis()],
            )?;
            parked.commit(tx)
        })
    }

    /// Parks the records to ride in the next write transaction, and
    /// schedules their own commit in [`riders::RIDE`] in case none comes
    /// (`riders.rs` says why). Returns once they are parked.
    fn append_audit(&self, records: Vec<AuditRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        if self.parked.park(&self.account, records) {
            let store = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(riders::RIDE).await;
                store.parked.flush_begins();
                if let Err(error) = store.commit_parked().await {
                    tracing::error!(message = "Failed to write audit records.", %error);
                }
            });
        }
        Box::pin(async { Ok(()) })
    }

    fn flush_audit(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.commit_parked()
    }

    fn events(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
        let account = self.account.clone();
        let read = self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, account, at, kind, message, data FROM audit
                 WHERE account = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            read_events(
                &mut stmt,
                params![&*account, before.unwrap_or(i64::MAX), limit as i64],
            )
        });
        self.flushed_then(read)
    }

    fn events_for(
        &self,
        accounts: Option<&[String]>,
        limit: usize,
        before: Option<i64>,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
        // A JSON array keeps one cached statement for any number of accounts.
        let accounts = accounts.map(|a| serde_json::to_string(a).unwrap_or_default());
        let read = self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, account, at, kind, message, data FROM audit
                 WHERE (?1 IS NULL OR account IN (SELECT value FROM json_each(?1)))
                   AND id < ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            read_events(
                &mut stmt,
                params![accounts, before.unwrap_or(i64::MAX), limit as i64],
            )
        });
        self.flushed_then(read)
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.with(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
    }

    fn append_inputs(
        &self,
        inputs: Vec<Input>,
        deadline: std::time::Instant,
    ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>> {
        let account = self.account.clone();
        let wakers = self.wakers.clone();
        let parked = self.parked.clone();
        self.with_until(deadline, move |c| {
            let ids = append(c, &parked, &account, &inputs, deadline)?;
            wakers.wake(&account);
            Ok(ids)
        })
    }

    fn append_shared_inputs(
        &self,
        inputs: Vec<Input>,
        deadline: std::time::Instant,
    ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>> {
        let wakers = self.wakers.clone();
        let parked = self.parked.clone();
        self.with_until(deadline, move |c| {
            let ids = append(c, &parked, SHARED_ACCOUNT, &inputs, deadline)?;
            wakers.wake(SHARED_ACCOUNT);
            Ok(ids)
        })
    }

    fn inputs_after(
        &self,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredInput>, StoreError>> {
        let account = self.account.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, accepted_at, input FROM inputs
                 WHERE account IN (?1, ?2) AND id > ?3 ORDER BY id LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![&*account, SHARED_ACCOUNT, after, limit as i64],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (id, accepted_at, text) = row?;
                out.push(StoredInput {
                    id,
                    accepted_at: Timestamp(accepted_at),
                    input: serde_json::from_str(&text)?,
                });
            }
            Ok(out)
        })
    }

    fn prune_inputs(
        &self,
        applied: i64,
        before: Timestamp,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        let account = self.account.clone();
        self.with(move |c| {
            let own = c.execute(
                "DELETE FROM inputs WHERE account = ?1 AND id <= ?2 AND accepted_at < ?3",
                params![&*account, applied, before.as_millis()],
            )?;
            let shared = c.execute(
                "DELETE FROM inputs WHERE account = ?1 AND accepted_at < ?2",
                params![
                    SHARED_ACCOUNT,
                    Timestamp::now().sub(SHARED_RETENTION).as_millis()
                ],
            )?;
            Ok((own + shared) as u64)
        })
    }

    fn watch_inputs(
        &self,
        wake: Arc<tokio::sync::Notify>,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        // One process writes the file: its own appends are all there is.
        self.wakers.add(&self.account, wake, cancel);
    }

    fn prune_audit(&self, before: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        let account = self.account.clone();
        let parked = self.parked.clone();
        self.with(move |c| {
            // What is parked was appended before this call: pruned alike.
            parked.flush(c)?;
            let mut total = 0u64;
            loop {
                let n = c.execute(
                    "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE account = ?1 AND at < ?2 ORDER BY id LIMIT ?3)",
                    params![&*account, before.as_millis(), super::PRUNE_BATCH],
                )?;
                total += n as u64;
                if n < super::PRUNE_BATCH as usize {
                    return Ok(total);
                }
            }
        })
    }

    fn claim_lease(&self, claim: &LeaseClaim) -> BoxFuture<'_, Result<LeaseState, StoreError>> {
        let account = self.account.clone();
        let claim = claim.clone();
        let parked = self.parked.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = Timestamp::now().as_millis();
            let expires = now.saturating_add(claim.ttl.as_millis() as i64);
            let current: Option<(String, String, i64, i64)> = tx
                .query_row(
                    "SELECT holder, token, epoch, expires_at FROM leases WHERE account = ?1",
                    params![&*account],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            // One replica per file: the claim always wins; only a renewal of
            // this process's own live lease keeps the epoch.
            let state = match current {
                Some((_, token, epoch, until)) if token == claim.token && until > now => {
                    // A renewal keeps who asked for the lease.
                    tx.execute(
                        "UPDATE leases SET expires_at = ?2 WHERE account = ?1",
                        params![&*account, expires],
                    )?;
                    LeaseState {
                        holder: claim.instance_id.clone(),
                        epoch,
                        held: true,
                    }
                }
                previous => {
                    let epoch = previous.map_or(1, |p| p.2 + 1);
                    tx.execute(
                        "INSERT INTO leases (account, holder, token, epoch, acquired_at, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (account) DO UPDATE SET holder = excluded.holder,
                             token = excluded.token, epoch = excluded.epoch,
                             acquired_at = excluded.acquired_at, expires_at = excluded.expires_at,
                             wanted_by = NULL, wanted_at = NULL",
                        params![&*account, claim.instance_id, claim.token, epoch, now, expires],
                    )?;
                    LeaseState {
                        holder: claim.instance_id.clone(),
                        epoch,
                        held: true,
                    }
                }
            };
            parked.commit(tx)?;
            Ok(state)
        })
    }

    fn release_lease(&self, claim: &LeaseClaim) -> BoxFuture<'_, Result<(), StoreError>> {
        let account = self.account.clone();
        let token = claim.token.clone();
        self.with(move |c| {
            c.execute(
                "UPDATE leases SET expires_at = ?3 WHERE account = ?1 AND token = ?2",
                params![&*account, token, Timestamp::now().as_millis()],
            )?;
            Ok(())
        })
    }

    fn claim_write(&self, claim: &WriteClaim) -> BoxFuture<'_, Result<WriteGrant, StoreError>> {
        let account = self.account.clone();
        let claim = claim.clone();
        let parked = self.parked.clone();
        self.with(move |c| {
            let now = Timestamp::now().as_millis();
            let need = now.saturating_add(claim.margin.as_millis() as i64);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let until: Option<i64> = tx
                .query_row(
                    "SELECT expires_at FROM leases
                     WHERE account = ?1 AND token = ?2 AND epoch = ?3 AND expires_at > ?4",
                    params![&*account, claim.token, claim.epoch, need],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(until) = until else {
                return Ok(WriteGrant::Refused);
            };
            tx.execute(
                "INSERT INTO writes (account, epoch, holder, op, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&*account, claim.epoch, claim.instance_id, claim.op, now],
            )?;
            parked.commit(tx)?;
            Ok(WriteGrant::Granted {
                remaining: std::time::Duration::from_millis((until - now).max(0) as u64),
            })
        })
    }

    fn heartbeat(&self, me: &LeaseClaim) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let me = me.clone();
        let parked = self.parked.clone();
        self.with(move |c| {
            let now = Timestamp::now();
            // One replica per file, and nobody else reads this row but this
            // process: while it is the only row and lives at least half its
            // time to live, the heartbeat (every 250 ms) writes nothing. A
            // commit each time was four fsyncs a second on an idle agent,
            // each one in the way of a decision's commits.
            let fresh: bool = c.query_row(
                "SELECT count(*) = 1 AND coalesce(sum(instance_id = ?1 AND token = ?2 AND expires_at >= ?3), 0) = 1
                 FROM replicas",
                params![me.instance_id, me.token, now.add(me.ttl / 2).as_millis()],
                |r| r.get(0),
            )?;
            if fresh {
                return Ok(vec![me.instance_id]);
            }
            let expires = now.add(me.ttl).as_millis();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Whatever else is listed is a previous process (another
            // instance_id before a rename), gone.
            tx.execute("DELETE FROM replicas WHERE instance_id <> ?1", params![me.instance_id])?;
            tx.execute(
                "INSERT INTO replicas (instance_id, token, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (instance_id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at",
                params![me.instance_id, me.token, expires],
            )?;
            parked.commit(tx)?;
            Ok(vec![me.instance_id])
        })
    }

    fn leave(&self, me: &LeaseClaim) -> BoxFuture<'_, Result<(), StoreError>> {
        let me = me.clone();
        self.with(move |c| {
            c.execute(
                "DELETE FROM replicas WHERE instance_id = ?1 AND token = ?2",
                params![me.instance_id, me.token],
            )?;
            Ok(())
        })
    }

    fn open_outcome(&self) -> OpenOutcome {
        (*self.outcome).clone()
    }

    fn leases(&self) -> BoxFuture<'_, Result<Vec<LeaseRow>, StoreError>> {
        self.with(move |c| {
            let now = Timestamp::now().as_millis();
            let mut stmt = c.prepare_cached(
                "SELECT account, holder, epoch, expires_at, wanted_by, wanted_at FROM leases ORDER BY account",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (account, holder, epoch, expires_at, wanted_by, wanted_at) = row?;
                let wanted = wanted_by.zip(wanted_at).map(|(who, at)| {
                    (who, std::time::Duration::from_millis((now - at).max(0) as u64))
                });
                out.push(LeaseRow { account, holder, epoch, live: expires_at > now, wanted });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::AuditKind;

    /// A store on a new file (`a.db` in a directory of its own, removed
    /// with the returned guard).
    async fn fresh() -> (tempfile::TempDir, PathBuf, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = SqliteStore::open(&path).await.unwrap();
        (dir, path, store)
    }

    /// Counts the commits of the store's writing connection.
    async fn count_commits(store: &SqliteStore) -> Arc<std::sync::atomic::AtomicUsize> {
        let commits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = commits.clone();
        store
            .conn
            .lock()
            .await
            .commit_hook(Some(move || {
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                false
            }))
            .unwrap();
        commits
    }

    /// Audit rows in the file, read on a connection of its own (not through
    /// `events`, which commits what is parked first).
    fn audit_rows(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap()
    }

    fn records(n: i64) -> Vec<AuditRecord> {
        (0..n)
            .map(|i| AuditRecord::new(Timestamp(i), AuditKind::Decision, format!("record {i}")))
            .collect()
    }

    /// Long enough for a scheduled flush to have run.
    async fn past_the_ride() {
        tokio::time::sleep(riders::RIDE * 2).await;
    }

    #[tokio::test]
    async fn audit_records_ride_in_the_next_write_instead_of_a_commit_of_their_own() {
        let (_dir, path, store) = fresh().await;
        let commits = count_commits(&store).await;
        let n = || commits.load(std::sync::atomic::Ordering::SeqCst);
        store.append_audit(records(2)).await.unwrap();
        assert_eq!(audit_rows(&path), 0, "parked");
        store
            .save_snapshot(SnapshotDoc::from(serde_json::json!({"v": 1})))
            .await
            .unwrap();
        assert_eq!(n(), 1);
        assert_eq!(audit_rows(&path), 2, "committed with the snapshot");
        past_the_ride().await;
        assert_eq!(n(), 1, "nothing was left to commit on its own");
        // The same for an input append.
        store.append_audit(records(1)).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        store
            .append_inputs(
                vec![Input::FlapRelease {
                    actor: "ops".into(),
                }],
                deadline,
            )
            .await
            .unwrap();
        past_the_ride().await;
        assert_eq!(n(), 2);
        assert_eq!(audit_rows(&path), 3);
    }

    #[tokio::test]
    async fn parked_audit_records_commit_on_their_own_when_no_write_comes() {
        let (_dir, path, store) = fresh().await;
        let commits = count_commits(&store).await;
        // Two appends inside one ride: one flush commits both.
        store.append_audit(records(3)).await.unwrap();
        store.append_audit(records(2)).await.unwrap();
        past_the_ride().await;
        assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(audit_rows(&path), 5);
        // And the next append schedules a flush of its own.
        store.append_audit(records(1)).await.unwrap();
        past_the_ride().await;
        assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(audit_rows(&path), 6);
    }

    #[tokio::test]
    async fn flush_audit_commits_what_is_parked_at_once() {
        let (_dir, path, store) = fresh().await;
        store.append_audit(records(2)).await.unwrap();
        store.flush_audit().await.unwrap();
        assert_eq!(audit_rows(&path), 2);
    }

    /// A read that comes while a flush has taken the parked records but not
    /// yet committed them waits for that commit, and sees them.
    #[tokio::test]
    async fn a_read_of_the_audit_log_waits_for_records_being_committed() {
        let (_dir, _path, store) = fresh().await;
        store.append_audit(records(2)).await.unwrap();
        // A flush under way: the writing connection held, the records taken.
        let mut writer = store.conn.clone().lock_owned().await;
        let taken = store.parked.take();
        let reader = tokio::spawn({
            let store = store.clone();
            async move { store.events(10, None).await.unwrap().len() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let tx = writer.transaction().unwrap();
        riders::insert(&tx, &taken).unwrap();
        tx.commit().unwrap();
        drop(writer);
        assert_eq!(reader.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_read_of_the_audit_log_sees_records_still_parked() {
        let (_dir, path, store) = fresh().await;
        store.append_audit(records(2)).await.unwrap();
        assert_eq!(audit_rows(&path), 0, "parked");
        let events = store.events(10, None).await.unwrap();
        assert_eq!(events.len(), 2);
        store.append_audit(records(1)).await.unwrap();
        let all = store.events_for(None, 10, None).await.unwrap();
        assert_eq!(all.len(), 3);
    }

    #[tokio::test]
    async fn a_heartbeat_writes_only_when_the_row_would_be_past_half_its_life() {
        let (_dir, _, store) = fresh().await;
        let commits = count_commits(&store).await;
        let me = LeaseClaim {
            instance_id: "a".into(),
            token: "t1".into(),
            ttl: std::time::Duration::from_millis(400),
        };
        let n = || commits.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(store.heartbeat(&me).await.unwrap(), vec!["a".to_string()]);
        assert_eq!(n(), 1, "the first heartbeat writes the row");
        store.heartbeat(&me).await.unwrap();
        assert_eq!(n(), 1, "a fresh row is left alone");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        store.heartbeat(&me).await.unwrap();
        assert_eq!(n(), 2, "under half its life left: renewed");
        let restarted = LeaseClaim {
            token: "t2".into(),
            ..me.clone()
        };
        store.heartbeat(&restarted).await.unwrap();
        assert_eq!(n(), 3, "another process start writes its token");
        let renamed = LeaseClaim {
            instance_id: "b".into(),
            ..restarted
        };
        assert_eq!(
            store.heartbeat(&renamed).await.unwrap(),
            vec!["b".to_string()]
        );
        assert_eq!(n(), 4);
        let rows: i64 = store
            .conn
            .lock()
            .await
            .query_row("SELECT count(*) FROM replicas", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "the previous name's row is gone");
    }

    #[tokio::test]
    async fn snapshot_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.db");
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.load_snapshot().await.unwrap(), None);
        store
            .save_snapshot(serde_json::json!({"desired": "active", "n": 1}).into())
            .await
            .unwrap();
        store
            .save_snapshot(serde_json::json!({"desired": "active", "n": 2}).into())
            .await
            .unwrap();
        drop(store);
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(
            store.load_snapshot().await.unwrap(),
            Some(serde_json::json!({"desired": "active", "n": 2}))
        );
        let mode: String = store
            .conn
            .lock()
            .await
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .conn
            .lock()
            .await
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous = FULL");
    }

    #[tokio::test]
    async fn audit_pages_newest_first_with_a_cursor() {
        let (_dir, _, store) = fresh().await;
        let records: Vec<AuditRecord> = (0..5)
            .map(|i| {
                AuditRecord::new(Timestamp(i), AuditKind::Decision, format!("record {i}"))
                    .with_data(serde_json::json!({"i": i}))
            })
            .collect();
        store.append_audit(records).await.unwrap();
        let page1 = store.events(2, None).await.unwrap();
        assert_eq!(
            page1
                .iter()
                .map(|e| e.record.message.as_str())
                .collect::<Vec<_>>(),
            ["record 4", "record 3"]
        );
        let page2 = store.events(2, Some(page1[1].id)).await.unwrap();
        assert_eq!(
            page2
                .iter()
                .map(|e| e.record.message.as_str())
                .collect::<Vec<_>>(),
            ["record 2", "record 1"]
        );
        assert_eq!(page2[0].record.data, serde_json::json!({"i": 2}));
    }

    #[tokio::test]
    async fn a_version_1_file_is_upgraded_and_its_rows_become_the_default_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            // A file as the first release wrote it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '1');",
            )
            .unwrap();
            conn.execute_batch(V1_INITIAL).unwrap();
            conn.execute_batch(
                r#"INSERT INTO engine_state (id, snapshot, updated_at) VALUES (1, '{"desired":"active"}', 5);
                   INSERT INTO audit (at, kind, message, data) VALUES (7, 'decision', 'old', '{"i":1}');"#,
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(
            store.load_snapshot().await.unwrap(),
            Some(serde_json::json!({"desired": "active"}))
        );
        let events = store.events(10, None).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].record.message, "old");
        assert_eq!(events[0].record.data, serde_json::json!({"i": 1}));
        let version: String = store
            .conn
            .lock()
            .await
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
        drop(store);

        let other = SqliteStore::open_for_account(&path, "acme").await.unwrap();
        assert_eq!(other.load_snapshot().await.unwrap(), None);
        assert!(other.events(10, None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn refuses_a_database_from_a_newer_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .conn
            .lock()
            .await
            .execute(
                "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
                [],
            )
            .unwrap();
        drop(store);
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
    }

    /// A kind this version does not write (a store written by another
    /// version) reads back verbatim instead of failing `/v1/events`.
    #[tokio::test]
    async fn audit_reads_back_a_kind_this_version_does_not_know() {
        let (_dir, _, store) = fresh().await;
        store
            .conn
            .lock()
            .await
            .execute(
                "INSERT INTO audit (at, kind, message) VALUES (1, 'config_reload', 'old')",
                [],
            )
            .unwrap();
        let records = vec![AuditRecord::new(Timestamp(2), AuditKind::Drift, "new")];
        store.append_audit(records).await.unwrap();
        let kinds: Vec<String> = store
            .events(10, None)
            .await
            .unwrap()
            .iter()
            .map(|e| e.record.kind.to_string())
            .collect();
        assert_eq!(kinds, ["drift", "config_reload"]);
    }
}
