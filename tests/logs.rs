//! What the agent writes to its log, read from a real process: plain text
//! (no ANSI escapes when stderr is a file), no Rust `Debug` renderings
//! (`Some(false)`, `None`, struct dumps), one line per event.

mod support;

use std::time::Duration;

use continuity_agent::talkdesk::simulator::{self, Simulator};
use support::agent::AgentProcess;

const OPS: &str = "ops-token-0123456789ab";

/// `Debug` shapes that must not reach an operator's log.
const DEBUG_SHAPES: [&str; 8] = [
    "Some(", "None", " { ", "Ok(", "Err(", "Correct", "Respect", "[\"",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_plain_text_without_debug_renderings() {
    let sim = simulator::spawn(Simulator::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[agent]
listen = "127.0.0.1:{port}"
{head}on_drift = "correct"
[api]
tokens = [{{ name = "oncall", token = "{OPS}", scopes = ["read", "override"] }}]
[profiles.backup]
default = "+14155558888"
"#,
            head = support::store_and_talkdesk(dir.path(), &sim.base_url()),
        ),
    )
    .unwrap();
    let mut agent = AgentProcess::spawn(&path, port, &dir.path().join("agent.log"));
    agent.wait_ready().await;
    // An actuation (plan, read-back) ...
    let r = reqwest::Client::new()
        .put(format!("{}/v1/override", agent.api))
        .bearer_auth(OPS)
        .json(&serde_json::json!({"state": "active", "profile": "backup", "ttl": "30m", "reason": "logs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..100 {
        if sim.sim.state().enabled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... then a change made in the Talkdesk UI, corrected (drift) ...
    sim.sim.set_enabled(false);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // ... and a failing call retried.
    sim.sim
        .inject(continuity_agent::talkdesk::simulator::Fault::status(
            continuity_agent::talkdesk::simulator::FaultOp::Any,
            503,
            2,
        ));
    sim.sim.set_enabled(false);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(agent.terminate().success());

    let log = agent.logs();
    assert!(log.contains("Drift"), "the scenario did not drift:\n{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{log}"
    );
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| DEBUG_SHAPES.iter().any(|d| l.contains(d)))
        .collect();
    assert!(
        bad.is_empty(),
        "Debug renderings in the log:\n{}",
        bad.join("\n")
    );
    // Every line is one event: it starts with a timestamp and a level.
    for line in log.lines() {
        let mut parts = line.split_whitespace();
        let time = parts.next().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "a log line that is not an event of its own: {line:?}"
        );
    }
}
