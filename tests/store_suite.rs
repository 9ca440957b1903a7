//! One behaviour suite for every `Store` backend: each case is written once,
//! against a `Backend` (how to open a store on one database, and how to
//! make that database look migrated by a newer build), and `suite!` runs all
//! of them for SQLite (a temporary file) and PostgreSQL (a private server,
//! see `support/pg.rs`).

mod support;

use std::sync::Arc;

use std::time::Duration;

use continuity_agent::domain::{AlertKey, Timestamp};
use continuity_agent::store::{
    DEFAULT_ACCOUNT, Input, PostgresStore, SqliteStore, Store, StoreError, StoredInput, postgres,
    sqlite,
};
use continuity_agent::telemetry::{AuditKind, AuditRecord};
use serde_json::json;
use support::pg::PgServer;
use support::soon;

/// What a case needs from a backend. Every `open` reaches the same database.
trait Backend {
    async fn open(&self, account: &str) -> Result<Arc<dyn Store>, StoreError>;
    /// Records a schema version above what this build knows.
    async fn pretend_newer_schema(&self, version: i64);
    /// The newest schema version this build knows.
    fn schema_version(&self) -> i64;
    /// Makes every queued input look accepted `by` earlier.
    async fn backdate_inputs(&self, by: Duration);
    /// Whether `watch_inputs` wakes every watcher once its listener is
    /// connected (PostgreSQL: appends made before that were not heard).
    fn wakes_on_connect(&self) -> bool;
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

    async fn backdate_inputs(&self, by: Duration) {
        let conn = rusqlite::Connection::open(self.path()).unwrap();
        conn.execute(
            "UPDATE inputs SET accepted_at = accepted_at - ?1",
            [by.as_millis() as i64],
        )
        .unwrap();
    }

