//! `override on|off` answers honestly: after the decision is persisted it
//! waits (up to 10 s, `--no-wait` to skip) for Talkdesk and says whether
//! Talkdesk now matches (exit 0) or not yet, with the error (exit 1). The
//! API's answer carries the actuator's state. Over real processes: the agent
//! binary, the CLI binary and the Talkdesk simulator over HTTP.

mod support;

use std::process::Command;

use continuity_agent::talkdesk::simulator::{self, Fault, FaultOp, Simulator};
use support::agent::AgentProcess;

const TOKEN: &str = "wait-test-token-0123456789abcdef";

async fn cli(args: &[&str], url: &str) -> (Option<i32>, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_continuity-agent"));
    c.env_remove("RUST_LOG")
        .args(args)
        .args(["--url", url])
        .env("CONTINUITY_AGENT_TOKEN", TOKEN);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_waits_for_talkdesk_and_says_whether_it_matches() {
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("agent.toml");
    let text = format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
{head}[api]
tokens = [{{ name = "ops", token = "{TOKEN}", scopes = ["read", "override"] }}]
[profiles.backup]
default = "+14155558888"
"#,
        head = support::store_and_talkdesk(dir.path(), &server.base_url()),
    );
    std::fs::write(&cfg, text).unwrap();
    let mut agent = AgentProcess::spawn(&cfg, port, &dir.path().join("agent.log"));
    agent.wait_ready().await;
    let url = agent.api.clone();

    let on = [
        "override",
        "on",
        "--profile",
        "backup",
        "--ttl",
        "10m",
        "--reason",
        "test",
    ];
    let (code, out, err) = cli(&on, &url).await;
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("Talkdesk now matches"), "{out}");
    assert!(sim.state().enabled, "it did switch the fallback on");

    // Talkdesk refuses activation changes for a while.
    sim.inject(Fault::status(FaultOp::PutActivation, 503, 0));
    let off = ["override", "off", "--ttl", "10m", "--reason", "test"];
    let (code, out, err) = cli(&off, &url).await;
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("Talkdesk NOT yet updated") && all.contains("503") && all.contains("retrying"),
        "{all}"
    );

    // --no-wait answers at once, with the actuator's state as it is.
    let (code, out, err) = cli(
        &[
            "override",
            "on",
            "--profile",
            "backup",
            "--ttl",
            "10m",
            "--reason",
            "x",
            "--no-wait",
        ],
        &url,
    )
    .await;
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("override set"), "{out}");

    // The API's own answer carries the actuator's state.
    let resp: serde_json::Value = reqwest::Client::new()
        .put(format!("{url}/v1/override?wait=5s"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"state": "active", "profile": "backup", "ttl": "10m", "reason": "api"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["talkdesk"]["matches"], true, "{resp:#}");
    assert_eq!(resp["talkdesk"]["actual"]["enabled"], true, "{resp:#}");
}
