//! `[agent]`: the API address, request size and the public status page URL.

use std::net::SocketAddr;

use crate::config::load::Cx;
use crate::config::schema::*;
use crate::probe::http::config::http_url;

pub(super) fn agent(cx: &mut Cx, a: &AgentConfig) {
    if let Err(e) = a.listen.parse::<SocketAddr>() {
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
