//! Probes: small, honest checks whose only output is a [`ProbeOutcome`].
//!
//! Every probe type lives in its own folder with its tests:
//! - [`sip`]: SIP OPTIONS over UDP (one shared socket per address family), TCP and TLS;
//! - [`http`]: an HTTP endpoint, with expected status codes and an optional JSONPath condition;
//! - [`statuspage`]: a vendor status page (Atlassian Statuspage, incident.io, Instatus);
//! - [`agents`]: the number of available agents read from an HTTP JSON endpoint;
//! - [`selfcheck`]: the agent's own canaries (the engine's blind guard);
//! - [`scheduler`]: one task per probe, normal/fast cadence, results into the engine channel.
//!
//! **Invariants.** A probe never panics on network input and never reports
//! success without a positive answer: a timeout, a refused connection, an
//! unparsable reply or a DNS failure are failures with a detail that says which.
//! The timeout is enforced inside [`Probe::check`], so a hung target costs one
//! task and never delays another probe.

pub mod agents;
pub mod http;
pub mod scheduler;
pub mod selfcheck;
pub mod sip;
pub mod statuspage;

#[cfg(test)]
pub(crate) mod testutil;

use std::time::Duration;

use futures::future::BoxFuture;

use crate::config::schema::{ProbeConfig, ProbeType, defaults};
use crate::domain::ProbeOutcome;

/// One check of one target.
///
/// `check` never fails: every error becomes a failed [`ProbeOutcome`] with a
/// detail an operator can act on. It enforces the probe's timeout itself.
pub trait Probe: Send + Sync {
    /// The configured probe id (`[[probes]] id`).
    fn id(&self) -> &str;
    /// The probe type as in config and metrics labels: `sip`, `http`, `statuspage`, `agents`.
    fn kind(&self) -> &'static str;
    /// Run one attempt.
    fn check(&self) -> BoxFuture<'_, ProbeOutcome>;
}

/// Why a `[[probes]]` entry cannot be turned into a probe. The config
/// validator reports these; `build` repeats the checks so it is safe alone.
#[derive(Debug, thiserror::Error)]
pub enum ProbeBuildError {
    #[error("probe {id}: `{key}` is required for type {kind}")]
    Missing {
        id: String,
        kind: &'static str,
        key: &'static str,
    },
    #[error("probe {id}: invalid `{key}`: {reason}")]
    Invalid {
        id: String,
        key: &'static str,
        reason: String,
    },
}

impl ProbeBuildError {
    pub(crate) fn missing(cfg: &ProbeConfig, key: &'static str) -> Self {
        ProbeBuildError::Missing {
            id: cfg.id.clone(),
            kind: cfg.kind.as_str(),
            key,
        }
    }

    pub(crate) fn invalid(cfg: &ProbeConfig, key: &'static str, reason: impl Into<String>) -> Self {
        ProbeBuildError::Invalid {
            id: cfg.id.clone(),
            key,
            reason: reason.into(),
        }
    }
}

/// Build the probe described by one `[[probes]]` entry.
pub fn build(cfg: &ProbeConfig) -> Result<Box<dyn Probe>, ProbeBuildError> {
    Ok(match cfg.kind {
        ProbeType::Sip => Box::new(sip::SipProbe::from_config(cfg)?),
        ProbeType::Http => Box::new(http::HttpProbe::from_config(cfg)?),
        ProbeType::Statuspage => Box::new(statuspage::StatusPageProbe::from_config(cfg)?),
        ProbeType::Agents => Box::new(agents::AgentsProbe::from_config(cfg)?),
    })
}

/// Build a probe and wrap it with its cadence for [`scheduler::spawn`].
pub fn build_scheduled(cfg: &ProbeConfig) -> Result<scheduler::Scheduled, ProbeBuildError> {
    let probe = build(cfg)?;
    let Cadence {
        interval,
        fast_interval,
        timeout,
    } = Cadence::of(cfg);
    Ok(scheduler::Scheduled {
        probe,
        interval,
        fast_interval,
        timeout,
    })
}

