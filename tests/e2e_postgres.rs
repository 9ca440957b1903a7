//! End to end on the PostgreSQL store: the agent binary with
//! `store.url = "postgres://..."` (a private server, password from
//! `store.password_file`), the Talkdesk simulator and sipp as the trunk.
//! After `kill -9` while the fallback is on, the restarted agent restores its
//! decision from PostgreSQL and writes nothing to Talkdesk, exactly as with
//! SQLite (`e2e_sip.rs`); while PostgreSQL is down `/readyz` says so.

mod support;

use std::time::Duration;

use continuity_agent::talkdesk::simulator::{self, JournalEntry, Simulator};
use support::agent::AgentProcess;
use support::pg::PgServer;
use support::sipp::Sipp;
use tokio::time::Instant;

fn config(sim: &str, target: &str, port: u16, dir: &std::path::Path, store_url: &str) -> String {
    let head = support::store_and_talkdesk(dir, sim);
    let sqlite = format!("url = \"sqlite://{}\"", dir.join("state.db").display());
    assert!(head.contains(&sqlite), "the common head changed: {head}");
    let store = format!("url = {store_url:?}\npassword_file = \"pg-password\"");
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
{head}[profiles.backup]
default = "+14155558888"
message = {{ text = "We are experiencing technical difficulties.", language = "en-US" }}
[[probes]]
id = "trunk-a"
type = "sip"
target = "{target}"
interval = "1s"
fast_interval = "500ms"
timeout = "1s"
rise = 2
fall = 3
[[rules]]
name = "trunk-down"
profile = "backup"
for = "2s"
clear_for = "3s"
min_active = "1s"
when = {{ down = "trunk-a" }}
"#,
        head = head.replace(&sqlite, &store),
    )
}

fn is_activation_on(e: &JournalEntry) -> bool {
    e.op == "put_activation"
        && e.status == 200
        && e.body.as_deref().is_some_and(|b| b.contains("true"))
}

async fn wait_for(what: &str, agent: &AgentProcess, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; agent log:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(agent: &AgentProcess) -> Option<u16> {
    let r = reqwest::get(format!("{}/readyz", agent.api)).await.ok()?;
    Some(r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_postgres_restores_the_decision_and_readyz_follows_the_database() {
    let pg = PgServer::start();
    let db = pg.database().await;
    let sipp = Sipp::start("options-uas.xml", false).await;
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pg-password"), format!("{}\n", pg.password)).unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("agent.toml");
    let url = pg.url_without_password(&db);
    std::fs::write(
        &cfg,
        config(&server.base_url(), &sipp.target(), port, dir.path(), &url),
    )
    .unwrap();
    let spawn = || AgentProcess::spawn(&cfg, port, &dir.path().join("agent.log"));
    let writes =
        || -> Vec<JournalEntry> { sim.journal().into_iter().filter(|e| e.is_write()).collect() };

    let mut agent = spawn();
    agent.wait_ready().await;
    wait_for("trunk-a up", &agent, async || {
        agent
            .metric("continuity_probe_up{probe=\"trunk-a\",type=\"sip\"}")
            .await
            == Some(1.0)
    })
    .await;
    sipp.kill();
    wait_for("activation", &agent, async || {
        writes().iter().any(is_activation_on)
    })
    .await;
    // Let the decision settle (snapshot written, actuator converged).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = writes().len();
    let admin = pg.connect(&db).await;
    let row = admin
        .query_one(
            "SELECT snapshot::text FROM engine_state WHERE account = 'default'",
            &[],
        )
        .await
        .expect("the decision is persisted in PostgreSQL");
    assert!(!row.get::<_, String>(0).is_empty());
    assert!(!dir.path().join("state.db").exists(), "no SQLite file");

    agent.kill9();
    let mut agent = spawn();
    agent.wait_ready().await;
    // At once, before a re-decision could be made (three failed probes plus
    // `for`): only the snapshot read from PostgreSQL can say this.
    agent
        .assert_restored_before_probes_decide("trunk-a", "trunk-down", 3)
        .await;
    // Several reconcile intervals and probe cycles with the trunk still dead.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = writes();
    assert_eq!(
        after.len(),
        before,
        "restart after kill -9 wrote to Talkdesk: {:?}",
        &after[before..]
    );
    assert!(sim.state().enabled, "the fallback is still on");
    assert_eq!(agent.metric("continuity_fallback_desired").await, Some(1.0));
    assert_eq!(agent.metric("continuity_fallback_actual").await, Some(1.0));

    // The database goes away and comes back: /readyz follows, the agent stays up.
    pg.stop();
    wait_for("/readyz 503", &agent, async || {
        readyz(&agent).await == Some(503)
    })
    .await;
    pg.start_again();
    wait_for("/readyz 200", &agent, async || {
        readyz(&agent).await == Some(200)
    })
    .await;

    let status = agent.terminate();
    assert!(
        status.success(),
        "graceful shutdown exit: {status}; log:\n{}",
        agent.logs()
    );
}
