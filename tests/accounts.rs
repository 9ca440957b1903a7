//! Several Talkdesk accounts from one agent (issue 16), with real parts: one
//! sipp trunk both accounts depend on, one Talkdesk simulator serving both
//! accounts over real HTTP (each with its own credentials and routes), the
//! agent in-process on SQLite.
//!
//! - the trunk dies: each account switches on with its own profile;
//! - an override on one account leaves the other alone;
//! - a Talkdesk outage (a hung API) on one account does not slow the other;
//! - a token scoped to one account reaches no other, on every route.

mod support;

use std::time::Duration;

use continuity_agent::config;
use continuity_agent::talkdesk::simulator::{
    self, AccountHandle, Fault, FaultOp, JournalEntry, SimAccount, SimServer, Simulator,
    SimulatorOptions,
};
use reqwest::StatusCode;
use serde_json::json;
use support::sipp::Sipp;
use tokio::time::Instant;

const OPS: &str = "ops-token-0123456789abcdef";
const ACME: &str = "acme-token-0123456789abcdef";
const GLOBEX: &str = "globex-token-0123456789abcdef";
/// The trunk's detection and the rule's `for`, as configured below, plus a
/// generous allowance for a loaded machine: when a healthy account must
/// have switched after the trunk died.
const SWITCH_WITHIN: Duration = Duration::from_secs(20);

fn account(id: &str, sim: &str, profile: &str) -> String {
    format!(
        r#"
[[accounts]]
id = "{id}"
[accounts.talkdesk]
account = "{id}"
api_base = "{sim}/accounts/{id}"
token_url = "{sim}/accounts/{id}/oauth/token"
client_id = "{id}-client"
client_secret = "{id}-secret-0123456789"
reconcile_interval = "1s"
request_timeout = "5s"
{profile}
[[accounts.rules]]
name = "trunk-down"
profile = "backup"
for = "1s"
clear_for = "2s"
when = {{ down = "trunk-a" }}
"#
    )
}

fn config(sim: &str, trunk: &str, dir: &std::path::Path) -> config::Config {
    let src = format!(
        r#"
[store]
url = "sqlite://{db}"
[api]
tokens = [
  {{ name = "ops", token = "{OPS}", scopes = ["read", "override"] }},
  {{ name = "acme-ops", token = "{ACME}", scopes = ["read", "override"], accounts = ["acme"] }},
  {{ name = "globex-ops", token = "{GLOBEX}", scopes = ["read", "override"], accounts = ["globex"] }},
]
[[probes]]
id = "trunk-a"
type = "sip"
target = "{trunk}"
interval = "1s"
fast_interval = "500ms"
timeout = "1s"
rise = 2
fall = 2
{acme}
{globex}
"#,
        db = dir.join("state.db").display(),
        acme = account(
            "acme",
            sim,
            "[accounts.profiles.backup]\ndefault = \"+14155558888\""
        ),
        globex = account(
            "globex",
            sim,
            "[accounts.profiles.backup]\nmessage = { text = \"Globex is closed today.\", language = \"en-US\" }"
        ),
    );
    config::from_toml_str_strict(&src, "accounts.toml", dir, false).expect("valid configuration")
}

struct World {
    sim: Simulator,
    _server: SimServer,
    _dir: tempfile::TempDir,
    agent: support::inproc::Agent,
    http: reqwest::Client,
}

async fn world(trunk: &str) -> World {
    let sim = Simulator::new(SimulatorOptions {
        accounts: vec![
            SimAccount::new("acme", "acme-client", "acme-secret-0123456789"),
            SimAccount::new("globex", "globex-client", "globex-secret-0123456789"),
        ],
        ..SimulatorOptions::default()
    });
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = support::inproc::start(config(&server.base_url(), trunk, dir.path())).await;
    World {
        sim,
        _server: server,
        _dir: dir,
        agent,
        http: reqwest::Client::new(),
    }
}