    fn wakes_on_connect(&self) -> bool {
        false
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

    async fn backdate_inputs(&self, by: Duration) {
        self.server
            .connect(&self.db)
            .await
            .execute(
                "UPDATE inputs SET accepted_at = accepted_at - $1",
                &[&(by.as_millis() as i64)],
            )
            .await
            .unwrap();
    }

    fn wakes_on_connect(&self) -> bool {
        true
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
    store.save_snapshot(first.clone().into()).await.unwrap();
    assert_eq!(store.load_snapshot().await.unwrap(), Some(first));
    let second = json!({"desired": "inactive", "override": null, "n": u64::MAX});
    store.save_snapshot(second.clone().into()).await.unwrap();
    assert_eq!(store.load_snapshot().await.unwrap(), Some(second));
}

async fn survives_reopen(b: &impl Backend) {
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    store
        .save_snapshot(json!({"desired": "active"}).into())
        .await
        .unwrap();
    store.append_audit(vec![record(1)]).await.unwrap();
    // Committed by now on PostgreSQL; SQLite may still hold it for the next
    // write transaction (`Store::append_audit`), and the audit writer
    // flushes on its way out.
    store.flush_audit().await.unwrap();
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
    a.save_snapshot(json!({"who": "acme"}).into())
        .await
        .unwrap();
    assert_eq!(other.load_snapshot().await.unwrap(), None);
    other
        .save_snapshot(json!({"who": "globex"}).into())
        .await
        .unwrap();
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

/// `store.audit_retention`: records before the cut go, in batches larger
/// than one statement's, newer ones and other accounts' stay.
async fn audit_pruning_removes_only_old_records_of_this_account(b: &impl Backend) {
    let a = b.open("acme").await.unwrap();
    let other = b.open("globex").await.unwrap();
    let n = continuity_agent::store::PRUNE_BATCH + 7;
    let old: Vec<AuditRecord> = (0..n).map(record).collect();
    a.append_audit(old).await.unwrap();
    let cut = Timestamp(1_700_000_000_000 + n);
    a.append_audit(vec![record(n), record(n + 1)])
        .await
        .unwrap();
    other.append_audit(vec![record(0)]).await.unwrap();
    assert_eq!(a.prune_audit(cut).await.unwrap(), n as u64);
    assert_eq!(
        messages(&a.events(10, None).await.unwrap()),
        [format!("record {}", n + 1), format!("record {n}")]
    );
    assert_eq!(
        messages(&other.events(10, None).await.unwrap()),
        ["record 0"]
    );
    assert_eq!(a.prune_audit(cut).await.unwrap(), 0);
}

async fn refuses_a_database_from_a_newer_version(b: &impl Backend) {
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    store
        .save_snapshot(json!({"kept": true}).into())
        .await
        .unwrap();
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

fn alert(id: &str, at: i64) -> Input {
    Input::AlertFiring {
        key: AlertKey {
            source: "pagerduty".into(),
            id: id.into(),
        },
        labels: [("severity".to_string(), "critical\u{0}".to_string())].into(),
        summary: Some("trunk down".into()),
        at: Some(Timestamp(at)),
    }
}

fn ids_of(inputs: &[StoredInput]) -> Vec<i64> {
    inputs.iter().map(|i| i.id).collect()
}

async fn input_queue_appends_in_order_and_reads_after_a_cursor(b: &impl Backend) {
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    assert!(store.inputs_after(0, 10).await.unwrap().is_empty());
    let first = store
        .append_inputs(vec![alert("a", 1), alert("b", 2)], soon())
        .await
        .unwrap();
    let clear = Input::OverrideCleared {
        actor: "ops".into(),
        reason: None,
    };
    let second = store
        .append_inputs(vec![clear.clone()], soon())
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert!(
        first[0] < first[1] && first[1] < second[0],
        "{first:?} {second:?}"
    );

    let all = store.inputs_after(0, 10).await.unwrap();
    assert_eq!(ids_of(&all), [first[0], first[1], second[0]]);
    assert_eq!(
        all[0].input,
        alert("a", 1),
        "read back verbatim (NUL included)"
    );
    assert_eq!(all[2].input, clear);
    assert!(all[0].accepted_at.as_millis() > 0);
    assert_eq!(
        ids_of(&store.inputs_after(first[0], 1).await.unwrap()),
        [first[1]]
    );
    assert_eq!(
        ids_of(&store.inputs_after(first[1], 10).await.unwrap()),
        [second[0]]
    );
    assert!(store.inputs_after(second[0], 10).await.unwrap().is_empty());

    // Survives a reopen; another account sees none of it.
    drop(store);
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    assert_eq!(store.inputs_after(0, 10).await.unwrap().len(), 3);
    let other = b.open("acme").await.unwrap();
    assert!(other.inputs_after(0, 10).await.unwrap().is_empty());
    assert_eq!(
        other
            .prune_inputs(i64::MAX, Timestamp(i64::MAX))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.inputs_after(0, 10).await.unwrap().len(), 3);
}

async fn pruning_keeps_unapplied_and_recent_inputs_and_never_reuses_ids(b: &impl Backend) {
    let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
    let ids = store
        .append_inputs(vec![alert("a", 1), alert("b", 2), alert("c", 3)], soon())
        .await
        .unwrap();
    let now = Timestamp::now();
    // Recent: kept even though applied.
    assert_eq!(
        store
            .prune_inputs(ids[2], now.sub(Duration::from_secs(3600)))
            .await
            .unwrap(),
        0
    );
    // Old enough: only what was applied goes.
    assert_eq!(
        store
            .prune_inputs(ids[1], now.add(Duration::from_secs(3600)))
            .await
            .unwrap(),
        2
    );
    assert_eq!(ids_of(&store.inputs_after(0, 10).await.unwrap()), [ids[2]]);
    assert_eq!(
        store
            .prune_inputs(ids[2], now.add(Duration::from_secs(3600)))
            .await
            .unwrap(),
        1
    );
    // An emptied queue still hands out larger ids: a cursor never skips one.
    let next = store
        .append_inputs(vec![alert("d", 4)], soon())
        .await
        .unwrap();
    assert!(next[0] > ids[2], "{next:?} after {ids:?}");
}

/// Writers on several handles (replicas) append while a reader follows
/// with a cursor: it sees every input exactly once, in id order.
async fn a_reader_following_concurrent_appends_misses_nothing(b: &impl Backend) {
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = b.open(DEFAULT_ACCOUNT).await.unwrap();
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                store
                    .append_inputs(vec![alert(&format!("{w}-{i}"), 1)], soon())
                    .await
                    .unwrap();
            }
        }));
    }
    let reader = b.open(DEFAULT_ACCOUNT).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < WRITERS * EACH {
        assert!(
            std::time::Instant::now() < deadline,
            "saw {} inputs",
            seen.len()
        );
        for input in reader.inputs_after(cursor, 7).await.unwrap() {
            assert!(input.id > cursor);
            cursor = input.id;
            seen.push(input.id);
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        reader.inputs_after(cursor, 10).await.unwrap().is_empty(),
        "an input was skipped"
    );
    assert_eq!(seen.len(), WRITERS * EACH);
}

