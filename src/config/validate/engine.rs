//! `[engine]`: flap latch and self-check canaries.

use std::time::Duration;

use super::shared::{check_url, duration_range};
use crate::config::load::Cx;
use crate::config::schema::*;

pub(super) fn engine(cx: &mut Cx, e: &EngineConfig) {
    if e.flap_max == 0 {
        cx.err(
            "engine.flap_max",
            "must be >= 1 (transitions allowed within flap_window before latching)",
        );
    }
    duration_range(
        cx,
        "engine.flap_window",
        e.flap_window.get(),
        Duration::from_secs(1),
        Duration::from_secs(7 * 24 * 3600),
    );
    duration_range(
        cx,
        "engine.self_check_interval",
        e.self_check_interval.get(),
        Duration::from_secs(1),
        Duration::from_secs(3600),
    );
    for (i, c) in e.self_check.iter().enumerate() {
        let k = format!("engine.self_check[{i}]");
        if let Some(hp) = c
            .strip_prefix("udp://")
            .or_else(|| c.strip_prefix("tcp://"))
        {
            let ok = hp
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                cx.err(
                    k,
                    format!("{c:?}: write udp://HOST:PORT or tcp://HOST:PORT"),
                );
            }
        } else if let Err(why) = check_url(c, false) {
            cx.err(
                k,
                format!("{why}; canaries are udp://HOST:PORT, tcp://HOST:PORT or http(s) URLs"),
            );
        }
    }
    if e.self_check.len() == 1 {
        cx.warn(
            "engine.self_check",
            "one canary: if it alone fails the agent believes itself blind; list two or more",
        );
    }
}
