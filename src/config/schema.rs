//! The configuration file as operators write it: one struct per TOML section,
//! `deny_unknown_fields` everywhere, defaults as documented constants.
//!
//! These structs are the *wire* form. `config::validate` checks them as a
//! whole (cross references, numbers, syntax) and compiles the parts that need
//! it (rules into the engine's AST, probes into `probe::ProbeSettings`,
//! profiles into `domain::Profile`). Every default lives in [`defaults`] with
//! the reason for it, except the probes' and the notification targets':
//! `[[probes]]` entries are `probe::ProbeConfig`, owned with their defaults
//! by `src/probe/`, and `[[notify]]` entries `notify::config::NotifyConfig`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::types::{ByteSize, Dur};
pub use crate::notify::config::{NoticeKind, NotifyConfig, NotifyType};
pub use crate::probe::ProbeConfig;

/// Documented defaults. Each value says why it is what it is.
pub mod defaults {
    use super::*;

    /// Loopback only: the API can force the fallback on, so exposing it is an explicit choice.
    pub const LISTEN: &str = "127.0.0.1:8080";
    /// Alertmanager batches are small; 1 MiB holds thousands of alerts and bounds memory per request.
    pub const MAX_BODY: ByteSize = ByteSize(1 << 20);
    /// Embedded store next to the working directory; zero set-up.
    pub const STORE_URL: &str = "sqlite://state/continuity-agent.db";
    pub const REGION: &str = "us";
    pub const SETTINGS_PATH: &str = "/fallback-experience/settings";
    pub const ACTIVATION_PATH: &str = "/fallback-experience/activation";
    pub const SCOPES: [&str; 2] = [
        "continuity-settings:write",
        "continuity-settings-activation:write",
    ];
    /// Drift (a change made in the Talkdesk UI) is noticed within a minute without hammering the API.
    pub const RECONCILE_INTERVAL: Dur = Dur::from_secs(60);
    /// Every Talkdesk call is bounded; a hung call must not stall convergence.
    /// 5 s, not more: with several replicas a write is sent only while the
    /// lease outlives it (remaining lease > this timeout), and a leader renewing
    /// every `LEASE_TTL / 3` has at least ~6.6 s left at steady state.
    pub const TALKDESK_TIMEOUT: Dur = Dur::from_secs(5);
    /// A change made outside the agent (the UI, break-glass) is kept for an
    /// hour: long enough for the person who made it to finish what they were
    /// doing, short enough that a forgotten one does not outlive the incident.
    pub const DRIFT_OVERRIDE_TTL: Dur = Dur::from_secs(3600);

    // Probe defaults live with each probe type: `probe::config` and `probe/<kind>/config.rs`.

    /// Prometheus' `for` defaults to 0: probe hysteresis (rise/fall) already filters noise.
    pub const RULE_FOR: Dur = Dur::from_secs(0);
    /// Two quiet minutes before calls come back, so a recovering trunk proves itself first.
    pub const RULE_CLEAR_FOR: Dur = Dur::from_secs(120);
    /// Once calls are forwarded, keep them forwarded at least five minutes: flipping
    /// routing back and forth is worse for callers than a short extra fallback period.
    pub const RULE_MIN_ACTIVE: Dur = Dur::from_secs(300);

