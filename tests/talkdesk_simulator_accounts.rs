//! One simulator serving several Talkdesk accounts (issue 16): each account
//! has its own credentials, state, tokens, faults and journal, and a token
//! of one account never reads or writes another's.

mod talkdesk_support;

use std::sync::Arc;
use std::time::Duration;

use continuity_agent::talkdesk::simulator::{
    Fault, FaultOp, JournalEntry, OptionsError, SimAccount, SimServer, Simulator, SimulatorOptions,
};
use continuity_agent::talkdesk::{Client, ClientConfig};
use continuity_agent::telemetry::Metrics;
use continuity_agent::telemetry::audit::MemoryAudit;
use reqwest::Method;
use serde_json::{Value, json};
use talkdesk_support::*;

const ALPHA_SECRET: &str = "alpha-secret-0123456789";
const BETA_SECRET: &str = "beta-secret-9876543210";

fn two_accounts() -> SimulatorOptions {
    SimulatorOptions::with_accounts(vec![
        SimAccount::new("alpha", "alpha-client", ALPHA_SECRET),
        SimAccount::new("beta", "beta-client", BETA_SECRET),
    ])
}

/// The agent's own client, as the per-account daemon would build it.
fn client(base: &str, client_id: &str, secret: &str) -> Client {
    let mut c = ClientConfig::for_simulator(base, client_id, secret);
    c.request_timeout = Duration::from_secs(2);
    Client::new(
        c,
        Metrics::new().account("default"),
        Arc::new(MemoryAudit::default()),
    )
    .expect("client")
}

fn alpha(server: &SimServer) -> Client {
    client(&server.base_url(), "alpha-client", ALPHA_SECRET)
}

fn beta(server: &SimServer) -> Client {
    client(&server.base_url(), "beta-client", BETA_SECRET)
}

/// Raw HTTP for what the agent's client never does on purpose.
struct Http {
    base: String,
    http: reqwest::Client,
}

