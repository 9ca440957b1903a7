//! One behaviour suite for every `Store` backend: each case is written once,
//! against a `Backend` (how to open a store on one database, and how to
//! make that database look migrated by a newer build), and `suite!` runs all
//! of them for SQLite (a temporary file) and PostgreSQL (a private server,
//! see `support/pg.rs`).

mod support;

use std::sync::Arc;

use continuity_agent::domain::Timestamp;
use continuity_agent::store::{
    DEFAULT_ACCOUNT, PostgresStore, SqliteStore, Store, StoreError, postgres, sqlite,
};
use continuity_agent::telemetry::{AuditKind, AuditRecord};
use serde_json::json;
use support::pg::PgServer;

/// What a case needs from a backend. Every `open` reaches the same database.
trait Backend {
    async fn open(&self, account: &str) -> Result<Arc<dyn Store>, StoreError>;
    /// Records a schema version above what this build knows.
    async fn pretend_newer_schema(&self, version: i64);
    /// The newest schema version this build knows.
    fn schema_version(&self) -> i64;
}

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Sqlite {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("state.db")
    }
}

impl Backend for Sqlite {
    async fn open(&self, account: &str) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(
            SqliteStore::open_for_account(&self.path(), account).await?,
        ))
    }

    async fn pretend_newer_schema(&self, version: i64) {
        let conn = rusqlite::Connection::open(self.path()).unwrap();
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [version.to_string()],
        )
        .unwrap();
    }

    fn schema_version(&self) -> i64 {
        sqlite::SCHEMA_VERSION
    }
}

struct Postgres {
    server: PgServer,
    db: String,
}

impl Postgres {
    async fn new() -> Postgres {
        let server = PgServer::start();
        let db = server.database().await;
        Postgres { server, db }
    }
}

impl Backend for Postgres {
    async fn open(&self, account: &str) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(
            PostgresStore::open(&self.server.url(&self.db), None, account).await?,
        ))
    }

    async fn pretend_newer_schema(&self, version: i64) {
        self.server
            .connect(&self.db)
            .await
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')",
                &[&version],
            )
            .await
            .unwrap();
    }

    fn schema_version(&self) -> i64 {
        postgres::SCHEMA_VERSION
    }
}

fn record(i: i64) -> AuditRecord {
    AuditRecord::new(
        Timestamp(1_700_000_000_000 + i),
        AuditKind::Decision,
        format!("record {i}"),
    )
    .with_data(json!({"i": i, "reasons": ["trunk-a down"]}))
}

fn messages(events: &[continuity_agent::store::StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.record.message.as_str()).collect()
}

async fn snapshot_round_trips_and_is_replaced(b: &impl Backend) {
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    assert_eq!(store.load_snapshot().await.unwrap(), None);
    let first = json!({"desired": "active", "alerts": [{"key": "a", "until": 17}], "n": 1.5});
    store.save_snapshot(first.clone()).await.unwrap();
    assert_eq!(store.load_snapshot().await.unwrap(), Some(first));
    let second = json!({"desired": "inactive", "override": null, "n": u64::MAX});
    store.save_snapshot(second.clone()).await.unwrap();
    assert_eq!(store.load_snapshot().await.unwrap(), Some(second));
}

async fn survives_reopen(b: &impl Backend) {
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    store
        .save_snapshot(json!({"desired": "active"}))
        .await
        .unwrap();
    store.append_audit(vec![record(1)]).await.unwrap();
    drop(store);
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    assert_eq!(
        store.load_snapshot().await.unwrap(),
        Some(json!({"desired": "active"}))
    );
    assert_eq!(
        messages(&store.events(10, None).await.unwrap()),
        ["record 1"]
    );
}

