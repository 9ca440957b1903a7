//! Break-glass goes through the running agent first: `talkdesk activate`
//! sets an override through the agent (the config's listen address and
//! `override`-scoped token, or `--url`/`--token`) so the agent and the human
//! agree, and says so; only when no agent answers does it write to Talkdesk
//! directly, and then it says what the agent will do with that change when it
//! is back (`talkdesk.on_drift`). Over real processes: the agent and CLI
//! binaries and the Talkdesk simulator over HTTP.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use continuity_agent::talkdesk::simulator::{self, SimServer, Simulator};
use support::agent::AgentProcess;

const TOKEN: &str = "glass-test-token-0123456789abcdef";

fn config(dir: &Path, sim: &str, port: u16) -> std::path::PathBuf {
    let text = format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
{head}[api]
tokens = [
  {{ name = "dash", token = "read-only-token-0123456789abcdef", scopes = ["read"] }},
  {{ name = "oncall", token = "{TOKEN}", scopes = ["read", "override"] }},
]
[profiles.backup]
default = "+14155558888"
"#,
        head = support::store_and_talkdesk(dir, sim),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn cli(args: Vec<String>) -> (Option<i32>, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_continuity-agent"));
    c.env_remove("RUST_LOG")
        .env_remove("CONTINUITY_AGENT_TOKEN")
        .env_remove("CONTINUITY_AGENT_URL")
        .args(args);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn setup() -> (
    Simulator,
    SimServer,
    tempfile::TempDir,
    u16,
    std::path::PathBuf,
) {
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = config(dir.path(), &server.base_url(), port);
    (sim, server, dir, port, cfg)
}

fn args(v: &[&str], cfg: &Path) -> Vec<String> {
    let mut a: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    a.extend(["-c".to_string(), cfg.display().to_string()]);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activate_goes_through_a_running_agent_as_an_override() {
    let (sim, _server, dir, port, cfg) = setup().await;
    let mut agent = AgentProcess::spawn(&cfg, port, &dir.path().join("agent.log"));
    agent.wait_ready().await;

    let (code, out, err) = cli(args(&["talkdesk", "activate"], &cfg)).await;
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("through the running agent") && out.contains("Talkdesk now matches"),
        "{out}"
    );
    assert!(sim.state().enabled);
    let doc = agent.get_json("/v1/status", TOKEN).await;
    assert_eq!(doc["mode"], "override", "{doc:#}");
    assert_eq!(doc["engine"]["override"]["actor"], "oncall", "{doc:#}");
    // The agent and the human agree: nothing undoes it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sim.state().enabled, "log:\n{}", agent.logs());

    let (code, out, err) = cli(args(&["talkdesk", "deactivate"], &cfg)).await;
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(!sim.state().enabled, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_agent_activate_writes_directly_and_says_what_the_agent_will_do() {
    let (sim, _server, _dir, _port, cfg) = setup().await;
    let (code, out, err) = cli(args(&["talkdesk", "activate"], &cfg)).await;
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("fallback: disabled -> enabled"), "{out}");
    assert!(sim.state().enabled);
    assert!(
        err.contains("did not answer")
            && err.contains("adopt this change as an override for 1h")
            && err.contains("on_drift"),
        "{err}"
    );
}