impl Http {
    fn new(server: &SimServer) -> Http {
        Http {
            base: server.base_url(),
            // The simulator is on loopback: never through an environment proxy.
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// `POST {path}` (a token URL) with these client credentials.
    async fn token(&self, path: &str, client_id: &str, secret: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn bearer(&self, client_id: &str, secret: &str) -> String {
        let (s, body) = self.token("/oauth/token", client_id, secret).await;
        assert_eq!(s, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn ops(journal: &[JournalEntry]) -> Vec<String> {
    journal
        .iter()
        .map(|e| format!("{} {}", e.op, e.status))
        .collect()
}

#[tokio::test]
async fn talkdesk_sim_accounts_each_token_reads_and_writes_only_its_own_state() {
    let server = start_sim(two_accounts()).await;
    let sim = &server.sim;
    let (a_acct, b_acct) = (sim.account("alpha").unwrap(), sim.account("beta").unwrap());

    // Through the shared routes the token picks the account.
    let (a, b) = (alpha(&server), beta(&server));
    a.put_settings(&backup()).await.unwrap();
    a.set_activation(true).await.unwrap();
    assert!(
        !b.get_activation().await.unwrap(),
        "beta saw alpha's switch"
    );
    assert_eq!(b.get_settings().await.unwrap(), Default::default());
    b.put_settings(&other()).await.unwrap();
    assert_eq!(a_acct.state().settings, backup());
    assert!(a_acct.state().enabled);
    assert_eq!(b_acct.state().settings, other());
    assert!(!b_acct.state().enabled);

    // An account's own routes refuse another account's token and credentials.
    let h = Http::new(&server);
    let a_token = h.bearer("alpha-client", ALPHA_SECRET).await;
    let (s, body) = h
        .call(
            Method::PUT,
            "/accounts/beta/fallback-experience/activation",
            Some(&a_token),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(body["description"], "unknown access token");
    let (s, _) = h
        .call(
            Method::GET,
            "/accounts/beta/fallback-experience/settings",
            Some(&a_token),
            None,
        )
        .await;
    assert_eq!(s, 401);
    assert!(!b_acct.state().enabled, "alpha's token switched beta on");
    assert_eq!(b_acct.state().settings, other());
    let (s, body) = h
        .token("/accounts/alpha/oauth/token", "beta-client", BETA_SECRET)
        .await;
    assert_eq!((s, body["error"].as_str()), (401, Some("invalid_client")));
    let (s, _) = h
        .token("/accounts/gamma/oauth/token", "beta-client", BETA_SECRET)
        .await;
    assert_eq!(s, 404, "an account the simulator does not serve");

    // ... and serve their own: the agent's client with beta's own URLs.
    let beta_only = client(&server.account_url("beta"), "beta-client", BETA_SECRET);
    beta_only.set_activation(true).await.unwrap();
    assert!(b_acct.state().enabled);
    assert_eq!(a_acct.state().settings, backup(), "alpha untouched");
    let wrong = client(&server.account_url("beta"), "alpha-client", ALPHA_SECRET);
    assert_eq!(
        wrong.get_activation().await.unwrap_err().status(),
        Some(401)
    );

    // Credentials that name no account are refused by (and journaled in) the
    // first account, as a single-account simulator always did.
    let (s, _) = h.token("/oauth/token", "nobody", "nothing").await;
    assert_eq!(s, 401);
    let last = a_acct.journal().pop().unwrap();
    assert_eq!((last.op.as_str(), last.status), ("token", 401));
    assert!(
        b_acct.journal().iter().all(|e| e.account == "beta"),
        "{:?}",
        b_acct.journal()
    );
}

#[tokio::test]
async fn talkdesk_sim_accounts_a_fault_on_one_account_leaves_the_other_alone() {
    let server = start_sim(two_accounts()).await;
    let sim = &server.sim;
    let (a_acct, b_acct) = (sim.account("alpha").unwrap(), sim.account("beta").unwrap());
    let (a, b) = (alpha(&server), beta(&server));
    // Both fetch a token first, so the faults below meet API calls.
    a.get_activation().await.unwrap();
    b.get_activation().await.unwrap();

    // Every call to alpha fails until cleared; beta's once answer slowly.
    a_acct.inject(Fault::status(FaultOp::Any, 503, 0).with_retry_after("1"));
    b_acct.inject(Fault::latency(FaultOp::GetSettings, 10, 1));
    let err = a.set_activation(true).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    b.set_activation(true).await.unwrap();
    b.get_settings().await.unwrap();
    assert_eq!(a.get_activation().await.unwrap_err().status(), Some(503));

    assert!(b_acct.state().enabled);
    assert!(!a_acct.state().enabled, "the failed write was applied");
    assert_eq!(a_acct.faults().len(), 1, "alpha's fault is still pending");
    assert!(b_acct.faults().is_empty());
    let a_journal = a_acct.journal();
    let b_journal = b_acct.journal();
    assert_eq!(
        ops(&a_journal),
        [
            "token 200",
            "get_activation 200",
            "put_activation 503",
            "get_activation 503"
        ]
    );
    assert!(
        a_journal[2..]
            .iter()
            .all(|e| e.fault.as_deref() == Some("status 503, retry-after 1"))
    );
    assert_eq!(
        ops(&b_journal),
        [
            "token 200",
            "get_activation 200",
            "put_activation 200",
            "get_settings 200"
        ]
    );
    assert_eq!(
        b_journal
            .iter()
            .map(|e| e.fault.as_deref())
            .collect::<Vec<_>>(),
        [None, None, None, Some("latency 10ms")],
        "beta met alpha's fault, or lost its own"
    );
    assert!(a_journal.iter().all(|e| e.account == "alpha"));
    assert!(b_journal.iter().all(|e| e.account == "beta"));
}

#[tokio::test]
async fn talkdesk_sim_accounts_have_their_own_control_routes() {
    let server = start_sim(two_accounts()).await;
    let sim = &server.sim;
    let (a_acct, b_acct) = (sim.account("alpha").unwrap(), sim.account("beta").unwrap());
    let (a, b) = (alpha(&server), beta(&server));
    let h = Http::new(&server);

    // Faults: per account; `/_sim/faults` is the first account's.
    let (s, _) = h
        .call(
            Method::POST,
            "/_sim/accounts/beta/faults",
            None,
            Some(json!({"op": "get_activation", "status": 503})),
        )
        .await;
    assert_eq!(s, 201);
    let (_, first) = h.call(Method::GET, "/_sim/faults", None, None).await;
    assert_eq!(first, json!([]));
    let (_, beta_faults) = h
        .call(Method::GET, "/_sim/accounts/beta/faults", None, None)
        .await;
    assert_eq!(beta_faults.as_array().unwrap().len(), 1);
    a.get_activation().await.unwrap();
    assert_eq!(b.get_activation().await.unwrap_err().status(), Some(503));

    // State "as if in the UI".
    let (s, state) = h
        .call(
            Method::PUT,
            "/_sim/accounts/beta/state",
            None,
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!((s, &state["enabled"]), (200, &json!(true)));
    assert!(b.get_activation().await.unwrap());
    assert!(!a.get_activation().await.unwrap());
    let (_, first) = h.call(Method::GET, "/_sim/state", None, None).await;
    assert_eq!(first["enabled"], false);

    // Token expiry: beta's tokens only.
    b_acct.clear_journal();
    a_acct.clear_journal();
    let (s, _) = h
        .call(
            Method::POST,
            "/_sim/accounts/beta/expire-tokens",
            None,
            None,
        )
        .await;
    assert_eq!(s, 204);
    b.get_activation().await.unwrap();
    a.get_activation().await.unwrap();
    assert_eq!(
        ops(&b_acct.journal()),
        ["get_activation 401", "token 200", "get_activation 200"]
    );
    assert_eq!(ops(&a_acct.journal()), ["get_activation 200"]);

    // Journals: over HTTP as in-process; cleared one at a time.
    let (_, journal) = h
        .call(Method::GET, "/_sim/accounts/beta/journal", None, None)
        .await;
    let journal: Vec<JournalEntry> = serde_json::from_value(journal).unwrap();
    assert_eq!(journal, b_acct.journal());
    let (s, _) = h
        .call(Method::DELETE, "/_sim/accounts/beta/journal", None, None)
        .await;
    assert_eq!(s, 204);
    assert!(b_acct.journal().is_empty());
    assert_eq!(a_acct.journal().len(), 1);

    let (s, _) = h
        .call(Method::GET, "/_sim/accounts/gamma/state", None, None)
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn talkdesk_sim_accounts_in_process_handles() {
    let sim = Simulator::new(two_accounts());
    let ids: Vec<String> = sim.accounts().iter().map(|a| a.id().to_string()).collect();
    assert_eq!(ids, ["alpha", "beta"]);
    assert!(sim.account("gamma").is_none());
    // The simulator's own methods act on its first account.
    sim.set_enabled(true);
    sim.inject(Fault::status(FaultOp::Token, 500, 1));
    assert!(sim.account("alpha").unwrap().state().enabled);
    assert_eq!(sim.first().faults().len(), 1);
    let beta = sim.account("beta").unwrap();
    assert_eq!(beta.client_id(), "beta-client");
    assert!(!beta.state().enabled);
    assert!(beta.faults().is_empty());

    // A single-account simulator serves the daemon's default account.
    let env = Env::new().await;
    env.client.get_activation().await.unwrap();
    let only = env.sim().accounts();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].id(), continuity_agent::config::DEFAULT_ACCOUNT);
    assert!(
        env.sim()
            .journal()
            .iter()
            .all(|e| e.account == continuity_agent::config::DEFAULT_ACCOUNT)
    );

    let clash = SimulatorOptions::with_accounts(vec![
        SimAccount::new("alpha", "same", "s1"),
        SimAccount::new("beta", "same", "s2"),
    ]);
    assert!(matches!(
        Simulator::try_new(clash),
        Err(OptionsError::DuplicateClientId { .. })
    ));
}
