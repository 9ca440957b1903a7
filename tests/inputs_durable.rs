//! Inputs are durable before their 2xx and reach the engine from any
//! replica: the agent binary as a child process, on SQLite and on a private
//! PostgreSQL (`support/pg.rs`).
//!
//! - A webhook answered 202 and an override answered 2xx survive a `kill -9`
//!   sent right after the answer: the restarted agent applies them.
//! - Two agents on one PostgreSQL: an alert accepted by one is in the
//!   other's engine within 1 s (LISTEN/NOTIFY; polling is the fallback).
//! - A replayed old PagerDuty "triggered" after a restart does not reopen the
//!   resolved incident (the event-time memory is persisted).
//! - SIGTERM with a request in flight: it is answered, not cut, and what it
//!   applied is in the restarted agent's engine.
//! - A store too slow to take an input: the answer is an error and the input
//!   never takes effect later; a store too slow to take a snapshot does not
//!   stall the loop (issue 15).

mod support;

use std::path::Path;
use std::time::Duration;

use continuity_agent::alerts::auth::sign_hex;
use serde_json::{Value, json};
use support::agent::AgentProcess;
use support::pg::PgServer;
use tokio::time::Instant;

const PD_SECRET: &str = "pd-hmac-secret-0123456789";
const OPS_TOKEN: &str = "ops-token-0123456789";
const TRIGGERED: &str = include_str!("fixtures/alerts/pagerduty-triggered.json");
const RESOLVED: &str = include_str!("fixtures/alerts/pagerduty-resolved.json");
const INCIDENT: &str = "PGR0VU2";

/// An agent with no probes (nothing but inputs changes its engine) and a
/// Talkdesk that does not answer (nothing here depends on it).
fn config(port: u16, store: &str) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
[store]
{store}
[talkdesk]
account = "demo"
api_base = "http://127.0.0.1:9"
token_url = "http://127.0.0.1:9/oauth/token"
client_id = "demo"
client_secret = "demo-secret"
[webhooks.pagerduty]
hmac_secret = "{PD_SECRET}"
[api]
tokens = [{{ name = "ops", token = "{OPS_TOKEN}", scopes = ["override", "read"] }}]
[profiles.backup]
default = "+14155558888"
"#
    )
}

fn sqlite(dir: &Path) -> String {
    format!("url = \"sqlite://{}\"", dir.join("state.db").display())
}

async fn postgres(pg: &PgServer, dir: &Path) -> String {
    let db = pg.database().await;
    postgres_db(pg, &db, dir)
}

fn postgres_db(pg: &PgServer, db: &str, dir: &Path) -> String {
    std::fs::write(dir.join("pg-password"), format!("{}\n", pg.password)).unwrap();
    format!(
        "url = {:?}\npassword_file = \"{}\"",
        pg.url_without_password(db),
        dir.join("pg-password").display()
    )
}

struct Agent {
    process: AgentProcess,
    port: u16,
    cfg: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Agent {
    async fn start(dir: &Path, name: &str, store: &str) -> Agent {
        Agent::start_with(dir, name, store, "").await
    }

    /// With `extra` TOML after the usual configuration (`{port}` in it is
    /// the agent's port).
    async fn start_with(dir: &Path, name: &str, store: &str, extra: &str) -> Agent {
        let port = support::free_port();
        let cfg = dir.join(format!("{name}.toml"));
        let extra = extra.replace("{port}", &port.to_string());
        std::fs::write(&cfg, config(port, store) + &extra).unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut process = AgentProcess::spawn(&cfg, port, &log);
        process.wait_ready().await;
        Agent {
            process,
            port,
            cfg,
            log,
        }
    }

    async fn restart(&mut self) {
        self.process = AgentProcess::spawn(&self.cfg, self.port, &self.log);
        self.process.wait_ready().await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.process.api)
    }

