//! Domain types shared by every component: what a fallback profile is, what the
//! engine wants (desired) and what Talkdesk has (actual), and the wall-clock
//! timestamp the pure engine receives from outside.
//!
//! These are *internal* types. Wire types (the Talkdesk JSON body, webhook
//! payloads, config TOML) live next to the code that speaks them and convert
//! into these, so a vendor quirk never leaks into the engine.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC).
///
/// The engine never reads a clock: every `step` receives a `Timestamp`. Wall
/// clock (not a monotonic `Instant`) is used because engine state is persisted
/// and must mean the same thing after a restart, as Prometheus' `for` state does.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    /// The current wall-clock time. Only the edges (daemon, probes) call this.
    pub fn now() -> Timestamp {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }

    pub fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating instead of overflowing. (Also available as `+`.)
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_millis(d)))
    }

    /// `self - d`, saturating. (Also available as `-`.)
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_millis(d)))
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is in the future.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// RFC 3339 rendering for logs, audit records and the status API.
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| format!("@{}ms", self.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp::add(self, d)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp::sub(self, d)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The text-to-speech message played while the fallback is on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub text: String,
    /// BCP 47 tag, e.g. `en-US`.
    pub language: String,
}

/// What Talkdesk's continuity settings should contain for one profile.
///
/// Mirrors the documented body of `PUT /fallback-experience/settings`:
/// per-number forwarding, one default external number (per-number entries win
/// over it), and an optional downtime message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FallbackSettings {
    /// Talkdesk number (E.164) -> external number (E.164).
    #[serde(default)]
    pub forward: BTreeMap<String, String>,
    /// External number for every Talkdesk number without its own entry.
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub message: Option<Message>,
}

/// A named, validated set of fallback settings from `[profiles.NAME]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub settings: FallbackSettings,
}

/// What the engine wants Talkdesk to be doing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Desired {
    Inactive,
    Active { profile: String },
}

impl Desired {
    pub fn is_active(&self) -> bool {
        matches!(self, Desired::Active { .. })
    }

    pub fn profile(&self) -> Option<&str> {
        match self {
            Desired::Active { profile } => Some(profile),
            Desired::Inactive => None,
        }
    }
}

impl fmt::Display for Desired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Desired::Inactive => f.write_str("inactive"),
            Desired::Active { profile } => write!(f, "active({profile})"),
        }
    }
}

/// What Talkdesk was last seen doing. `None` fields are unknown (never read,
/// or the last read failed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actual {
    pub enabled: Option<bool>,
    pub settings: Option<FallbackSettings>,
}

impl Actual {
    /// `on`, `off` or `unknown`: the activation as logs and messages say it.
    pub fn activation(&self) -> &'static str {
        match self.enabled {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        }
    }
}

/// `on, settings: default +14155558888, 2 forwards, message en-US` (for
/// logs: never a `Debug` dump).
impl fmt::Display for Actual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, settings: ", self.activation())?;
        match &self.settings {
            Some(s) => write!(f, "{s}"),
            None => f.write_str("unknown"),
        }
    }
}

/// `default +14155558888, 2 forwards, message en-US`.
impl fmt::Display for FallbackSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.default {
            Some(d) => write!(f, "default {d}")?,
            None => f.write_str("no default")?,
        }
        write!(f, ", {} forward(s), ", self.forward.len())?;
        match &self.message {
            Some(m) => write!(f, "message {}", m.language),
            None => f.write_str("no message"),
        }
    }
}

/// Health of one probe as the engine sees it (HAProxy rise/fall model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeHealth {
    Unknown,
    Up,
    Down,
}

impl ProbeHealth {
    /// Value of the `continuity_probe_up` gauge: 1 up, 0 down, -1 unknown.
    pub fn gauge(self) -> i64 {
        match self {
            ProbeHealth::Up => 1,
            ProbeHealth::Down => 0,
            ProbeHealth::Unknown => -1,
        }
    }
}

impl fmt::Display for ProbeHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeHealth::Unknown => "unknown",
            ProbeHealth::Up => "up",
            ProbeHealth::Down => "down",
        })
    }
}

