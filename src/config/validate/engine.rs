//! `[engine]`: flap latch, self-check canaries, the bound on test calls.

use std::time::Duration;

use super::shared::duration_range;
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
    // The self-check's own parser decides, so a canary that passes here runs.
    for (i, c) in e.self_check.iter().enumerate() {
        if let Err(why) = crate::probe::selfcheck::parse_canary(c) {
            cx.err(format!("engine.self_check[{i}]"), why);
        }
    }
    if !(1..=100).contains(&e.max_concurrent_calls) {
        cx.err(
            "engine.max_concurrent_calls",
            format!(
                "{} is out of range: 1 to 100 test calls in flight (each costs money and holds a line)",
                e.max_concurrent_calls
            ),
        );
    }
    if e.self_check.len() == 1 {
        cx.warn(
            "engine.self_check",
            "one canary: if it alone fails the agent believes itself blind; list two or more",
        );
    }
}
