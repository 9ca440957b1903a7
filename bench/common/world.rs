//! The world the webhook benchmarks run in: the agent binary as a child
//! process, the project's Talkdesk simulator over real HTTP (in the
//! harness's process, with a watch on its journal), and a realistic
//! Alertmanager payload.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use continuity_agent::talkdesk::simulator::{self, JournalEntry, SimServer, Simulator};

pub const TOKEN: &str = "bench-alertmanager-token-0123456789";

/// A realistic Alertmanager v4 delivery: one group of `n` alerts (distinct
/// instances of `alertname`), with the annotations, URLs and group fields a
/// real Alertmanager sends. `serial` goes into the annotations so each
/// delivery's body differs as a real one would.
pub fn alertmanager_payload(alertname: &str, n: usize, firing: bool, serial: u64) -> String {
    let status = if firing { "firing" } else { "resolved" };
    let ends = if firing {
        "0001-01-01T00:00:00Z"
    } else {
        "2026-12-01T09:00:00.000Z"
    };
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "status": status,
                "labels": {
                    "alertname": alertname,
                    "severity": "critical",
                    "team": "voice",
                    "region": "us-east-1",
                    "job": "blackbox-sip",
                    "instance": format!("sip-edge-{i:02}.voice.example.net:5060"),
                    "env": "production",
                },
                "annotations": {
                    "summary": format!("SIP trunk sip-edge-{i:02} is not answering OPTIONS"),
                    "description": format!("probe_success == 0 for 2m on sip-edge-{i:02} (delivery {serial})"),
                    "runbook_url": "https://runbooks.example.net/voice/sip-trunk-down",
                },
                "startsAt": "2026-12-01T08:00:00.000Z",
                "endsAt": ends,
                "generatorURL": "http://prometheus-0.monitoring.example.net:9090/graph?g0.expr=probe_success%7Bjob%3D%22blackbox-sip%22%7D+%3D%3D+0&g0.tab=1",
                "fingerprint": format!("{:016x}", 0x5eed_0000_u64 + i as u64),
            })
        })
        .collect();
    serde_json::json!({
        "receiver": "continuity-agent",
        "status": status,
        "alerts": alerts,
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "severity": "critical", "team": "voice", "env": "production"},
        "commonAnnotations": {"runbook_url": "https://runbooks.example.net/voice/sip-trunk-down"},
        "externalURL": "http://alertmanager-0.monitoring.example.net:9093",
        "version": "4",
        "groupKey": format!("{{}}/{{team=\"voice\"}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
    })
    .to_string()
}

/// `[store]` and `[talkdesk]` for an agent in `dir` talking to `sim`, with
/// the webhook and a rate limit high enough for a flood.
pub fn config_head(listen: u16, dir: &Path, sim: &str) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{listen}"
[store]
url = "sqlite://{db}"
[talkdesk]
account = "demo"
api_base = "{sim}"
token_url = "{sim}/oauth/token"
client_id = "demo"
client_secret = "demo-secret"
[webhooks.alertmanager]
bearer_token = "{TOKEN}"
[alerts]
rate_per_second = 0
# Trials switch on and off back to back: the flap latch must not hold it on.
[engine]
flap_max = 1000000
[profiles.backup]
default = "+14155558888"
message = {{ text = "Talkdesk voice is down; your call is being forwarded.", language = "en-US" }}
"#,
        db = dir.join("state.db").display(),
    )
}

/// The agent binary as a child process; killed when dropped.
pub struct Agent {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Agent {
    /// Writes `toml` to `dir/agent.toml` and starts `run -c` on it. Logs at
    /// `info` (as deployed) go to `dir/agent.log`.
    pub fn spawn(bin: &Path, dir: &Path, port: u16, toml: &str) -> Agent {
        let cfg = dir.join("agent.toml");
        std::fs::write(&cfg, toml).expect("write the agent configuration");
        let log = dir.join("agent.log");
        let file = std::fs::File::create(&log).expect("agent log");
        let child = Command::new(bin)
            .args(["run", "-c"])
            .arg(&cfg)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn the agent");
        Agent { child, port, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until `/readyz` answers 200 (panics with the log otherwise).
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base())).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the agent exited ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "agent not ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Talkdesk simulator on the harness's runtime.
pub struct Talkdesk {
    pub sim: Simulator,
    pub server: SimServer,
    journal: tokio::sync::watch::Receiver<u64>,
}

impl Talkdesk {
    pub async fn start() -> Talkdesk {
        let sim = Simulator::default();
        let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .expect("start the simulator");
        let journal = sim.journal_watch();
        Talkdesk {
            sim,
            server,
            journal,
        }
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Waits for a journaled call that satisfies `want` (among calls after
    /// `seen` entries), and returns when it was seen. Woken by the
    /// simulator's journal watch, not by polling.
    pub async fn wait_call(
        &mut self,
        limit: Duration,
        mut want: impl FnMut(&JournalEntry) -> bool,
    ) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = Instant::now();
        loop {
            if self.sim.journal().iter().any(&mut want) {
                return Some(seen);
            }
            match tokio::time::timeout_at(deadline, self.journal.changed()).await {
                Ok(Ok(())) => seen = Instant::now(),
                _ => return None,
            }
        }
    }
}

/// A write of the activation to `on`, answered 200.
pub fn activation(e: &JournalEntry, on: bool) -> bool {
    e.op == "put_activation"
        && e.status == 200
        && e.body
            .as_deref()
            .is_some_and(|b| b.contains(if on { "true" } else { "false" }))
}
