//! Per-probe hysteresis (HAProxy's rise/fall model).
//!
//! `unknown -> up` after `rise` consecutive successes, `-> down` after `fall`
//! consecutive failures. A probe is *transitioning* while its last results
//! disagree with its health (a failure while up, a success while down) or while
//! it is still unknown; the daemon polls it at `fast_interval` then, so a real
//! change is confirmed (or refuted) quickly, as HAProxy's `fastinter` does.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{ProbeHealth, ProbeOutcome, Timestamp};

use super::spec::ProbeSpec;

/// What the engine remembers about one probe. Persisted in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeState {
    pub health: ProbeHealth,
    /// Consecutive successes since the last failure.
    pub successes: u32,
    /// Consecutive failures since the last success.
    pub failures: u32,
    pub last_detail: Option<String>,
    #[serde(default)]
    pub last_latency_ms: Option<u64>,
    pub last_result_at: Option<Timestamp>,
    /// When `health` last changed (`None`: never, still in its initial state).
    pub last_change: Option<Timestamp>,
    /// When the current run of failures began (`None` after a success). The
    /// blind guard wants a self-check verdict newer than this before a rule
    /// fires on it.
    #[serde(default)]
    pub failing_since: Option<Timestamp>,
    /// Whether the daemon was last told to poll fast. Starts `true` (unknown is
    /// transitioning) so the first confirmation comes quickly.
    pub fast: bool,
}

impl Default for ProbeState {
    fn default() -> Self {
        ProbeState {
            health: ProbeHealth::Unknown,
            successes: 0,
            failures: 0,
            last_detail: None,
            last_latency_ms: None,
            last_result_at: None,
            last_change: None,
            failing_since: None,
            fast: true,
        }
    }
}

/// What one result did to a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeUpdate {
    /// `Some((from, to))` when the health changed.
    pub transition: Option<(ProbeHealth, ProbeHealth)>,
    /// `Some(fast)` when the polling cadence must change.
    pub cadence: Option<bool>,
}

impl ProbeState {
    /// Whether the probe is between states and should be polled fast.
    pub fn transitioning(&self) -> bool {
        match self.health {
            ProbeHealth::Unknown => true,
            ProbeHealth::Up => self.failures > 0,
            ProbeHealth::Down => self.successes > 0,
        }
    }

