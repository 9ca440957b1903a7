//! Configuration reload (SIGHUP and `POST /-/reload`) on a real agent
//! process: validated first, refused whole with every error listed (the old
//! configuration kept), applied without losing state or switching anything,
//! counted in `continuity_config_reloads_total{result}` and audited.

mod support;

use std::path::Path;
use std::time::Duration;

use continuity_agent::talkdesk::simulator::{self, Simulator};
use support::agent::AgentProcess;

const ADMIN: &str = "admin-token-0123456789";
const OPS: &str = "ops-token-0123456789ab";
const NEW_READ: &str = "new-read-token-0123456789";

/// A config with one HTTP probe on the simulator; `tokens` are added to the
/// API tokens and `extra` at the end.
fn config(dir: &Path, sim: &str, port: u16, tokens: &str, extra: &str) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
{head}
[api]
tokens = [
  {{ name = "root", token = "{ADMIN}", scopes = ["admin"] }},
  {{ name = "oncall", token = "{OPS}", scopes = ["read", "override"] }},
{tokens}
]

[profiles.backup]
default = "+14155558888"

[[probes]]
id = "web-a"
type = "http"
url = "{sim}/_sim/state"
interval = "1s"

[[rules]]
name = "web-down"
profile = "backup"
for = "10s"
when = {{ down = "web-*" }}
{extra}
"#,
        head = support::store_and_talkdesk(dir, sim),
    )
}

const SECOND_PROBE: &str = r#"
[[probes]]
id = "web-b"
type = "http"
url = "SIM/_sim/state"
interval = "1s"
"#;

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn reload(&self, token: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/-/reload", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    async fn status(&self, token: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}/v1/status", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    async fn events(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/v1/events?limit=1000", self.base))
            .bearer_auth(OPS)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn probes(&self) -> Vec<String> {
        let (_, doc) = self.status(OPS).await;
        doc["engine"]["probes"]
            .as_array()
            .unwrap_or(&vec![])
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_string))
            .collect()
    }
}

async fn reloads(agent: &AgentProcess, result: &str) -> f64 {
    agent
        .metric(&format!(
            "continuity_config_reloads_total{{result=\"{result}\"}}"
        ))
        .await
        .unwrap_or(0.0)
}

/// Waits until `cond` holds, up to 10 s.
fn reload_records(events: &serde_json::Value) -> usize {
    events["events"]
        .as_array()
        .map(|all| all.iter().filter(|e| e["kind"] == "reload").count())
        .unwrap_or(0)
}

