//! The HTTP API of a running agent (in-process daemon, Talkdesk simulator over
//! real HTTP, an in-process SIP responder as a healthy trunk): manual
//! override, status, events, metrics, health, OpenAPI, and bad input.

use std::time::Duration;

mod support;

use continuity_agent::config;
use continuity_agent::probe::sip::responder::{Mode, Responder};
use continuity_agent::talkdesk::simulator::{SimServer, Simulator};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::inproc::{self, Agent};
use tokio::time::Instant;

const OPS_TOKEN: &str = "ops-token-0123456789abcdef";
const READ_TOKEN: &str = "read-token-0123456789abcdef";

struct World {
    sim: Simulator,
    _server: SimServer,
    trunk: Responder,
    dir: tempfile::TempDir,
    toml: String,
}

async fn world() -> World {
    let support::world::Peers {
        sim,
        server,
        trunk,
        dir,
    } = support::world::Peers::start().await;
    let toml = format!(
        r#"
[agent]
listen = "127.0.0.1:0"
max_body = "64KiB"
{head}[profiles.backup]
default = "+14155558888"
[profiles.announce]
message = {{ text = "We are closed.", language = "en-US" }}
[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:{trunk};transport=udp"
interval = "1s"
fast_interval = "200ms"
timeout = "500ms"
[[rules]]
name = "trunk-down"
profile = "backup"
when = {{ down = "trunk-a" }}
[api]
tokens = [
  {{ name = "oncall", token = "{OPS_TOKEN}", scopes = ["read", "override"] }},
  {{ name = "dashboards", token = "{READ_TOKEN}", scopes = ["read"] }},
]
override_max_ttl = "2h"
[webhooks.generic]
bearer_token = "generic-token-0123456789"
[webhooks.alertmanager]
bearer_token = "am-token-0123456789abcdef"
[webhooks.grafana]
bearer_token = "grafana-token-0123456789"
[webhooks.pagerduty]
hmac_secret = "pagerduty-secret-0123456789"
[webhooks.datadog]
bearer_token = "datadog-token-0123456789"
[webhooks.opsgenie]
bearer_token = "opsgenie-token-0123456789"
[webhooks.statuspage]
path_token = "statuspage-path-token-0123456789"
"#,
        head = support::store_and_talkdesk(dir.path(), &server.base_url()),
        trunk = trunk.udp_addr(),
    );
    World {
        sim,
        _server: server,
        trunk,
        dir,
        toml,
    }
}

impl World {
    async fn start(&self) -> Agent {
        let cfg = config::from_toml_str_strict(&self.toml, "api-test.toml", self.dir.path(), false)
            .unwrap();
        inproc::start(cfg).await
    }

    fn writes(&self) -> Vec<String> {
        self.sim
            .journal()
            .into_iter()
            .filter(|e| e.is_write())
            .map(|e| format!("{} {}", e.op, e.body.unwrap_or_default()))
            .collect()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn status(a: &Agent) -> Value {
    http()
        .get(format!("{}/v1/status", a.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put_override(a: &Agent, body: Value) -> reqwest::Response {
    http()
        .put(format!("{}/v1/override", a.base))
        .bearer_auth(OPS_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_wins_until_cleared_and_survives_a_restart() {
    let w = world().await;
    let a = w.start().await;
    wait_until("trunk up", Duration::from_secs(10), || {
        a.running.probe_up("trunk-a")
    })
    .await;

    let resp = put_override(&a, json!({"state": "active", "profile": "announce", "ttl": "30m", "reason": "carrier maintenance"})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (
            body["state"].as_str(),
            body["profile"].as_str(),
            body["actor"].as_str()
        ),
        (Some("active"), Some("announce"), Some("oncall"))
    );
    wait_until("fallback on", Duration::from_secs(10), || {
        w.sim.state().enabled
    })
    .await;
    assert_eq!(
        w.sim
            .state()
            .settings
            .message
            .as_ref()
            .map(|m| m.text.as_str()),
        Some("We are closed.")
    );
    let st = status(&a).await;
    assert_eq!(st["mode"], "override");
    assert_eq!(
        st["desired"],
        json!({"state": "active", "profile": "announce"})
    );
    assert_eq!(st["engine"]["override"]["reason"], "carrier maintenance");

    // Restart: the override is still in force and nothing is written again.
    a.stop().await;
    let writes_before = w.writes();
    let a = w.start().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(w.writes(), writes_before, "a restart re-wrote Talkdesk");
    let st = status(&a).await;
    assert_eq!(st["mode"], "override");
    assert_eq!(
        a.running
            .metrics
            .account(config::DEFAULT_ACCOUNT)
            .override_active
            .get(),
        1
    );

    // Clearing returns to automatic: the trunk is healthy, so the fallback goes off.
    let resp = http()
        .delete(format!("{}/v1/override?reason=done", a.base))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.json::<Value>().await.unwrap();
    assert_eq!(
        (&body["cleared"], &body["applied"]),
        (&json!(true), &json!(true)),
        "{body}"
    );
    assert!(body["input_id"].as_i64().is_some_and(|id| id > 0), "{body}");
    wait_until("fallback off", Duration::from_secs(10), || {
        !w.sim.state().enabled
    })
    .await;
    let st = status(&a).await;
    assert_eq!(st["mode"], "automatic");
    assert_eq!(st["desired"], json!({"state": "inactive"}));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_override_requests_get_the_right_error_and_change_nothing() {
    let w = world().await;
    let a = w.start().await;
    wait_until("trunk up", Duration::from_secs(10), || {
        a.running.probe_up("trunk-a")
    })
    .await;
    let url = format!("{}/v1/override", a.base);
    let huge = "x".repeat(100 * 1024);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode)> =
        vec![
            (
                "no token",
                http()
                    .put(&url)
                    .json(&json!({"state": "inactive", "ttl": "5m", "reason": "x"})),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "wrong token",
                http()
                    .put(&url)
                    .bearer_auth("nope-nope-nope-nope")
                    .json(&json!({"state": "inactive", "ttl": "5m", "reason": "x"})),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "read-only token",
                http()
                    .put(&url)
                    .bearer_auth(READ_TOKEN)
                    .json(&json!({"state": "inactive", "ttl": "5m", "reason": "x"})),
                StatusCode::FORBIDDEN,
            ),
            (
                "malformed JSON",
                http()
                    .put(&url)
                    .bearer_auth(OPS_TOKEN)
                    .header("content-type", "application/json")
                    .body("{\"state\": "),
                StatusCode::BAD_REQUEST,
            ),
            (
                "deep nesting",
                http()
                    .put(&url)
                    .bearer_auth(OPS_TOKEN)
                    .header("content-type", "application/json")
                    .body(deep),
                StatusCode::BAD_REQUEST,
            ),
            (
                "wrong content type",
                http()
                    .put(&url)
                    .bearer_auth(OPS_TOKEN)
                    .header("content-type", "text/plain")
                    .body("{}"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                "huge body",
                http()
                    .put(&url)
                    .bearer_auth(OPS_TOKEN)
                    .json(&json!({"state": "inactive", "ttl": "5m", "reason": huge})),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "wrong types",
                http()
                    .put(&url)
                    .bearer_auth(OPS_TOKEN)
                    .json(&json!({"state": true, "ttl": 5, "reason": []})),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "unknown field",
                http()
                    .put(&url)
                    .bearer_auth(OPS_TOKEN)
                    .json(&json!({"state": "inactive", "ttl": "5m", "reason": "x", "force": true})),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "unknown profile",
                http().put(&url).bearer_auth(OPS_TOKEN).json(
                    &json!({"state": "active", "profile": "nope", "ttl": "5m", "reason": "x"}),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "active without profile",
                http()
                    .put(&url)
                    .bearer_auth(OPS_TOKEN)
                    .json(&json!({"state": "active", "ttl": "5m", "reason": "x"})),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "ttl too long",
                http().put(&url).bearer_auth(OPS_TOKEN).json(
                    &json!({"state": "active", "profile": "backup", "ttl": "3h", "reason": "x"}),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "ttl too short",
                http().put(&url).bearer_auth(OPS_TOKEN).json(
                    &json!({"state": "active", "profile": "backup", "ttl": "5s", "reason": "x"}),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "ttl not a duration",
                http().put(&url).bearer_auth(OPS_TOKEN).json(
                    &json!({"state": "active", "profile": "backup", "ttl": "soon", "reason": "x"}),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "empty reason",
                http()
                    .put(&url)
                    .bearer_auth(OPS_TOKEN)
                    .json(&json!({"state": "inactive", "ttl": "5m", "reason": "  "})),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ];
    for (name, req, expected) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), expected, "{name}");
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: error body is not JSON: {e}"));
        assert!(
            body["error"].is_string() && body["detail"].is_string(),
            "{name}: {body}"
        );
        if expected == StatusCode::UNAUTHORIZED {
            // The token must never be echoed back.
            assert!(!body.to_string().contains("nope-nope"), "{name}: {body}");
        }
    }
    let st = status(&a).await;
    assert_eq!(st["mode"], "automatic", "no override was applied");
    assert!(st["engine"]["override"].is_null());
    support::several_reconciles().await;
    assert!(
        w.writes().is_empty(),
        "bad requests reached Talkdesk: {:?}",
        w.writes()
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_events_and_health_need_the_right_scope() {
    let w = world().await;
    let a = w.start().await;
    let c = http();
    assert_eq!(
        c.get(format!("{}/healthz", a.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(format!("{}/readyz", a.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        c.get(format!("{}/v1/status", a.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    wait_until("trunk up", Duration::from_secs(10), || {
        a.running.probe_up("trunk-a")
    })
    .await;
    let st = status(&a).await;
    for key in [
        "mode",
        "desired",
        "actual",
        "converged",
        "leader",
        "engine",
        "actuator",
    ] {
        assert!(!st[key].is_null(), "status lacks {key}: {st}");
    }
    assert_eq!(st["engine"]["probes"][0]["id"], "trunk-a");
    assert_eq!(st["engine"]["probes"][0]["health"], "up");
    assert!(st["engine"]["probes"][0]["last_latency_ms"].is_u64());
    assert_eq!(st["engine"]["rules"][0]["state"], "inactive");
    leadership_follows_the_lease(&a, &st).await;

    // Audit events, newest first, paged with a cursor.
    let page: Value = c
        .get(format!("{}/v1/events?limit=2", a.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[0]["id"].as_i64() > events[1]["id"].as_i64());
    let next = page["next_before"].as_i64().expect("cursor");
    let page2: Value = c
        .get(format!("{}/v1/events?limit=2&before={next}", a.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(page2["events"][0]["id"].as_i64().unwrap() < next);
    let bad = c
        .get(format!("{}/v1/events?limit=0", a.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad = c
        .get(format!("{}/v1/events?limit=abc", a.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    a.stop().await;
}

/// `leader`, `leader_id` and `epoch` in the status are the store's lease, not
/// constants: they match the lease row, and when another claim takes the
/// lease (a new epoch), the status follows the store to the next term.
async fn leadership_follows_the_lease(a: &Agent, st: &Value) {
    let lease = |rows: Vec<continuity_agent::store::LeaseRow>| {
        rows.into_iter()
            .find(|r| r.account == "default")
            .expect("the default account's lease row")
    };
    let row = lease(a.running.store.leases().await.unwrap());
    assert!(row.live, "{row:?}");
    assert_eq!(st["leader"], true, "{st}");
    assert_eq!(st["leader_id"], row.holder.as_str(), "{st}");
    assert_eq!(st["instance_id"], row.holder.as_str(), "{st}");
    assert_eq!(st["epoch"], row.epoch, "{st}");

    // Another process claims the lease (on SQLite the newest claim wins):
    // the agent's next renewal (every lease_ttl / 3) finds a lease it does
    // not hold and claims a new term, so its epoch moves past the intruder's.
    let intruder = continuity_agent::store::LeaseClaim {
        instance_id: "intruder".into(),
        token: "intruder-token".into(),
        ttl: Duration::from_secs(60),
    };
    let taken = a.running.store.claim_lease(&intruder).await.unwrap();
    assert!(taken.held && taken.epoch == row.epoch + 1, "{taken:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = status(a).await;
        if now["epoch"].as_i64() > Some(taken.epoch) {
            let row = lease(a.running.store.leases().await.unwrap());
            assert_eq!(now["epoch"], row.epoch, "{now}");
            assert_eq!(now["leader_id"], row.holder.as_str(), "{now}");
            assert_eq!(now["leader"], row.holder == now["instance_id"], "{now}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the status never followed the lease past epoch {}: {now}",
            taken.epoch
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every line is a comment or `name{labels} value`, and every contract metric is present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_cover_the_contract() {
    let w = world().await;
    let a = w.start().await;
    wait_until("trunk up", Duration::from_secs(10), || {
        a.running.probe_up("trunk-a")
    })
    .await;
    let resp = http()
        .get(format!("{}/metrics", a.base))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    let sample = regex::Regex::new(r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$"#).unwrap();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix('#') {
            assert!(
                rest.starts_with(" HELP ") || rest.starts_with(" TYPE "),
                "bad comment line: {line}"
            );
        } else {
            assert!(sample.is_match(line), "not Prometheus text format: {line}");
        }
    }
    for name in continuity_agent::telemetry::metrics::CONTRACT_METRICS {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from /metrics"
        );
    }
    assert!(
        text.contains("continuity_probe_up{probe=\"trunk-a\",type=\"sip\"} 1"),
        "{text}"
    );
    // Leadership is computed from the lease: the gauges say what the store holds.
    let row = a
        .running
        .store
        .leases()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.account == "default")
        .expect("the default account's lease row");
    let leads = u8::from(row.live && row.holder == status(&a).await["instance_id"]);
    assert_eq!(leads, 1, "{row:?}");
    assert!(
        text.contains(&format!("continuity_leader{{account=\"default\"}} {leads}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "continuity_epoch{{account=\"default\"}} {}",
            row.epoch
        )),
        "{text}"
    );
    // The engine's and actuator's series carry the account; the probes' do not.
    assert!(
        text.contains(r#"continuity_alerts_dropped_total{account="default"} 0"#),
        "{text}"
    );
    a.stop().await;
}

/// The OpenAPI document and the router agree: every documented operation
/// exists (not 404/405; every webhook source is configured here, since an
/// unconfigured source deliberately answers 404), and the document is valid
/// JSON with the right version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes() {
    let w = world().await;
    let a = w.start().await;
    let doc: Value = http()
        .get(format!("{}/openapi.json", a.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = format!(
                "{}{}",
                a.base,
                path.replace("{token}", "statuspage-path-token-0123456789")
            );
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = http().request(m, &url).send().await.unwrap();
            let s = resp.status();
            assert!(
                s != StatusCode::METHOD_NOT_ALLOWED && s != StatusCode::NOT_FOUND,
                "{method} {path} is documented but the router answers {s}"
            );
        }
    }
    a.stop().await;
}

/// Fresh start (no stored state) during an outage with the fallback already
/// on in Talkdesk (a break-glass activation, or a lost database): the agent
/// waits for evidence before actuating, so it never switches the fallback off
/// only to switch it on again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_during_an_outage_does_not_switch_the_fallback_off() {
    let w = world().await;
    w.sim.set_enabled(true);
    w.trunk.set_mode(Mode::Silent);
    let a = w.start().await;
    // The trunk is found down and the rule fires; give the actuator time to act.
    let m = a.running.metrics.account(config::DEFAULT_ACCOUNT);
    wait_until("the fallback decision", Duration::from_secs(20), || {
        m.fallback_desired.get() == 1
    })
    .await;
    wait_until("convergence", Duration::from_secs(10), || {
        a.running.actuator.status().converged
    })
    .await;
    let offs: Vec<String> = w
        .writes()
        .into_iter()
        .filter(|e| e.contains("false"))
        .collect();
    assert!(
        offs.is_empty(),
        "the fallback was switched off on a fresh start: {offs:?}"
    );
    assert!(w.sim.state().enabled);
    a.stop().await;
}

/// Gauges follow every input, even one that changes no decision: an alert no
/// rule matches still counts in continuity_alerts_active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_active_counts_alerts_that_change_no_decision() {
    let w = world().await;
    let a = w.start().await;
    let resp = http()
        .post(format!("{}/v1/alerts/generic", a.base))
        .bearer_auth("generic-token-0123456789")
        .json(&json!({"id": "x1", "status": "firing", "labels": {"alertname": "Unrelated"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let m = a.running.metrics.account(config::DEFAULT_ACCOUNT);
    wait_until("alerts_active = 1", Duration::from_secs(5), || {
        m.alerts_active.get() == 1
    })
    .await;
    assert_eq!(m.fallback_desired.get(), 0);
    a.stop().await;
}
