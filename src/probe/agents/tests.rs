//! Agents probe against a local axum server whose count the test changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use super::*;
use crate::probe::testutil::{probe_config, probe_settings, serve};

async fn server(count: Arc<AtomicI64>) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/agents",
            get(|State(c): State<Arc<AtomicI64>>| async move {
                let n = c.load(Ordering::SeqCst);
                if n < 0 {
                    return Err(StatusCode::SERVICE_UNAVAILABLE);
                }
                Ok(axum::Json(json!({"available": n, "groups": [{"name": "support", "available": n}, {"name": "sales", "available": "3"}]})))
            }),
        )
        .route("/weird", get(|| async { axum::Json(json!({"available": "many", "neg": -1})) }))
        .with_state(count);
    serve(app).await
}

fn agents(addr: std::net::SocketAddr, path: &str, value: &str, min: Option<u64>) -> AgentsProbe {
    let mut v = json!({"id": "agents-us", "type": "agents", "url": format!("http://{addr}{path}"), "value": value, "timeout": "1s"});
    if let Some(m) = min {
        v["min"] = json!(m);
    }
    let s = probe_settings(v);
    let crate::probe::KindSettings::Agents(k) = &s.kind else {
        unreachable!()
    };
    AgentsProbe::new(&s.id, k, s.cadence.timeout).unwrap()
}

#[tokio::test]
async fn counts_against_min() {
    let count = Arc::new(AtomicI64::new(3));
    let addr = server(count.clone()).await;
    let p = agents(addr, "/agents", "$.available", None);
    let out = p.check().await;
    assert!(out.success, "{out:?}");
    assert_eq!(out.detail, "3 available (min 1)");

    count.store(0, Ordering::SeqCst);
    let out = p.check().await;
    assert!(!out.success);
    assert_eq!(out.detail, "0 available (min 1)");

    count.store(4, Ordering::SeqCst);
    let p5 = agents(addr, "/agents", "$.available", Some(5));
    assert_eq!(p5.check().await.detail, "4 available (min 5)");
    assert!(!p5.check().await.success);

    // Filters and quoted numbers.
    let sales = agents(
        addr,
        "/agents",
        "$.groups[?@.name == 'sales'].available",
        Some(3),
    );
    assert!(sales.check().await.success);

    count.store(-1, Ordering::SeqCst);
    let out = p.check().await;
    assert!(!out.success);
    assert_eq!(out.detail, "503 Service Unavailable from the agents source");
}

#[tokio::test]
async fn bad_values_are_explained() {
    let addr = server(Arc::new(AtomicI64::new(1))).await;
    for (path, needle) in [
        ("$.missing", "$.missing selected nothing"),
        ("$.groups[*].available", "selected 2 values"),
        (
            "$.available",
            "$.available is \"many\", not a count of agents",
        ),
        ("$.neg", "$.neg is -1, not a count"),
    ] {
        let out = agents(addr, "/weird", path, None).check().await;
        assert!(!out.success);
        if path == "$.groups[*].available" {
            let out = agents(addr, "/agents", path, None).check().await;
            assert!(out.detail.contains(needle), "{}", out.detail);
        } else {
            assert!(out.detail.contains(needle), "{}", out.detail);
        }
    }
}

#[test]
fn value_is_required() {
    let f = probe_config(json!({"id": "a", "type": "agents", "url": "http://h/"}))
        .settings()
        .unwrap_err();
    assert_eq!(f.errors.len(), 1, "{f}");
    assert_eq!(f.errors[0].key, "value");
    assert!(f.errors[0].reason.starts_with("missing: a JSONPath"), "{f}");
    let f = probe_config(json!({"id": "a", "type": "agents", "url": "http://h/", "value": "$["}))
        .settings()
        .unwrap_err();
    assert_eq!(f.errors[0].key, "value", "{f}");
    let s =
        probe_settings(json!({"id": "a", "type": "agents", "url": "http://h/", "value": "$.n"}));
    let crate::probe::KindSettings::Agents(k) = &s.kind else {
        unreachable!()
    };
    assert_eq!(k.min, DEFAULT_MIN);
}