async fn eventually<F: AsyncFnMut() -> bool>(what: &str, agent: &AgentProcess, mut cond: F) {
    for _ in 0..200 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen; log:\n{}", agent.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_is_validated_refused_whole_or_applied_without_losing_state() {
    let sim = simulator::spawn(Simulator::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = sim.base_url();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let port = support::free_port();
    std::fs::write(&path, config(dir.path(), &base, port, "", "")).unwrap();
    let mut agent = AgentProcess::spawn(&path, port, &dir.path().join("agent.log"));
    agent.wait_ready().await;
    let api = Api {
        http: reqwest::Client::new(),
        base: agent.api.clone(),
    };

    // State to keep: an operator override holds the fallback on.
    let r = api
        .http
        .put(format!("{}/v1/override", api.base))
        .bearer_auth(OPS)
        .json(&serde_json::json!({"state": "active", "profile": "backup", "ttl": "30m", "reason": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    eventually("the fallback switching on", &agent, async || {
        sim.sim.state().enabled
    })
    .await;
    sim.sim.clear_journal();

    // Only the admin scope may reload.
    assert_eq!(api.reload(OPS).await.0, 403);

    // A valid change: a probe and a token more.
    let v2 = config(
        dir.path(),
        &base,
        port,
        &format!("  {{ name = \"late\", token = \"{NEW_READ}\", scopes = [\"read\"] }},"),
        &SECOND_PROBE.replace("SIM", &base),
    );
    std::fs::write(&path, &v2).unwrap();
    assert_eq!(api.status(NEW_READ).await.0, 401, "not yet reloaded");
    let (code, body) = api.reload(ADMIN).await;
    assert_eq!(code, 200, "{body}");
    let changed: Vec<&str> = body["changed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        changed.contains(&"probes") && changed.contains(&"api"),
        "{body}"
    );
    assert_eq!(reloads(&agent, "ok").await, 1.0);
    // The API has the new token, the engine the new probe, and the override
    // is still there: nothing was switched.
    assert_eq!(api.status(NEW_READ).await.0, 200);
    assert!(api.probes().await.contains(&"web-b".to_string()));
    let (_, doc) = api.status(OPS).await;
    assert_eq!(doc["mode"], "override", "{doc}");
    assert_eq!(doc["desired"]["state"], "active", "{doc}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes: Vec<_> = sim
        .sim
        .journal()
        .into_iter()
        .filter(|e| e.is_write())
        .collect();
    assert!(writes.is_empty(), "a reload wrote to Talkdesk: {writes:?}");
    assert!(sim.sim.state().enabled);

    // An invalid file: every error listed, the running config kept.
    let broken = v2
        .replace("default = \"+14155558888\"", "default = \"not-a-number\"")
        .replace("interval = \"1s\"", "interval = \"soon\"");
    std::fs::write(&path, &broken).unwrap();
    let (code, body) = api.reload(ADMIN).await;
    assert_eq!(code, 422, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert!(errors.len() >= 2, "every error is listed: {body}");
    let text = body.to_string();
    assert!(
        text.contains("default") && text.contains("interval"),
        "{body}"
    );
    assert_eq!(reloads(&agent, "invalid").await, 1.0);
    assert_eq!(api.status(NEW_READ).await.0, 200, "the old config is kept");
    assert!(api.probes().await.contains(&"web-b".to_string()));

    // What needs a restart is refused whole, with the key named.
    let other_port = support::free_port();
    std::fs::write(
        &path,
        v2.replace(
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{other_port}"),
        ),
    )
    .unwrap();
    let (code, body) = api.reload(ADMIN).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("agent.listen"), "{body}");
    assert_eq!(reloads(&agent, "needs_restart").await, 1.0);

    // SIGHUP reloads too: back to the first file (the late token goes).
    std::fs::write(&path, config(dir.path(), &base, port, "", "")).unwrap();
    agent.signal(libc::SIGHUP);
    eventually("the SIGHUP reload", &agent, async || {
        reloads(&agent, "ok").await == 2.0
    })
    .await;
    assert_eq!(
        api.status(NEW_READ).await.0,
        401,
        "the removed token is gone"
    );
    assert!(!api.probes().await.contains(&"web-b".to_string()));
    let (_, doc) = api.status(OPS).await;
    assert_eq!(doc["mode"], "override", "{doc}");

    // Every attempt is in the audit log. The store writes audit rows in the
    // background, so the SIGHUP's row may land just after its counter moved.
    let mut last = serde_json::Value::Null;
    eventually("four reload records in the audit log", &agent, async || {
        last = api.events().await;
        reload_records(&last) >= 4
    })
    .await;
    assert_eq!(reload_records(&last), 4, "one record per attempt: {last}");
    assert!(agent.terminate().success());
}

/// The actuator gets the new profiles: editing the active profile writes its
/// new settings to Talkdesk, without switching the fallback off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_active_profile_is_written_to_talkdesk() {
    let sim = simulator::spawn(Simulator::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = sim.base_url();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let port = support::free_port();
    std::fs::write(&path, config(dir.path(), &base, port, "", "")).unwrap();
    let mut agent = AgentProcess::spawn(&path, port, &dir.path().join("agent.log"));
    agent.wait_ready().await;
    let api = Api {
        http: reqwest::Client::new(),
        base: agent.api.clone(),
    };
    let r = api
        .http
        .put(format!("{}/v1/override", api.base))
        .bearer_auth(OPS)
        .json(&serde_json::json!({"state": "active", "profile": "backup", "ttl": "30m", "reason": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("the fallback switching on", &agent, async || {
        sim.sim.state().enabled
    })
    .await;
    assert_eq!(
        sim.sim.state().settings.default.as_deref(),
        Some("+14155558888")
    );

    let edited = config(dir.path(), &base, port, "", "").replace("+14155558888", "+14155557777");
    std::fs::write(&path, edited).unwrap();
    let (code, body) = api.reload(ADMIN).await;
    assert_eq!(code, 200, "{body}");
    eventually("the new settings reaching Talkdesk", &agent, async || {
        sim.sim.state().settings.default.as_deref() == Some("+14155557777")
    })
    .await;
    let switched_off = sim.sim.journal().into_iter().any(|e| {
        e.op == "put_activation" && e.body.as_deref().is_some_and(|b| b.contains("false"))
    });
    assert!(!switched_off, "the reload switched the fallback off");
    assert!(sim.sim.state().enabled);
    assert!(agent.terminate().success());
}
