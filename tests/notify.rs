//! Notifications end to end: the agent (a real process, or in-process where
//! the test needs the engine's handles) with the Talkdesk simulator, and
//! local receivers standing in for Slack, Teams, PagerDuty and a webhook.
//! Each receiver checks the payload of each transition; a failing receiver
//! gets retries, a hung one never delays Talkdesk, and no secret (webhook
//! URLs, the routing key, the HMAC secret) shows in logs, status, metrics or
//! the audit log.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use continuity_agent::config;
use continuity_agent::talkdesk::simulator::{self, Fault, FaultOp, SimServer, Simulator};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use support::agent::AgentProcess;
use support::receiver::{Answer, Received, Receiver};
use tokio::time::Instant;

const TOKEN: &str = "notify-test-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);
/// Secrets of the targets: none may show anywhere but in the requests.
const SLACK_SECRET: &str = "SLACKSECRETPATH";
const TEAMS_SECRET: &str = "TEAMSSECRETSIG";
const ROUTING_KEY: &str = "PDROUTINGKEYSECRET";
const HOOK_SECRET: &str = "HOOKSECRETPATH";
const HMAC_SECRET: &str = "HMACSECRETVALUE";

async fn simulator() -> (Simulator, SimServer) {
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (sim, server)
}

/// The agent's configuration file in `dir`: listening on `port`, the
/// simulator's Talkdesk, a SQLite store, the test token, profile `backup`,
/// and `extra`.
fn write_config(dir: &std::path::Path, sim: &SimServer, port: u16, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
public_url = "https://status.example.net/"
{head}[api]
tokens = [{{ name = "ops", token = "{TOKEN}", scopes = ["read", "override"] }}]
[profiles.backup]
default = "+14155558888"
message = {{ text = "We are sorry", language = "en-US" }}
{extra}
"#,
        head = support::store_and_talkdesk(dir, &sim.base_url()),
    );
    let cfg = dir.join("agent.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// An agent process with [`write_config`]'s configuration.
fn agent(dir: &std::path::Path, sim: &SimServer, port: u16, extra: &str) -> AgentProcess {
    let cfg = write_config(dir, sim, port, extra);
    AgentProcess::spawn(&cfg, port, &dir.join("agent.log"))
}

/// `PUT /v1/override` (on with `backup`, or off), waiting up to 5 s for
/// Talkdesk; returns the answer.
async fn override_(api: &str, on: bool) -> Value {
    let body = if on {
        json!({"state": "active", "profile": "backup", "ttl": "10m", "reason": "test"})
    } else {
        json!({"state": "inactive", "ttl": "10m", "reason": "test"})
    };
    let resp = reqwest::Client::new()
        .put(format!("{api}/v1/override?wait=5s"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

async fn get(api: &str, path: &str) -> String {
    reqwest::Client::new()
        .get(format!("{api}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The webhook's signature checks out: HMAC-SHA256 of `<timestamp>.<body>`.
fn assert_signed(r: &Received, secret: &str) {
    let ts = r.header("x-continuity-timestamp");
    let now = chrono::Utc::now().timestamp();
    let ts_n: i64 = ts.parse().expect("a unix timestamp");
    assert!((now - ts_n).abs() < 60, "fresh timestamp: {ts}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(r.header("x-continuity-signature"), want);
}

/// The PagerDuty events about the fallback itself (a process that finds
/// Talkdesk matching also resolves the account's `stuck` incident).
fn fallback_events(pd: &[Received]) -> Vec<Value> {
    pd.iter()
        .map(Received::json)
        .filter(|e| e["dedup_key"].as_str().unwrap().contains("/fallback/"))
        .collect()
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_type_hears_each_transition_with_its_payload_and_no_secret_leaks() {
    let (sim, server) = simulator().await;
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (slack, teams, pd, hook) = (
        format!("/slack/T000/B000/{SLACK_SECRET}"),
        format!("/teams/workflows/{TEAMS_SECRET}"),
        "/pd/enqueue".to_string(),
        format!("/hook/{HOOK_SECRET}"),
    );
    recv.answer(&pd, Answer::Script([202, 202, 202, 202, 202].into()));
    // The webhook's secrets come from files, like the rest of the config's.
    std::fs::write(dir.path().join("hook-url"), recv.url(&hook)).unwrap();
    std::fs::write(dir.path().join("hmac"), format!("{HMAC_SECRET}\n")).unwrap();
    let targets = format!(
        r#"
[[notify]]
type = "slack"
url = "{slack}"
[[notify]]
type = "teams"
url = "{teams}"
[[notify]]
type = "pagerduty"
url = "{pd}"
routing_key = "{ROUTING_KEY}"
[[notify]]
type = "webhook"
name = "audit-hook"
url_file = "hook-url"
hmac_secret_file = "hmac"
"#,
        slack = recv.url(&slack),
        teams = recv.url(&teams),
        pd = recv.url(&pd),
    );
    let port = support::free_port();
    let mut agent = agent(dir.path(), &server, port, &targets);
    agent.wait_ready().await;

    // On: every target hears the activation; Talkdesk was switched on.
    let answer = override_(&agent.api, true).await;
    assert_eq!(answer["talkdesk"]["matches"], true, "{answer:#}");
    let s = recv.wait_for(&slack, 1, WAIT).await[0].json();
    assert_eq!(s["text"], "Fallback ON: backup");
    assert_eq!(s["blocks"][0]["text"]["text"], "Fallback ON: backup");
    let details = s["blocks"][1]["text"]["text"].as_str().unwrap();
    for part in [
        "*What changed:* The fallback was switched ON with profile backup (cause: override).",
        "*Why:*\n• override: manual override by ops: active(backup) until ",
        "*Callers now get:* every number forwarded to +14155558888; others hear (en-US): \"We are sorry\"",
    ] {
        assert!(details.contains(part), "{part:?} not in {details}");
    }
    let context = s["blocks"][2]["elements"][0]["text"].as_str().unwrap();
    assert!(
        context.ends_with(" · account demo · <https://status.example.net/|Status page>"),
        "{context}"
    );

    let t = recv.wait_for(&teams, 1, WAIT).await[0].json();
    assert_eq!(t["type"], "message");
    let attachment = &t["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(
        (card["type"].as_str(), card["version"].as_str()),
        (Some("AdaptiveCard"), Some("1.4"))
    );
    assert_eq!(card["body"][0]["text"], "Fallback ON: backup");
    assert_eq!(card["body"][0]["color"], "Attention");
    assert_eq!(card["actions"][0]["url"], "https://status.example.net/");

    wait_until("the PagerDuty trigger", || {
        !fallback_events(&recv.at(&pd)).is_empty()
    })
    .await;
    let trigger = fallback_events(&recv.at(&pd))[0].clone();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    let dedup = trigger["dedup_key"].as_str().unwrap().to_string();
    assert!(
        dedup.starts_with("continuity-agent/demo/fallback/"),
        "{dedup}"
    );
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["class"], "activate");
    assert_eq!(trigger["links"][0]["href"], "https://status.example.net/");

    let h = recv.wait_for(&hook, 1, WAIT).await[0].clone();
    assert_signed(&h, HMAC_SECRET);
    let body = h.json();
    assert_eq!(h.header("x-continuity-event"), "activate");
    assert_eq!(
        h.header("x-continuity-delivery"),
        body["id"].as_str().unwrap()
    );
    assert_eq!(h.header("content-type"), "application/json");
    assert_eq!(
        (
            body["version"].as_u64(),
            body["event"].as_str(),
            body["resolved"].as_bool()
        ),
        (Some(1), Some("activate"), Some(false))
    );
    assert_eq!(
        body["fallback"],
        json!({"state": "active", "profile": "backup"})
    );
    assert_eq!(body["detail"]["cause"], "override");
    assert_eq!(body["detail"]["previous"], json!({"state": "inactive"}));
    assert_eq!(body["status_url"], "https://status.example.net/");
    assert_eq!(body["incident_key"], dedup.as_str());
    assert_eq!(body["dry_run"], false);

    // Off: every target hears the deactivation; PagerDuty resolves the same incident.
    let answer = override_(&agent.api, false).await;
    assert_eq!(answer["talkdesk"]["matches"], true, "{answer:#}");
    assert!(!sim.state().enabled);
    assert_eq!(
        recv.wait_for(&slack, 2, WAIT).await[1].json()["text"],
        "Fallback OFF"
    );
    let off = recv.wait_for(&teams, 2, WAIT).await[1].json();
    assert_eq!(
        off["attachments"][0]["content"]["body"][0]["text"],
        "Fallback OFF"
    );
    wait_until("the PagerDuty resolve", || {
        fallback_events(&recv.at(&pd)).len() >= 2
    })
    .await;
    assert_eq!(
        fallback_events(&recv.at(&pd))[1],
        json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": dedup})
    );
    let h = recv.wait_for(&hook, 2, WAIT).await[1].clone();
    assert_signed(&h, HMAC_SECRET);
    let body = h.json();
    assert_eq!(body["event"], "deactivate");
    assert_eq!(
        body["callers_get"],
        "normal call handling (the fallback is off)"
    );
    assert_eq!(body["incident_key"], dedup.as_str());

    // Someone switches the fallback on in the Talkdesk UI: the change is
    // adopted (on_drift = "respect") and announced, then the override it
    // becomes is a decision like any other.
    agent_clear_override(&agent.api).await;
    sim.set_enabled(true);
    let seen = recv.wait_for(&hook, 4, WAIT).await;
    let events: Vec<String> = seen[2..]
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_string())
        .collect();
    assert!(events.contains(&"drift".to_string()), "{events:?}");
    let drift = seen[2..]
        .iter()
        .map(Received::json)
        .find(|b| b["event"] == "drift")
        .unwrap();
    assert_eq!(drift["detail"]["action"], "adopted");
    assert_eq!(drift["detail"]["talkdesk"]["enabled"], true);

    // Counted per target; audited; no secret anywhere.
    for (target, n) in [
        ("slack-1", 2.0),
        ("teams-1", 2.0),
        ("pagerduty-1", 2.0),
        ("audit-hook", 3.0),
    ] {
        let prefix =
            format!(r#"continuity_notifications_total{{result="sent",target="{target}"}}"#);
        wait_until_async(&format!("{n} sent to {target}"), || async {
            agent.metric(&prefix).await.unwrap_or(0.0) >= n
        })
        .await;
    }
    wait_until_async("the audit records", || async {
        get(&agent.api, "/v1/events?kind=notification&limit=100")
            .await
            .contains("activate notification sent to slack-1 (slack): Fallback ON: backup")
    })
    .await;
    let texts = [
        agent.logs(),
        get(&agent.api, "/v1/status").await,
        get(&agent.api, "/metrics").await,
        get(&agent.api, "/v1/events?limit=1000").await,
    ];
    for text in &texts {
        for secret in [
            SLACK_SECRET,
            TEAMS_SECRET,
            ROUTING_KEY,
            HOOK_SECRET,
            HMAC_SECRET,
        ] {
            assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
        }
    }
}

async fn agent_clear_override(api: &str) {
    let resp = reqwest::Client::new()
        .delete(format!("{api}/v1/override"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_a_retry_and_a_hung_one_never_delays_talkdesk() {
    let (sim, server) = simulator().await;
    let recv = Receiver::start().await;
    recv.answer("/flaky", Answer::Script([500].into()));
    recv.answer("/hung", Answer::Hang);
    let dir = tempfile::tempdir().unwrap();
    let targets = format!(
        r#"
[[notify]]
type = "slack"
name = "hung"
url = "{hung}"
[[notify]]
type = "webhook"
name = "flaky"
url = "{flaky}"
"#,
        hung = recv.url("/hung"),
        flaky = recv.url("/flaky"),
    );
    let port = support::free_port();
    let mut agent = agent(dir.path(), &server, port, &targets);
    agent.wait_ready().await;

    let started = Instant::now();
    let answer = override_(&agent.api, true).await;
    // Talkdesk was switched on while the hung receiver still holds its
    // request: delivery runs beside the decision path, never in it.
    assert_eq!(answer["talkdesk"]["matches"], true, "{answer:#}");
    assert!(sim.state().enabled);
    recv.wait_for("/hung", 1, WAIT).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the hung receiver's request is still open (its timeout is 10 s)"
    );
    assert_eq!(
        agent
            .metric(r#"continuity_notifications_total{result="sent",target="hung"}"#)
            .await,
        Some(0.0)
    );

    // 500 then 200: the same notification again, after a backoff.
    let flaky = recv.wait_for("/flaky", 2, WAIT).await;
    assert_eq!(flaky[0].body, flaky[1].body, "the same body");
    assert_eq!(
        flaky[0].header("x-continuity-delivery"),
        flaky[1].header("x-continuity-delivery")
    );
    let metric = |result: &'static str| {
        let agent = &agent;
        async move {
            agent
                .metric(&format!(
                    r#"continuity_notifications_total{{result="{result}",target="flaky"}}"#
                ))
                .await
        }
    };
    wait_until_async("the retry to count as sent", || async {
        metric("sent").await == Some(1.0)
    })
    .await;
    assert_eq!(metric("retried").await, Some(1.0));
    assert_eq!(metric("failed").await, Some(0.0));

    // A graceful stop waits a little for what is queued, then drops what a
    // hung receiver still holds (counted, logged) and exits cleanly.
    let stopping = Instant::now();
    assert!(agent.terminate().success(), "{}", agent.logs());
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "{:?}",
        stopping.elapsed()
    );
    let logs = agent.logs();
    assert!(
        logs.contains("Notification dropped.") && logs.contains("target=hung"),
        "{logs}"
    );
}

async fn wait_until_async<F, Fut>(what: &str, cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_is_sent_when_talkdesk_refuses_writes_and_resolved_when_they_go_through() {
    let (sim, server) = simulator().await;
    let recv = Receiver::start().await;
    recv.answer("/pd", Answer::Script([202; 8].into()));
    let dir = tempfile::tempdir().unwrap();
    let targets = format!(
        r#"
[[notify]]
type = "webhook"
url = "{hook}"
stuck_after = "2s"
[[notify]]
type = "pagerduty"
url = "{pd}"
routing_key = "{ROUTING_KEY}"
on = ["activate", "deactivate", "stuck"]
stuck_after = "2s"
"#,
        hook = recv.url("/hook"),
        pd = recv.url("/pd"),
    );
    let port = support::free_port();
    let mut agent = agent(dir.path(), &server, port, &targets);
    agent.wait_ready().await;

    // Talkdesk refuses every activation write until told otherwise.
    sim.inject(Fault::status(FaultOp::PutActivation, 503, 0));
    let answer = override_(&agent.api, true).await;
    assert_eq!(answer["talkdesk"]["matches"], false, "{answer:#}");
    let bodies = |n| {
        let recv = recv.clone();
        async move {
            recv.wait_for("/hook", n, WAIT)
                .await
                .iter()
                .map(Received::json)
                .collect::<Vec<_>>()
        }
    };
    let seen = bodies(2).await;
    assert_eq!(seen[0]["event"], "activate");
    let stuck = &seen[1];
    assert_eq!(
        (stuck["event"].as_str(), stuck["resolved"].as_bool()),
        (Some("stuck"), Some(false))
    );
    assert_eq!(
        stuck["title"],
        "Talkdesk not updated for 2s: the fallback should be ON (profile backup)"
    );
    assert_eq!(stuck["detail"]["phase"], "started");
    assert_eq!(stuck["detail"]["stuck_after_s"], 2);
    assert_eq!(stuck["detail"]["talkdesk_enabled"], false);
    let last_error = stuck["detail"]["last_error"].as_str().unwrap();
    assert!(last_error.contains("503"), "{last_error}");
    assert!(
        stuck["detail"]["attempts"].as_u64().unwrap() >= 1,
        "{stuck:#}"
    );
    assert_eq!(
        stuck["callers_get"],
        "Talkdesk still has the fallback OFF: callers get normal call handling"
    );

    // Talkdesk accepts writes again: the actuator gets through, and the
    // stuck notice gets its end.
    sim.clear_faults();
    let seen = bodies(3).await;
    let end = &seen[2];
    assert_eq!(
        (end["event"].as_str(), end["resolved"].as_bool()),
        (Some("stuck"), Some(true))
    );
    assert_eq!(end["detail"]["phase"], "ended");
    assert!(sim.state().enabled);

    // PagerDuty: the stuck incident is triggered, then resolved by the same key.
    wait_until("the PagerDuty stuck resolve", || {
        recv.at("/pd")
            .iter()
            .map(Received::json)
            .filter(|e| e["dedup_key"] == "continuity-agent/demo/stuck")
            .any(|e| e["event_action"] == "trigger")
            && recv.at("/pd").last().unwrap().json()["event_action"] == "resolve"
    })
    .await;
    let stuck_events: Vec<String> = recv
        .at("/pd")
        .iter()
        .map(Received::json)
        .filter(|e| e["dedup_key"] == "continuity-agent/demo/stuck")
        .map(|e| e["event_action"].as_str().unwrap().to_string())
        .collect();
    // The trigger and its resolve, after at most the start-up's resolve
    // (sent when the agent first sees Talkdesk matching, if it looked before
    // the override).
    let first_trigger = stuck_events.iter().position(|e| e == "trigger").unwrap();
    assert!(
        first_trigger <= 1 && stuck_events[..first_trigger].iter().all(|e| e == "resolve"),
        "{stuck_events:?}"
    );
    assert_eq!(
        stuck_events[first_trigger..],
        ["trigger", "resolve"],
        "{stuck_events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blind_guard_and_the_flap_latch_are_announced_when_set_and_released() {
    let (_sim, server) = simulator().await;
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Two canaries nobody listens on: the agent believes itself cut off.
    let (c1, c2) = (support::free_port(), support::free_port());
    let toml = format!(
        r#"{head}
[api]
tokens = [{{ name = "ops", token = "{TOKEN}", scopes = ["read", "override"] }}]
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
flap_max = 1
flap_window = "10m"
self_check = ["tcp://127.0.0.1:{c1}", "tcp://127.0.0.1:{c2}"]
self_check_interval = "1s"
[webhooks.generic]
bearer_token = "{TOKEN}"
[[notify]]
type = "webhook"
url = "{hook}"
on = ["activate", "deactivate", "flap", "blind"]
"#,
        head = support::store_and_talkdesk(dir.path(), &server.base_url()),
        hook = recv.url("/hook"),
    );
    let cfg = config::from_toml_str_strict(&toml, "notify.toml", dir.path(), false).unwrap();
    let agent = support::inproc::start(cfg).await;
    let events = |n| {
        let recv = recv.clone();
        async move {
            recv.wait_for("/hook", n, WAIT)
                .await
                .iter()
                .map(Received::json)
                .collect::<Vec<_>>()
        }
    };

    let blind = &events(1).await[0];
    assert_eq!(
        (blind["event"].as_str(), blind["resolved"].as_bool()),
        (Some("blind"), Some(false))
    );
    assert_eq!(
        blind["title"],
        "Blind: the agent's own self-check fails; probe-driven rules are frozen"
    );
    assert!(
        blind["reasons"][0]
            .as_str()
            .unwrap()
            .contains("self-check failing"),
        "{blind:#}"
    );
    // One canary answers again.
    let _canary = std::net::TcpListener::bind(("127.0.0.1", c1)).unwrap();
    let ok = &events(2).await[1];
    assert_eq!(
        (ok["event"].as_str(), ok["resolved"].as_bool()),
        (Some("blind"), Some(true))
    );
    assert_eq!(ok["detail"]["since"], blind["detail"]["since"]);

    // The alert fires and resolves: on, then off would be a second
    // automatic transition within the window: the latch holds it on.
    let http = reqwest::Client::new();
    for status in ["firing", "resolved"] {
        let resp = http
            .post(format!("{}/v1/alerts/generic", agent.base))
            .bearer_auth(TOKEN)
            .json(&json!({"id": "a1", "status": status, "labels": {"alertname": "TalkdeskVoiceDown"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = events(4).await;
    assert_eq!(seen[2]["event"], "activate");
    assert_eq!(seen[2]["detail"]["cause"], "rule");
    let latched = &seen[3];
    assert_eq!(
        (latched["event"].as_str(), latched["resolved"].as_bool()),
        (Some("flap"), Some(false))
    );
    assert_eq!(
        latched["title"],
        "Flapping: the fallback is held ON (backup)"
    );
    assert_eq!(latched["detail"]["profile"], "backup");
    assert!(
        latched["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("flap latch set: more than 1 automatic on/off transitions"),
        "{latched:#}"
    );

    // An operator releases the latch: released, and the fallback goes off.
    let resp = http
        .delete(format!("{}/v1/flap", agent.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let seen = events(6).await;
    let names: Vec<(&str, bool)> = seen[4..]
        .iter()
        .map(|b| {
            (
                b["event"].as_str().unwrap(),
                b["resolved"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        names.contains(&("flap", true)) && names.contains(&("deactivate", false)),
        "{names:?}"
    );
    let released = seen[4..].iter().find(|b| b["event"] == "flap").unwrap();
    assert!(
        released["reasons"][0]
            .as_str()
            .unwrap()
            .contains("released by ops"),
        "{released:#}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_brings_new_targets_in() {
    let (_sim, server) = simulator().await;
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut agent = agent(dir.path(), &server, port, "");
    agent.wait_ready().await;
    // The same file with a target added, then SIGHUP.
    let cfg = dir.path().join("agent.toml");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!(
            "[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\n",
            recv.url("/new")
        );
    std::fs::write(&cfg, text).unwrap();
    agent.signal(libc::SIGHUP);
    wait_until_async("the reload", || async {
        agent
            .metric(r#"continuity_config_reloads_total{result="ok"}"#)
            .await
            == Some(1.0)
    })
    .await;
    override_(&agent.api, true).await;
    let got = recv.wait_for("/new", 1, WAIT).await[0].json();
    assert_eq!(got["event"], "activate");
    wait_until_async("the delivery to count", || async {
        agent
            .metric(r#"continuity_notifications_total{result="sent",target="webhook-1"}"#)
            .await
            == Some(1.0)
    })
    .await;
}

/// PagerDuty's incident is named by when the fallback went on, which the
/// engine persists: a process that started after the activation (a restart
/// here; another replica after a takeover) resolves the incident the first
/// one opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_resolves_the_incident_the_previous_process_opened() {
    let (_sim, server) = simulator().await;
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let targets = format!(
        "[[notify]]\ntype = \"pagerduty\"\nurl = \"{}\"\nrouting_key = \"{ROUTING_KEY}\"\n",
        recv.url("/pd")
    );
    let port = support::free_port();
    let mut first = agent(dir.path(), &server, port, &targets);
    first.wait_ready().await;
    override_(&first.api, true).await;
    wait_until("the trigger", || {
        !fallback_events(&recv.at("/pd")).is_empty()
    })
    .await;
    let trigger = fallback_events(&recv.at("/pd"))[0].clone();
    assert_eq!(trigger["event_action"], "trigger");
    first.kill9();

    let mut second = agent(dir.path(), &server, port, &targets);
    second.wait_ready().await;
    agent_clear_override(&second.api).await;
    wait_until("the resolve", || {
        fallback_events(&recv.at("/pd")).len() >= 2
    })
    .await;
    let resolve = fallback_events(&recv.at("/pd"))[1].clone();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
}

/// Two replicas on one PostgreSQL database, both configured with the same
/// webhook: only the leader announces, so each decision is announced once;
/// the replica that takes over announces nothing by itself, and its
/// deactivation names the activation the first leader announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_announces_and_a_new_leader_closes_what_the_old_one_opened() {
    use support::pg::PgServer;
    let pg = PgServer::start();
    let db = pg.database().await;
    let (_sim, server) = simulator().await;
    let recv = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pg-password"), format!("{}\n", pg.password)).unwrap();
    let mut replicas = Vec::new();
    for id in ["replica-a", "replica-b"] {
        let sub = dir.path().join(id);
        std::fs::create_dir(&sub).unwrap();
        let extra = format!(
            r#"[cluster]
instance_id = "{id}"
lease_ttl = "2s"
renew_deadline = "1500ms"
[[notify]]
type = "webhook"
url = "{hook}"
"#,
            hook = recv.url("/hook"),
        );
        let port = support::free_port();
        // The same configuration on a shared PostgreSQL store.
        let cfg = write_config(&sub, &server, port, &extra);
        let text = std::fs::read_to_string(&cfg).unwrap();
        let sqlite = text
            .lines()
            .find(|l| l.starts_with("url = \"sqlite://"))
            .unwrap()
            .to_string();
        let pg_store = format!(
            "url = \"{}\"\npassword_file = \"{}\"",
            pg.url_without_password(&db),
            dir.path().join("pg-password").display()
        );
        let text = text.replace(&sqlite, &pg_store).replace(
            "reconcile_interval = \"1s\"",
            "reconcile_interval = \"1s\"\nrequest_timeout = \"1s\"",
        );
        std::fs::write(&cfg, text).unwrap();
        let p = AgentProcess::spawn(&cfg, port, &sub.join("agent.log"));
        replicas.push(p);
    }
    for r in &mut replicas {
        r.wait_ready().await;
    }
    let leads = |r: &AgentProcess| {
        let api = r.api.clone();
        async move {
            reqwest::get(format!("{api}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .contains("continuity_leader{account=\"default\"} 1")
        }
    };
    let mut leader = None;
    let deadline = Instant::now() + WAIT;
    while leader.is_none() {
        for (i, r) in replicas.iter().enumerate() {
            if leads(r).await {
                leader = Some(i);
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = leader.unwrap();
    let follower = 1 - leader;

    // Sent to the follower: queued, applied and announced by the leader, once.
    let on = reqwest::Client::new()
        .put(format!("{}/v1/override", replicas[follower].api))
        .bearer_auth(TOKEN)
        .json(&json!({"state": "active", "profile": "backup", "ttl": "10m", "reason": "test"}))
        .send()
        .await
        .unwrap();
    assert!(on.status().is_success(), "{}", on.status());
    let activate = recv.wait_for("/hook", 1, WAIT).await[0].json();
    assert_eq!(activate["event"], "activate");
    assert_eq!(activate["instance"], ["replica-a", "replica-b"][leader]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        recv.at("/hook").len(),
        1,
        "announced once: {:#?}",
        recv.at("/hook")
    );

    // The leader dies; the other takes over and announces nothing by itself.
    replicas[leader].kill9();
    let deadline = Instant::now() + WAIT;
    while !leads(&replicas[follower]).await {
        assert!(Instant::now() < deadline, "no takeover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let decisions = |recv: &Receiver| {
        recv.at("/hook")
            .iter()
            .map(Received::json)
            .filter(|b| b["event"] != "stuck")
            .collect::<Vec<_>>()
    };
    assert_eq!(decisions(&recv).len(), 1, "{:#?}", decisions(&recv));

    // Off, through the new leader: its deactivation names the same activation.
    agent_clear_override(&replicas[follower].api).await;
    wait_until("the deactivation", || decisions(&recv).len() >= 2).await;
    let off = &decisions(&recv)[1];
    assert_eq!(off["event"], "deactivate");
    assert_eq!(off["instance"], ["replica-a", "replica-b"][follower]);
    assert_eq!(off["incident_key"], activate["incident_key"]);
}
