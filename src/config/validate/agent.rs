//! `[agent]`: the API address, its limits and TLS, and the public status
//! page URL.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::shared::duration_range;
use crate::config::load::Cx;
use crate::config::schema::*;
use crate::probe::http::config::http_url;

pub(super) fn agent(cx: &mut Cx, a: &mut AgentConfig, base: &Path) {
    let listen = a.listen.parse::<SocketAddr>();
    if let Err(e) = &listen {
        cx.err(
            "agent.listen",
            format!("{:?} is not an address like 127.0.0.1:8080: {e}", a.listen),
        );
    }
    if a.max_body.0 == 0 || a.max_body.0 > 64 << 20 {
        cx.err(
            "agent.max_body",
            format!("{} is out of range (1B to 64MiB)", a.max_body),
        );
    }
    if !(1..=65_536).contains(&a.max_connections) {
        cx.err(
            "agent.max_connections",
            format!("{} is out of range (1 to 65536)", a.max_connections),
        );
    }
    duration_range(
        cx,
        "agent.header_read_timeout",
        a.header_read_timeout.get(),
        Duration::from_secs(1),
        Duration::from_secs(300),
    );
    public_url(cx, a);
    let tls = tls(cx, a, base);
    if let Ok(addr) = listen
        && !addr.ip().is_loopback()
        && !tls
    {
        cx.warn(
            "agent.listen",
            format!(
                "{addr} is reachable beyond this host and the API has no TLS: tokens and webhook \
                 credentials cross the network in clear; set agent.tls_cert_file and \
                 agent.tls_key_file, or put a TLS proxy in front"
            ),
        );
    }
}

/// Both TLS files or neither; relative paths against the config file's
/// directory; the pair is loaded now so a bad one fails `check-config`.
/// Returns whether the API will serve TLS.
fn tls(cx: &mut Cx, a: &mut AgentConfig, base: &Path) -> bool {
    for file in [&mut a.tls_cert_file, &mut a.tls_key_file]
        .into_iter()
        .flatten()
    {
        if file.is_relative() {
            *file = base.join(&*file);
        }
    }
    match (&a.tls_cert_file, &a.tls_key_file) {
        (None, None) => false,
        (Some(cert), Some(key)) => {
            if let Err(why) = crate::server::tls::server_config(cert, key) {
                cx.err("agent.tls_cert_file", why);
            }
            true
        }
        (Some(_), None) => {
            cx.err(
                "agent.tls_key_file",
                "missing: tls_cert_file needs its private key",
            );
            true
        }
        (None, Some(_)) => {
            cx.err(
                "agent.tls_cert_file",
                "missing: tls_key_file needs its certificate chain",
            );
            true
        }
    }
}

/// `agent.public_url`: the status page as people reach it, linked from
/// every notification.
fn public_url(cx: &mut Cx, a: &AgentConfig) {
    if let Some(u) = &a.public_url {
        match http_url(u) {
            Err(why) => cx.err("agent.public_url", why),
            // Shown in every notification: it must not carry a password.
            Ok(url) if !url.username().is_empty() || url.password().is_some() => cx.err(
                "agent.public_url",
                "must not contain a user name or password: it is shown in every notification",
            ),
            Ok(_) => {}
        }
    }
}
