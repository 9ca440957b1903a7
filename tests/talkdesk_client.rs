//! The Talkdesk client against the simulator over real HTTP: token caching,
//! refresh before expiry and on 401, single-flight refresh, error typing.

mod talkdesk_support;

use std::time::Duration;

use continuity_agent::domain::FallbackSettings;
use continuity_agent::talkdesk::TalkdeskError;
use continuity_agent::talkdesk::simulator::{Fault, FaultOp, SimulatorOptions};
use talkdesk_support::*;

#[tokio::test]
async fn talkdesk_token_is_cached_across_calls() {
    let env = Env::new().await;
    env.client.get_activation().await.unwrap();
    env.client.get_settings().await.unwrap();
    env.client.set_activation(true).await.unwrap();
    assert_eq!(env.count("token"), 1, "{:#?}", env.sim().journal());
    assert_eq!(env.requests("token", "200"), 1);
    assert_eq!(env.requests("get_activation", "200"), 1);
    assert_eq!(env.requests("put_activation", "200"), 1);
    let timed = env
        .metrics
        .talkdesk_request_duration_seconds
        .with_label_values(&["token"])
        .get_sample_count();
    assert_eq!(timed, 1);
    let tok = env
        .sim()
        .journal()
        .into_iter()
        .find(|e| e.op == "token")
        .unwrap();
    // Basic auth was accepted and the form carried grant type and scopes.
    assert_eq!(tok.status, 200);
    let body = tok.body.unwrap();
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    assert!(
        body.contains("scope=continuity-settings:write continuity-settings-activation:write"),
        "{body}"
    );
}

/// A token lifetime whose refresh margin (10 %: 2 s) is wide enough that a
/// call aimed at its middle lands inside it on a loaded machine too.
const TOKEN_TTL: Duration = Duration::from_secs(20);
/// The middle of the refresh margin: 1 s after the refresh may start, 1 s
/// before the token expires.
const INSIDE_MARGIN: Duration = Duration::from_secs(19);

#[tokio::test]
async fn talkdesk_token_is_refreshed_before_it_expires() {
    // expires_in = 20 s; margin = 10 % = 2 s: refresh after 18 s, before the
    // simulator would reject the token at 20 s. The call at 19 s has a second
    // of slack on either side (a 2 s lifetime left 100 ms, which a loaded
    // machine overshoots).
    let env = Env::with(
        SimulatorOptions {
            token_ttl: TOKEN_TTL,
            ..sim_options()
        },
        |_| {},
    )
    .await;
    env.client.get_activation().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.client.get_activation().await.unwrap();
    assert_eq!(
        env.count("token"),
        1,
        "still inside the lifetime minus margin"
    );
    tokio::time::sleep(INSIDE_MARGIN - Duration::from_secs(1)).await;
    env.client.get_activation().await.unwrap();
    assert_eq!(env.count("token"), 2, "refreshed inside the margin");
    assert!(
        env.sim().journal().iter().all(|e| e.status != 401),
        "a token was used after expiry: {:#?}",
        env.sim().journal()
    );
}

#[tokio::test]
async fn talkdesk_401_refreshes_once_and_retries_once() {
    let env = Env::new().await;
    env.client.get_activation().await.unwrap();
    env.sim().expire_tokens();
    assert!(!env.client.get_activation().await.unwrap());
    let ops: Vec<String> = env
        .sim()
        .journal()
        .iter()
        .map(|e| format!("{} {}", e.op, e.status))
        .collect();
    assert_eq!(
        ops,
        [
            "token 200",
            "get_activation 200",
            "get_activation 401",
            "token 200",
            "get_activation 200"
        ]
    );
}

#[tokio::test]
async fn talkdesk_persistent_401_is_returned_after_one_refresh() {
    let env = Env::new().await;
    // Every API call answers 401: the client refreshes once, then gives up.
    env.sim()
        .inject(Fault::status(FaultOp::GetActivation, 401, 0));
    let err = env.client.get_activation().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(
        err.is_retryable(),
        "401 after a refresh is retried by the actuator with backoff"
    );
    assert_eq!(env.count("token"), 2);
    assert_eq!(env.count("get_activation"), 2);
}