    async fn pagerduty(&self, body: &str, webhook_id: &str) -> reqwest::StatusCode {
        let sig = format!("v1={}", sign_hex(PD_SECRET, &[body.as_bytes()]));
        reqwest::Client::new()
            .post(self.url("/v1/alerts/pagerduty"))
            .header("content-type", "application/json")
            .header("X-PagerDuty-Signature", sig)
            .header("X-Webhook-Id", webhook_id)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn status(&self) -> Value {
        self.process.get_json("/v1/status", OPS_TOKEN).await
    }

    async fn incident_open(&self) -> bool {
        self.status().await["engine"]["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["id"] == INCIDENT))
    }

    /// Whether an audit record's message contains `text`.
    async fn audit_mentions(&self, text: &str) -> bool {
        let page: Value = reqwest::Client::new()
            .get(self.url("/v1/events?limit=1000"))
            .bearer_auth(OPS_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["events"].as_array().is_some_and(|e| {
            e.iter()
                .any(|x| x["message"].as_str().is_some_and(|m| m.contains(text)))
        })
    }

    async fn wait(&self, what: &str, within: Duration, mut cond: impl AsyncFnMut(&Agent) -> bool) {
        let deadline = Instant::now() + within;
        while !cond(self).await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.process.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The body of `PUT /v1/override` used here.
fn override_on() -> Value {
    json!({"state": "active", "profile": "backup", "ttl": "30m", "reason": "carrier maintenance"})
}

async fn put_override(a: &Agent) -> (reqwest::StatusCode, Value) {
    let resp = reqwest::Client::new()
        .put(a.url("/v1/override"))
        .bearer_auth(OPS_TOKEN)
        .json(&override_on())
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// Answered, then killed at once: the restarted agent has both inputs.
async fn answered_inputs_survive_kill_9(store: &str, dir: &Path) {
    let mut a = Agent::start(dir, "agent", store).await;
    assert_eq!(
        a.pagerduty(TRIGGERED, "wh-1").await,
        reqwest::StatusCode::ACCEPTED
    );
    let (status, body) = put_override(&a).await;
    a.process.kill9();
    assert!(status.is_success(), "{status} {body}");
    assert!(body["input_id"].as_i64().is_some_and(|id| id > 0), "{body}");

    a.restart().await;
    a.wait("the incident restored", Duration::from_secs(5), async |a| {
        a.incident_open().await
    })
    .await;
    let st = a.status().await;
    assert_eq!(st["mode"], "override", "{st}");
    assert_eq!(st["engine"]["override"]["reason"], "carrier maintenance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_inputs_survive_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    answered_inputs_survive_kill_9(&sqlite(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_inputs_survive_kill_9_on_postgres() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = postgres(&pg, dir.path()).await;
    answered_inputs_survive_kill_9(&store, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_accepted_by_one_replica_reaches_the_others_engine_within_a_second() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = postgres(&pg, dir.path()).await;
    let a = Agent::start(dir.path(), "a", &store).await;
    let b = Agent::start(dir.path(), "b", &store).await;
    // Both listen for each other's appends (polling is only the fallback).
    for agent in [&a, &b] {
        agent
            .wait("its listener", Duration::from_secs(10), async |x| {
                x.process
                    .logs()
                    .contains("Listening for inputs other replicas accept.")
            })
            .await;
    }

    assert_eq!(
        a.pagerduty(TRIGGERED, "wh-1").await,
        reqwest::StatusCode::ACCEPTED
    );
    let accepted = Instant::now();
    b.wait("b to apply a's input", Duration::from_secs(5), async |b| {
        b.incident_open().await
    })
    .await;
    let took = accepted.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // And the other way, for an override.
    let (status, body) = put_override(&b).await;
    assert!(status.is_success(), "{status} {body}");
    let accepted = Instant::now();
    a.wait(
        "a to apply b's override",
        Duration::from_secs(5),
        async |a| a.status().await["mode"] == "override",
    )
    .await;
    let took = accepted.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_old_triggered_does_not_reopen_a_resolved_incident_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Agent::start(dir.path(), "agent", &sqlite(dir.path())).await;
    assert_eq!(
        a.pagerduty(TRIGGERED, "wh-1").await,
        reqwest::StatusCode::ACCEPTED
    );
    a.wait("open", Duration::from_secs(5), async |a| {
        a.incident_open().await
    })
    .await;
    assert_eq!(
        a.pagerduty(RESOLVED, "wh-2").await,
        reqwest::StatusCode::ACCEPTED
    );
    a.wait("resolved", Duration::from_secs(5), async |a| {
        !a.incident_open().await
    })
    .await;

    // A clean stop: the snapshot records both inputs as applied, so nothing
    // is replayed and the memory can only come from the snapshot.
    assert!(a.process.terminate().success());
    a.restart().await;
    // PagerDuty retries the 18:45 "triggered" (a new delivery id).
    assert_eq!(
        a.pagerduty(TRIGGERED, "wh-retry").await,
        reqwest::StatusCode::ACCEPTED
    );
    a.wait(
        "the retry to be ignored",
        Duration::from_secs(5),
        async |a| a.audit_mentions("ignored an update dated").await,
    )
    .await;
    assert!(
        !a.incident_open().await,
        "the old retry reopened the incident"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_is_down_inputs_are_refused_with_503_and_none_is_accepted() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = postgres(&pg, dir.path()).await;
    let a = Agent::start(dir.path(), "agent", &store).await;

    pg.stop();
    assert_eq!(
        a.pagerduty(TRIGGERED, "wh-down").await,
        reqwest::StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, body) = put_override(&a).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "overloaded", "{body}");

    pg.start_again();
    a.wait("the store back", Duration::from_secs(30), async |a| {
        reqwest::get(a.url("/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    // The first input this database ever took, applied before the answer:
    // neither refused input was half-accepted.
    let (status, body) = put_override(&a).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["input_id"], 1, "{body}");
    assert_eq!(body["applied"], true, "{body}");
    assert!(!a.incident_open().await, "a refused alert was applied");
}

/// Issue 15: a slow store (here another connection holding the store's
/// write lock) once answered an override with an error and applied it
/// seconds later, when the store caught up. An input refused must stay
/// refused: the append is bounded and rolled back, not left to commit behind
/// the answer. And the answer says so: "nothing was kept", not "unknown".
async fn an_input_refused_by_a_slow_store_never_takes_effect_later(
    store: &str,
    dir: &Path,
    take: impl AsyncFnOnce() -> StoreLock,
) {
    let a = Agent::start(dir, "agent", store).await;

    // Another process takes the write lock and keeps it until told.
    let lock = take().await;

    // A webhook first, so the override's append waits behind another one,
    // as requests do when a store is slow.
    let webhook = {
        let url = a.url("/v1/alerts/pagerduty");
        let sig = format!("v1={}", sign_hex(PD_SECRET, &[TRIGGERED.as_bytes()]));
        tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("X-PagerDuty-Signature", sig)
                .header("X-Webhook-Id", "wh-slow")
                .body(TRIGGERED)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = put_override(&a).await;
    let (webhook, webhook_body) = webhook.await.unwrap();
    // The store catches up right after the answers.
    lock.release().await;

    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(webhook, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    // A definite answer: the append's deadline passed and nothing was kept
    // (not a store error, not "may still take effect").
    for detail in [body.to_string(), webhook_body] {
        assert!(
            detail.contains("nothing was kept") && !detail.contains("may still"),
            "{detail}\nlog:\n{}",
            a.process.logs()
        );
    }
    a.wait("the store back", Duration::from_secs(30), async |a| {
        reqwest::get(a.url("/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    // Appends are serialized: had a refused one committed late, it would
    // have taken id 1 before this one.
    let (status, body) = put_override(&a).await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(
        body["input_id"], 1,
        "a refused input was committed after all: {body}"
    );
    assert!(!a.incident_open().await, "a refused alert was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_refused_by_a_slow_sqlite_never_takes_effect_later() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    an_input_refused_by_a_slow_store_never_takes_effect_later(
        &sqlite(dir.path()),
        dir.path(),
        async || StoreLock::Sqlite(WriteLock::take(&db)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_refused_by_a_slow_postgres_never_takes_effect_later() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = pg.database().await;
    let store = postgres_db(&pg, &db, dir.path());
    an_input_refused_by_a_slow_store_never_takes_effect_later(&store, dir.path(), async || {
        let client = pg.connect(&db).await;
        client
            .batch_execute("BEGIN; LOCK TABLE inputs IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        StoreLock::Postgres(client)
    })
    .await;
}

/// Another connection holding the store's write lock.
enum StoreLock {
    Sqlite(WriteLock),
    /// In a transaction holding `LOCK TABLE inputs IN ACCESS EXCLUSIVE MODE`.
    Postgres(tokio_postgres::Client),
}

impl StoreLock {
    async fn release(self) {
        match self {
            StoreLock::Sqlite(lock) => lock.release(),
            StoreLock::Postgres(client) => client.batch_execute("ROLLBACK").await.unwrap(),
        }
    }
}

/// Takes SQLite's write lock from another connection, as another process
/// would; `release` ends it (rolled back).
struct WriteLock {
    release: std::sync::mpsc::Sender<()>,
    holder: std::thread::JoinHandle<()>,
}

impl WriteLock {
    fn take(db: &Path) -> WriteLock {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (locked_tx, locked) = std::sync::mpsc::channel::<()>();
        let db = db.to_path_buf();
        let holder = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            let _ = released.recv();
            conn.execute_batch("ROLLBACK").unwrap();
        });
        locked.recv().unwrap();
        WriteLock { release, holder }
    }

    fn release(self) {
        self.release.send(()).unwrap();
        self.holder.join().unwrap();
    }
}

/// Issue 15: with a slow store each snapshot write held the loop (three
/// attempts of SQLite's 5 s busy wait), so status, inputs and decisions
/// waited ~15 s. The loop hands the document to the persister's writer and
/// goes on; the writer retries until the store takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_too_slow_for_the_snapshot_does_not_stall_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    // A probe of the agent's own /healthz: its results keep the snapshot
    // due (at least every 10 s) without any input.
    let probe = r#"
[[probes]]
id = "self"
type = "http"
url = "http://127.0.0.1:{port}/healthz"
interval = "200ms"
timeout = "1s"
[[rules]]
name = "self-down"
profile = "backup"
when = { down = "self" }
"#;
    let a = Agent::start_with(dir.path(), "agent", &sqlite(dir.path()), probe).await;
    a.wait("the probe up", Duration::from_secs(10), async |a| {
        a.status().await["engine"]["probes"][0]["health"] == "up"
    })
    .await;

    let lock = WriteLock::take(&dir.path().join("state.db"));
    let held = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(12))
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    // Longer than SNAPSHOT_EVERY plus three busy waits: a write is due and
    // refused inside this window.
    while held.elapsed() < Duration::from_secs(20) {
        let asked = Instant::now();
        let resp = client
            .get(a.url("/v1/status"))
            .bearer_auth(OPS_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let readyz_while_locked = reqwest::get(a.url("/readyz")).await.unwrap().status();
    lock.release();
    // Generous: the loop answers from memory in milliseconds; the old loop
    // was held 15 s by each refused snapshot.
    assert!(
        slowest < Duration::from_secs(3),
        "the loop was held {slowest:?} by a snapshot write; log:\n{}",
        a.process.logs()
    );
    assert_eq!(
        readyz_while_locked,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "the refused snapshot is reported"
    );
    a.wait("the store back", Duration::from_secs(30), async |a| {
        reqwest::get(a.url("/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

/// Issue 15 (missing tests): SIGTERM while an operator request is in
/// flight. The override is applied and its request is still waiting for
/// Talkdesk (`?wait=`, Talkdesk unreachable here) when the agent is told to
/// stop: the drain answers it (2xx, not a cut connection), exits 0, and the
/// restarted agent has the override.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_the_request_in_flight_and_keeps_what_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Agent::start(dir.path(), "agent", &sqlite(dir.path())).await;
    let request = {
        let url = a.url("/v1/override?wait=6s");
        tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .put(url)
                .bearer_auth(OPS_TOKEN)
                .json(&override_on())
                .send()
                .await?;
            let status = resp.status();
            let body: Value = resp.json().await?;
            Ok::<_, reqwest::Error>((status, body))
        })
    };
    a.wait("the override applied", Duration::from_secs(5), async |a| {
        a.status().await["mode"] == "override"
    })
    .await;
    assert!(
        !request.is_finished(),
        "the request must still be in flight"
    );

    let exit = a.process.terminate();
    let (status, body) = request
        .await
        .unwrap()
        .expect("the request in flight was answered, not cut");
    assert!(exit.success(), "{exit}; log:\n{}", a.process.logs());
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(body["applied"], true, "{body}");

    a.restart().await;
    let st = a.status().await;
    assert_eq!(st["mode"], "override", "{st}");
    assert_eq!(st["engine"]["override"]["reason"], "carrier maintenance");
}
