//! The PostgreSQL store: what the SQLite store holds (the engine snapshot,
//! the durable input queue and the audit log), in a database several
//! replicas can share. Input appends notify the other replicas
//! (`listen.rs`: LISTEN/NOTIFY on a dedicated, reconnecting connection).
//!
//! Driver: `tokio-postgres` with the `deadpool-postgres` pool. sqlx would also
//! do, but it compiles a much larger tree (macros, its own runtime and TLS
//! layers, offline query metadata) on a 2-core machine, and its compile-time
//! checked queries need a database at build time; these few statements do not
//! need either. TLS reuses the agent's rustls stack (`tls.rs`), so there is no
//! OpenSSL and no second crypto provider.
//!
//! Connection loss: every call takes a connection from the pool, which checks
//! it with a round trip first (`RecyclingMethod::Verified`) and opens a new
//! one when the server dropped it (restart, failover, `pg_terminate_backend`).
//! A call that still fails returns `StoreError::Postgres`/`Pool`; the daemon
//! retries snapshot writes with backoff and `/readyz` (which calls `ping`)
//! reports 503 until the database answers again. Nothing here retries on its
//! own: a write that might or might not have committed is the caller's call.
//!
//! Leases (`store::lease`): the claim and the write check are single
//! statements judged by the database's `now()`; row locks taken by
//! `ON CONFLICT DO UPDATE` serialize concurrent claimants.
//!
//! A handle reads and writes one account: every row it writes carries that
//! account and it reads no other account's rows (except shared inputs, the
//! audit log through `events_for`, and cluster membership). `open` connects
//! once; `for_account` handles share its pool and its LISTEN connection, and
//! the pool grows by one connection per account up to [`POOL_MAX`].
//!
//! PostgreSQL text cannot hold NUL characters; audit text (which can come
//! from webhook payloads) has them replaced by U+FFFD instead of failing the
//! whole batch. The snapshot is stored as `JSON`, which keeps `\u0000`.

mod connect;
mod listen;
mod migrations;
mod tls;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::SecretString;

pub use connect::ConnectOptions;
pub use migrations::LATEST as SCHEMA_VERSION;
pub use migrations::versions as schema_versions;

use super::inputs::{SHARED_ACCOUNT, SHARED_RETENTION};
use super::wake::Wakers;
use super::{
    Input, LeaseClaim, LeaseRow, LeaseState, SnapshotDoc, Store, StoreError, StoredEvent,
    StoredInput, WriteClaim, WriteGrant,
};
use crate::domain::Timestamp;
use crate::telemetry::AuditRecord;

/// Connections per store: the loop's snapshot writes and queue reads, the
/// audit writer, input appends (one group at a time), `/v1/events` and
/// `/readyz` each need at most one at a time.
const POOL_SIZE: usize = 5;
/// With several accounts, each adds one connection (its own loop and
/// lease), up to this many: every call holds a connection for one short
/// statement or transaction, so a few hundred accounts queue briefly
/// rather than open a few hundred connections.
const POOL_MAX: usize = 16;
/// Serializes input appends of one account (with the account's hash as the
/// second key), so ids commit in increasing order ("inpt" in ASCII).
const INPUTS_LOCK_CLASS: i32 = 0x696e_7074;
/// Taken shared by every per-account append and exclusively by a shared
/// append (second key 0), so a shared id never commits after a larger id of
/// any account ("inps" in ASCII; see `store/inputs.rs`).
const SHARED_INPUTS_LOCK_CLASS: i32 = 0x696e_7073;

#[derive(Clone)]
pub struct PostgresStore {
    pool: deadpool_postgres::Pool,
    options: ConnectOptions,
    account: String,
    target: String,
    /// The loops watching for inputs, over every account's handle.
    wakers: Arc<Wakers>,
    /// The accounts handles were made for (sizes the pool).
    accounts: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("account", &self.account)
            .finish()
    }
}

impl PostgresStore {
    /// Connects, applies the migrations, and returns a handle for `account`.
    /// `password` is `store.password_file`'s content when the URL has none.
    pub async fn open(
        url: &str,
        password: Option<&SecretString>,
        account: &str,
    ) -> Result<PostgresStore, StoreError> {
        let options = ConnectOptions::parse(url, password).map_err(StoreError::Config)?;
        let pool = options.pool(POOL_SIZE).map_err(StoreError::Config)?;
        let store = PostgresStore {
            pool,
            options: options.clone(),
            account: account.to_string(),
            target: options.target(),
            wakers: Arc::default(),
            accounts: Arc::new(Mutex::new([account.to_string()].into())),
        };
        let mut client = store.pool.get().await?;
        migrations::apply(&mut client).await?;
        tracing::info!(message = "PostgreSQL store ready.", target = %store.target, account);
        Ok(store)
    }

