//! Drift while the agent was away, over real processes: the agent binary and
//! the Talkdesk simulator over real HTTP, with sipp as a healthy trunk. The
//! fallback is switched on outside the agent (a break-glass activation, the
//! Talkdesk UI) while the agent is stopped; on restart the agent compares
//! what Talkdesk has with what it last wrote and applies `on_drift` to the
//! difference, exactly as while running, and audits it.

mod support;

use std::path::Path;
use std::time::Duration;

use continuity_agent::talkdesk::simulator::{self, JournalEntry, SimServer, Simulator};
use support::agent::AgentProcess;
use support::sipp::Sipp;
use tokio::time::Instant;

const TOKEN: &str = "drift-test-token-0123456789abcdef";

fn config(sim: &str, target: &str, port: u16, dir: &Path, on_drift: &str) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
{head}on_drift = "{on_drift}"
drift_override_ttl = "2h"
[api]
tokens = [{{ name = "ops", token = "{TOKEN}", scopes = ["read", "override"] }}]
[profiles.backup]
default = "+14155558888"
[[probes]]
id = "trunk-a"
type = "sip"
target = "{target}"
interval = "1s"
timeout = "1s"
rise = 1
fall = 3
[[rules]]
name = "trunk-down"
profile = "backup"
for = "2s"
when = {{ down = "trunk-a" }}
"#,
        head = support::store_and_talkdesk(dir, sim),
    )
}

struct World {
    sim: Simulator,
    _server: SimServer,
    dir: tempfile::TempDir,
    port: u16,
    cfg: std::path::PathBuf,
    _sipp: Sipp,
}

async fn world(on_drift: &str) -> World {
    let sipp = Sipp::start("options-uas.xml", false).await;
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("agent.toml");
    let text = config(
        &server.base_url(),
        &sipp.target(),
        port,
        dir.path(),
        on_drift,
    );
    std::fs::write(&cfg, text).unwrap();
    World {
        sim,
        _server: server,
        dir,
        port,
        cfg,
        _sipp: sipp,
    }
}

impl World {
    fn agent(&self) -> AgentProcess {
        AgentProcess::spawn(&self.cfg, self.port, &self.dir.path().join("agent.log"))
    }
    fn writes(&self) -> Vec<JournalEntry> {
        self.sim
            .journal()
            .into_iter()
            .filter(|e| e.is_write())
            .collect()
    }
    /// The first run: a healthy trunk, the agent has seen Talkdesk off.
    async fn first_run(&self) {
        let mut agent = self.agent();
        agent.wait_ready().await;
        wait_metric(&agent, "continuity_fallback_actual", 0.0).await;
        assert!(agent.terminate().success(), "log:\n{}", agent.logs());
    }

    /// Like `first_run`, but the agent is killed (no final snapshot): what it
    /// saw of Talkdesk must already be on disk.
    async fn first_run_killed(&self) {
        let mut agent = self.agent();
        agent.wait_ready().await;
        wait_metric(&agent, "continuity_fallback_actual", 0.0).await;
        // The loop persists before it sleeps again; give it that moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        agent.kill9();
    }
}

async fn wait_metric(agent: &AgentProcess, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.metric(name).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{name} never became {want}; log:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_the_agent_was_down_is_respected_and_audited() {
    let w = world("respect").await;
    w.first_run().await;

    // Break-glass while the agent is down.
    w.sim.set_enabled(true);
    w.sim.clear_journal();

    let mut agent = w.agent();
    agent.wait_ready().await;
    wait_metric(
        &agent,
        "continuity_drift_total{account=\"default\",action=\"adopted\"}",
        1.0,
    )
    .await;
    // Several reconcile intervals and probe cycles with a healthy trunk.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        w.writes().is_empty(),
        "the agent undid a change made while it was away: {:?}",
        w.writes()
    );
    assert!(w.sim.state().enabled, "the fallback is still on");

    let doc = agent.get_json("/v1/status", TOKEN).await;
    let ov = &doc["engine"]["override"];
    assert!(
        ov["reason"]
            .as_str()
            .is_some_and(|r| r.contains("changed outside the agent")),
        "status shows the adopted override: {doc:#}"
    );
    assert_eq!(ov["actor"], "drift", "{doc:#}");
    let until = ov["until"].as_u64().expect("until") as i64;
    let set_at = ov["set_at"].as_u64().expect("set_at") as i64;
    assert_eq!(
        until - set_at,
        2 * 3600 * 1000,
        "drift_override_ttl: {doc:#}"
    );
    assert!(
        agent.logs().contains("changed outside the agent"),
        "logged:\n{}",
        agent.logs()
    );
    let events: serde_json::Value = agent.get_json("/v1/events?limit=1000", TOKEN).await;
    assert!(
        events.to_string().contains("changed outside the agent"),
        "audited: {events:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_drift_correct_a_change_made_while_away_is_undone_loudly() {
    let w = world("correct").await;
    w.first_run().await;

    w.sim.set_enabled(true);
    w.sim.clear_journal();

    let mut agent = w.agent();
    agent.wait_ready().await;
    wait_metric(
        &agent,
        "continuity_drift_total{account=\"default\",action=\"corrected\"}",
        1.0,
    )
    .await;
    wait_metric(&agent, "continuity_fallback_actual", 0.0).await;
    assert!(!w.sim.state().enabled, "corrected");
    let logs = agent.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("correcting")),
        "a WARN line says it undid the change:\n{logs}"
    );
    let events: serde_json::Value = agent.get_json("/v1/events?limit=1000", TOKEN).await;
    assert!(
        events.to_string().contains("on_drift = correct"),
        "audited: {events:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_after_a_kill_9_is_respected_too() {
    let w = world("respect").await;
    w.first_run_killed().await;

    w.sim.set_enabled(true);
    w.sim.clear_journal();

    let mut agent = w.agent();
    agent.wait_ready().await;
    wait_metric(
        &agent,
        "continuity_drift_total{account=\"default\",action=\"adopted\"}",
        1.0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        w.writes().is_empty(),
        "the agent undid a change made while it was away: {:?}",
        w.writes()
    );
    assert!(w.sim.state().enabled, "the fallback is still on");
}
