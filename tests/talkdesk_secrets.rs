//! Secrets (the client secret, its Basic-auth encoding, access tokens) never
//! appear in logs, errors, Debug output, audit records or the status: the
//! Talkdesk client and actuator in-process, then the agent binary end to end
//! with every kind of secret it takes.

mod support;
mod talkdesk_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use continuity_agent::domain::{Desired, FallbackSettings, Profile};
use continuity_agent::talkdesk::simulator::{Fault, FaultOp};
use continuity_agent::talkdesk::{Actuator, Client};
use continuity_agent::telemetry::Metrics;
use continuity_agent::telemetry::audit::NoAudit;
use talkdesk_support::*;

/// Log lines land here; a `MakeWriter` for the test subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// current_thread (the default): every task, including the simulator and
// reqwest's connection tasks, logs into the thread-local subscriber below.
#[tokio::test]
async fn talkdesk_secrets_never_reach_logs_errors_or_audit() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = Env::new().await;
    let mut seen = Vec::<String>::new();

    // A full cycle with failures on the way: 503, an expired token (401 and
    // refresh), a validation error with field details.
    env.sim()
        .inject(Fault::status(FaultOp::PutSettings, 503, 1));
    let mut profiles = profiles();
    profiles.insert(
        "broken".into(),
        Profile {
            name: "broken".into(),
            settings: FallbackSettings {
                default: Some("not-a-number".into()),
                ..backup()
            },
        },
    );
    let actuator = Actuator::new(
        env.client.clone(),
        fast_options(),
        profiles,
        env.metrics.clone(),
        Arc::new(env.audit.clone()),
    );
    let run = spawn_with(actuator, active("backup"));
    run.converged(&active("backup")).await;
    env.sim().expire_tokens();
    run.set(Desired::Inactive);
    run.converged(&Desired::Inactive).await;
    run.set(active("broken"));
    let status = run.wait("blocked", |s| s.blocked).await;
    seen.push(serde_json::to_string(&status).unwrap());
    seen.push(format!("{status:?}"));
    run.stop().await;

    // Errors from the client, both renderings.
    env.sim()
        .inject(Fault::status(FaultOp::GetSettings, 500, 1));
    let err = env.client.get_settings().await.unwrap_err();
    seen.push(err.to_string());
    seen.push(format!("{err:?}"));
    let mut wrong = client_config(&env.server);
    wrong.client_secret = format!("{SECRET}-wrong").into();
    let bad = Client::new(wrong, Metrics::new().account("default"), Arc::new(NoAudit)).unwrap();
    let err = bad.get_activation().await.unwrap_err();
    seen.push(err.to_string());
    seen.push(format!("{err:?}"));

    // Debug of the config and the client.
    seen.push(format!("{:?}", client_config(&env.server)));
    seen.push(format!("{:?}", env.client));
    seen.push(format!("{:?}", env.sim().options()));

    // Audit records and the simulator's journal.
    for r in env.audit.records() {
        seen.push(serde_json::to_string(&r).unwrap());
    }
    seen.push(serde_json::to_string(&env.sim().journal()).unwrap());
    seen.push(env.registry.render());

    tokio::time::sleep(Duration::from_millis(50)).await;
    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("Talkdesk call"), "log capture works: {log}");
    assert!(log.contains("forward"), "field errors are logged");
    seen.push(log);

    let tokens = env.sim().issued_tokens();
    assert!(tokens.len() >= 2, "a refresh happened");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("demo:{SECRET}"));
    let mut secrets = vec![SECRET.to_string(), basic];
    secrets.extend(tokens);
    for text in &seen {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "secret {secret:?} leaked into: {text}"
            );
        }
    }
}

#[test]
fn talkdesk_config_debug_is_redacted() {
    let cfg = continuity_agent::talkdesk::ClientConfig::for_simulator(
        "http://127.0.0.1:1",
        "demo",
        SECRET,
    );
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains(SECRET), "{dbg}");
    assert!(dbg.contains("REDACTED"), "{dbg}");
}

// ---------------------------------------------------------------------------
// The agent binary, end to end: every secret it is given stays inside it.
// ---------------------------------------------------------------------------

