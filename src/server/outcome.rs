//! What Talkdesk did with an operator's change, for the answer to
//! `PUT /v1/override`: the decision is persisted first (as always), then the
//! handler may wait a bounded time (`?wait=`) for the actuator to apply it,
//! and answers with the actuator's state either way. Waiting reads the
//! actuator's status channel; it never calls Talkdesk itself.

use std::time::Duration;

use crate::domain::{Desired, Timestamp};
use crate::talkdesk::actuator::{ActuatorHandle, ActuatorStatus};

use super::wire::TalkdeskOutcome;

/// The longest `?wait=`: under the API's request timeout (10 s), so the
/// answer always arrives, with the actuator's state at the deadline.
pub const WAIT_MAX: Duration = Duration::from_secs(9);

/// Waits up to `wait` for Talkdesk to match `desired` (or for the actuator to
/// say it will not try: blocked, dry run, fenced), then reports.
pub async fn await_talkdesk(
    handle: &ActuatorHandle,
    desired: &Desired,
    wait: Duration,
) -> TalkdeskOutcome {
    let started = Timestamp::now();
    let mut rx = handle.subscribe();
    let settled = |st: &ActuatorStatus| {
        st.desired.as_ref() == Some(desired)
            && (st.converged || st.blocked || st.dry_run || st.fenced)
    };
    let status = match tokio::time::timeout(wait.min(WAIT_MAX), rx.wait_for(|st| settled(st))).await
    {
        Ok(Ok(st)) => st.clone(),
        // Deadline, or the actuator is gone (shutting down): as it is now.
        _ => handle.status(),
    };
    outcome(&status, desired, started)
}

/// The actuator's state as it concerns `desired`. An error is reported only
/// while Talkdesk does not match, and only if it is from this attempt
/// (`since` the request), so a failure already repaired is not shown.
pub fn outcome(st: &ActuatorStatus, desired: &Desired, since: Timestamp) -> TalkdeskOutcome {
    let on_it = st.desired.as_ref() == Some(desired);
    let matches = on_it && st.converged && !st.dry_run;
    let error = match (&st.last_error, matches) {
        (Some(e), false) if e.at >= since || st.blocked => Some(e.message.clone()),
        _ => None,
    };
    TalkdeskOutcome {
        matches,
        actual: st.actual.clone(),
        attempts: if matches { 0 } else { st.attempts },
        error,
        retrying: !matches && !st.blocked && !st.dry_run && !st.fenced,
        dry_run: st.dry_run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::talkdesk::actuator::LastError;

    fn error_at(at: i64) -> LastError {
        LastError {
            at: Timestamp(at),
            message: "Talkdesk answered 503".into(),
            kind: "server_error".into(),
            status: Some(503),
            retryable: true,
            fields: vec![],
        }
    }

    #[test]
    fn an_outcome_reports_only_errors_that_still_matter() {
        let on = Desired::Active {
            profile: "backup".into(),
        };
        let converged = ActuatorStatus {
            desired: Some(on.clone()),
            converged: true,
            last_error: Some(error_at(500)),
            ..ActuatorStatus::default()
        };
        let o = outcome(&converged, &on, Timestamp(1000));
        assert!(o.matches && o.error.is_none() && !o.retrying, "{o:?}");

        let failing = ActuatorStatus {
            converged: false,
            attempts: 2,
            last_error: Some(error_at(1500)),
            ..converged.clone()
        };
        let o = outcome(&failing, &on, Timestamp(1000));
        assert!(!o.matches && o.retrying, "{o:?}");
        assert_eq!(o.error.as_deref(), Some("Talkdesk answered 503"));

        let stale = ActuatorStatus {
            last_error: Some(error_at(500)),
            ..failing.clone()
        };
        assert_eq!(outcome(&stale, &on, Timestamp(1000)).error, None);

        let blocked = ActuatorStatus {
            blocked: true,
            ..stale
        };
        let o = outcome(&blocked, &on, Timestamp(1000));
        assert!(!o.retrying && o.error.is_some(), "{o:?}");

        let elsewhere = ActuatorStatus {
            desired: Some(Desired::Inactive),
            ..converged
        };
        assert!(!outcome(&elsewhere, &on, Timestamp(1000)).matches);
    }
}
