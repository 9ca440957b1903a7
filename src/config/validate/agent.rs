//! `[agent]`: the API address and request size.

use std::net::SocketAddr;

use crate::config::load::Cx;
use crate::config::schema::*;

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
}