/// Known secrets, several of them all digits (a numeric secret used to be
/// echoed by config errors as a number). Each is at least 16 characters, as
/// validation requires.
const TD_SECRET: &str = "31415926535897932384";
const OPS_TOKEN: &str = "27182818284590452353";
const READ_TOKEN: &str = "read-token-5a1b2c3d4e5f6a7b";
const GENERIC_TOKEN: &str = "16180339887498948482";
const PD_HMAC: &str = "pagerduty-hmac-77e1c0ffee12";
const PATH_TOKEN: &str = "14142135623730950488";
const SLACK_PATH: &str = "T0SECRET/B0SECRET/8675309867530986753";
const NOTIFY_HMAC: &str = "90210902109021090210";

fn sweep_config(port: u16, sim: &str, db: &std::path::Path, slack: u16, hook: &str) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
[store]
url = "sqlite://{db}"
[talkdesk]
account = "demo"
api_base = "{sim}"
token_url = "{sim}/oauth/token"
client_id = "demo"
client_secret = "{TD_SECRET}"
reconcile_interval = "1s"
request_timeout = "1s"
[profiles.backup]
default = "+14155558888"
[[rules]]
name = "voice-down"
profile = "backup"
when = {{ alert = ['alertname="TalkdeskVoiceDown"'] }}
[api]
tokens = [
  {{ name = "oncall", token = "{OPS_TOKEN}", scopes = ["read", "override", "admin"] }},
  {{ name = "dashboards", token = "{READ_TOKEN}", scopes = ["read"] }},
]
[webhooks.generic]
bearer_token = "{GENERIC_TOKEN}"
[webhooks.pagerduty]
hmac_secret = "{PD_HMAC}"
[webhooks.statuspage]
path_token = "{PATH_TOKEN}"
[[notify]]
type = "slack"
url = "http://127.0.0.1:{slack}/services/{SLACK_PATH}"
[[notify]]
type = "webhook"
url = "{hook}"
hmac_secret = "{NOTIFY_HMAC}"
"#,
        db = db.display(),
    )
}