/// A handle from `for_account` reads and writes its own account's rows
/// only, over the same database `open` reaches.
async fn for_account_handles_are_isolated_and_share_the_database(b: &impl Backend) {
    let root = b.open(DEFAULT_ACCOUNT).await.unwrap();
    let acme = root.for_account("acme");
    let globex = acme.for_account("globex");
    root.save_snapshot(json!({"who": "default"}).into())
        .await
        .unwrap();
    acme.save_snapshot(json!({"who": "acme"}).into())
        .await
        .unwrap();
    assert_eq!(globex.load_snapshot().await.unwrap(), None);
    acme.append_audit(vec![record(1)]).await.unwrap();
    globex.append_audit(vec![record(2)]).await.unwrap();
    let own = acme
        .append_inputs(vec![alert("a", 1)], soon())
        .await
        .unwrap();
    assert_eq!(
        messages(&acme.events(10, None).await.unwrap()),
        ["record 1"]
    );
    assert_eq!(
        messages(&globex.events(10, None).await.unwrap()),
        ["record 2"]
    );
    assert!(root.events(10, None).await.unwrap().is_empty());
    assert!(globex.inputs_after(0, 10).await.unwrap().is_empty());
    assert_eq!(ids_of(&acme.inputs_after(0, 10).await.unwrap()), own);
    assert_eq!(
        root.load_snapshot().await.unwrap(),
        Some(json!({"who": "default"}))
    );
    // What the handle wrote is the account's, as a separately opened
    // handle (another replica) reads it.
    let reopened = b.open("acme").await.unwrap();
    assert_eq!(
        reopened.load_snapshot().await.unwrap(),
        Some(json!({"who": "acme"}))
    );
    assert_eq!(ids_of(&reopened.inputs_after(0, 10).await.unwrap()), own);
}

async fn woken(n: &tokio::sync::Notify, within: Duration) -> bool {
    tokio::time::timeout(within, n.notified()).await.is_ok()
}