    /// Applies one result. `rise`/`fall` of 0 are treated as 1: a threshold of
    /// zero results would mean "change without evidence", which is never meant.
    pub fn apply(
        &mut self,
        spec: &ProbeSpec,
        outcome: &ProbeOutcome,
        now: Timestamp,
    ) -> ProbeUpdate {
        let from = self.health;
        if outcome.inconclusive {
            // Says nothing about the target: shown, but counts for nothing.
            self.last_detail = Some(outcome.detail.clone());
            self.last_result_at = Some(now);
            return ProbeUpdate {
                transition: None,
                cadence: None,
            };
        }
        if outcome.success {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            self.failing_since = None;
            if self.health != ProbeHealth::Up && self.successes >= spec.rise.max(1) {
                self.health = ProbeHealth::Up;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            // A state restored from an older snapshot has failures but no
            // start: its first fresh failure starts the run.
            self.failing_since.get_or_insert(now);
            if self.health != ProbeHealth::Down && self.failures >= spec.fall.max(1) {
                self.health = ProbeHealth::Down;
            }
        }
        self.last_detail = Some(outcome.detail.clone());
        self.last_latency_ms = outcome.latency.map(duration_ms);
        self.last_result_at = Some(now);
        let transition = (from != self.health).then(|| {
            self.last_change = Some(now);
            (from, self.health)
        });
        let fast = self.transitioning();
        let cadence = (fast != self.fast).then(|| {
            self.fast = fast;
            fast
        });
        ProbeUpdate {
            transition,
            cadence,
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeHealth::{Down, Unknown, Up};

    fn spec(rise: u32, fall: u32) -> ProbeSpec {
        ProbeSpec {
            id: "p".into(),
            kind: "sip",
            rise,
            fall,
        }
    }

    /// Feeds `results` ('S' success, 'F' failure, 'I' inconclusive) and
    /// returns the health and the fast flag after each one.
    fn run(rise: u32, fall: u32, start: ProbeState, results: &str) -> Vec<(ProbeHealth, bool)> {
        let s = spec(rise, fall);
        let mut st = start;
        results
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let o = match c {
                    'S' => ProbeOutcome::success("ok", None),
                    'I' => ProbeOutcome::inconclusive("Too many open files (os error 24)"),
                    _ => ProbeOutcome::failure("timeout", None),
                };
                st.apply(&s, &o, Timestamp(i as i64 * 1000));
                (st.health, st.fast)
            })
            .collect()
    }

    fn settled(health: ProbeHealth) -> ProbeState {
        ProbeState {
            health,
            fast: false,
            ..ProbeState::default()
        }
    }

    /// Every transition of the probe state machine, with the cadence it implies.
    #[test]
    fn engine_probe_transition_table() {
        type Row = (
            &'static str,
            u32,
            u32,
            ProbeHealth,
            &'static str,
            ProbeHealth,
            bool,
        );
        let table: &[Row] = &[
            // name, rise, fall, start, results, end health, end fast
            (
                "inconclusive results never take an up probe down",
                2,
                3,
                Up,
                "IIIIIIIIII",
                Up,
                false,
            ),
            (
                "inconclusive results neither count nor break a run of failures",
                2,
                3,
                Up,
                "FIIFIF",
                Down,
                false,
            ),
            (
                "inconclusive results never bring a down probe up",
                2,
                3,
                Down,
                "SIIIII",
                Down,
                true,
            ),
            (
                "unknown stays unknown below rise",
                2,
                3,
                Unknown,
                "S",
                Unknown,
                true,
            ),
            (
                "unknown -> up after rise successes",
                2,
                3,
                Unknown,
                "SS",
                Up,
                false,
            ),
            (
                "unknown stays unknown below fall",
                2,
                3,
                Unknown,
                "FF",
                Unknown,
                true,
            ),
            (
                "unknown -> down after fall failures",
                2,
                3,
                Unknown,
                "FFF",
                Down,
                false,
            ),
            (
                "interleaved results never settle",
                2,
                3,
                Unknown,
                "SFSFFSF",
                Unknown,
                true,
            ),
            ("up: one failure is transitioning", 2, 3, Up, "F", Up, true),
            (
                "up: failure then success settles back",
                2,
                3,
                Up,
                "FS",
                Up,
                false,
            ),
            (
                "up -> down after fall failures",
                2,
                3,
                Up,
                "FFF",
                Down,
                false,
            ),
            (
                "up: broken failure run restarts",
                2,
                3,
                Up,
                "FFSFF",
                Up,
                true,
            ),
            (
                "down: one success is transitioning",
                2,
                3,
                Down,
                "S",
                Down,
                true,
            ),
            (
                "down -> up after rise successes",
                2,
                3,
                Down,
                "SS",
                Up,
                false,
            ),
            (
                "down: broken success run restarts",
                2,
                3,
                Down,
                "SFS",
                Down,
                true,
            ),
            (
                "rise=1 fall=1 follows every result",
                1,
                1,
                Up,
                "F",
                Down,
                false,
            ),
            ("rise 0 is treated as 1", 0, 0, Unknown, "S", Up, false),
        ];
        for (name, rise, fall, start, results, health, fast) in table {
            let start = if *start == Unknown {
                ProbeState::default()
            } else {
                settled(*start)
            };
            let got = run(*rise, *fall, start, results);
            let last = got.last().copied().unwrap_or((Unknown, true));
            assert_eq!(last, (*health, *fast), "{name}: {got:?}");
        }
    }

    #[test]
    fn engine_probe_reports_transition_and_cadence_changes_once() {
        let s = spec(2, 2);
        let mut st = settled(Up);
        let f = ProbeOutcome::failure("503 Service Unavailable", Some(Duration::from_millis(40)));
        let u1 = st.apply(&s, &f, Timestamp(1));
        assert_eq!(u1.transition, None);
        assert_eq!(u1.cadence, Some(true));
        let u2 = st.apply(&s, &f, Timestamp(2));
        assert_eq!(u2.transition, Some((Up, Down)));
        assert_eq!(u2.cadence, Some(false));
        let u3 = st.apply(&s, &f, Timestamp(3));
        assert_eq!(
            u3,
            ProbeUpdate {
                transition: None,
                cadence: None
            }
        );
        assert_eq!(st.last_change, Some(Timestamp(2)));
        assert_eq!(st.last_latency_ms, Some(40));
        assert_eq!(st.last_detail.as_deref(), Some("503 Service Unavailable"));
    }
}