    /// Automatic on/off transitions allowed within `FLAP_WINDOW`. An outage makes 2, an outage
    /// with one relapse 4, so neither can latch; a trunk failing every few minutes makes a 5th
    /// on its third failure (the table and its test: `docs/tuning.md`,
    /// `engine::tests::flap`). Kibana flags flapping at >= 4 transitions in 20 events.
    pub const FLAP_MAX: u32 = 4;
    pub const FLAP_WINDOW: Dur = Dur::from_secs(30 * 60);
    pub const SELF_CHECK_INTERVAL: Dur = Dur::from_secs(30);
    /// Test calls (`type = "call"` probes) cost money and each holds a line
    /// of the test number: two in flight at once is enough for two numbers
    /// checked on the same cadence, and bounds the bill if many are configured.
    pub const MAX_CONCURRENT_CALLS: u32 = 2;
    /// A lost "resolved" must not hold the fallback on forever (Alertmanager re-sends every
    /// `repeat_interval`, PagerDuty/Opsgenie only on change), so alerts expire unless refreshed.
    pub const ALERTS_TTL: Dur = Dur::from_secs(15 * 60);
    /// Most alerts active at once. A real incident raises tens; 48,000
    /// fingerprints once kept the event loop saturated for ten minutes. New
    /// alerts beyond it are dropped, counted and audited (the first of each
    /// episode), and the ones already active keep deciding.
    pub const ALERTS_MAX_ACTIVE: usize = 1_000;
    /// Every Talkdesk call is audited: without a limit the log only grows.
    /// Thirty days covers a monthly review and any incident's post-mortem.
    pub const AUDIT_RETENTION: Dur = Dur::from_secs(30 * 24 * 3600);
    /// PagerDuty, Opsgenie, Statuspage and Datadog notify only on change: a
    /// firing alert is never refreshed, so `alerts.ttl` would end a real,
    /// still-open incident after 15 minutes and switch calls back too early.
    /// Their alerts instead last a day without news: long enough for any
    /// incident to be resolved explicitly, bounded so a lost "resolved" cannot
    /// hold the fallback on forever.
    pub const CHANGE_ONLY_ALERT_TTL: Dur = Dur::from_secs(24 * 3600);
    /// Sources that re-send firing alerts (so `alerts.ttl` applies to them).
    pub const RESENDING_SOURCES: [&str; 3] = ["alertmanager", "grafana", "generic"];
    /// A forgotten break-glass override must end on its own.
    pub const OVERRIDE_MAX_TTL: Dur = Dur::from_secs(24 * 3600);
    /// Grafana/other signed timestamps older than this are treated as replays.
    pub const SIGNATURE_MAX_SKEW: Dur = Dur::from_secs(300);
    /// client-go uses 15s/10s; we default tighter since actuation is rare but latency matters.
    /// A dead leader is replaced within `lease_ttl` (plus one renewal period).
    pub const LEASE_TTL: Dur = Dur::from_secs(10);
    /// About 2/3 of `LEASE_TTL`: a leader that cannot renew for this long
    /// stops writing, 4 s before its lease can pass to another replica.
    pub const RENEW_DEADLINE: Dur = Dur::from_secs(6);

    /// Who this process is in status, the audit log and the
    /// `X-Continuity-Agent-Instance` header: the host name (a pod's name in
    /// Kubernetes, a container id in compose), `continuity-agent` if unknown.
    pub fn instance_id() -> String {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname(2) writes at most `buf.len()` bytes into `buf`.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        match std::str::from_utf8(&buf[..end]) {
            Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
            _ => "continuity-agent".to_string(),
        }
    }

    pub fn scopes() -> Vec<String> {
        SCOPES.iter().map(|s| s.to_string()).collect()
    }
}

macro_rules! default_fn {
    ($($name:ident: $ty:ty = $val:expr;)*) => {
        $(fn $name() -> $ty { $val })*
    };
}

default_fn! {
    d_listen: String = defaults::LISTEN.to_string();
    d_max_body: ByteSize = defaults::MAX_BODY;
    d_store_url: String = defaults::STORE_URL.to_string();
    d_region: String = defaults::REGION.to_string();
    d_settings_path: String = defaults::SETTINGS_PATH.to_string();
    d_activation_path: String = defaults::ACTIVATION_PATH.to_string();
    d_scopes: Vec<String> = defaults::scopes();
    d_reconcile: Dur = defaults::RECONCILE_INTERVAL;
    d_td_timeout: Dur = defaults::TALKDESK_TIMEOUT;
    d_drift_ttl: Dur = defaults::DRIFT_OVERRIDE_TTL;
    d_rule_for: Dur = defaults::RULE_FOR;
    d_clear_for: Dur = defaults::RULE_CLEAR_FOR;
    d_min_active: Dur = defaults::RULE_MIN_ACTIVE;
    d_flap_max: u32 = defaults::FLAP_MAX;
    d_flap_window: Dur = defaults::FLAP_WINDOW;
    d_self_check_interval: Dur = defaults::SELF_CHECK_INTERVAL;
    d_max_concurrent_calls: u32 = defaults::MAX_CONCURRENT_CALLS;
    d_alerts_ttl: Dur = defaults::ALERTS_TTL;
    d_alerts_max_active: usize = defaults::ALERTS_MAX_ACTIVE;
    d_alerts_rate_per_second: u32 = crate::alerts::ratelimit::DEFAULT_PER_SECOND;
    d_alerts_rate_burst: u32 = crate::alerts::ratelimit::DEFAULT_BURST;
    d_audit_retention: Dur = defaults::AUDIT_RETENTION;
    d_override_max_ttl: Dur = defaults::OVERRIDE_MAX_TTL;
    d_max_skew: Dur = defaults::SIGNATURE_MAX_SKEW;
    d_lease_ttl: Dur = defaults::LEASE_TTL;
    d_renew_deadline: Dur = defaults::RENEW_DEADLINE;
}