// Real threads, so the twenty callers truly race for the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn talkdesk_concurrent_callers_share_one_token_request() {
    let env = Env::new().await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = env.client.clone();
            tokio::spawn(async move { c.get_activation().await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(env.count("token"), 1, "{:#?}", env.sim().journal());

    // All twenty then hit 401 together: still exactly one refresh.
    env.sim().expire_tokens();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = env.client.clone();
            tokio::spawn(async move { c.get_settings().await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(env.count("token"), 2, "{:#?}", env.sim().journal());
}

#[tokio::test]
async fn talkdesk_settings_round_trip_with_default_inside_forward() {
    let env = Env::new().await;
    env.client.put_settings(&backup()).await.unwrap();
    assert_eq!(env.client.get_settings().await.unwrap(), backup());
    assert_eq!(env.sim().state().settings, backup());
    let put = env.writes().pop().unwrap();
    let body = put.body.unwrap();
    assert!(body.contains(r#""default":"+14155558888""#), "{body}");
    assert!(body.contains(r#""downtime_message""#), "{body}");
}

#[tokio::test]
async fn talkdesk_validation_errors_carry_field_details() {
    let env = Env::new().await;
    let bad = FallbackSettings {
        forward: [("4155550100".to_string(), "+14155559999".to_string())].into(),
        ..backup()
    };
    let err = env.client.put_settings(&bad).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.fields()[0].name, "forward.4155550100");
    assert!(err.to_string().contains("forward.4155550100"), "{err}");
    assert_eq!(env.requests("put_settings", "400"), 1);
}

#[tokio::test]
async fn talkdesk_missing_scope_is_a_403_that_is_not_retried() {
    let env = Env::with(
        SimulatorOptions {
            allowed_scopes: vec!["continuity-settings:write".into()],
            ..sim_options()
        },
        |_| {},
    )
    .await;
    let err = env.client.set_activation(true).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .contains("continuity-settings-activation:write"),
        "{err}"
    );
}

#[tokio::test]
async fn talkdesk_transport_failures_are_typed_and_retryable() {
    let env = Env::with(sim_options(), |c| {
        c.request_timeout = Duration::from_millis(300)
    })
    .await;
    env.sim()
        .inject(Fault::latency(FaultOp::GetActivation, 1_000, 1));
    let err = env.client.get_activation().await.unwrap_err();
    assert!(matches!(err, TalkdeskError::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(env.requests("get_activation", "timeout"), 1);

    env.sim()
        .inject(Fault::drop_connection(FaultOp::GetSettings, 1));
    let err = env.client.get_settings().await.unwrap_err();
    assert!(matches!(err, TalkdeskError::Connection { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(env.requests("get_settings", "error"), 1);

    env.sim()
        .inject(Fault::status(FaultOp::Any, 429, 1).with_retry_after("7"));
    let err = env.client.get_settings().await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    // And then it works again.
    env.client.get_settings().await.unwrap();
}

/// The client `run` and the break-glass commands build from `[talkdesk]`
/// uses that section's URLs, paths, scopes and credentials, and counts its
/// calls in the metrics it was given.
#[tokio::test]
async fn talkdesk_client_from_config_talks_as_configured() {
    let server = start_sim(sim_options()).await;
    server.sim.set_enabled(true);
    let base = server.base_url();
    let cfg = continuity_agent::config::schema::TalkdeskConfig {
        api_base: Some(base.clone()),
        token_url: Some(format!("{base}/oauth/token")),
        client_id: Some("demo".into()),
        client_secret: Some(SECRET.to_string().into()),
        ..Default::default()
    };
    let metrics = continuity_agent::telemetry::Metrics::new()
        .account(continuity_agent::config::DEFAULT_ACCOUNT);
    let client = continuity_agent::talkdesk::Client::from_config(
        &cfg,
        "replica-a",
        metrics.clone(),
        std::sync::Arc::new(continuity_agent::telemetry::audit::NoAudit),
    )
    .unwrap();
    assert!(client.get_activation().await.unwrap());
    let counted = |op: &str| {
        metrics
            .talkdesk_requests_total
            .with_label_values(&[op, "200"])
            .get()
    };
    assert_eq!((counted("token"), counted("get_activation")), (1, 1));
    assert!(!format!("{client:?}").contains(SECRET));
}

#[tokio::test]
async fn talkdesk_wrong_credentials_fail_with_oauth_error() {
    let server = start_sim(sim_options()).await;
    let mut cfg = client_config(&server);
    cfg.client_secret = "wrong-secret-value".to_string().into();
    let client = continuity_agent::talkdesk::Client::new(
        cfg,
        continuity_agent::telemetry::Metrics::new()
            .account(continuity_agent::config::DEFAULT_ACCOUNT),
        std::sync::Arc::new(continuity_agent::telemetry::audit::NoAudit),
    )
    .unwrap();
    let err = client.get_activation().await.unwrap_err();
    match &err {
        TalkdeskError::Token { status, error, .. } => {
            assert_eq!((*status, error.as_str()), (401, "invalid_client"));
        }
        other => panic!("expected a token error, got {other:?}"),
    }
    assert!(!err.to_string().contains("wrong-secret-value"));
    assert!(!format!("{err:?}").contains("wrong-secret-value"));
}

#[tokio::test]
async fn talkdesk_every_call_sends_the_agent_user_agent() {
    let env = Env::new().await;
    env.client.get_activation().await.unwrap();
    let ua = format!("continuity-agent/{}", env!("CARGO_PKG_VERSION"));
    for e in env.sim().journal() {
        assert_eq!(e.user_agent.as_deref(), Some(ua.as_str()), "{e:?}");
    }
}

#[tokio::test]
async fn talkdesk_failed_early_refresh_keeps_the_valid_token() {
    // expires_in = 20 s, refresh from 18 s. At 19 s the token endpoint
    // fails: the call still succeeds with the old, still valid token.
    let env = Env::with(
        SimulatorOptions {
            token_ttl: TOKEN_TTL,
            ..sim_options()
        },
        |_| {},
    )
    .await;
    env.client.get_activation().await.unwrap();
    tokio::time::sleep(INSIDE_MARGIN).await;
    env.sim().inject(Fault::status(FaultOp::Token, 503, 1));
    env.client.get_activation().await.unwrap();
    let ops: Vec<String> = env
        .sim()
        .journal()
        .iter()
        .map(|e| format!("{} {}", e.op, e.status))
        .collect();
    assert_eq!(
        ops,
        [
            "token 200",
            "get_activation 200",
            "token 503",
            "get_activation 200"
        ]
    );
}

/// A token server answering an absurd `expires_in` (u64::MAX) must not crash
/// the client (it used to overflow `Instant + Duration` and panic the
/// actuator task): the lifetime is capped and calls keep working.
#[tokio::test]
async fn talkdesk_absurd_token_lifetime_is_capped_not_a_panic() {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/oauth/token",
            post(|| async {
                axum::Json(serde_json::json!({
                    "access_token": "t0k3n", "token_type": "Bearer", "expires_in": u64::MAX
                }))
            }),
        )
        .route(
            "/fallback-experience/activation",
            get(|| async { axum::Json(serde_json::json!({"enabled": true})) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let cfg = continuity_agent::talkdesk::client::ClientConfig::for_simulator(
        &base,
        "demo",
        "demo-secret",
    );
    let client = continuity_agent::talkdesk::client::Client::new(
        cfg,
        continuity_agent::telemetry::Metrics::new()
            .account(continuity_agent::config::DEFAULT_ACCOUNT),
        std::sync::Arc::new(continuity_agent::telemetry::audit::NoAudit),
    )
    .unwrap();
    assert!(client.get_activation().await.unwrap());
    assert!(
        client.get_activation().await.unwrap(),
        "the capped token is reused"
    );
}

/// A token reply without `expires_in` (RFC 6749 allows it) is cached for a
/// while, not treated as already expired: one token request, not one per call.
#[tokio::test]
async fn talkdesk_a_token_without_expires_in_is_still_cached() {
    use continuity_agent::talkdesk::simulator::Quirks;
    let env = Env::new().await;
    env.sim().set_quirks(Quirks {
        omit_expires_in: true,
        ..Quirks::default()
    });
    env.client.get_activation().await.unwrap();
    env.client.get_settings().await.unwrap();
    env.client.set_activation(true).await.unwrap();
    assert_eq!(env.count("token"), 1, "{:#?}", env.sim().journal());
}
