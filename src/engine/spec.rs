//! The engine's view of the configuration: only what decisions depend on,
//! already validated and compiled. Built by `config::validate`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::expr::Expr;

#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSpec {
    pub id: String,
    /// Probe type name (`sip`, `http`, `statuspage`, `agents`) for metrics labels.
    pub kind: &'static str,
    /// Consecutive successes to go up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    pub name: String,
    pub profile: String,
    pub priority: i32,
    /// How long `when` must hold before the rule fires.
    pub for_: Duration,
    /// How long `when` must stay false before the rule clears.
    pub clear_for: Duration,
    /// Minimum time the fallback stays on once this rule turned it on.
    pub min_active: Duration,
    pub when: Expr,
    /// Checksum of the rule's configuration: persisted rule state is only
    /// restored onto a rule with the same checksum, so an edited rule does not
    /// inherit stale pending/firing timers.
    pub checksum: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DrillSpec {
    pub name: String,
    pub profile: String,
    pub duration: Duration,
}

impl EngineSpec {
    /// How long an alert from `source` stays active without a new delivery.
    pub fn alert_ttl(&self, source: &str) -> Duration {
        self.alert_ttls
            .get(source)
            .copied()
            .unwrap_or(self.alerts_ttl)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EngineSpec {
    pub probes: std::sync::Arc<[ProbeSpec]>,
    pub rules: Vec<RuleSpec>,
    /// Known profile names (an override naming another profile is rejected).
    pub profiles: Vec<String>,
    pub drills: BTreeMap<String, DrillSpec>,
    pub flap_max: u32,
    pub flap_window: Duration,
    pub alerts_ttl: Duration,
    /// Most alerts active at once; a new one beyond it is dropped
    /// (`Command::AlertDropped`), so no flood makes each step costlier.
    pub alerts_max_active: usize,
    /// Per-source alert TTLs that differ from `alerts_ttl` (senders that only
    /// notify on change, such as PagerDuty, never refresh a firing alert).
    pub alert_ttls: BTreeMap<String, Duration>,
    /// Whether self-check canaries are configured (otherwise the blind guard never engages).
    pub self_check: bool,
    /// How long a self-check takes at most to report (canary timeout plus
    /// delivery): a rule about to fire on probe failures waits at most this
    /// long for a verdict newer than those failures.
    pub self_check_wait: Duration,
}