/// How often a probe runs and how long one check may take: the one place
/// the documented defaults are applied, so `check-config` validates the
/// values `run` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    pub interval: Duration,
    pub fast_interval: Duration,
    pub timeout: Duration,
}

impl Cadence {
    /// The configured values, or the per-type defaults (see `schema::defaults`).
    /// A default fast interval or timeout never exceeds the interval.
    pub fn of(cfg: &ProbeConfig) -> Cadence {
        let (interval, timeout) = match cfg.kind {
            ProbeType::Sip => (defaults::PROBE_INTERVAL, defaults::PROBE_TIMEOUT),
            ProbeType::Statuspage => (defaults::STATUSPAGE_INTERVAL, defaults::HTTP_PROBE_TIMEOUT),
            ProbeType::Http | ProbeType::Agents => {
                (defaults::PROBE_INTERVAL, defaults::HTTP_PROBE_TIMEOUT)
            }
        };
        let interval = cfg.interval.unwrap_or(interval).get();
        let or_default = |set: Option<crate::config::Dur>, d: crate::config::Dur| {
            set.map(|v| v.get()).unwrap_or(d.get().min(interval))
        };
        Cadence {
            interval,
            fast_interval: or_default(cfg.fast_interval, defaults::PROBE_FAST_INTERVAL),
            timeout: or_default(cfg.timeout, timeout),
        }
    }
}

/// The probe timeout from config, or the documented default.
pub(crate) fn timeout_of(cfg: &ProbeConfig) -> Duration {
    Cadence::of(cfg).timeout
}

/// `"timeout after 2s"`, `"timeout after 1.5s"`, `"timeout after 500ms"`.
pub(crate) fn timeout_detail(timeout: Duration) -> String {
    format!("timeout after {}", fmt_duration(timeout))
}

/// Compact human duration for details: `850ms`, `2s`, `1.5s`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Round-trip latency for details: `0.4ms` below one millisecond, else whole milliseconds.
pub(crate) fn fmt_latency(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1}ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_scheduled_fills_documented_defaults() {
        let cfg = |v| serde_json::from_value::<ProbeConfig>(v).unwrap();
        let s = build_scheduled(&cfg(serde_json::json!({
            "id": "trunk-a", "type": "sip", "target": "sip:192.0.2.1"
        })))
        .unwrap();
        assert_eq!(s.probe.id(), "trunk-a");
        assert_eq!(s.interval, defaults::PROBE_INTERVAL.get());
        assert_eq!(s.fast_interval, defaults::PROBE_FAST_INTERVAL.get());
        assert_eq!(s.timeout, defaults::PROBE_TIMEOUT.get());

        let s = build_scheduled(&cfg(serde_json::json!({
            "id": "vendor", "type": "statuspage", "url": "https://status.example/api/v2/summary.json",
        })))
        .unwrap();
        assert_eq!(s.interval, defaults::STATUSPAGE_INTERVAL.get());
        assert_eq!(s.fast_interval, defaults::PROBE_FAST_INTERVAL.get());
        assert_eq!(s.timeout, defaults::HTTP_PROBE_TIMEOUT.get());

        for (v, key) in [
            (
                serde_json::json!({"id": "a", "type": "agents", "url": "http://h/"}),
                "value",
            ),
            (serde_json::json!({"id": "s", "type": "statuspage"}), "url"),
        ] {
            let err = build(&cfg(v)).err().unwrap().to_string();
            assert!(err.contains(&format!("`{key}` is required")), "{err}");
        }
    }

    #[test]
    fn durations_render_compactly() {
        assert_eq!(timeout_detail(Duration::from_secs(2)), "timeout after 2s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_latency(Duration::from_micros(400)), "0.4ms");
        assert_eq!(fmt_latency(Duration::from_millis(12)), "12ms");
    }
}
