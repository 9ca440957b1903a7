//! Probes: small, honest checks whose only output is a [`ProbeOutcome`].
//!
//! Every probe type lives in its own folder with its tests and its
//! configuration (`<kind>/config.rs`: keys, documented defaults, checks);
//! [`config`] holds what all types share and turns a `[[probes]]` entry into
//! [`ProbeSettings`], the validated value that [`build`] turns into a probe.
//! `check-config` and `run` go through the same validation, and a probe
//! constructor never re-checks configuration: it can only fail on what the
//! environment refuses (building an HTTP client).
//!
//! - [`sip`]: SIP OPTIONS over UDP (one shared socket per address family), TCP and TLS;
//! - [`http`]: an HTTP endpoint, with expected status codes and an optional JSONPath condition;
//! - [`statuspage`]: a vendor status page (Atlassian Statuspage, incident.io, Instatus);
//! - [`agents`]: the number of available agents read from an HTTP JSON endpoint;
//! - [`call`]: a synthetic inbound test call (INVITE, digest auth, RTP media check);
//! - [`selfcheck`]: the agent's own canaries (the engine's blind guard);
//! - [`scheduler`]: one task per probe, normal/fast cadence, results into the engine channel.
//!
//! **Invariants.** A probe never panics on network input and never reports
//! success without a positive answer: a timeout, a refused connection, an
//! unparsable reply or a DNS failure are failures with a detail that says which.
//! An attempt that failed on this host ([`local`]: out of descriptors,
//! buffers or local addresses) is *inconclusive*, never a failure.
//! The timeout is enforced inside [`Probe::check`], so a hung target costs one
//! task and never delays another probe.

pub mod agents;
pub mod call;
pub mod config;
pub mod http;
pub mod local;
pub mod scheduler;
pub mod selfcheck;
pub mod sip;
pub mod statuspage;

#[cfg(test)]
pub(crate) mod testutil;

use std::time::Duration;

use futures::future::BoxFuture;

use crate::domain::ProbeOutcome;
use crate::telemetry::Metrics;

pub use config::{Cadence, Findings, KindSettings, ProbeConfig, ProbeSettings};

/// One check of one target.
///
/// `check` never fails: every error becomes a failed [`ProbeOutcome`] with a
/// detail an operator can act on. It enforces the probe's timeout itself.
pub trait Probe: Send + Sync {
    /// The configured probe id (`[[probes]] id`).
    fn id(&self) -> &str;
    /// The probe type as in config and metrics labels: `sip`, `http`, `statuspage`, `agents`, `call`.
    fn kind(&self) -> &'static str;
    /// Run one attempt.
    fn check(&self) -> BoxFuture<'_, ProbeOutcome>;
}

/// Why a validated probe could not be built. Configuration problems are
/// caught by validation ([`ProbeConfig::validate`]); only the environment
/// can fail here.
#[derive(Debug, thiserror::Error)]
pub enum ProbeBuildError {
    #[error("probe {id}: {reason}")]
    Client { id: String, reason: String },
}

/// Build the probe a validated `[[probes]]` entry describes, with its own
/// metrics registry (tests and tools; the daemon uses [`build_scheduled`]).
pub fn build(s: &ProbeSettings) -> Result<Box<dyn Probe>, ProbeBuildError> {
    build_with(s, &Metrics::new())
}

/// Build a probe that records its own figures (the call probe's
/// `continuity_call_*`) in `metrics`.
pub fn build_with(s: &ProbeSettings, metrics: &Metrics) -> Result<Box<dyn Probe>, ProbeBuildError> {
    let (id, timeout) = (s.id.as_str(), s.cadence.timeout);
    Ok(match &s.kind {
        KindSettings::Sip(k) => Box::new(sip::SipProbe::from_settings(id, k, timeout)),
        KindSettings::Http(k) => Box::new(http::HttpProbe::new(id, k, timeout)?),
        KindSettings::Statuspage(k) => Box::new(statuspage::StatusPageProbe::new(id, k, timeout)?),
        KindSettings::Agents(k) => Box::new(agents::AgentsProbe::new(id, k, timeout)?),
        KindSettings::Call(k) => Box::new(call::CallProbe::new(id, k, timeout, metrics.clone())),
    })
}

/// Build a probe and wrap it with its cadence for [`scheduler::spawn`].
/// Call probes share `calls`, the global bound on test calls in flight
/// (`engine.max_concurrent_calls`).
pub fn build_scheduled(
    s: &ProbeSettings,
    metrics: &Metrics,
    calls: &scheduler::CallSlots,
) -> Result<scheduler::Scheduled, ProbeBuildError> {
    let probe = match &s.kind {
        KindSettings::Sip(k) => scheduler::Runner::Sip(Box::new(sip::SipProbe::from_settings(
            &s.id,
            k,
            s.cadence.timeout,
        ))),
        _ => scheduler::Runner::Task(build_with(s, metrics)?),
    };
    Ok(scheduler::Scheduled {
        probe,
        interval: s.cadence.interval,
        fast_interval: s.cadence.fast_interval,
        timeout: s.check_budget(),
        slots: matches!(s.kind, KindSettings::Call(_)).then(|| calls.clone()),
    })
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
    fn build_scheduled_runs_the_validated_cadence() {
        let s = testutil::probe_settings(serde_json::json!({
            "id": "vendor", "type": "statuspage", "url": "https://status.example/api/v2/summary.json",
            "interval": "30s", "fast_interval": "3s", "timeout": "4s"
        }));
        let run = build_scheduled(&s, &Metrics::new(), &scheduler::CallSlots::new(1)).unwrap();
        assert_eq!(
            (run.probe.probe().id(), run.probe.probe().kind()),
            ("vendor", "statuspage")
        );
        assert_eq!(
            Cadence {
                interval: run.interval,
                fast_interval: run.fast_interval,
                timeout: run.timeout
            },
            s.cadence
        );
        assert_eq!(s.cadence.timeout, Duration::from_secs(4));
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
