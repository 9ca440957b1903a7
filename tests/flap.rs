//! The flap latch end to end: an alert that fires and resolves repeatedly
//! latches the fallback on (reported in status and metrics); an operator
//! releases it with `override release-flap` and the rules decide again.

mod support;

use std::time::Duration;

use continuity_agent::config;
use continuity_agent::talkdesk::simulator::{self, Simulator};
use serde_json::json;
use tokio::time::Instant;

const ALERT_TOKEN: &str = "generic-token-0123456789";
const OPS_TOKEN: &str = "ops-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_latches_on_until_an_operator_releases_it() {
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"{head}
[profiles.backup]
default = "+14155558888"
[[rules]]
name = "voice-down"
profile = "backup"
for = "0s"
clear_for = "0s"
min_active = "0s"
when = {{ alert = ['alertname="TalkdeskVoiceDown"'] }}
[engine]
flap_max = 2
flap_window = "10m"
[webhooks.generic]
bearer_token = "{ALERT_TOKEN}"
[api]
tokens = [ {{ name = "oncall", token = "{OPS_TOKEN}", scopes = ["read", "override"] }} ]
"#,
        head = support::store_and_talkdesk(dir.path(), &server.base_url()),
    );
    let cfg = config::from_toml_str_strict(&toml, "flap.toml", dir.path(), false).unwrap();
    let agent = support::inproc::start(cfg).await;
    let http = reqwest::Client::new();
    let post = |status: &'static str| {
        http.post(format!("{}/v1/alerts/generic", agent.base))
            .bearer_auth(ALERT_TOKEN)
            .json(&json!({"id": "a1", "status": status, "labels": {"alertname": "TalkdeskVoiceDown"}}))
            .send()
    };
    let m = agent.running.metrics.account(config::DEFAULT_ACCOUNT);
    // on, off, on, off: the fourth change exceeds flap_max = 2 within the window.
    for status in ["firing", "resolved", "firing", "resolved"] {
        assert_eq!(post(status).await.unwrap().status(), 202);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.flapping.get() != 1 {
        assert!(Instant::now() < deadline, "never latched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        m.fallback_desired.get(),
        1,
        "the latch holds the fallback on although the alert resolved"
    );

    // Release through the CLI.
    let base = agent.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_continuity-agent"))
            .args(["override", "release-flap", "--url", &base])
            .env("CONTINUITY_AGENT_TOKEN", OPS_TOKEN)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("flap latch released"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.fallback_desired.get() != 0 {
        assert!(
            Instant::now() < deadline,
            "the rules did not take over again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(m.flapping.get(), 0);
    // Releasing again: nothing latched.
    let resp = http
        .delete(format!("{}/v1/flap", agent.base))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .unwrap();
    let body = resp.json::<serde_json::Value>().await.unwrap();
    assert_eq!(
        (&body["released"], &body["applied"]),
        (&json!(false), &json!(true)),
        "{body}"
    );
    agent.stop().await;
}
