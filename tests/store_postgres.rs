//! The PostgreSQL store against a real, private server (`support/pg.rs`):
//! what only a network database does. Migrations under concurrent starts,
//! connections killed by the server, a server restart, TLS never silently
//! dropped, passwords from a file, text PostgreSQL cannot hold, many
//! accounts over one pool and one LISTEN connection. The behaviour
//! both backends share is in `store_suite.rs`.

mod support;

use std::time::Duration;

use continuity_agent::domain::Timestamp;
use continuity_agent::store::{DEFAULT_ACCOUNT, PostgresStore, Store, StoreError, postgres};
use continuity_agent::telemetry::{AuditKind, AuditRecord};
use secrecy::SecretString;
use serde_json::json;
use support::pg::PgServer;
use support::soon;
use tokio::time::Instant;

async fn open(server: &PgServer, db: &str) -> PostgresStore {
    PostgresStore::open(&server.url(db), None, DEFAULT_ACCOUNT)
        .await
        .unwrap_or_else(|e| panic!("open: {e}\nserver log:\n{}", server.log()))
}

/// Calls `ping` until it succeeds; panics after `within`. Returns how many
/// calls failed first (each must fail with a connection error, not hang).
async fn until_ping_succeeds(store: &PostgresStore, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut failures = 0;
    loop {
        match tokio::time::timeout(within, store.ping()).await {
            Ok(Ok(())) => return failures,
            Ok(Err(e @ (StoreError::Postgres(_) | StoreError::Pool(_)))) => {
                failures += 1;
                assert!(Instant::now() < deadline, "still failing: {e}");
            }
            Ok(Err(other)) => panic!("unexpected error kind: {other}"),
            Err(_) => panic!("ping hung for {within:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_safe_when_replicas_start_together() {
    let server = PgServer::start();
    let db = server.database().await;
    // Eight stores opening one fresh database at once: the advisory lock
    // serializes them, so each migration is applied exactly once.
    let url = server.url(&db);
    let opens = (0..8).map(|_| PostgresStore::open(&url, None, DEFAULT_ACCOUNT));
    for result in futures::future::join_all(opens).await {
        result.unwrap_or_else(|e| panic!("concurrent open failed: {e}"));
    }
    let stores_again = open(&server, &db).await;
    stores_again.ping().await.unwrap();

    let admin = server.connect(&db).await;
    let rows = admin
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, postgres::schema_versions());
    assert_eq!(versions.last(), Some(&postgres::SCHEMA_VERSION));
    // The schema is designed for several accounts: every table has one,
    // except cluster membership, which is the replicas' (they share the
    // accounts between them).
    let without_account: Vec<String> = admin
        .query(
            "SELECT table_name::text FROM information_schema.tables t
             WHERE table_schema = 'public'
               AND table_name NOT IN ('schema_migrations', 'replicas')
               AND NOT EXISTS (SELECT 1 FROM information_schema.columns c
                   WHERE c.table_name = t.table_name AND c.column_name = 'account'
                     AND c.is_nullable = 'NO')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(without_account.is_empty(), "{without_account:?}");
}

#[tokio::test]
async fn killed_connections_are_replaced_and_the_store_works_again() {
    let server = PgServer::start();
    let db = server.database().await;
    let store = open(&server, &db).await;
    store.save_snapshot(json!({"n": 1}).into()).await.unwrap();
    store.ping().await.unwrap();

    let killed = server.terminate_backends(&db).await;
    assert!(killed >= 1, "the store held no connection to kill");

    // The next call may fail (typed) or transparently reconnect; either way
    // the store works again without being reopened.
    until_ping_succeeds(&store, Duration::from_secs(15)).await;
    store.save_snapshot(json!({"n": 2}).into()).await.unwrap();
    assert_eq!(store.load_snapshot().await.unwrap(), Some(json!({"n": 2})));
}

#[tokio::test]
async fn a_server_restart_and_an_outage_are_recovered_from() {
    let server = PgServer::start();
    let db = server.database().await;
    let store = open(&server, &db).await;
    store.save_snapshot(json!({"n": 1}).into()).await.unwrap();

    server.restart();
    until_ping_succeeds(&store, Duration::from_secs(15)).await;
    assert_eq!(store.load_snapshot().await.unwrap(), Some(json!({"n": 1})));

    // While the server is down calls fail promptly with a connection error
    // (what /readyz reports), and they succeed again once it is back.
    server.stop();
    let started = Instant::now();
    let err = store.ping().await.expect_err("the server is down");
    assert!(
        matches!(err, StoreError::Postgres(_) | StoreError::Pool(_)),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a call against a stopped server took {:?}",
        started.elapsed()
    );
    assert!(store.save_snapshot(json!({"n": 2}).into()).await.is_err());
    server.start_again();
    until_ping_succeeds(&store, Duration::from_secs(15)).await;
    store.save_snapshot(json!({"n": 3}).into()).await.unwrap();
    assert_eq!(store.load_snapshot().await.unwrap(), Some(json!({"n": 3})));
}

#[tokio::test]
async fn tls_is_never_silently_dropped() {
    // The private server has no TLS. sslmode=require (also the default) must
    // refuse to talk in plain text rather than fall back.
    let server = PgServer::start();
    let db = server.database().await;
    for url in [
        server
            .url(&db)
            .replace("sslmode=disable", "sslmode=require"),
        server.url(&db).replace("?sslmode=disable", ""),
    ] {
        let err = PostgresStore::open(&url, None, DEFAULT_ACCOUNT)
            .await
            .expect_err("no TLS on the server");
        let text = err.to_string();
        assert!(text.contains("TLS"), "{text}");
        assert!(!text.contains(&server.password), "{text}");
    }
    let err = PostgresStore::open(
        &server.url(&db).replace("sslmode=disable", "sslmode=prefer"),
        None,
        DEFAULT_ACCOUNT,
    )
    .await
    .expect_err("prefer is refused");
    assert!(matches!(err, StoreError::Config(_)), "{err}");
}

#[tokio::test]
async fn the_password_can_come_from_password_file_and_is_never_shown() {
    let server = PgServer::start();
    let db = server.database().await;
    let url = server.url_without_password(&db);
    let right = SecretString::from(server.password.clone());
    let store = PostgresStore::open(&url, Some(&right), DEFAULT_ACCOUNT)
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(!format!("{store:?}").contains(&server.password));

    let wrong = SecretString::from("wrong-s3cret".to_string());
    let err = PostgresStore::open(&url, Some(&wrong), DEFAULT_ACCOUNT)
        .await
        .expect_err("wrong password");
    let text = format!("{err} {err:?}");
    assert!(
        err.to_string().contains("password authentication failed"),
        "the server's reason is in the message: {err}"
    );
    assert!(!text.contains("wrong-s3cret"), "{text}");
}

#[tokio::test]
async fn text_postgres_cannot_hold_does_not_lose_records() {
    let server = PgServer::start();
    let db = server.database().await;
    let store = open(&server, &db).await;
    // NUL can arrive in webhook payloads; PostgreSQL text refuses it. The
    // batch must still be stored (NUL shown as U+FFFD), not dropped whole.
    store
        .append_audit(vec![
            AuditRecord::new(Timestamp(1), AuditKind::Alert, "before"),
            AuditRecord::new(Timestamp(2), AuditKind::Alert, "summary\0with nul")
                .with_data(json!({"s": "a\u{0}b", "k\u{0}": [1, "\u{0}"]})),
        ])
        .await
        .unwrap();
    let events = store.events(10, None).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].record.message, "summary\u{FFFD}with nul");
    assert_eq!(
        events[0].record.data,
        json!({"s": "a\u{FFFD}b", "k\u{FFFD}": [1, "\u{FFFD}"]})
    );
    // The snapshot is the engine's document: kept exactly, NUL included.
    let snapshot = json!({"override": {"reason": "x\u{0}y"}});
    store.save_snapshot(snapshot.clone().into()).await.unwrap();
    assert_eq!(store.load_snapshot().await.unwrap(), Some(snapshot));
}

/// How many of the store's connections to `db` use TLS, and how many exist.
async fn tls_connections(server: &PgServer, db: &str) -> (i64, i64) {
    let row = server
        .connect("postgres")
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a
             JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = $1 AND a.application_name = 'continuity-agent'",
            &[&db],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn sslmode_is_honoured_against_a_tls_server() {
    let server = PgServer::start_with_tls();
    let db = server.database().await;
    let ca = server.ca_cert();
    let ca = ca.display();
    let url = |host: &str, params: &str| {
        server
            .url(&db)
            .replace("127.0.0.1", host)
            .replace("sslmode=disable", params)
    };
    // The certificate names IP 127.0.0.1 only; `localhost` reaches the same
    // server under a name the certificate does not have.
    let accepted = [
        url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        url("localhost", &format!("sslmode=verify-ca&sslrootcert={ca}")),
        url("localhost", &format!("sslmode=require&sslrootcert={ca}")),
        url("localhost", "sslmode=require"),
    ];
    for u in accepted {
        let store = PostgresStore::open(&u, None, DEFAULT_ACCOUNT)
            .await
            .unwrap_or_else(|e| panic!("{u}: {e}"));
        store
            .save_snapshot(json!({"tls": true}).into())
            .await
            .unwrap();
        let (tls, all) = tls_connections(&server, &db).await;
        assert!(
            all >= 1 && tls == all,
            "{u}: {tls} of {all} connections use TLS"
        );
        drop(store);
        server.terminate_backends(&db).await;
    }
    let refused = [
        // The name does not match.
        url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        // The test CA is not in the OS trust store.
        url("127.0.0.1", "sslmode=verify-full"),
        url("127.0.0.1", "sslmode=verify-ca&sslrootcert=system"),
    ];
    for u in refused {
        let err = PostgresStore::open(&u, None, DEFAULT_ACCOUNT)
            .await
            .expect_err(&u);
        assert!(
            matches!(err, StoreError::Pool(_) | StoreError::Postgres(_)),
            "{u}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains("certificate"), "{u}: {text}");
        assert!(!text.contains(&server.password), "{text}");
    }
    let missing = url(
        "127.0.0.1",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    );
    let err = PostgresStore::open(&missing, None, DEFAULT_ACCOUNT)
        .await
        .expect_err("no such file");
    assert!(matches!(err, StoreError::Config(_)), "{err}");
}

/// Many accounts, one set of connections: 60 `for_account` handles, each
/// watched and used at once, stay within the pool's cap plus one LISTEN
/// connection, each watcher is woken by its own account's appends through
/// that one connection, and the listener closes once every watcher is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_accounts_share_one_pool_and_one_listen_connection() {
    use std::sync::Arc;

    use tokio::sync::Notify;
    use tokio_util::sync::CancellationToken;

    let server = PgServer::start();
    let db = server.database().await;
    let root = open(&server, &db).await;
    let accounts: Vec<String> = (0..60).map(|i| format!("acct-{i}")).collect();
    let handles: Vec<Arc<dyn Store>> = accounts.iter().map(|a| root.for_account(a)).collect();
    let cancel = CancellationToken::new();
    let wakes: Vec<Arc<Notify>> = handles
        .iter()
        .map(|h| {
            let wake = Arc::new(Notify::new());
            h.watch_inputs(wake.clone(), cancel.clone());
            wake
        })
        .collect();
    let admin = server.connect(&db).await;
    let listening = async || -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
                &[&db],
            )
            .await
            .unwrap()
            .get(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while listening().await == 0 {
        assert!(Instant::now() < deadline, "no LISTEN connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connect wake-up, then each account's own append.
    for w in &wakes {
        tokio::time::timeout(Duration::from_secs(5), w.notified())
            .await
            .expect("woken once listening");
    }
    let appends = handles.iter().enumerate().map(|(i, h)| {
        h.append_inputs(
            vec![continuity_agent::store::Input::FlapRelease {
                actor: format!("ops-{i}"),
            }],
            soon(),
        )
    });
    for ids in futures::future::join_all(appends).await {
        assert_eq!(ids.unwrap().len(), 1);
    }
    for (i, w) in wakes.iter().enumerate() {
        tokio::time::timeout(Duration::from_secs(5), w.notified())
            .await
            .unwrap_or_else(|_| panic!("{} not woken by its append", accounts[i]));
    }
    let reads = handles.iter().map(|h| h.inputs_after(0, 10));
    for got in futures::future::join_all(reads).await {
        assert_eq!(got.unwrap().len(), 1, "each account reads its own input");
    }
    let connections: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        (2..=17).contains(&connections),
        "{connections} connections for 60 accounts (a pool of at most 16, one LISTEN)"
    );
    assert_eq!(listening().await, 1, "one LISTEN connection for all");

    cancel.cancel();
    let deadline = Instant::now() + Duration::from_secs(10);
    while listening().await != 0 {
        assert!(
            Instant::now() < deadline,
            "the listener outlived its watchers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
