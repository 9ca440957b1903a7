//! Shared helpers for integration tests that drive real peers: sipp, the
//! agent binary, the Talkdesk simulator, PostgreSQL, headless Chromium. Each
//! test binary includes what it uses with `mod support;`.
#![allow(dead_code)]

pub mod agent;
pub mod alertmanager;
pub mod browser;
pub mod inproc;
pub mod pg;
pub mod receiver;
pub mod sipp;

use std::net::UdpSocket;

/// A port free on 127.0.0.1 for both UDP and TCP right now.
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `[store]` in `dir` and `[talkdesk]` pointing at the simulator at `sim`
/// (its default credentials), reconciling every second: the common head of
/// the integration tests' configurations.
pub fn store_and_talkdesk(dir: &std::path::Path, sim: &str) -> String {
    format!(
        r#"
[store]
url = "sqlite://{db}"
[talkdesk]
account = "demo"
api_base = "{sim}"
token_url = "{sim}/oauth/token"
client_id = "demo"
client_secret = "demo-secret"
reconcile_interval = "1s"
"#,
        db = dir.join("state.db").display(),
    )
}

/// A deadline for a store append (`Store::append_inputs`) far enough away
/// that no test append not about slowness comes near it.
pub fn soon() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(60)
}
