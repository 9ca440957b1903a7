//! Watching every account converge after the trunk changed: when its
//! engine decided (`continuity_fallback_desired`) and when its Talkdesk had
//! the fallback in that state (the simulator's state, what a caller gets).
//!
//! Polled from the harness thread every `POLL`: reading a gauge and one
//! account's state under its lock costs about a microsecond, so the poll
//! stays well below the agent's own work even at a thousand accounts, and
//! it is counted apart (`usage::Group::Bench`).

use std::time::{Duration, Instant};

use continuity_agent::talkdesk::simulator::AccountHandle;
use continuity_agent::telemetry::AccountMetrics;

const POLL: Duration = Duration::from_millis(10);

/// Per account, how long after `since` it decided and was applied.
pub struct Converged {
    pub decided: Vec<Duration>,
    pub applied: Vec<Duration>,
}

/// Waits until every account's engine wants the fallback `on` (or off) and
/// its Talkdesk has it so; `Err` names how many were still missing at `limit`.
pub fn wait(
    since: Instant,
    limit: Duration,
    on: bool,
    metrics: &[AccountMetrics],
    talkdesk: &[AccountHandle],
) -> Result<Converged, String> {
    let n = talkdesk.len();
    let mut decided: Vec<Option<Duration>> = vec![None; n];
    let mut applied: Vec<Option<Duration>> = vec![None; n];
    let want = i64::from(on);
    loop {
        let now = Instant::now();
        for i in 0..n {
            if decided[i].is_none() && metrics[i].fallback_desired.get() == want {
                decided[i] = Some(now - since);
            }
            if applied[i].is_none() && talkdesk[i].state().enabled == on {
                applied[i] = Some(now - since);
            }
        }
        let missing = applied.iter().filter(|a| a.is_none()).count();
        if missing == 0 {
            // An account applied before its decision was seen (within one
            // poll) decided no later than it was applied.
            let decided = decided
                .iter()
                .zip(&applied)
                .map(|(d, a)| d.unwrap_or_else(|| a.unwrap_or_default()))
                .collect();
            return Ok(Converged {
                decided,
                applied: applied.into_iter().flatten().collect(),
            });
        }
        if now - since > limit {
            return Err(format!(
                "{missing} of {n} accounts still not {} after {limit:?}",
                if on { "on" } else { "off" }
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Every account reads Talkdesk's state back as off (the actuator started,
/// after the engine saw the trunk up): the start is over.
pub fn all_observed_off(metrics: &[AccountMetrics]) -> bool {
    metrics
        .iter()
        .all(|m| m.fallback_actual.get() == 0 && m.fallback_desired.get() == 0)
}
