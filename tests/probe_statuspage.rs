//! Status page probe end to end: the fixtures of each format served by a
//! local axum server, probed through `probe::build` as the daemon does.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use continuity_agent::domain::ProbeOutcome;
use continuity_agent::probe;
use continuity_agent::probe::ProbeConfig;

async fn fixture(Path(name): Path<String>) -> impl IntoResponse {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/statuspage");
    // Only plain file names: the test server must not serve arbitrary paths.
    if name.contains('/') || name.contains("..") {
        return (StatusCode::BAD_REQUEST, "bad name").into_response();
    }
    match std::fs::read(dir.join(&name)) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no such fixture").into_response(),
    }
}

async fn server() -> SocketAddr {
    let app = Router::new()
        .route("/f/{name}", get(fixture))
        .route("/broken", get(|| async { "<html>oops</html>" }))
        .route(
            "/down",
            get(|| async { (StatusCode::BAD_GATEWAY, "upstream down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn check(addr: SocketAddr, path: &str, extra: serde_json::Value) -> ProbeOutcome {
    let mut v = serde_json::json!({
        "id": "vendor-status",
        "type": "statuspage",
        "url": format!("http://{addr}{path}"),
        "timeout": "2s",
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let cfg: ProbeConfig = serde_json::from_value(v).unwrap();
    let p = probe::build(&cfg.settings().unwrap()).unwrap();
    assert_eq!(p.kind(), "statuspage");
    p.check().await
}

#[tokio::test]
async fn atlassian_summary_status_and_components() {
    let addr = server().await;
    let out = check(addr, "/f/atlassian-summary-ok.json", serde_json::json!({})).await;
    assert!(out.success, "{out:?}");
    assert_eq!(out.detail, "indicator none (All Systems Operational)");
    assert!(out.latency.is_some());

    let out = check(
        addr,
        "/f/atlassian-summary-outage.json",
        serde_json::json!({"components": ["Telephony"]}),
    )
    .await;
    assert!(!out.success);
    assert_eq!(
        out.detail,
        "Telephony: major_outage (Inbound Calls): at or above major_outage"
    );

    let out = check(
        addr,
        "/f/atlassian-summary-outage.json",
        serde_json::json!({"components": ["voice"], "down_at": "partial_outage"}),
    )
    .await;
    assert_eq!(
        out.detail,
        "Voice: partial_outage: at or above partial_outage"
    );

    let out = check(addr, "/f/atlassian-status.json", serde_json::json!({})).await;
    assert!(!out.success, "critical indicator is a major outage");

    let out = check(
        addr,
        "/f/atlassian-components.json",
        serde_json::json!({"components": ["Voice"], "format": "statuspage"}),
    )
    .await;
    assert!(out.success, "{out:?}");

    let out = check(
        addr,
        "/f/atlassian-summary-ok.json",
        serde_json::json!({"components": ["Voise"]}),
    )
    .await;
    assert!(!out.success);
    assert!(
        out.detail
            .starts_with("unknown component \"Voise\"; available: "),
        "{}",
        out.detail
    );
}

#[tokio::test]
async fn incident_io_both_shapes() {
    let addr = server().await;
    let out = check(
        addr,
        "/f/incidentio-summary.json",
        serde_json::json!({"components": ["Voice"]}),
    )
    .await;
    assert!(!out.success);
    assert_eq!(
        out.detail,
        "Voice: major_outage (SIP Trunking): at or above major_outage"
    );
    let out = check(
        addr,
        "/f/incidentio-proxy.json",
        serde_json::json!({"components": ["Core"], "down_at": "degraded_performance", "format": "incidentio"}),
    )
    .await;
    assert!(!out.success, "{out:?}");
    let out = check(addr, "/f/incidentio-summary-ok.json", serde_json::json!({})).await;
    assert_eq!(out.detail, "no ongoing incidents");
    assert!(out.success);
}

#[tokio::test]
async fn instatus_page_and_components() {
    let addr = server().await;
    let out = check(addr, "/f/instatus-summary.json", serde_json::json!({})).await;
    assert!(!out.success);
    let out = check(
        addr,
        "/f/instatus-summary.json",
        serde_json::json!({"components": ["MMS"]}),
    )
    .await;
    assert!(out.success, "{out:?}");
    let out = check(addr, "/f/instatus-up.json", serde_json::json!({})).await;
    assert_eq!(out.detail, "page UP");
}

#[tokio::test]
async fn unreadable_pages_are_failures() {
    let addr = server().await;
    let out = check(addr, "/broken", serde_json::json!({})).await;
    assert!(!out.success);
    assert!(
        out.detail.starts_with("status page body is not JSON"),
        "{}",
        out.detail
    );
    let out = check(addr, "/down", serde_json::json!({})).await;
    assert_eq!(out.detail, "status page answered 502 Bad Gateway");
    let out = check(addr, "/f/nope.json", serde_json::json!({})).await;
    assert_eq!(out.detail, "status page answered 404 Not Found");
}

#[test]
fn bad_config_is_rejected() {
    for (extra, key, needle) in [
        (
            serde_json::json!({"down_at": "major"}),
            "down_at",
            "use one of",
        ),
        (serde_json::json!({"format": "rss"}), "format", "use one of"),
        (
            serde_json::json!({"components": ["Voice", " "]}),
            "components[1]",
            "must not be empty",
        ),
    ] {
        let mut v = serde_json::json!({"id": "s", "type": "statuspage", "url": "https://status.example/api/v2/summary.json"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let cfg: ProbeConfig = serde_json::from_value(v).unwrap();
        let f = cfg.settings().unwrap_err();
        assert!(
            f.errors
                .iter()
                .any(|e| e.key == key && e.reason.contains(needle)),
            "{f}"
        );
    }
}
