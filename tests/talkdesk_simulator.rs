//! The simulator as an HTTP service: Talkdesk's rules on the token and API
//! endpoints, and the `/_sim` control routes other tools (the demo, shell
//! scripts) use.

mod talkdesk_support;

use std::time::Duration;

use continuity_agent::talkdesk::simulator::{JournalEntry, SimulatorOptions};
use serde_json::{Value, json};
use talkdesk_support::*;

/// The simulator is on loopback: never through an environment proxy.
fn no_proxy() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

struct Http {
    base: String,
    http: reqwest::Client,
}

impl Http {
    fn new(base: String) -> Http {
        Http {
            base,
            http: no_proxy(),
        }
    }

    async fn token(&self, form: &[(&str, &str)], secret: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth("demo", Some(secret))
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn bearer(&self, scope: &str) -> String {
        let (s, body) = self
            .token(
                &[("grant_type", "client_credentials"), ("scope", scope)],
                SECRET,
            )
            .await;
        assert_eq!(s, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
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

#[tokio::test]
async fn talkdesk_sim_token_endpoint_follows_oauth_rules() {
    let server = start_sim(sim_options()).await;
    let h = Http::new(server.base_url());

    let (s, body) = h
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "continuity-settings:write bogus:scope"),
            ],
            SECRET,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        body["scope"], "continuity-settings:write",
        "requested ∩ allowed"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);

    let (s, body) = h
        .token(&[("grant_type", "client_credentials")], SECRET)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        body["scope"].as_str().unwrap().split(' ').count(),
        4,
        "all allowed when none requested"
    );

    let (s, body) = h
        .token(&[("grant_type", "client_credentials")], "nope")
        .await;
    assert_eq!((s, body["error"].as_str()), (401, Some("invalid_client")));
    let (s, body) = h.token(&[("grant_type", "password")], SECRET).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (s, body) = h
        .token(
            &[("grant_type", "client_credentials"), ("scope", "bogus")],
            SECRET,
        )
        .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_scope")));
    let r = h
        .http
        .post(format!("{}/oauth/token", h.base))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "Basic auth is required");
}