/// Runs the binary with `args`; its stdout and stderr, with the exit status.
fn run_binary(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_continuity-agent"))
        .args(args)
        .env("RUST_LOG", "continuity_agent=trace,debug")
        .output()
        .expect("run the agent binary");
    // The command is named by its subcommand only: its arguments hold the
    // secrets on purpose (a token given with --token).
    format!(
        "{} -> {}\nstdout:\n{}\nstderr:\n{}",
        args[0],
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One HTTP exchange, as text: status, every header, the body.
async fn exchange(req: reqwest::RequestBuilder) -> String {
    let resp = req.send().await.expect("the agent answers");
    let mut text = format!("{}\n", resp.status());
    for (k, v) in resp.headers() {
        text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    text.push_str(&resp.text().await.unwrap_or_default());
    text
}

/// Every row of every table of the SQLite store, as text.
fn dump_store(db: &std::path::Path) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut text = String::new();
    for t in tables {
        let mut stmt = c.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            text.push_str(&t);
            for i in 0..n {
                let v: rusqlite::types::Value = row.get(i).unwrap();
                match v {
                    rusqlite::types::Value::Text(s) => text.push_str(&format!(" {s}")),
                    rusqlite::types::Value::Blob(b) => {
                        text.push_str(&format!(" {}", String::from_utf8_lossy(&b)))
                    }
                    other => text.push_str(&format!(" {other:?}")),
                }
            }
            text.push('\n');
        }
    }
    text
}

/// The real binary with known secrets (Talkdesk client secret, API tokens,
/// webhook bearer token, HMAC secrets, the Statuspage path token, a Slack URL
/// whose path is its secret), numeric ones among them, driven through config
/// errors, Talkdesk faults and retries (simulator over real HTTP), refused
/// and accepted requests, a notification target that never answers, the
/// status, events, metrics and status page: none of the secrets (nor the
/// Basic encoding of the client credentials, nor an access token the
/// simulator issued) appears in anything the agent printed, answered or
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_binary_never_shows_its_secrets() {
    use continuity_agent::talkdesk::simulator::{self, Simulator, SimulatorOptions};
    use serde_json::json;
    use support::agent::AgentProcess;

    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::new(SimulatorOptions {
        client_secret: TD_SECRET.to_string().into(),
        ..SimulatorOptions::default()
    });
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let receiver = support::receiver::Receiver::start().await;
    let hook = receiver.url(&format!("/hook/{NOTIFY_HMAC}-in-the-path"));
    // Nothing listens there: every Slack delivery fails and is retried.
    let slack = support::free_port();
    let port = support::free_port();
    let db = dir.path().join("state.db");
    let good = sweep_config(port, &server.base_url(), &db, slack, &hook);
    let mut seen = Vec::<String>::new();

    // 1. Configuration errors, from check-config and from run: a numeric
    //    secret written as a TOML number, an out-of-range number, a secret
    //    under a misspelt key, and secrets too short or in the wrong place.
    let bad_configs = [
        good.replace(&format!("\"{TD_SECRET}\""), "8675309123456789012"),
        good.replace(&format!("\"{TD_SECRET}\""), TD_SECRET),
        good.replace(
            &format!("bearer_token = \"{GENERIC_TOKEN}\""),
            &format!("bearer_tokn = \"{GENERIC_TOKEN}\""),
        ),
        good.replace(
            &format!("path_token = \"{PATH_TOKEN}\""),
            &format!("path_token = {PATH_TOKEN}"),
        ),
        good.replace(
            &format!("hmac_secret = \"{PD_HMAC}\""),
            &format!("hmac_secret = [\"{PD_HMAC}\"]"),
        ),
        good.replace(
            &format!("token = \"{OPS_TOKEN}\""),
            &format!("token = {OPS_TOKEN}"),
        ),
        good.replace("url = \"http://127.0.0.1:", "url = \"ftp://127.0.0.1:"),
        good.replace("[store]", &format!("[store]\npassword = \"{TD_SECRET}\"")),
    ];
    for (i, text) in bad_configs.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let file = file.to_str().unwrap();
        let checked = run_binary(&["check-config", "-c", file]);
        assert!(
            checked.contains("exit status: 2"),
            "bad config {i} was not refused: {checked}"
        );
        seen.push(checked);
        seen.push(run_binary(&["run", "-c", file]));
    }

    // 2. The agent runs; Talkdesk misbehaves on the way to "on": a failed
    //    token request, 429 with Retry-After, 5xx, a dropped connection and
    //    a call slower than request_timeout.
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, &good).unwrap();
    seen.push(run_binary(&["check-config", "-c", cfg.to_str().unwrap()]));
    sim.inject(Fault::status(FaultOp::Token, 503, 1));
    sim.inject(Fault::status(FaultOp::PutSettings, 429, 1).with_retry_after("1"));
    sim.inject(Fault::status(FaultOp::PutSettings, 500, 1));
    sim.inject(Fault::drop_connection(FaultOp::PutActivation, 1));
    sim.inject(Fault::latency(FaultOp::PutActivation, 1_500, 1));
    let log = dir.path().join("agent.log");
    let mut agent = AgentProcess::spawn(&cfg, port, &log);
    agent.wait_ready().await;
    let api = agent.api.clone();
    let http = reqwest::Client::new();

    // Refused requests: wrong tokens (one a prefix of a real one), a forged
    // PagerDuty signature, a wrong Statuspage path token, a wrong login.
    let near = &OPS_TOKEN[..OPS_TOKEN.len() - 1];
    seen.push(exchange(http.get(format!("{api}/v1/status")).bearer_auth(near)).await);
    seen.push(
        exchange(
            http.get(format!("{api}/v1/status"))
                .bearer_auth(READ_TOKEN)
                .query(&[("token", OPS_TOKEN)]),
        )
        .await,
    );
    seen.push(
        exchange(
            http.put(format!("{api}/v1/override"))
                .bearer_auth(READ_TOKEN)
                .json(
                    &json!({"state": "active", "profile": "backup", "ttl": "10m", "reason": "t"}),
                ),
        )
        .await,
    );
    seen.push(
        exchange(
            http.post(format!("{api}/v1/alerts/generic"))
                .bearer_auth(format!("{GENERIC_TOKEN}0"))
                .json(&json!({"id": "x", "status": "firing", "labels": {"alertname": "Other"}})),
        )
        .await,
    );
    seen.push(
        exchange(
            http.post(format!("{api}/v1/alerts/pagerduty"))
                .header("X-PagerDuty-Signature", "v1=0123456789abcdef")
                .body(include_str!("fixtures/alerts/pagerduty-triggered.json")),
        )
        .await,
    );
    seen.push(
        exchange(
            http.post(format!("{api}/v1/alerts/statuspage/{}", &PATH_TOKEN[1..]))
                .body(include_str!("fixtures/alerts/statuspage-incident.json")),
        )
        .await,
    );
    seen.push(
        exchange(
            http.post(format!("{api}/ui/login"))
                .form(&[("token", format!("{READ_TOKEN}x"))]),
        )
        .await,
    );

    // Accepted ones: the alert that switches the fallback on, a Statuspage
    // delivery, a sign-in to the status page, a reload.
    let accepted = exchange(
        http.post(format!("{api}/v1/alerts/generic"))
            .bearer_auth(GENERIC_TOKEN)
            .body(include_str!("fixtures/alerts/generic-firing.json"))
            .header("content-type", "application/json"),
    )
    .await;
    assert!(accepted.starts_with("20"), "{accepted}");
    seen.push(accepted);
    seen.push(
        exchange(
            http.post(format!("{api}/v1/alerts/statuspage/{PATH_TOKEN}"))
                .body(include_str!("fixtures/alerts/statuspage-incident.json")),
        )
        .await,
    );
    seen.push(
        exchange(
            http.post(format!("{api}/ui/login"))
                .form(&[("token", READ_TOKEN)]),
        )
        .await,
    );
    seen.push(exchange(http.post(format!("{api}/-/reload")).bearer_auth(OPS_TOKEN)).await);

    // Through every fault to "on", and the webhook target told about it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !sim.state().enabled {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fallback never went on; journal: {:#?}\nlog:\n{}",
            sim.journal(),
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let notified = receiver
        .wait_for(
            &format!("/hook/{NOTIFY_HMAC}-in-the-path"),
            1,
            Duration::from_secs(30),
        )
        .await;
    assert!(
        !notified[0].header("x-continuity-signature").is_empty(),
        "the webhook notification is signed"
    );
    let failures: Vec<u16> = sim.journal().iter().map(|e| e.status).collect();
    assert!(
        failures.contains(&503) && failures.contains(&429) && failures.contains(&500),
        "the faults were served: {failures:?}"
    );
    // A few Slack retries (connection refused) into the log.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 3. What the agent shows: status, events, metrics, pages, the CLI.
    for path in [
        "/v1/status",
        "/v1/events?limit=1000",
        "/v1/accounts/default/status",
        "/metrics",
        "/readyz",
        "/healthz",
        "/openapi.json",
        "/",
    ] {
        seen.push(exchange(http.get(format!("{api}{path}")).bearer_auth(OPS_TOKEN)).await);
    }
    for args in [
        vec!["status", "--url", &api, "--token", OPS_TOKEN, "--json"],
        vec!["status", "--url", &api, "--token", near],
        vec!["events", "--url", &api, "--token", READ_TOKEN, "--json"],
    ] {
        seen.push(run_binary(&args));
    }

    // 4. Its logs (debug level) and its store.
    let status = agent.terminate();
    assert!(status.success(), "graceful exit: {status}");
    let logs = agent.logs();
    assert!(logs.contains("Talkdesk"), "the log capture works: {logs}");
    seen.push(logs);
    let store = dump_store(&db);
    assert!(store.contains("audit"), "the store dump works: {store}");
    seen.push(store);

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("demo:{TD_SECRET}"));
    let mut secrets: Vec<String> = [
        TD_SECRET,
        OPS_TOKEN,
        READ_TOKEN,
        GENERIC_TOKEN,
        PD_HMAC,
        PATH_TOKEN,
        SLACK_PATH,
        NOTIFY_HMAC,
        "8675309123456789012",
    ]
    .map(String::from)
    .to_vec();
    secrets.push(basic);
    secrets.extend(sim.issued_tokens());
    for text in &seen {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "secret {secret:?} leaked into:\n{text}"
            );
        }
    }
}
