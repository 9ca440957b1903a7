//! The actuator supervisor, end to end (issue 15): in the real binary, an
//! actuator that dies (here: a panic at the `talkdesk.write` failpoint,
//! `src/failpoint.rs`, armed by the environment in debug builds) ends the
//! agent with exit 1, loudly (logged and audited), instead of leaving it
//! deciding while nothing applies its decisions. Restarted as a supervisor
//! would, the agent restores the decision it had (the operator's override,
//! answered 200 before the death) and applies it exactly once.

mod support;

use std::time::Duration;

use continuity_agent::failpoint;
use continuity_agent::talkdesk::simulator::{self, JournalEntry};
use serde_json::{Value, json};
use support::agent::AgentProcess;
use tokio::time::Instant;

const OPS_TOKEN: &str = "death-ops-token-0123456789abcdef";

fn config(sim: &str, port: u16, dir: &std::path::Path) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
{head}on_drift = "respect"
[api]
tokens = [{{ name = "ops", token = "{OPS_TOKEN}", scopes = ["read", "override"] }}]
[profiles.a]
default = "+14155558888"
"#,
        head = support::store_and_talkdesk(dir, sim),
    )
}

/// The activation writes Talkdesk accepted, as `enabled` values in order.
fn activations(journal: &[JournalEntry]) -> Vec<bool> {
    journal
        .iter()
        .filter(|e| e.op == "put_activation" && (200..300).contains(&e.status))
        .map(|e| {
            let body: Value = serde_json::from_str(e.body.as_deref().unwrap_or("")).unwrap();
            body["enabled"].as_bool().expect("enabled")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_actuator_ends_the_agent_and_a_restart_applies_the_decision_once() {
    let sim = simulator::Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, config(&server.base_url(), port, dir.path())).unwrap();
    let log = dir.path().join("agent.log");

    // Armed: the actuator panics before its first write. Talkdesk is off
    // and so is the decision, so it runs (and reads) until there is
    // something to write.
    let mut agent =
        AgentProcess::spawn_with_env(&cfg, port, &log, &[(failpoint::ENV, "talkdesk.write")]);
    agent.wait_ready().await;
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/override", agent.api))
        .bearer_auth(OPS_TOKEN)
        .json(&json!({"state": "active", "profile": "a", "ttl": "30m", "reason": "drill"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "override: {}", resp.status());

    let status = agent.wait_exit(Duration::from_secs(20)).await;
    let logs = agent.logs();
    assert_eq!(status.code(), Some(1), "exit status {status}; log:\n{logs}");
    assert!(
        logs.contains("failpoint talkdesk.write is armed"),
        "the armed failpoint was hit; log:\n{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("ERROR") && l.contains("The actuator stopped unexpectedly")),
        "the death is logged as an error; log:\n{logs}"
    );
    assert!(
        sim.journal().iter().all(|e| !e.is_write()),
        "nothing was written to Talkdesk: {:?}",
        sim.journal()
    );
    assert!(!sim.state().enabled);

    // Restarted without the failpoint, as systemd would after exit 1.
    let mut agent = AgentProcess::spawn(&cfg, port, &log);
    agent.wait_ready().await;
    let want = json!({"state": "active", "profile": "a"});
    let deadline = Instant::now() + Duration::from_secs(15);
    let st = loop {
        let st = agent.get_json("/v1/status", OPS_TOKEN).await;
        if st["desired"] == want && st["converged"] == true && sim.state().enabled {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the restored override was not applied; status: {st:#}\nlog:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(st["engine"]["override"]["reason"], "drill", "{st:#}");
    assert_eq!(
        sim.state().settings.default.as_deref(),
        Some("+14155558888"),
        "profile a's settings"
    );
    // Applied once, and nothing more over two reconciles.
    support::several_reconciles().await;
    assert_eq!(
        activations(&sim.journal()),
        vec![true],
        "{:?}",
        sim.journal()
    );

    let events = agent.get_json("/v1/events?limit=1000", OPS_TOKEN).await;
    assert!(
        events
            .to_string()
            .contains("actuator stopped unexpectedly: the actuator panicked"),
        "the death is audited: {events:#}"
    );
}
