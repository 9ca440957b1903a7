//! Failpoints: named places where a test of the real binary makes the agent
//! fail on purpose, to check what the rest of it does then (the actuator
//! supervisor's exit, a restart's restore).
//!
//! Debug builds only. `CONTINUITY_AGENT_FAILPOINTS` (read once, a
//! comma-separated list of names) arms them; an armed failpoint panics with
//! its name. In a release build [`hit`] is an empty inline function, so
//! the binary operators run has none.
//!
//! Hand-written rather than the `fail` crate: that crate arms failpoints
//! only when built with its `failpoints` feature, and the integration tests
//! run the binary cargo builds for them with the package's default features.
//!
//! The failpoints (one line each, where they are hit):
//! - `talkdesk.write`: the actuator, before each write to Talkdesk
//!   (`talkdesk/apply.rs`).

/// The environment variable that arms failpoints (debug builds only).
pub const ENV: &str = "CONTINUITY_AGENT_FAILPOINTS";

/// Panics if the failpoint `name` is armed (debug builds only).
#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    static ARMED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(ENV).unwrap_or_default());
    if is_armed(armed, name) {
        panic!("failpoint {name} is armed ({ENV})");
    }
}

/// Does nothing: release builds have no failpoints.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Whether `list` (the variable's value) names `name`.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
fn is_armed(list: &str, name: &str) -> bool {
    list.split(',').any(|armed| armed.trim() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failpoint_is_armed_only_by_its_exact_name() {
        assert!(is_armed("talkdesk.write", "talkdesk.write"));
        assert!(is_armed("a, talkdesk.write ,b", "talkdesk.write"));
        assert!(!is_armed("", "talkdesk.write"));
        assert!(!is_armed("talkdesk", "talkdesk.write"));
        assert!(!is_armed("talkdesk.write.x", "talkdesk.write"));
    }
}