    /// The account this handle reads and writes.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Appends `inputs` under `account` ([`SHARED_ACCOUNT`]: shared) in one
    /// transaction and notifies the listeners; their ids in order. Bounded
    /// by `deadline` (`Store::append_inputs`) twice over: the server cancels
    /// any statement of the transaction (the advisory locks' waits included)
    /// that runs past it, and, since `statement_timeout` bounds each
    /// statement and not their sum, the client stops waiting at the deadline
    /// too. A transaction that got there late is rolled back instead of
    /// committed (COMMIT is only sent before the deadline).
    async fn append(
        &self,
        account: &str,
        inputs: Vec<Input>,
        deadline: std::time::Instant,
    ) -> Result<Vec<i64>, StoreError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let docs = inputs
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()?;
        let left = || {
            deadline
                .checked_duration_since(std::time::Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(StoreError::Deadline)
        };
        let mut client = tokio::time::timeout(left()?, self.pool.get())
            .await
            .map_err(|_| StoreError::Deadline)??;
        let tx = client
            .transaction()
            .await
            .map_err(|e| deadline_or(e, &left))?;
        let staged =
            tokio::time::timeout_at(deadline.into(), stage(&tx, account, &docs, &left)).await;
        match staged {
            Ok(Ok(ids)) if left().is_ok() => {
                tx.commit().await?;
                Ok(ids)
            }
            Ok(Ok(_)) => {
                // The caller is told "not accepted": it must stay true.
                tx.rollback().await?;
                Err(StoreError::Deadline)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // A statement still waits in the server (until its own
                // timeout); the dropped transaction rolls back after it.
                // The connection goes, not back to the pool to be waited on.
                drop(tx);
                drop(deadpool_postgres::Object::take(client));
                Err(StoreError::Deadline)
            }
        }
    }
}

/// The statements of an append, up to (not including) the commit.
async fn stage(
    tx: &deadpool_postgres::Transaction<'_>,
    account: &str,
    docs: &[serde_json::Value],
    left: &impl Fn() -> Result<std::time::Duration, StoreError>,
) -> Result<Vec<i64>, StoreError> {
    let now = Timestamp::now().as_millis();
    // `SET LOCAL` ends with the transaction: pooled connections keep no
    // timeout of ours. At least 1 ms (0 would mean none).
    let timeout_ms = left()?.as_millis().max(1);
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {timeout_ms}"))
        .await
        .map_err(|e| deadline_or(e, left))?;
    // Held until commit: the ids taken below are committed before any
    // larger one a reader of these rows can see, so its cursor never
    // skips an input (see `store/inputs.rs`). Always the global lock
    // first, so the two never deadlock.
    if account == SHARED_ACCOUNT {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, 0)",
            &[&SHARED_INPUTS_LOCK_CLASS],
        )
        .await
        .map_err(|e| deadline_or(e, left))?;
    } else {
        tx.execute(
            "SELECT pg_advisory_xact_lock_shared($1, 0), pg_advisory_xact_lock($2, hashtext($3))",
            &[&SHARED_INPUTS_LOCK_CLASS, &INPUTS_LOCK_CLASS, &account],
        )
        .await
        .map_err(|e| deadline_or(e, left))?;
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO inputs (account, accepted_at, input)
             SELECT $1, $2, i.input
             FROM unnest($3::json[]) WITH ORDINALITY AS i(input, n)
             ORDER BY i.n
             RETURNING id",
        )
        .await
        .map_err(|e| deadline_or(e, left))?;
    let mut ids: Vec<i64> = tx
        .query(&insert, &[&account, &now, &docs])
        .await
        .map_err(|e| deadline_or(e, left))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Identity values follow the ORDER BY; RETURNING's order is not
    // promised, the ids' is.
    ids.sort_unstable();
    tx.execute("SELECT pg_notify($1, $2)", &[&listen::CHANNEL, &account])
        .await
        .map_err(|e| deadline_or(e, left))?;
    Ok(ids)
}

