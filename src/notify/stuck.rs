//! Stuck actuation: Talkdesk has not matched the decision for longer than a
//! target's `stuck_after`. Decided from the actuator's own status (what it
//! wants, since when it differs, its attempts and last error), never from
//! log text.
//!
//! [`StuckWatch`] is pure: the daemon's loop shows it the actuator's status
//! while this replica leads and its actuator runs, and sends what it returns.
//! Each threshold (the distinct `stuck_after` values of the targets) is
//! reported once per divergence; when Talkdesk matches again, every
//! threshold reported gets its end. A dry run never converges by design and
//! a fenced actuator is not the leader's, so neither is stuck. It is reset
//! for each leadership term; the first time a term finds Talkdesk matching
//! with nothing reported, it says so once (`Settled`, for PagerDuty only).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::domain::Timestamp;
use crate::talkdesk::ActuatorStatus;

use super::notice::{Notice, StuckPhase, What};

#[derive(Debug, Default)]
pub struct StuckWatch {
    /// Thresholds reported for the current divergence.
    reported: BTreeSet<Duration>,
    /// When the current divergence started (the actuator's `since`).
    episode: Option<Timestamp>,
    /// Talkdesk was seen matching in this term.
    settled: bool,
}

impl StuckWatch {
    pub fn new() -> StuckWatch {
        StuckWatch::default()
    }

    /// A new leadership term (a new actuator): what earlier terms reported
    /// is theirs.
    pub fn reset(&mut self) {
        *self = StuckWatch::default();
    }

    /// The notices due for `status` at `now`, given the targets' thresholds.
    pub fn observe(
        &mut self,
        status: &ActuatorStatus,
        thresholds: &[Duration],
        now: Timestamp,
    ) -> Vec<Notice> {
        let Some(desired) = &status.desired else {
            return Vec::new();
        };
        let notice = |phase, after, since| Notice {
            at: now,
            desired: desired.clone(),
            what: What::Stuck {
                phase,
                after,
                since,
                attempts: status.attempts,
                last_error: status.last_error.as_ref().map(|e| e.message.clone()),
                blocked: status.blocked,
                talkdesk_enabled: status.actual.enabled,
            },
        };
        let mut out = Vec::new();
        if status.converged {
            if self.reported.is_empty() && !self.settled {
                out.push(notice(StuckPhase::Settled, Duration::ZERO, None));
            }
            let episode = self.episode.take();
            out.extend(
                std::mem::take(&mut self.reported)
                    .into_iter()
                    .map(|t| notice(StuckPhase::Ended, t, episode)),
            );
            self.settled = true;
            return out;
        }
        let Some(since) = status.since else {
            return out;
        };
        if status.dry_run || status.fenced {
            return out;
        }
        if self.episode != Some(since) {
            // A new divergence: the previous one ended unseen between two looks.
            let episode = self.episode.replace(since);
            out.extend(
                std::mem::take(&mut self.reported)
                    .into_iter()
                    .map(|t| notice(StuckPhase::Ended, t, episode)),
            );
        }
        for t in thresholds {
            if !self.reported.contains(t) && now >= since.add(*t) {
                out.push(notice(StuckPhase::Started, *t, Some(since)));
                self.reported.insert(*t);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Desired;
    use crate::talkdesk::actuator::LastError;

    const MIN: Duration = Duration::from_secs(60);

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    fn diverged(since: i64, attempts: u32) -> ActuatorStatus {
        ActuatorStatus {
            desired: Some(Desired::Active {
                profile: "backup".into(),
            }),
            since: Some(t(since)),
            attempts,
            last_error: Some(LastError {
                at: t(since),
                message: "HTTP 503".into(),
                kind: "server_error".into(),
                status: Some(503),
                retryable: true,
                fields: vec![],
            }),
            ..ActuatorStatus::default()
        }
    }

    fn converged() -> ActuatorStatus {
        ActuatorStatus {
            desired: Some(Desired::Inactive),
            converged: true,
            ..ActuatorStatus::default()
        }
    }

    fn phases(notices: &[Notice]) -> Vec<(StuckPhase, u64)> {
        notices
            .iter()
            .map(|n| match &n.what {
                What::Stuck { phase, after, .. } => (*phase, after.as_secs()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn each_threshold_fires_once_per_divergence_and_ends_when_talkdesk_matches() {
        let mut w = StuckWatch::new();
        let th = [MIN, 2 * MIN];
        assert!(w.observe(&diverged(0, 1), &th, t(59)).is_empty());
        let first = w.observe(&diverged(0, 3), &th, t(60));
        assert_eq!(phases(&first), [(StuckPhase::Started, 60)]);
        match &first[0].what {
            What::Stuck {
                since,
                attempts,
                last_error,
                ..
            } => {
                assert_eq!((*since, *attempts), (Some(t(0)), 3));
                assert_eq!(last_error.as_deref(), Some("HTTP 503"));
            }
            other => panic!("{other:?}"),
        }
        assert!(w.observe(&diverged(0, 4), &th, t(90)).is_empty(), "once");
        assert_eq!(
            phases(&w.observe(&diverged(0, 6), &th, t(125))),
            [(StuckPhase::Started, 120)]
        );
        assert_eq!(
            phases(&w.observe(&converged(), &th, t(130))),
            [(StuckPhase::Ended, 60), (StuckPhase::Ended, 120)]
        );
        assert!(w.observe(&converged(), &th, t(140)).is_empty());
    }

    #[test]
    fn a_term_that_finds_talkdesk_matching_settles_once() {
        let mut w = StuckWatch::new();
        assert_eq!(
            phases(&w.observe(&converged(), &[MIN], t(0))),
            [(StuckPhase::Settled, 0)]
        );
        assert!(w.observe(&converged(), &[MIN], t(1)).is_empty());
        w.reset();
        assert_eq!(phases(&w.observe(&converged(), &[MIN], t(2))).len(), 1);
    }

    #[test]
    fn dry_run_and_fenced_actuators_are_never_stuck() {
        let mut w = StuckWatch::new();
        let mut dry = diverged(0, 0);
        dry.dry_run = true;
        assert!(w.observe(&dry, &[MIN], t(3600)).is_empty());
        let mut fenced = diverged(0, 0);
        fenced.fenced = true;
        assert!(w.observe(&fenced, &[MIN], t(3600)).is_empty());
    }

    #[test]
    fn a_new_divergence_first_ends_the_one_that_ended_unseen() {
        let mut w = StuckWatch::new();
        assert_eq!(w.observe(&diverged(0, 5), &[MIN], t(60)).len(), 1);
        let next = w.observe(&diverged(100, 1), &[MIN], t(160));
        assert_eq!(
            phases(&next),
            [(StuckPhase::Ended, 60), (StuckPhase::Started, 60)]
        );
    }
}