#[tokio::test]
async fn talkdesk_sim_tokens_really_expire() {
    let server = start_sim(SimulatorOptions {
        token_ttl: Duration::from_millis(1200),
        ..sim_options()
    })
    .await;
    let h = Http::new(server.base_url());
    let t = h.bearer("continuity-settings:write").await;
    let (s, _) = h
        .call(
            reqwest::Method::GET,
            "/fallback-experience/settings",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (s, body) = h
        .call(
            reqwest::Method::GET,
            "/fallback-experience/settings",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(body["description"], "access token expired");
}

#[tokio::test]
async fn talkdesk_sim_api_checks_bearer_scope_and_body() {
    use reqwest::Method;
    let server = start_sim(sim_options()).await;
    let h = Http::new(server.base_url());

    let (s, _) = h
        .call(Method::GET, "/fallback-experience/settings", None, None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = h
        .call(
            Method::GET,
            "/fallback-experience/settings",
            Some("made-up"),
            None,
        )
        .await;
    assert_eq!(s, 401);

    // Read scopes: `:read` or `:write` of the same resource.
    let settings_only = h.bearer("continuity-settings:read").await;
    let (s, _) = h
        .call(
            Method::GET,
            "/fallback-experience/settings",
            Some(&settings_only),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, body) = h
        .call(
            Method::PUT,
            "/fallback-experience/settings",
            Some(&settings_only),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(body["code"], "1403");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("continuity-settings:write")
    );
    let (s, _) = h
        .call(
            Method::GET,
            "/fallback-experience/activation",
            Some(&settings_only),
            None,
        )
        .await;
    assert_eq!(s, 403);

    let t = h
        .bearer("continuity-settings:write continuity-settings-activation:write")
        .await;
    let (s, body) = h
        .call(
            Method::PUT,
            "/fallback-experience/settings",
            Some(&t),
            Some(json!({"forward": {"+14155550100": "555", "default": "+14155558888"}, "message": {"downtime_message": "", "language": "en_US"}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(body["code"], "1400");
    let names: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "forward.+14155550100",
            "message.downtime_message",
            "message.language"
        ]
    );

    let good = json!({"forward": {"+14155550100": "+14155559999", "default": "+14155558888"}, "message": {"downtime_message": "Sorry", "language": "en-US"}});
    let (s, body) = h
        .call(
            Method::PUT,
            "/fallback-experience/settings",
            Some(&t),
            Some(good.clone()),
        )
        .await;
    assert_eq!((s, &body), (200, &good));
    let (s, body) = h
        .call(Method::GET, "/fallback-experience/settings", Some(&t), None)
        .await;
    assert_eq!((s, body), (200, good));

    let (s, _) = h
        .call(
            Method::PUT,
            "/fallback-experience/activation",
            Some(&t),
            Some(json!({"enabled": "yes"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, body) = h
        .call(
            Method::PUT,
            "/fallback-experience/activation",
            Some(&t),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!((s, body), (200, json!({"enabled": true})));
    assert!(server.sim.state().enabled);

    // Not JSON at all.
    let r = h
        .http
        .put(format!("{}/fallback-experience/activation", h.base))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn talkdesk_sim_control_routes() {
    use reqwest::Method;
    let env = Env::new().await;
    let h = Http::new(env.server.base_url());

    // Faults over HTTP.
    let (s, _) = h
        .call(
            Method::POST,
            "/_sim/faults",
            None,
            Some(json!({"op": "get_activation", "status": 503, "count": 2, "retry_after": "1"})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = h
        .call(
            Method::POST,
            "/_sim/faults",
            None,
            Some(json!({"op": "nope", "status": 503})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = h
        .call(
            Method::POST,
            "/_sim/faults",
            None,
            Some(json!({"count": 1})),
        )
        .await;
    assert_eq!(s, 400, "a fault must do something");
    let (_, faults) = h.call(Method::GET, "/_sim/faults", None, None).await;
    assert_eq!(faults.as_array().unwrap().len(), 1);
    let err = env.client.get_activation().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    let (s, _) = h.call(Method::DELETE, "/_sim/faults", None, None).await;
    assert_eq!(s, 204);
    env.client.get_activation().await.unwrap();

    // State "as if in the UI".
    let (s, state) = h
        .call(
            Method::PUT,
            "/_sim/state",
            None,
            Some(json!({"enabled": true, "settings": {"forward": {"default": "+14155558888"}}})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(state["enabled"], true);
    assert!(env.client.get_activation().await.unwrap());
    assert_eq!(
        env.client.get_settings().await.unwrap().default.as_deref(),
        Some("+14155558888")
    );
    let (s, _) = h
        .call(
            Method::PUT,
            "/_sim/state",
            None,
            Some(json!({"settings": {"forward": {"default": "x"}}})),
        )
        .await;
    assert_eq!(s, 400, "the UI validates too");

    // Journal, with the client's User-Agent, and token expiry.
    let (_, journal) = h.call(Method::GET, "/_sim/journal", None, None).await;
    let journal: Vec<JournalEntry> = serde_json::from_value(journal).unwrap();
    assert!(
        journal
            .iter()
            .any(|e| e.status == 503 && e.fault.as_deref() == Some("status 503, retry-after 1"))
    );
    assert!(journal.iter().all(|e| {
        e.user_agent
            .as_deref()
            .is_some_and(|u| u.starts_with("continuity-agent/"))
    }));
    assert!(
        !journal.iter().any(|e| e.path.starts_with("/_sim")),
        "control routes are not journaled"
    );
    let (s, _) = h.call(Method::DELETE, "/_sim/journal", None, None).await;
    assert_eq!(s, 204);
    let (s, _) = h
        .call(Method::POST, "/_sim/expire-tokens", None, None)
        .await;
    assert_eq!(s, 204);
    env.client.get_activation().await.unwrap();
    assert_eq!(env.calls(), ["get_activation 401", "get_activation 200"]);
}

#[tokio::test]
async fn talkdesk_sim_run_stops_on_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let sim = continuity_agent::talkdesk::simulator::Simulator::new(SimulatorOptions::default());
    let task = tokio::spawn(continuity_agent::talkdesk::simulator::run(
        listener,
        sim,
        async {
            let _ = rx.await;
        },
    ));
    let r = no_proxy()
        .get(format!("http://{addr}/_sim/state"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drop(r);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