/// The whole file. Sections that are absent take their defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub talkdesk: TalkdeskConfig,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// Shared, not copied, by every account's view (`Config::for_account`).
    #[serde(default)]
    pub probes: Arc<[ProbeConfig]>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub maintenance: Vec<MaintenanceConfig>,
    #[serde(default)]
    pub drills: Vec<DrillConfig>,
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    #[serde(default)]
    pub notify: Vec<NotifyConfig>,
    /// `[[accounts]]`, in file order. When present, the top-level
    /// [`ACCOUNT_SECTIONS`] are absent (validation refuses the mix) and hold
    /// their defaults: each account has its own.
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
}

/// Top-level section names, in file order (used to report unknown sections).
pub const SECTIONS: &[&str] = &[
    "agent",
    "store",
    "talkdesk",
    "profiles",
    "probes",
    "rules",
    "engine",
    "alerts",
    "maintenance",
    "drills",
    "webhooks",
    "api",
    "cluster",
    "notify",
    "accounts",
];

/// The sections each account has of its own: at the top level for a file
/// with one account, inside each `[[accounts]]` element otherwise.
pub const ACCOUNT_SECTIONS: &[&str] = &["talkdesk", "profiles", "rules", "maintenance", "drills"];

/// `[[accounts]]`: one Talkdesk account with its own credentials, profiles,
/// rules, maintenance windows and drills. Probes, webhook sources and every
/// other section are shared by all accounts.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// In URLs, metric labels and store rows: `^[a-z0-9][a-z0-9_-]{0,62}$`.
    pub id: String,
    #[serde(default)]
    pub talkdesk: TalkdeskConfig,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub maintenance: Vec<MaintenanceConfig>,
    #[serde(default)]
    pub drills: Vec<DrillConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Address of the HTTP API (webhooks, override, status, metrics).
    #[serde(default = "d_listen")]
    pub listen: String,
    /// Log and audit every Talkdesk write without making it.
    #[serde(default)]
    pub dry_run: bool,
    /// Largest accepted request body.
    #[serde(default = "d_max_body")]
    pub max_body: ByteSize,
    /// Most API connections open at once; more are closed as they arrive.
    /// Also capped at a quarter of the process's file-descriptor limit, so
    /// the probes always keep descriptors of their own.
    #[serde(default = "d_max_connections")]
    pub max_connections: u32,
    /// Longest wait for a request's headers; also how long a kept-alive
    /// connection may sit idle before it is closed (slow clients and idle
    /// connections cannot pile up).
    #[serde(default = "d_header_read_timeout")]
    pub header_read_timeout: Dur,
    /// Serve the API over TLS with this certificate chain (PEM)...
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// ...and this private key (PEM). Both or neither.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Where people reach this agent's status page (`GET /`), e.g. behind a
    /// proxy: the link in every notification. No link when unset.
    #[serde(default)]
    pub public_url: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: d_listen(),
            dry_run: false,
            max_body: d_max_body(),
            max_connections: d_max_connections(),
            header_read_timeout: d_header_read_timeout(),
            tls_cert_file: None,
            tls_key_file: None,
            public_url: None,
        }
    }
}

