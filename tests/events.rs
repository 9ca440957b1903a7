//! `continuity-agent events` and `GET /v1/events` filters on a real agent:
//! the audit log for humans (RFC 3339 times, one line per record), filtered
//! by kind and age, with `at` kept as epoch milliseconds for old readers.

mod support;

use std::process::Command;

use continuity_agent::talkdesk::simulator::{self, Simulator};
use support::agent::AgentProcess;

const OPS: &str = "ops-token-0123456789ab";

fn cli(api: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_continuity-agent"))
        .arg("events")
        .args(args)
        .args(["--url", api])
        .env("CONTINUITY_AGENT_TOKEN", OPS)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_filtered_by_kind_and_age_and_shown_with_rfc3339_times() {
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
{head}
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
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/v1/override", agent.api))
        .bearer_auth(OPS)
        .json(&serde_json::json!({"state": "active", "profile": "backup", "ttl": "30m", "reason": "events test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // For humans: only the kind asked for, RFC 3339 times, oldest first.
    let api = agent.api.clone();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || cli(&api, &["--kind", "override", "--since", "1h"]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines.is_empty(), "{out}");
    for line in &lines {
        let mut parts = line.split_whitespace();
        let time = parts.next().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "not RFC 3339: {line}"
        );
        assert_eq!(parts.next(), Some("override"), "{out}");
    }
    assert!(out.contains("events test"), "{out}");

    // --json: the raw page, `at` still milliseconds, `time` added.
    let api = agent.api.clone();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || cli(&api, &["--kind", "decision,override", "--json"]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    let events = page["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "decision"), "{page}");
    assert!(events.iter().any(|e| e["kind"] == "override"), "{page}");
    assert!(
        events
            .iter()
            .all(|e| e["kind"] == "decision" || e["kind"] == "override"),
        "{page}"
    );
    for e in events {
        assert!(e["at"].is_i64(), "{e}");
        let time = chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).unwrap();
        assert_eq!(time.timestamp_millis(), e["at"].as_i64().unwrap());
    }

    // Since a time after every record: nothing.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let page: serde_json::Value = http
        .get(format!("{}/v1/events", agent.api))
        .query(&[("since", future.as_str())])
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 0, "{page}");

    // Unknown kinds and unreadable times are refused, naming the known kinds.
    for q in [("kind", "nope"), ("since", "yesterday-ish")] {
        let r = http
            .get(format!("{}/v1/events", agent.api))
            .query(&[q])
            .bearer_auth(OPS)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{q:?}");
        let body = r.text().await.unwrap();
        assert!(body.contains(q.1), "{body}");
    }
    let api = agent.api.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || cli(&api, &["--kind", "nope"]))
        .await
        .unwrap();
    assert!(!ok);
    assert!(
        err.contains("decision"),
        "the known kinds are listed: {err}"
    );
    assert!(agent.terminate().success());
}
