//! Exponential backoff with jitter, honouring `Retry-After`: the one retry
//! delay of every loop that calls a remote service again after a failure
//! (the actuator, the break-glass commands, notifications), and the
//! `Retry-After` header it honours.

use std::time::Duration;

use rand::Rng as _;

/// A `Retry-After` longer than this is capped: the fallback cannot wait an
/// hour, or five minutes per attempt, because a proxy said so. Twice the
/// actuator's default `backoff_max`: a server that asks for a pause still
/// gets one.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// Delay before retry number `attempt` (1-based): exponential from `min`,
/// capped at `max`, with "equal jitter" (half fixed, half random) so replicas
/// and restarts spread out but never retry instantly; at least the server's
/// `Retry-After` (capped at [`RETRY_AFTER_CAP`]).
pub fn backoff_delay(
    min: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = min
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max.max(min));
    let half = exp / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis().min(u64::MAX as u128) as u64);
    let delay = half + Duration::from_millis(jitter_ms);
    match retry_after {
        Some(ra) => delay.max(ra.min(RETRY_AFTER_CAP)),
        None => delay,
    }
}

/// Parse a `Retry-After` header: delay-seconds or an HTTP date (RFC 9110 10.2.3).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..30 {
            let d = backoff_delay(min, max, attempt, None);
            let exp = (min * 2u32.pow((attempt - 1).min(20))).min(max);
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempt}: {d:?} vs {exp:?}"
            );
        }
        let d = backoff_delay(min, max, 1, Some(Duration::from_secs(3)));
        assert_eq!(d, Duration::from_secs(3));
        let d = backoff_delay(min, max, 1, Some(Duration::from_secs(3600)));
        assert_eq!(d, RETRY_AFTER_CAP);
    }
}