fn d_max_connections() -> u32 {
    512
}
fn d_header_read_timeout() -> Dur {
    Dur::from_secs(10)
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (embedded, default) or `postgres://...` (several replicas).
    #[serde(default = "d_store_url")]
    pub url: String,
    /// PostgreSQL only: a file holding the password, when the URL has none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `password_file`'s content, read by validation.
    #[serde(skip)]
    pub password: Option<SecretString>,
    /// Audit records older than this are deleted (hourly, by the leader).
    #[serde(default = "d_audit_retention")]
    pub audit_retention: Dur,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: d_store_url(),
            password_file: None,
            audit_retention: d_audit_retention(),
            password: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    /// Undo a change made elsewhere (the Talkdesk UI) and restore the desired
    /// state, loudly (WARN, audit, `continuity_drift_total{action="corrected"}`).
    Correct,
    /// Adopt a change made elsewhere as an override for `drift_override_ttl`.
    /// The default: the agent never silently fights its operators.
    #[default]
    Respect,
}

impl OnDrift {
    /// The configuration's spelling, for logs and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDrift::Correct => "correct",
            OnDrift::Respect => "respect",
        }
    }
}

impl std::fmt::Display for OnDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TalkdeskConfig {
    /// `us`, `eu` or `ca`; picks `api_base` and the token host unless they are given.
    #[serde(default = "d_region")]
    pub region: String,
    /// Account name: the token URL is `https://{account}.talkdeskid.com/oauth/token` (per region).
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub api_base: Option<String>,
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default = "d_scopes")]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default = "d_settings_path")]
    pub settings_path: String,
    #[serde(default = "d_activation_path")]
    pub activation_path: String,
    #[serde(default = "d_reconcile")]
    pub reconcile_interval: Dur,
    #[serde(default)]
    pub on_drift: OnDrift,
    /// How long a change adopted under `on_drift = "respect"` lasts (the
    /// override's TTL) before the rules decide again.
    #[serde(default = "d_drift_ttl")]
    pub drift_override_ttl: Dur,
    /// Timeout of each Talkdesk request (token, settings, activation).
    #[serde(default = "d_td_timeout")]
    pub request_timeout: Dur,
}