/// A statement cancelled by `statement_timeout` is the append's deadline
/// passing (the transaction is rolled back); any other error is itself.
fn deadline_or(
    error: tokio_postgres::Error,
    left: &impl Fn() -> Result<std::time::Duration, StoreError>,
) -> StoreError {
    if error.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) || left().is_err() {
        StoreError::Deadline
    } else {
        error.into()
    }
}

/// An audit row (`id, account, at, kind, message, data`) as an event.
fn event(r: &tokio_postgres::Row) -> StoredEvent {
    StoredEvent {
        id: r.get(0),
        account: r.get(1),
        record: AuditRecord {
            at: Timestamp(r.get(2)),
            kind: r.get::<_, String>(3).into(),
            message: r.get(4),
            data: r
                .get::<_, Option<serde_json::Value>>(5)
                .unwrap_or(serde_json::Value::Null),
        },
    }
}

impl Store for PostgresStore {
    fn for_account(&self, account: &str) -> Arc<dyn Store> {
        let accounts = {
            let mut known = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
            known.insert(account.to_string());
            known.len()
        };
        self.pool.resize((POOL_SIZE + accounts - 1).min(POOL_MAX));
        Arc::new(PostgresStore {
            account: account.to_string(),
            ..self.clone()
        })
    }

    fn load_snapshot(&self) -> BoxFuture<'_, Result<Option<serde_json::Value>, StoreError>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached("SELECT snapshot FROM engine_state WHERE account = $1")
                .await?;
            let row = client.query_opt(&stmt, &[&self.account]).await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn save_snapshot(&self, snapshot: SnapshotDoc) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            // Durable on return: synchronous_commit is on unless the DBA turned it off.
            // The document is JSON text already: sent as text, cast by the server.
            let stmt = client
                .prepare_cached(
                    "INSERT INTO engine_state (account, snapshot, updated_at) VALUES ($1, $2::text::json, $3)
                     ON CONFLICT (account) DO UPDATE
                     SET snapshot = excluded.snapshot, updated_at = excluded.updated_at",
                )
                .await?;
            let now = Timestamp::now().as_millis();
            client
                .execute(&stmt, &[&self.account, &snapshot.as_str(), &now])
                .await?;
            Ok(())
        })
    }

    fn append_audit(&self, records: Vec<AuditRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            let mut at = Vec::with_capacity(records.len());
            let mut kind = Vec::with_capacity(records.len());
            let mut message = Vec::with_capacity(records.len());
            let mut data = Vec::with_capacity(records.len());
            for r in records {
                at.push(r.at.as_millis());
                kind.push(without_nul(r.kind.as_str().to_string()));
                message.push(without_nul(r.message));
                data.push((!r.data.is_null()).then(|| json_without_nul(r.data)));
            }
            let client = self.pool.get().await?;
            // One statement, so the batch commits whole or not at all; ORDER BY
            // the array position keeps ids in the order the records were made.
            let stmt = client
                .prepare_cached(
                    "INSERT INTO audit (account, at, kind, message, data)
                     SELECT $1, r.at, r.kind, r.message, r.data
                     FROM unnest($2::bigint[], $3::text[], $4::text[], $5::jsonb[])
                          WITH ORDINALITY AS r(at, kind, message, data, n)
                     ORDER BY r.n",
                )
                .await?;
            client
                .execute(&stmt, &[&self.account, &at, &kind, &message, &data])
                .await?;
            Ok(())
        })
    }

    fn events(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT id, account, at, kind, message, data FROM audit
                     WHERE account = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .await?;
            let before = before.unwrap_or(i64::MAX);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(&stmt, &[&self.account, &before, &limit])
                .await?;
            Ok(rows.iter().map(event).collect())
        })
    }

    fn events_for(
        &self,
        accounts: Option<&[String]>,
        limit: usize,
        before: Option<i64>,
    ) -> BoxFuture<'_, Result<Vec<StoredEvent>, StoreError>> {
        let accounts = accounts.map(<[String]>::to_vec);
        Box::pin(async move {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT id, account, at, kind, message, data FROM audit
                     WHERE ($1::text[] IS NULL OR account = ANY($1))
                       AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .await?;
            let before = before.unwrap_or(i64::MAX);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client.query(&stmt, &[&accounts, &before, &limit]).await?;
            Ok(rows.iter().map(event).collect())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
    }

    fn append_inputs(
        &self,
        inputs: Vec<Input>,
        deadline: std::time::Instant,
    ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>> {
        Box::pin(self.append(&self.account, inputs, deadline))
    }

    fn append_shared_inputs(
        &self,
        inputs: Vec<Input>,
        deadline: std::time::Instant,
    ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>> {
        Box::pin(self.append(SHARED_ACCOUNT, inputs, deadline))
    }

    fn inputs_after(
        &self,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredInput>, StoreError>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            // Two range scans of (account, id), merged: the account's own
            // inputs and the shared ones.
            let stmt = client
                .prepare_cached(
                    "SELECT id, accepted_at, input FROM (
                         (SELECT id, accepted_at, input FROM inputs
                          WHERE account = $1 AND id > $3 ORDER BY id LIMIT $4)
                         UNION ALL
                         (SELECT id, accepted_at, input FROM inputs
                          WHERE account = $2 AND id > $3 ORDER BY id LIMIT $4)
                     ) AS both_queues ORDER BY id LIMIT $4",
                )
                .await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(&stmt, &[&self.account, &SHARED_ACCOUNT, &after, &limit])
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(StoredInput {
                        id: r.get(0),
                        accepted_at: Timestamp(r.get(1)),
                        input: serde_json::from_value(r.get(2))?,
                    })
                })
                .collect()
        })
    }

    fn prune_inputs(
        &self,
        applied: i64,
        before: Timestamp,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "DELETE FROM inputs WHERE (account = $1 AND id <= $2 AND accepted_at < $3)
                        OR (account = $4 AND accepted_at < $5)",
                )
                .await?;
            let shared_before = Timestamp::now().sub(SHARED_RETENTION).as_millis();
            let n = client
                .execute(
                    &stmt,
                    &[
                        &self.account,
                        &applied,
                        &before.as_millis(),
                        &SHARED_ACCOUNT,
                        &shared_before,
                    ],
                )
                .await?;
            Ok(n)
        })
    }

    fn prune_audit(&self, before: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE account = $1 AND at < $2 ORDER BY id LIMIT $3)",
                )
                .await?;
            let mut total = 0u64;
            loop {
                let n = client
                    .execute(
                        &stmt,
                        &[&self.account, &before.as_millis(), &super::PRUNE_BATCH],
                    )
                    .await?;
                total += n;
                if n < super::PRUNE_BATCH as u64 {
                    return Ok(total);
                }
            }
        })
    }

    fn watch_inputs(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        listen::watch(&self.options, &self.wakers, &self.account, wake, cancel);
    }

    fn claim_lease(&self, claim: &LeaseClaim) -> BoxFuture<'_, Result<LeaseState, StoreError>> {
        let claim = claim.clone();
        Box::pin(async move {
            let client = self.pool.get().await?;
            // Renew (same token, not expired: same epoch) or take over (expired,
            // or held by an earlier process of this same instance: epoch + 1,
            // and the request to hand it over is answered); another
            // instance's live lease is left alone.
            let stmt = client
                .prepare_cached(
                    "INSERT INTO leases AS l (account, holder, token, epoch, acquired_at, expires_at)
                     VALUES ($1, $2, $3, 1, now(), now() + make_interval(secs => $4))
                     ON CONFLICT (account) DO UPDATE SET
                         epoch = CASE WHEN l.token = excluded.token AND l.expires_at > now()
                                      THEN l.epoch ELSE l.epoch + 1 END,
                         acquired_at = CASE WHEN l.token = excluded.token AND l.expires_at > now()
                                      THEN l.acquired_at ELSE now() END,
                         wanted_by = CASE WHEN l.token = excluded.token AND l.expires_at > now()
                                      THEN l.wanted_by END,
                         wanted_at = CASE WHEN l.token = excluded.token AND l.expires_at > now()
                                      THEN l.wanted_at END,
                         holder = excluded.holder,
                         token = excluded.token,
                         expires_at = excluded.expires_at
                     WHERE l.token = excluded.token OR l.expires_at <= now()
                        OR l.holder = excluded.holder
                     RETURNING holder, epoch",
                )
                .await?;
            let ttl = claim.ttl.as_secs_f64();
            let args: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&self.account, &claim.instance_id, &claim.token, &ttl];
            if let Some(row) = client.query_opt(&stmt, &args).await? {
                return Ok(LeaseState {
                    holder: row.get(0),
                    epoch: row.get(1),
                    held: true,
                });
            }
            // Someone else's: say who asked (see `store::lease`).
            let row = client
                .query_one(
                    "UPDATE leases SET wanted_by = $2, wanted_at = now()
                     WHERE account = $1 RETURNING holder, epoch",
                    &[&self.account, &claim.instance_id],
                )
                .await?;
            Ok(LeaseState {
                holder: row.get(0),
                epoch: row.get(1),
                held: false,
            })
        })
    }

    fn release_lease(&self, claim: &LeaseClaim) -> BoxFuture<'_, Result<(), StoreError>> {
        let token = claim.token.clone();
        Box::pin(async move {
            let client = self.pool.get().await?;
            client
                .execute(
                    "UPDATE leases SET expires_at = now() WHERE account = $1 AND token = $2",
                    &[&self.account, &token],
                )
                .await?;
            Ok(())
        })
    }

    fn claim_write(&self, claim: &WriteClaim) -> BoxFuture<'_, Result<WriteGrant, StoreError>> {
        let claim = claim.clone();
        Box::pin(async move {
            let client = self.pool.get().await?;
            // One statement: the check and the record cannot be split.
            let stmt = client
                .prepare_cached(
                    "INSERT INTO writes (account, epoch, holder, op)
                     SELECT account, epoch, holder, $4 FROM leases
                     WHERE account = $1 AND token = $2 AND epoch = $3
                       AND expires_at > now() + make_interval(secs => $5)
                     RETURNING (SELECT EXTRACT(EPOCH FROM expires_at - now())::float8
                                FROM leases WHERE account = $1)",
                )
                .await?;
            let margin = claim.margin.as_secs_f64();
            let args: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
                &self.account,
                &claim.token,
                &claim.epoch,
                &claim.op,
                &margin,
            ];
            Ok(match client.query_opt(&stmt, &args).await? {
                Some(row) => WriteGrant::Granted {
                    remaining: Duration::from_secs_f64(row.get::<_, f64>(0).max(0.0)),
                },
                None => WriteGrant::Refused,
            })
        })
    }

    fn heartbeat(&self, me: &LeaseClaim) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let me = me.clone();
        Box::pin(async move {
            let client = self.pool.get().await?;
            let ttl = me.ttl.as_secs_f64();
            client
                .execute(
                    "INSERT INTO replicas (instance_id, token, expires_at)
                     VALUES ($1, $2, now() + make_interval(secs => $3))
                     ON CONFLICT (instance_id) DO UPDATE
                     SET token = excluded.token, expires_at = excluded.expires_at",
                    &[&me.instance_id, &me.token, &ttl],
                )
                .await?;
            // Replicas gone for a day (renamed pods) are forgotten.
            let rows = client
                .query(
                    "WITH gone AS (DELETE FROM replicas WHERE expires_at < now() - interval '1 day')
                     SELECT instance_id FROM replicas WHERE expires_at > now() ORDER BY instance_id",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn leave(&self, me: &LeaseClaim) -> BoxFuture<'_, Result<(), StoreError>> {
        let me = me.clone();
        Box::pin(async move {
            let client = self.pool.get().await?;
            client
                .execute(
                    "DELETE FROM replicas WHERE instance_id = $1 AND token = $2",
                    &[&me.instance_id, &me.token],
                )
                .await?;
            Ok(())
        })
    }

    fn leases(&self) -> BoxFuture<'_, Result<Vec<LeaseRow>, StoreError>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT account, holder, epoch, expires_at > now(), wanted_by,
                            EXTRACT(EPOCH FROM now() - wanted_at)::float8
                     FROM leases ORDER BY account",
                )
                .await?;
            let rows = client.query(&stmt, &[]).await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let age: Option<f64> = r.get(5);
                    LeaseRow {
                        account: r.get(0),
                        holder: r.get(1),
                        epoch: r.get(2),
                        live: r.get(3),
                        wanted: r
                            .get::<_, Option<String>>(4)
                            .zip(age)
                            .map(|(who, age)| (who, Duration::from_secs_f64(age.max(0.0)))),
                    }
                })
                .collect())
        })
    }
}

fn without_nul(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

fn json_without_nul(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(without_nul(s)),
        Value::Array(a) => Value::Array(a.into_iter().map(json_without_nul).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (without_nul(k), json_without_nul(v)))
                .collect(),
        ),
        other => other,
    }
}