/// Shared inputs reach every account's queue, interleaved with its own in
/// id order, wake every account's loop, and survive an account's pruning
/// until they are older than `SHARED_RETENTION`.
async fn shared_inputs_reach_every_account_in_order_and_wake_it(b: &impl Backend) {
    use continuity_agent::store::inputs::SHARED_RETENTION;
    use tokio::sync::Notify;
    use tokio_util::sync::CancellationToken;

    let root = b.open(DEFAULT_ACCOUNT).await.unwrap();
    let acme = root.for_account("acme");
    let globex = root.for_account("globex");
    let (wake_acme, wake_globex) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let cancel = CancellationToken::new();
    acme.watch_inputs(wake_acme.clone(), cancel.clone());
    globex.watch_inputs(wake_globex.clone(), cancel.clone());
    if b.wakes_on_connect() {
        // Listening now: what follows is heard.
        assert!(woken(&wake_acme, Duration::from_secs(10)).await);
        assert!(woken(&wake_globex, Duration::from_secs(10)).await);
    }

    let a1 = acme
        .append_inputs(vec![alert("a1", 1)], soon())
        .await
        .unwrap();
    assert!(
        woken(&wake_acme, Duration::from_secs(5)).await,
        "own append"
    );
    assert!(
        !woken(&wake_globex, Duration::from_millis(300)).await,
        "another account's append wakes only that account"
    );
    let shared = root
        .append_shared_inputs(vec![alert("s1", 2), alert("s2", 3)], soon())
        .await
        .unwrap();
    assert!(woken(&wake_acme, Duration::from_secs(5)).await, "shared");
    assert!(woken(&wake_globex, Duration::from_secs(5)).await, "shared");
    let g1 = globex
        .append_inputs(vec![alert("g1", 4)], soon())
        .await
        .unwrap();
    let a2 = acme
        .append_inputs(vec![alert("a2", 5)], soon())
        .await
        .unwrap();
    assert!(a1[0] < shared[0] && shared[0] < shared[1] && shared[1] < g1[0] && g1[0] < a2[0]);

    let got = acme.inputs_after(0, 10).await.unwrap();
    assert_eq!(ids_of(&got), [a1[0], shared[0], shared[1], a2[0]]);
    assert_eq!(got[1].input, alert("s1", 2));
    assert_eq!(
        ids_of(&globex.inputs_after(0, 10).await.unwrap()),
        [shared[0], shared[1], g1[0]]
    );
    assert_eq!(
        ids_of(&acme.inputs_after(a1[0], 2).await.unwrap()),
        shared,
        "the cursor and the limit apply across both queues"
    );

    // One account applied everything and prunes: its own rows go, the
    // shared ones stay for the account that has not applied them.
    let far = Timestamp(i64::MAX);
    assert_eq!(acme.prune_inputs(i64::MAX, far).await.unwrap(), 2);
    assert_eq!(
        ids_of(&globex.inputs_after(0, 10).await.unwrap()),
        [shared[0], shared[1], g1[0]]
    );
    // Old enough, shared rows go by age alone (any account's prune).
    b.backdate_inputs(SHARED_RETENTION + Duration::from_secs(60))
        .await;
    assert_eq!(acme.prune_inputs(0, Timestamp(0)).await.unwrap(), 2);
    assert_eq!(ids_of(&globex.inputs_after(0, 10).await.unwrap()), g1);
    cancel.cancel();
}