impl World {
    fn acme(&self) -> AccountHandle {
        self.sim.account("acme").expect("acme")
    }
    fn globex(&self) -> AccountHandle {
        self.sim.account("globex").expect("globex")
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.agent.base)
    }
    async fn status(&self, account: &str) -> serde_json::Value {
        let r = self
            .http
            .get(self.url(&format!("/v1/accounts/{account}/status")))
            .bearer_auth(OPS)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }
    /// Both accounts' engines see the trunk up.
    async fn wait_trunk_up(&self) {
        wait(
            "trunk-a up in both accounts",
            Duration::from_secs(20),
            || async {
                let mut up = true;
                for a in ["acme", "globex"] {
                    let s = self.status(a).await;
                    up &= s["engine"]["probes"].as_array().is_some_and(|p| {
                        p.iter()
                            .any(|p| p["id"] == "trunk-a" && p["health"] == "up")
                    });
                }
                up
            },
        )
        .await;
    }
}

fn writes(a: &AccountHandle) -> Vec<JournalEntry> {
    a.journal().into_iter().filter(|e| e.is_write()).collect()
}

async fn wait<F, Fut>(what: &str, limit: Duration, mut cond: F) -> Instant
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_trunk_dies_and_each_account_switches_with_its_own_profile() {
    let sipp = Sipp::start("options-uas.xml", false).await;
    let w = world(&sipp.target()).await;
    w.wait_trunk_up().await;
    assert!(writes(&w.acme()).is_empty() && writes(&w.globex()).is_empty());

    sipp.kill();
    wait("both accounts switched on", SWITCH_WITHIN, || async {
        w.acme().state().enabled && w.globex().state().enabled
    })
    .await;
    let (acme, globex) = (w.acme().state(), w.globex().state());
    assert_eq!(acme.settings.default.as_deref(), Some("+14155558888"));
    assert!(acme.settings.message.is_none(), "{acme:?}");
    assert_eq!(globex.settings.default, None, "{globex:?}");
    assert_eq!(
        globex.settings.message.as_ref().map(|m| m.text.as_str()),
        Some("Globex is closed today.")
    );
    // Each account was written once (settings, then activation), with its
    // own credentials on its own routes.
    for (a, id) in [(w.acme(), "acme"), (w.globex(), "globex")] {
        let ops: Vec<String> = writes(&a).iter().map(|e| e.op.clone()).collect();
        assert_eq!(ops, ["put_settings", "put_activation"], "{id}");
        assert!(writes(&a).iter().all(|e| e.account == id));
    }
    // Status and metrics carry the account.
    assert_eq!(w.status("globex").await["account"], "globex");
    let text = w.agent.running.metrics.render();
    for id in ["acme", "globex"] {
        assert!(
            text.contains(&format!(
                "continuity_fallback_desired{{account=\"{id}\"}} 1"
            )),
            "{id}:\n{text}"
        );
    }
    w.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_on_one_account_leaves_the_other_alone() {
    let sipp = Sipp::start("options-uas.xml", false).await;
    let w = world(&sipp.target()).await;
    w.wait_trunk_up().await;

    let r = w
        .http
        .put(w.url("/v1/accounts/acme/override?wait=8s"))
        .bearer_auth(ACME)
        .json(
            &json!({"state": "active", "profile": "backup", "ttl": "10m", "reason": "acme drill"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert!(w.acme().state().enabled, "acme is forwarded");
    // Globex's engine and Talkdesk are untouched, a while later too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!w.globex().state().enabled);
    assert!(writes(&w.globex()).is_empty(), "{:?}", writes(&w.globex()));
    let globex = w.status("globex").await;
    assert_eq!(globex["mode"], "automatic", "{globex}");
    assert!(globex["engine"]["override"].is_null(), "{globex}");
    assert_eq!(w.status("acme").await["mode"], "override");
    w.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talkdesk_outage_on_one_account_does_not_slow_the_other() {
    let sipp = Sipp::start("options-uas.xml", false).await;
    let w = world(&sipp.target()).await;
    w.wait_trunk_up().await;
    // Acme's Talkdesk hangs on every write until the request times out.
    for op in [FaultOp::PutSettings, FaultOp::PutActivation] {
        w.acme().inject(Fault {
            op,
            latency_ms: Some(30_000),
            count: 0,
            ..Fault::default()
        });
    }

    let died = Instant::now();
    sipp.kill();
    let globex_on = wait("globex switched on", SWITCH_WITHIN, || async {
        w.globex().state().enabled
    })
    .await;
    // Acme's writes are stuck meanwhile (they began, none completed).
    assert!(!w.acme().state().enabled);
    assert!(
        writes(&w.acme()).iter().all(|e| e.status != 200),
        "{:?}",
        writes(&w.acme())
    );
    let took = globex_on.duration_since(died);
    assert!(
        took < SWITCH_WITHIN,
        "globex took {took:?} while acme's Talkdesk hung"
    );
    // Acme's outage ends: acme converges too, on its own.
    w.acme().clear_faults();
    wait(
        "acme switched on once its Talkdesk answers",
        Duration::from_secs(60),
        || async { w.acme().state().enabled },
    )
    .await;
    w.agent.stop().await;
}

/// Every account route, as (method, path suffix, body).
fn routes() -> Vec<(reqwest::Method, &'static str, Option<serde_json::Value>)> {
    use reqwest::Method;
    vec![
        (Method::GET, "status", None),
        (Method::GET, "events", None),
        (
            Method::PUT,
            "override",
            Some(
                json!({"state": "active", "profile": "backup", "ttl": "10m", "reason": "not mine"}),
            ),
        ),
        (Method::DELETE, "override", None),
        (Method::DELETE, "flap", None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_one_account_can_neither_read_nor_change_another() {
    let sipp = Sipp::start("options-uas.xml", false).await;
    let w = world(&sipp.target()).await;
    w.wait_trunk_up().await;
    let before = w.status("globex").await;
    let events_before = w.agent.running.accounts[1]
        .store
        .events(1000, None)
        .await
        .unwrap();

    for (token, mine, theirs) in [(ACME, "acme", "globex"), (GLOBEX, "globex", "acme")] {
        for (method, route, body) in routes() {
            // The other account, and one that does not exist: 403 either way,
            // so a scoped token cannot even learn which accounts exist.
            for target in [theirs, "nobody"] {
                let mut req = w
                    .http
                    .request(
                        method.clone(),
                        w.url(&format!("/v1/accounts/{target}/{route}")),
                    )
                    .bearer_auth(token);
                if let Some(b) = &body {
                    req = req.json(b);
                }
                let r = req.send().await.unwrap();
                let status = r.status();
                let text = r.text().await.unwrap();
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{mine}'s token {method} {target}/{route}: {text}"
                );
                let err: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(err["error"], "forbidden", "{text}");
            }
            // Its own account: allowed (not 401/403).
            let mut req = w
                .http
                .request(
                    method.clone(),
                    w.url(&format!("/v1/accounts/{mine}/{route}")),
                )
                .bearer_auth(token);
            if let Some(b) = &body {
                req = req.json(&json!({"state": "inactive", "ttl": "1m", "reason": b["reason"]}));
            }
            let status = req.send().await.unwrap().status();
            assert!(
                status.is_success(),
                "{mine}'s token on its own {route}: {status}"
            );
        }
    }
    // Nothing changed in globex by acme's token: no write, no override, no
    // new audit record beyond what globex's own token did.
    let after = w.status("globex").await;
    assert_eq!(before["desired"], after["desired"]);
    assert!(!w.globex().state().enabled);
    assert!(writes(&w.globex()).iter().all(|e| e.account == "globex"));
    let events = w.agent.running.accounts[1]
        .store
        .events(1000, None)
        .await
        .unwrap();
    let foreign: Vec<_> = events
        .iter()
        .filter(|e| !events_before.contains(e) && e.record.message.contains("acme-ops"))
        .collect();
    assert!(
        foreign.is_empty(),
        "acme's token changed globex: {foreign:?}"
    );

    // The routes without an account: none is named `default`, so the
    // summary lists only what the token may read, and changes need an account.
    let r = w
        .http
        .get(w.url("/v1/status"))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: serde_json::Value = r.json().await.unwrap();
    let ids: Vec<&str> = doc["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme"]);
    let r = w
        .http
        .delete(w.url("/v1/override"))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    w.agent.stop().await;
}