/// The outcome of one probe attempt, produced by `probe/` and consumed by the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    pub success: bool,
    /// Short human explanation: `"200 OK in 12ms"`, `"timeout after 2s"`, `"503 Service Unavailable (not accepted)"`.
    pub detail: String,
    /// Round-trip time when a response arrived.
    #[serde(default, with = "opt_duration_ms")]
    pub latency: Option<Duration>,
    /// The attempt says nothing about the target: it failed on this host
    /// (no file descriptor, no buffer, no local address). It moves neither
    /// the rise nor the fall count, so an agent under resource pressure never
    /// reports a healthy trunk down. `success` is false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inconclusive: bool,
}

impl ProbeOutcome {
    pub fn success(detail: impl Into<String>, latency: Option<Duration>) -> Self {
        ProbeOutcome {
            success: true,
            detail: printable(detail.into()),
            latency,
            inconclusive: false,
        }
    }

    pub fn failure(detail: impl Into<String>, latency: Option<Duration>) -> Self {
        ProbeOutcome {
            success: false,
            detail: printable(detail.into()),
            latency,
            inconclusive: false,
        }
    }

    /// A local resource error: see [`ProbeOutcome::inconclusive`] (the field).
    pub fn inconclusive(detail: impl Into<String>) -> Self {
        ProbeOutcome {
            success: false,
            detail: printable(detail.into()),
            latency: None,
            inconclusive: true,
        }
    }

    /// What this attempt counts as in `continuity_probe_results_total`.
    pub fn result(&self) -> ProbeResult {
        match (self.success, self.inconclusive) {
            (true, _) => ProbeResult::Success,
            (false, true) => ProbeResult::Inconclusive,
            (false, false) => ProbeResult::Failure,
        }
    }
}

/// An attempt's result: the `result` label of
/// `continuity_probe_results_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    Failure,
    /// A local resource error: the agent could not look (`probe::local`).
    Inconclusive,
}

impl ProbeResult {
    /// Every result, in the order of their label values.
    pub const ALL: [ProbeResult; 3] = [
        ProbeResult::Success,
        ProbeResult::Failure,
        ProbeResult::Inconclusive,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ProbeResult::Success => "success",
            ProbeResult::Failure => "failure",
            ProbeResult::Inconclusive => "inconclusive",
        }
    }
}

/// A probe's detail as it may be shown: control characters (terminal escape
/// sequences in a SIP reason phrase or a status page's component name, bare
/// CR/LF that would forge log lines) become U+FFFD, and it is cut at 512
/// characters. Details come from the network; status, logs, the audit log
/// and terminals show them.
fn printable(detail: String) -> String {
    const MAX: usize = 512;
    if detail.len() <= MAX && !detail.chars().any(char::is_control) {
        return detail;
    }
    let mut out: String = detail
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if detail.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// Key of an alert received from a monitoring tool: `(source, fingerprint or id)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    pub source: String,
    pub id: String,
}

impl fmt::Display for AlertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.source, self.id)
    }
}

mod opt_duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_micros() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_details_lose_control_characters_and_excess_length() {
        let o = ProbeOutcome::failure("503 \u{1b}[2J\u{1b}]0;pwned\u{7}Busy\r\nfake: line", None);
        assert_eq!(
            o.detail,
            "503 \u{FFFD}[2J\u{FFFD}]0;pwned\u{FFFD}Busy\u{FFFD}\u{FFFD}fake: line"
        );
        let long = ProbeOutcome::success("x".repeat(2000), None);
        assert_eq!(long.detail.chars().count(), 513);
        assert!(long.detail.ends_with('…'));
        let fine = ProbeOutcome::inconclusive("Too many open files (os error 24)");
        assert_eq!(fine.detail, "Too many open files (os error 24)");
    }

    #[test]
    fn timestamp_arithmetic_saturates_and_never_goes_negative() {
        let t = Timestamp(1_000);
        assert_eq!(t.add(Duration::from_secs(1)), Timestamp(2_000));
        assert_eq!(t.sub(Duration::from_millis(1_500)), Timestamp(-500));
        assert_eq!(Timestamp(0).since(Timestamp(5)), Duration::ZERO);
        assert_eq!(
            Timestamp(i64::MAX).add(Duration::from_secs(1)),
            Timestamp(i64::MAX)
        );
    }

    #[test]
    fn desired_serializes_with_state_tag() {
        let d = Desired::Active {
            profile: "backup".into(),
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"state":"active","profile":"backup"}"#
        );
        assert_eq!(Desired::Inactive.to_string(), "inactive");
    }
}
