//! Test helpers shared by the probe folders: local HTTP servers and configs.

use std::net::SocketAddr;

use super::{ProbeConfig, ProbeSettings};

/// Serve `router` on 127.0.0.1 with an ephemeral port until the test's runtime ends.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A `[[probes]]` entry from JSON, as the config loader would produce it.
pub fn probe_config(v: serde_json::Value) -> ProbeConfig {
    serde_json::from_value(v).unwrap()
}

/// A valid `[[probes]]` entry from JSON, validated (panics with the findings).
pub fn probe_settings(v: serde_json::Value) -> ProbeSettings {
    probe_config(v).settings().unwrap_or_else(|f| panic!("{f}"))
}

/// A TCP port on 127.0.0.1 with nothing listening.
pub fn closed_tcp_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