impl Default for TalkdeskConfig {
    fn default() -> Self {
        TalkdeskConfig {
            region: d_region(),
            account: None,
            api_base: None,
            token_url: None,
            scopes: d_scopes(),
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            settings_path: d_settings_path(),
            activation_path: d_activation_path(),
            reconcile_interval: d_reconcile(),
            on_drift: OnDrift::default(),
            drift_override_ttl: d_drift_ttl(),
            request_timeout: d_td_timeout(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageConfig {
    pub text: String,
    pub language: String,
}

/// `[profiles.NAME]`: what the fallback does when this profile is selected.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Talkdesk number -> external number, both E.164.
    #[serde(default)]
    pub forward: BTreeMap<String, String>,
    /// External number for every number without its own entry.
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub message: Option<MessageConfig>,
}

impl ProfileConfig {
    /// What callers get while this profile is active, in one line for people
    /// (status page, notifications, CLI): the one home of this wording.
    /// Forwarded numbers come first, then the default, then the message.
    pub fn callers_get(&self) -> String {
        let parts = self.callers_get_parts();
        if parts.is_empty() {
            "nothing configured".to_string()
        } else {
            parts.join("; ")
        }
    }

    /// [`callers_get`](Self::callers_get) one item at a time (the status
    /// page lists them); empty when nothing is configured.
    pub fn callers_get_parts(&self) -> Vec<String> {
        let mut parts: Vec<String> = self
            .forward
            .iter()
            .map(|(from, to)| format!("{from} forwarded to {to}"))
            .collect();
        if let Some(d) = &self.default {
            parts.push(if self.forward.is_empty() {
                format!("every number forwarded to {d}")
            } else {
                format!("every other number forwarded to {d}")
            });
        }
        if let Some(m) = &self.message {
            let who = if parts.is_empty() {
                "callers hear"
            } else {
                "others hear"
            };
            parts.push(format!("{who} ({}): \"{}\"", m.language, m.text));
        }
        parts
    }
}

/// Settings read back from Talkdesk, worded like a profile (the status page
/// says what callers get when Talkdesk has settings no profile has, such as
/// a change made in the Talkdesk UI).
impl From<&crate::domain::FallbackSettings> for ProfileConfig {
    fn from(s: &crate::domain::FallbackSettings) -> Self {
        ProfileConfig {
            forward: s.forward.clone(),
            default: s.default.clone(),
            message: s.message.as_ref().map(|m| MessageConfig {
                text: m.text.clone(),
                language: m.language.clone(),
            }),
        }
    }
}

/// A rule condition as written in TOML. Exactly one of the kinds must be set;
/// `at_least` goes with `down`/`up`/`unknown`. Compiled into `engine::Expr`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    #[serde(default)]
    pub down: Option<String>,
    #[serde(default)]
    pub up: Option<String>,
    #[serde(default)]
    pub unknown: Option<String>,
    #[serde(default)]
    pub at_least: Option<u32>,
    #[serde(default)]
    pub alert: Option<Vec<String>>,
    #[serde(default)]
    pub all: Option<Vec<ConditionConfig>>,
    #[serde(default)]
    pub any: Option<Vec<ConditionConfig>>,
    #[serde(default)]
    pub not: Option<Box<ConditionConfig>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub profile: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(rename = "for", default = "d_rule_for")]
    pub for_: Dur,
    #[serde(default = "d_clear_for")]
    pub clear_for: Dur,
    #[serde(default = "d_min_active")]
    pub min_active: Dur,
    pub when: ConditionConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    #[serde(default = "d_flap_max")]
    pub flap_max: u32,
    #[serde(default = "d_flap_window")]
    pub flap_window: Dur,
    /// Canaries for the blind guard: `udp://host:port`, `tcp://host:port`, `http(s)://...`.
    #[serde(default)]
    pub self_check: Vec<String>,
    #[serde(default = "d_self_check_interval")]
    pub self_check_interval: Dur,
    /// Test calls of all `call` probes in flight at once.
    #[serde(default = "d_max_concurrent_calls")]
    pub max_concurrent_calls: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            flap_max: d_flap_max(),
            flap_window: d_flap_window(),
            self_check: Vec::new(),
            self_check_interval: d_self_check_interval(),
            max_concurrent_calls: d_max_concurrent_calls(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default = "d_alerts_ttl")]
    pub ttl: Dur,
    #[serde(default = "d_alerts_max_active")]
    pub max_active: usize,
    /// Webhook deliveries per second each credential may sustain (0: no limit).
    #[serde(default = "d_alerts_rate_per_second")]
    pub rate_per_second: u32,
    /// ...and send at once.
    #[serde(default = "d_alerts_rate_burst")]
    pub rate_burst: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            ttl: d_alerts_ttl(),
            max_active: d_alerts_max_active(),
            rate_per_second: d_alerts_rate_per_second(),
            rate_burst: d_alerts_rate_burst(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    pub name: String,
    /// 6 fields, seconds first, UTC.
    pub cron: String,
    pub duration: Dur,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    pub name: String,
    pub cron: String,
    pub profile: String,
    pub duration: Dur,
}

/// Credentials a webhook source accepts. Which ones apply depends on the source
/// (validation says so): bearer/basic for most, HMAC for Grafana and PagerDuty,
/// a custom header for Datadog/Opsgenie, a secret path token for Statuspage.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(default, skip_serializing)]
    pub bearer_token: Option<SecretString>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub basic_user: Option<String>,
    #[serde(default, skip_serializing)]
    pub basic_password: Option<SecretString>,
    #[serde(default)]
    pub basic_password_file: Option<PathBuf>,
    #[serde(default, skip_serializing)]
    pub hmac_secret: Option<SecretString>,
    #[serde(default)]
    pub hmac_secret_file: Option<PathBuf>,
    /// Grafana: header carrying the signed timestamp (enables replay protection).
    #[serde(default)]
    pub timestamp_header: Option<String>,
    #[serde(default = "d_max_skew")]
    pub max_skew: Dur,
    /// Datadog/Opsgenie: name of a custom header carrying `header_value`.
    #[serde(default)]
    pub header_name: Option<String>,
    #[serde(default, skip_serializing)]
    pub header_value: Option<SecretString>,
    #[serde(default)]
    pub header_value_file: Option<PathBuf>,
    /// How long an alert from this source stays active without a new delivery.
    /// Default: `alerts.ttl` for sources that re-send while firing
    /// (alertmanager, grafana, generic); `CHANGE_ONLY_ALERT_TTL` for sources
    /// that only notify on change (pagerduty, opsgenie, statuspage, datadog).
    #[serde(default)]
    pub ttl: Option<Dur>,
    /// Statuspage: secret path segment, `POST /v1/alerts/statuspage/{token}`.
    #[serde(default, skip_serializing)]
    pub path_token: Option<SecretString>,
    #[serde(default)]
    pub path_token_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    #[serde(default)]
    pub alertmanager: Option<WebhookConfig>,
    #[serde(default)]
    pub grafana: Option<WebhookConfig>,
    #[serde(default)]
    pub pagerduty: Option<WebhookConfig>,
    #[serde(default)]
    pub datadog: Option<WebhookConfig>,
    #[serde(default)]
    pub opsgenie: Option<WebhookConfig>,
    #[serde(default)]
    pub statuspage: Option<WebhookConfig>,
    #[serde(default)]
    pub generic: Option<WebhookConfig>,
}

