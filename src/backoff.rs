//! Exponential backoff with jitter, honouring `Retry-After`: the one retry
//! delay of every loop that calls a remote service again after a failure
//! (the actuator, the break-glass commands, notifications).

use std::time::Duration;

use rand::Rng as _;

/// A `Retry-After` longer than this is capped: the fallback cannot wait an
/// hour because a proxy said so.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

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

#[cfg(test)]
mod tests {
    use super::*;

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