async fn audit_pages_newest_first_with_a_cursor(b: &impl Backend) {
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    store.append_audit(vec![]).await.unwrap();
    store
        .append_audit((0..3).map(record).collect())
        .await
        .unwrap();
    store
        .append_audit(vec![
            record(3),
            AuditRecord::new(Timestamp(4), AuditKind::Probe, "no data"),
        ])
        .await
        .unwrap();
    let page1 = store.events(2, None).await.unwrap();
    assert_eq!(messages(&page1), ["no data", "record 3"]);
    assert_eq!(page1[0].record.data, serde_json::Value::Null);
    assert_eq!(page1[0].record.kind, AuditKind::Probe);
    assert_eq!(page1[1].record, record(3), "a record round trips whole");
    let page2 = store.events(2, Some(page1[1].id)).await.unwrap();
    assert_eq!(messages(&page2), ["record 2", "record 1"]);
    let page3 = store.events(2, Some(page2[1].id)).await.unwrap();
    assert_eq!(messages(&page3), ["record 0"]);
    assert!(page1[0].id > page1[1].id && page1[1].id > page2[0].id);
    assert!(
        store
            .events(10, Some(page3[0].id))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn accounts_do_not_see_each_others_rows(b: &impl Backend) {
    let a = b.open("acme").await.unwrap();
    let other = b.open("globex").await.unwrap();
    a.save_snapshot(json!({"who": "acme"})).await.unwrap();
    assert_eq!(other.load_snapshot().await.unwrap(), None);
    other.save_snapshot(json!({"who": "globex"})).await.unwrap();
    a.append_audit(vec![record(1), record(2)]).await.unwrap();
    other
        .append_audit(vec![AuditRecord::new(
            Timestamp(5),
            AuditKind::Override,
            "globex's",
        )])
        .await
        .unwrap();
    a.append_audit(vec![record(3)]).await.unwrap();

    assert_eq!(
        a.load_snapshot().await.unwrap(),
        Some(json!({"who": "acme"}))
    );
    assert_eq!(
        other.load_snapshot().await.unwrap(),
        Some(json!({"who": "globex"}))
    );
    let a_events = a.events(10, None).await.unwrap();
    assert_eq!(messages(&a_events), ["record 3", "record 2", "record 1"]);
    // The cursor pages within the account even across the other's ids.
    assert_eq!(
        messages(&a.events(10, Some(a_events[0].id)).await.unwrap()),
        ["record 2", "record 1"]
    );
    assert_eq!(
        messages(&other.events(10, None).await.unwrap()),
        ["globex's"]
    );
    drop(a);
    let reopened = b.open("acme").await.unwrap();
    assert_eq!(
        reopened.load_snapshot().await.unwrap(),
        Some(json!({"who": "acme"}))
    );
}

async fn refuses_a_database_from_a_newer_version(b: &impl Backend) {
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    store.save_snapshot(json!({"kept": true})).await.unwrap();
    drop(store);
    let newer = b.schema_version() + 1;
    b.pretend_newer_schema(newer).await;
    let err = b.open(DEFAULT_ACCOUNT).await.err().expect("refused");
    match err {
        StoreError::SchemaTooNew { found, known } => {
            assert_eq!((found, known), (newer, b.schema_version()));
        }
        other => panic!("expected SchemaTooNew, got {other}"),
    }
}

async fn ping_answers(b: &impl Backend) {
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    store.ping().await.unwrap();
}

/// The cases, for one backend built by `$make`.
macro_rules! suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn snapshot_round_trips_and_is_replaced() {
                super::snapshot_round_trips_and_is_replaced(&$make).await;
            }

            #[tokio::test]
            async fn survives_reopen() {
                super::survives_reopen(&$make).await;
            }

            #[tokio::test]
            async fn audit_pages_newest_first_with_a_cursor() {
                super::audit_pages_newest_first_with_a_cursor(&$make).await;
            }

            #[tokio::test]
            async fn accounts_do_not_see_each_others_rows() {
                super::accounts_do_not_see_each_others_rows(&$make).await;
            }

            #[tokio::test]
            async fn refuses_a_database_from_a_newer_version() {
                super::refuses_a_database_from_a_newer_version(&$make).await;
            }

            #[tokio::test]
            async fn ping_answers() {
                super::ping_answers(&$make).await;
            }
        }
    };
}

suite!(sqlite_backend, Sqlite::new());
suite!(postgres_backend, Postgres::new().await);