impl WebhooksConfig {
    /// Configured sources with their names, in a stable order.
    pub fn sources(&self) -> Vec<(&'static str, &WebhookConfig)> {
        Self::ALL
            .into_iter()
            .zip([
                &self.alertmanager,
                &self.grafana,
                &self.pagerduty,
                &self.datadog,
                &self.opsgenie,
                &self.statuspage,
                &self.generic,
            ])
            .filter_map(|(n, c)| c.as_ref().map(|c| (n, c)))
            .collect()
    }

    /// Every webhook source this build knows, configured or not.
    pub const ALL: [&'static str; 7] = [
        "alertmanager",
        "grafana",
        "pagerduty",
        "datadog",
        "opsgenie",
        "statuspage",
        "generic",
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `GET /v1/status`, `/v1/events`, the status page.
    Read,
    /// `PUT`/`DELETE /v1/override`.
    Override,
    /// `POST /v1/alerts/*` with an API token.
    Alerts,
    /// `POST /-/reload`: reload the configuration.
    Admin,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    pub name: String,
    #[serde(default, skip_serializing)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub scopes: Vec<Scope>,
    /// The accounts (`[[accounts]]` ids) this token may read and act on;
    /// absent: every account.
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default)]
    pub tokens: Vec<ApiTokenConfig>,
    #[serde(default = "d_override_max_ttl")]
    pub override_max_ttl: Dur,
    /// The status page at `/` is readable without a token (its actions
    /// still need an `override` token).
    #[serde(default)]
    pub public_status: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tokens: Vec::new(),
            override_max_ttl: d_override_max_ttl(),
            public_status: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    #[serde(default = "defaults::instance_id")]
    pub instance_id: String,
    #[serde(default = "d_lease_ttl")]
    pub lease_ttl: Dur,
    #[serde(default = "d_renew_deadline")]
    pub renew_deadline: Dur,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_get_names_forwards_default_and_message_in_that_order() {
        let mut p = ProfileConfig::default();
        assert_eq!(p.callers_get(), "nothing configured");
        p.default = Some("+15550000".into());
        assert_eq!(p.callers_get(), "every number forwarded to +15550000");
        p.forward.insert("+1111".into(), "+2222".into());
        p.message = Some(MessageConfig {
            text: "We are sorry".into(),
            language: "en-US".into(),
        });
        assert_eq!(
            p.callers_get(),
            "+1111 forwarded to +2222; every other number forwarded to +15550000; \
             others hear (en-US): \"We are sorry\""
        );
        let only_message = ProfileConfig {
            message: p.message.clone(),
            ..Default::default()
        };
        assert_eq!(
            only_message.callers_get(),
            "callers hear (en-US): \"We are sorry\""
        );
    }

    /// Settings read back from Talkdesk are worded exactly like the profile
    /// they came from.
    #[test]
    fn talkdesk_settings_read_like_a_profile() {
        let settings = crate::domain::FallbackSettings {
            forward: [("+1111".to_string(), "+2222".to_string())].into(),
            default: Some("+15550000".into()),
            message: Some(crate::domain::Message {
                text: "We are sorry".into(),
                language: "en-US".into(),
            }),
        };
        let p = ProfileConfig::from(&settings);
        assert_eq!(
            p.callers_get_parts(),
            [
                "+1111 forwarded to +2222",
                "every other number forwarded to +15550000",
                "others hear (en-US): \"We are sorry\"",
            ]
        );
        assert!(ProfileConfig::default().callers_get_parts().is_empty());
    }
}
