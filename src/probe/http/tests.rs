//! HTTP probe against a local axum server.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::json;

use super::*;
use crate::probe::testutil::{closed_tcp_port, probe_config, probe_settings, serve};

async fn server() -> std::net::SocketAddr {
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/health",
            get(|| async {
                axum::Json(json!({"status": "UP", "checks": [{"name": "db", "status": "UP"}]}))
            }),
        )
        .route(
            "/degraded",
            get(|| async { axum::Json(json!({"status": "DOWN"})) }),
        )
        .route("/notjson", get(|| async { "<html>" }))
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "maintenance") }),
        )
        .route(
            "/auth",
            get(|headers: HeaderMap| async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer t0k")
                {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    serve(app).await
}

fn http(url: String, extra: serde_json::Value) -> HttpProbe {
    let mut v = json!({"id": "crm", "type": "http", "url": url, "timeout": "1s"});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let s = probe_settings(v);
    let crate::probe::KindSettings::Http(k) = &s.kind else {
        unreachable!()
    };
    HttpProbe::new(&s.id, k, s.cadence.timeout).unwrap()
}

#[tokio::test]
async fn status_codes() {
    let addr = server().await;
    let out = http(format!("http://{addr}/ok"), json!({})).check().await;
    assert!(out.success, "{out:?}");
    assert!(out.detail.starts_with("200 OK in "), "{}", out.detail);
    assert!(out.latency.is_some());

    let out = http(format!("http://{addr}/down"), json!({})).check().await;
    assert!(!out.success);
    assert_eq!(out.detail, "503 Service Unavailable (expected 2xx)");

    let out = http(format!("http://{addr}/ok"), json!({"expect_status": [204]}))
        .check()
        .await;
    assert_eq!(out.detail, "200 OK (expected 204)");

    let out = http(
        format!("http://{addr}/down"),
        json!({"expect_status": [200, 503]}),
    )
    .check()
    .await;
    assert!(out.success, "{out:?}");

    let out = http(format!("http://{addr}/missing"), json!({}))
        .check()
        .await;
    assert_eq!(out.detail, "404 Not Found (expected 2xx)");
}

#[tokio::test]
async fn json_conditions() {
    let addr = server().await;
    let ok = http(
        format!("http://{addr}/health"),
        json!({"expect_json": "$[?@.status == 'UP']"}),
    );
    assert!(ok.check().await.success);
    let nested = http(
        format!("http://{addr}/health"),
        json!({"expect_json": "$.checks[?@.name == 'db' && @.status == 'UP']"}),
    );
    assert!(nested.check().await.success);

    let out = http(
        format!("http://{addr}/degraded"),
        json!({"expect_json": "$[?@.status == 'UP']"}),
    )
    .check()
    .await;
    assert!(!out.success);
    assert_eq!(out.detail, "body did not match $[?@.status == 'UP']");

    let out = http(
        format!("http://{addr}/notjson"),
        json!({"expect_json": "$.status"}),
    )
    .check()
    .await;
    assert!(!out.success);
    assert!(
        out.detail.starts_with("200 OK but the body is not JSON"),
        "{}",
        out.detail
    );
}

#[tokio::test]
async fn headers_are_sent() {
    let addr = server().await;
    let out = http(format!("http://{addr}/auth"), json!({})).check().await;
    assert_eq!(out.detail, "401 Unauthorized (expected 2xx)");
    let out = http(
        format!("http://{addr}/auth"),
        json!({"headers": {"Authorization": "Bearer t0k"}}),
    )
    .check()
    .await;
    assert!(
        out.success && out.detail.starts_with("204 No Content"),
        "{out:?}"
    );
}

#[tokio::test]
async fn timeouts_and_refusals_are_failures() {
    let addr = server().await;
    let started = tokio::time::Instant::now();
    let out = http(format!("http://{addr}/slow"), json!({})).check().await;
    assert_eq!(out.detail, "timeout after 1s");
    // The detail proves the timeout fired; this only catches a hang (a
    // tight bound would time the machine, not the probe).
    assert!(started.elapsed() < Duration::from_secs(10));

    let closed = closed_tcp_port();
    let out = http(format!("http://{closed}/"), json!({})).check().await;
    assert!(!out.success);
    assert!(
        out.detail.starts_with("connection failed: "),
        "{}",
        out.detail
    );
    assert!(
        out.detail.to_lowercase().contains("refused"),
        "{}",
        out.detail
    );
}

/// Validation names the key of each mistake, so nothing reaches the probe
/// that it could not run.
#[test]
fn config_errors_name_the_key() {
    let f = probe_config(json!({"id": "x", "type": "http"}))
        .settings()
        .unwrap_err();
    assert_eq!(f.errors[0].key, "url");
    assert!(f.errors[0].reason.starts_with("missing"), "{f}");
    for (extra, key, needle) in [
        (json!({"url": "ftp://h/"}), "url", "is not http or https"),
        (json!({"url": "not a url"}), "url", "is not a URL"),
        (json!({"url": "http:///"}), "url", "empty host"),
        (
            json!({"url": "http://h/", "expect_json": "$[?"}),
            "expect_json",
            "is not a JSONPath",
        ),
        (
            json!({"url": "http://h/", "expect_status": []}),
            "expect_status",
            "at least one",
        ),
        (
            json!({"url": "http://h/", "expect_status": [42]}),
            "expect_status[0]",
            "not an HTTP status",
        ),
        (
            json!({"url": "http://h/", "headers": {"bad header": "v"}}),
            "headers",
            "not a valid header name",
        ),
        (
            json!({"url": "http://h/", "headers": {"x-token": "a\nb"}}),
            "headers",
            "invalid characters",
        ),
    ] {
        let mut v = json!({"id": "x", "type": "http"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let f = probe_config(v).settings().unwrap_err();
        assert!(
            f.errors
                .iter()
                .any(|e| e.key == key && e.reason.contains(needle)),
            "{key}: {needle}: {f}"
        );
    }
}

/// Header values are secrets: validated settings never show them.
#[test]
fn validated_headers_debug_shows_names_only() {
    let s = probe_settings(json!({
        "id": "x", "type": "http", "url": "http://h/",
        "headers": {"Authorization": "Bearer hunter2"}
    }));
    let shown = format!("{s:?}");
    assert!(
        shown.contains("authorization") && !shown.contains("hunter2"),
        "{shown}"
    );
}

/// Error details never echo the URL: it may carry credentials.
#[tokio::test]
async fn http_failure_details_never_show_the_url_credentials() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = probe_settings(serde_json::json!({
        "id": "crm", "type": "http", "timeout": "1s",
        "url": format!("http://user:hunter2@127.0.0.1:{port}/health?api_key=s3cr3t"),
    }));
    let out = crate::probe::build(&cfg).unwrap().check().await;
    assert!(!out.success);
    assert!(
        !out.detail.contains("hunter2") && !out.detail.contains("s3cr3t"),
        "{}",
        out.detail
    );
}

/// A probe's own headers (an API key) never follow a redirect to another
/// host: the 3xx is judged instead. Without headers, and on the same host,
/// redirects are followed.
#[tokio::test]
async fn custom_headers_never_follow_a_redirect_to_another_host() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let elsewhere = serve(Router::new().route(
        "/landing",
        get(move |headers: HeaderMap| {
            let key = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            record.lock().unwrap().push(key);
            async { "landed" }
        }),
    ))
    .await;
    // "localhost" and "127.0.0.1" are different hosts to a client.
    let target = format!("http://localhost:{}/landing", elsewhere.port());
    let origin = serve(
        Router::new()
            .route(
                "/moved",
                get(move || async move { axum::response::Redirect::temporary(&target) }),
            )
            .route(
                "/here",
                get(|| async { axum::response::Redirect::temporary("/ok2") }),
            )
            .route("/ok2", get(|| async { "same host" })),
    )
    .await;
    let keyed = json!({"headers": {"X-Api-Key": "k-0123456789"}, "expect_status": [200, 307]});
    let out = http(format!("http://{origin}/moved"), keyed.clone())
        .check()
        .await;
    assert!(out.detail.starts_with("307"), "{out:?}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "the key went to another host"
    );

    let out = http(format!("http://{origin}/here"), keyed).check().await;
    assert!(
        out.detail.starts_with("200 OK"),
        "same-host redirect: {out:?}"
    );

    let out = http(format!("http://{origin}/moved"), json!({}))
        .check()
        .await;
    assert!(out.detail.starts_with("200 OK"), "no headers: {out:?}");
    assert_eq!(*seen.lock().unwrap(), vec![None]);
}

/// A server whose listening socket is gone but whose worker still answers
/// on a connection it accepted before (a process draining, a backend taken
/// out of a load balancer, a crashed accept loop): new clients are refused.
/// A probe that kept its connection would still report it healthy.
#[tokio::test]
async fn each_check_opens_its_own_connection_so_a_dead_listener_fails() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        drop(listener);
        // Keep answering every request on this one connection.
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.clear();
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
                if conn.write_all(ok).await.is_err() {
                    return;
                }
            }
        });
    });
    let probe = http(format!("http://{addr}/ok"), json!({}));
    let first = probe.check().await;
    assert!(first.success, "{first:?}");
    accepted.await.unwrap();
    let second = probe.check().await;
    assert!(
        !second.success,
        "the listener is closed, yet the probe passed: {second:?}"
    );
    assert!(
        second.detail.starts_with("connection failed"),
        "{}",
        second.detail
    );
}