/// `events_for` pages newest first over the accounts asked for (all of
/// them for `None`), each event naming its account.
async fn events_for_pages_over_several_accounts(b: &impl Backend) {
    let root = b.open(DEFAULT_ACCOUNT).await.unwrap();
    let acme = root.for_account("acme");
    let globex = root.for_account("globex");
    let initech = root.for_account("initech");
    for i in 0..3 {
        acme.append_audit(vec![record(10 + i)]).await.unwrap();
        globex.append_audit(vec![record(20 + i)]).await.unwrap();
        initech.append_audit(vec![record(30 + i)]).await.unwrap();
    }
    let two = ["acme".to_string(), "globex".to_string()];
    let page1 = root.events_for(Some(&two), 4, None).await.unwrap();
    assert_eq!(
        messages(&page1),
        ["record 22", "record 12", "record 21", "record 11"]
    );
    let accounts: Vec<&str> = page1.iter().map(|e| e.account.as_str()).collect();
    assert_eq!(accounts, ["globex", "acme", "globex", "acme"]);
    let page2 = root
        .events_for(Some(&two), 4, Some(page1[3].id))
        .await
        .unwrap();
    assert_eq!(messages(&page2), ["record 20", "record 10"]);
    let all = root.events_for(None, 100, None).await.unwrap();
    assert_eq!(all.len(), 9);
    assert_eq!(all[0].account, "initech");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert!(
        root.events_for(Some(&[]), 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    // The account is part of the serialized event.
    let wire = serde_json::to_value(&all[0]).unwrap();
    assert_eq!(wire["account"], "initech");
    assert_eq!(wire["message"], "record 32");
    // `events` still reads its own account only.
    assert_eq!(
        messages(&acme.events(10, None).await.unwrap()),
        ["record 12", "record 11", "record 10"]
    );
}

/// Appends of two accounts and shared appends run side by side while a
/// reader of one account follows with a cursor: it sees each of its own
/// and each shared input exactly once, in id order, and nothing else.
async fn a_reader_misses_no_shared_input_among_concurrent_appends(b: &impl Backend) {
    const EACH: usize = 40;
    // Every handle is open before the first append, so the reader follows
    // while the writers write.
    let reader = b.open("acme").await.unwrap();
    let mut stores = Vec::new();
    for _ in 0..5 {
        stores.push(b.open(DEFAULT_ACCOUNT).await.unwrap());
    }
    let mut writers = Vec::new();
    for (w, store) in stores.into_iter().enumerate() {
        writers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                let input = vec![alert(&format!("{w}-{i}"), 1)];
                let ids = match w {
                    0 | 1 => store.for_account("acme").append_inputs(input, soon()).await,
                    2 => {
                        store
                            .for_account("globex")
                            .append_inputs(input, soon())
                            .await
                    }
                    _ => store.append_shared_inputs(input, soon()).await,
                };
                mine.extend(ids.unwrap());
            }
            (w, mine)
        }));
    }
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let page = reader.inputs_after(cursor, 7).await.unwrap();
        if done && page.is_empty() {
            break;
        }
        for input in page {
            assert!(input.id > cursor);
            cursor = input.id;
            seen.push(input.id);
        }
    }
    let mut expected = Vec::new();
    for w in writers {
        let (w, ids) = w.await.unwrap();
        if w != 2 {
            expected.extend(ids);
        }
    }
    expected.sort_unstable();
    assert_eq!(seen.len(), 4 * EACH);
    assert_eq!(seen, expected);
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
            async fn audit_pruning_removes_only_old_records_of_this_account() {
                super::audit_pruning_removes_only_old_records_of_this_account(&$make).await;
            }

            #[tokio::test]
            async fn refuses_a_database_from_a_newer_version() {
                super::refuses_a_database_from_a_newer_version(&$make).await;
            }

            #[tokio::test]
            async fn ping_answers() {
                super::ping_answers(&$make).await;
            }

            #[tokio::test]
            async fn input_queue_appends_in_order_and_reads_after_a_cursor() {
                super::input_queue_appends_in_order_and_reads_after_a_cursor(&$make).await;
            }

            #[tokio::test]
            async fn pruning_keeps_unapplied_and_recent_inputs_and_never_reuses_ids() {
                super::pruning_keeps_unapplied_and_recent_inputs_and_never_reuses_ids(&$make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_reader_following_concurrent_appends_misses_nothing() {
                super::a_reader_following_concurrent_appends_misses_nothing(&$make).await;
            }

            #[tokio::test]
            async fn for_account_handles_are_isolated_and_share_the_database() {
                super::for_account_handles_are_isolated_and_share_the_database(&$make).await;
            }

            #[tokio::test]
            async fn shared_inputs_reach_every_account_in_order_and_wake_it() {
                super::shared_inputs_reach_every_account_in_order_and_wake_it(&$make).await;
            }

            #[tokio::test]
            async fn events_for_pages_over_several_accounts() {
                super::events_for_pages_over_several_accounts(&$make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_reader_misses_no_shared_input_among_concurrent_appends() {
                super::a_reader_misses_no_shared_input_among_concurrent_appends(&$make).await;
            }
        }
    };
}

suite!(sqlite_backend, Sqlite::new());
suite!(postgres_backend, Postgres::new().await);
