//! Whole-configuration validation. Runs after every section was parsed (or
//! failed to), checks values, syntax and cross references, reads `*_file`
//! secrets and compiles rules. Adds every problem to the context; never stops
//! early.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::load::{Cx, raw_labels};
use super::schema::*;
use super::{Config, ConfigErrors, Strictness};
use crate::domain::{FallbackSettings, Message, ProbeHealth, Profile};
use crate::engine::expr::{self, Expr};
use crate::engine::spec::{ProbeSpec, RuleSpec};
use crate::probe::{Findings, ProbeSettings};

/// E.164: `+`, country code not starting with 0, at most 15 digits.
static E164: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\+[1-9][0-9]{1,14}$").expect("valid regex"));
/// Probe ids, rule names, profile names: safe in metrics labels, URLs and globs.
static IDENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$").expect("valid regex"));
static SCOPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9-]*(:[a-z][a-z0-9-]*)+$").expect("valid regex"));
static ACCOUNT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9-]{0,62}$").expect("valid regex"));

/// Talkdesk's TTS message: long enough for a real announcement, short enough to
/// be spoken in well under a minute (about 150 words per minute).
pub const MESSAGE_MAX_CHARS: usize = 1000;
const REGIONS: &[&str] = &["us", "eu", "ca"];
const REQUIRED_SCOPES: &[(&str, &str)] = &[
    ("continuity-settings:write", "write the fallback settings"),
    (
        "continuity-settings-activation:write",
        "switch the fallback on and off",
    ),
];

pub(super) fn validate(
    mut raw: RawConfig,
    cx: &mut Cx,
    base: &Path,
    strictness: Strictness,
) -> Result<Config, ConfigErrors> {
    agent(cx, &raw.agent);
    store(cx, &raw.store, raw.cluster.as_ref());
    talkdesk(cx, &mut raw.talkdesk, base, strictness);
    let profiles = profiles(cx, &raw.profiles);
    // Names that exist even if their element failed to parse, so that a broken
    // element produces one error, not one more per reference to it.
    let mut profile_names: BTreeSet<String> = profiles.keys().cloned().collect();
    profile_names.extend(raw_labels(cx, "profiles", ""));
    let probe_settings = probes(cx, &raw.probes);
    let probe_specs: Vec<ProbeSpec> = probe_settings
        .iter()
        .map(|s| ProbeSpec {
            id: s.id.clone(),
            kind: s.kind_name(),
            rise: s.rise,
            fall: s.fall,
        })
        .collect();
    let mut probe_ids: Vec<String> = Vec::new();
    for id in raw
        .probes
        .iter()
        .map(|p| p.common.id.clone())
        .chain(raw_labels(cx, "probes", "id"))
    {
        if !probe_ids.contains(&id) {
            probe_ids.push(id);
        }
    }
    let alert_inputs = !raw.webhooks.sources().is_empty()
        || raw
            .api
            .tokens
            .iter()
            .any(|t| t.scopes.contains(&Scope::Alerts));
    let rules = rules(
        cx,
        &raw.rules,
        &profile_names,
        &probe_ids,
        &probe_specs,
        alert_inputs,
    );
    engine(cx, &raw.engine);
    if raw.alerts.ttl.get() < Duration::from_secs(10) {
        cx.err(
            "alerts.ttl",
            format!(
                "{} is too short: alerts would expire between deliveries (use >= 10s)",
                raw.alerts.ttl
            ),
        );
    }
    calendar(cx, &raw.maintenance, &raw.drills, &profile_names);
    webhooks(cx, &mut raw.webhooks, base);
    api(cx, &mut raw.api, base);
    notify(cx, &mut raw.notify, base);
    if raw.agent.dry_run {
        cx.warn(
            "agent.dry_run",
            "dry_run is on: Talkdesk calls are logged and audited but not made",
        );
    }

    if cx.errors.is_empty() {
        Ok(Config {
            origin: cx.origin().to_string(),
            raw,
            profiles,
            probes: probe_specs,
            probe_settings,
            rules,
            warnings: std::mem::take(&mut cx.warnings),
        })
    } else {
        Err(ConfigErrors {
            errors: std::mem::take(&mut cx.errors),
            warnings: std::mem::take(&mut cx.warnings),
        })
    }
}

fn agent(cx: &mut Cx, a: &AgentConfig) {
    if let Err(e) = a.listen.parse::<SocketAddr>() {
        cx.err(
            "agent.listen",
            format!("{:?} is not an address like 127.0.0.1:8080: {e}", a.listen),
        );
    }
    if a.max_body.0 == 0 || a.max_body.0 > 64 << 20 {
        cx.err(
            "agent.max_body",
            format!("{} is out of range (1B to 64MiB)", a.max_body),
        );
    }
}

fn store(cx: &mut Cx, s: &StoreConfig, cluster: Option<&ClusterConfig>) {
    let postgres = s.url.starts_with("postgres://") || s.url.starts_with("postgresql://");
    if let Some(path) = s.url.strip_prefix("sqlite://") {
        if path.is_empty() {
            cx.err(
                "store.url",
                "sqlite:// needs a file path, e.g. sqlite://state/continuity-agent.db",
            );
        }
    } else if !postgres {
        cx.err(
            "store.url",
            format!("{:?}: use sqlite://PATH or postgres://USER@HOST/DB", s.url),
        );
    } else {
        // Honest rather than a surprise at `run`: a config that validates must run.
        cx.err(
            "store.url",
            "the PostgreSQL store (several replicas with leader election) is not available in this build yet; use sqlite://PATH",
        );
    }
    if let Some(c) = cluster {
        if !postgres {
            cx.err("cluster", "[cluster] needs a postgres store: replicas share state and elect a leader through PostgreSQL");
        }
        if !IDENT.is_match(&c.instance_id) {
            cx.err(
                "cluster.instance_id",
                format!(
                    "{:?} must be 1-64 letters, digits, '.', '_' or '-'",
                    c.instance_id
                ),
            );
        }
        if c.renew_deadline >= c.lease_ttl {
            cx.err(
                "cluster.renew_deadline",
                format!("must be shorter than lease_ttl ({} >= {}): a leader must step down before its lease can pass to another", c.renew_deadline, c.lease_ttl),
            );
        }
    }
}

fn talkdesk(cx: &mut Cx, t: &mut TalkdeskConfig, base: &Path, strictness: Strictness) {
    let required = strictness == Strictness::Daemon;
    let known_region = REGIONS.contains(&t.region.as_str());
    if !known_region && (t.api_base.is_none() || t.token_url.is_none()) {
        cx.err(
            "talkdesk.region",
            format!("unknown region {:?}; use us, eu or ca, or set both api_base and token_url explicitly", t.region),
        );
    }
    if let Some(acc) = &t.account {
        if !ACCOUNT.is_match(acc) {
            cx.err(
                "talkdesk.account",
                format!("{acc:?} is not a Talkdesk account name (lowercase letters, digits, '-')"),
            );
        }
    } else if t.token_url.is_none() && required {
        cx.err(
            "talkdesk.account",
            "missing: set account (the token URL is derived from it) or token_url",
        );
    }
    for (key, value) in [
        ("talkdesk.api_base", &t.api_base),
        ("talkdesk.token_url", &t.token_url),
    ] {
        if let Some(u) = value
            && let Err(why) = check_url(u, true)
        {
            cx.err(key, why);
        }
    }
    for (i, s) in t.scopes.iter().enumerate() {
        if !SCOPE.is_match(s) {
            cx.err(
                format!("talkdesk.scopes[{i}]"),
                format!("{s:?} is not a scope like \"continuity-settings:write\""),
            );
        }
    }
    for (scope, why) in REQUIRED_SCOPES {
        if !t.scopes.iter().any(|s| s == scope) {
            cx.err(
                "talkdesk.scopes",
                format!("must include {scope:?} (needed to {why})"),
            );
        }
    }
    for (key, p) in [
        ("talkdesk.settings_path", &t.settings_path),
        ("talkdesk.activation_path", &t.activation_path),
    ] {
        if !p.starts_with('/') || p.contains(char::is_whitespace) {
            cx.err(key, format!("{p:?} must be a path starting with '/'"));
        }
    }
    match &t.client_id {
        Some(id) if id.trim().is_empty() => cx.err("talkdesk.client_id", "must not be empty"),
        None if required => cx.err(
            "talkdesk.client_id",
            "missing: the OAuth client id of a Client Credentials app",
        ),
        _ => {}
    }
    secret(
        cx,
        "talkdesk.client_secret",
        &mut t.client_secret,
        &t.client_secret_file,
        base,
        required,
    );
    duration_range(
        cx,
        "talkdesk.reconcile_interval",
        t.reconcile_interval.get(),
        Duration::from_secs(1),
        Duration::from_secs(3600),
    );
    duration_range(
        cx,
        "talkdesk.request_timeout",
        t.request_timeout.get(),
        Duration::from_millis(100),
        Duration::from_secs(120),
    );
}

fn profiles(cx: &mut Cx, raw: &BTreeMap<String, ProfileConfig>) -> BTreeMap<String, Profile> {
    let mut out = BTreeMap::new();
    for (name, p) in raw {
        let key = format!("profiles.{name}");
        let before = cx.errors.len();
        if !IDENT.is_match(name) {
            cx.err(
                &key,
                format!("profile name {name:?} must be 1-64 letters, digits, '.', '_' or '-'"),
            );
        }
        for (from, to) in &p.forward {
            if from == "default" {
                cx.err(
                    format!("{key}.forward.default"),
                    "write `default = \"+1...\"` beside `forward`, not inside it",
                );
                continue;
            }
            if !E164.is_match(from) {
                cx.err(
                    format!("{key}.forward.\"{from}\""),
                    format!("{from:?} is not an E.164 number (like +14155550100)"),
                );
            }
            if !E164.is_match(to) {
                cx.err(
                    format!("{key}.forward.\"{from}\""),
                    format!("target {to:?} is not an E.164 number (like +14155559999)"),
                );
            }
            if from == to {
                cx.err(
                    format!("{key}.forward.\"{from}\""),
                    "forwards a number to itself: calls would loop",
                );
            }
        }
        if let Some(d) = &p.default
            && !E164.is_match(d)
        {
            cx.err(
                format!("{key}.default"),
                format!("{d:?} is not an E.164 number (like +14155558888)"),
            );
        }
        if let Some(m) = &p.message {
            let chars = m.text.trim().chars().count();
            if chars == 0 {
                cx.err(format!("{key}.message.text"), "must not be empty");
            } else if chars > MESSAGE_MAX_CHARS {
                cx.err(
                    format!("{key}.message.text"),
                    format!("{chars} characters; at most {MESSAGE_MAX_CHARS}"),
                );
            }
            if let Err(why) = check_language(&m.language) {
                cx.err(format!("{key}.message.language"), why);
            }
        }
        if p.forward.is_empty() && p.default.is_none() && p.message.is_none() {
            cx.err(&key, "does nothing: set forward, default or message");
        }
        if cx.errors.len() == before {
            let settings = FallbackSettings {
                forward: p.forward.clone(),
                default: p.default.clone(),
                message: p.message.as_ref().map(|m| Message {
                    text: m.text.trim().to_string(),
                    language: m.language.clone(),
                }),
            };
            out.insert(
                name.clone(),
                Profile {
                    name: name.clone(),
                    settings,
                },
            );
        }
    }
    out
}

/// BCP 47, checked against the IANA registry (language-tags' embedded copy).
fn check_language(tag: &str) -> Result<(), String> {
    let parsed = language_tags::LanguageTag::parse(tag)
        .map_err(|e| format!("{tag:?} is not a BCP 47 language tag (like en-US): {e}"))?;
    parsed
        .validate()
        .map_err(|e| format!("{tag:?} is not a valid BCP 47 language tag: {e}"))
}

/// Each entry checks itself (`probe::ProbeConfig::validate`); what needs
/// the whole list (unique ids) is checked here.
fn probes(cx: &mut Cx, raw: &[ProbeConfig]) -> Vec<ProbeSettings> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let id = &p.common.id;
        let key = format!("probes[{}] ({id})", cx.index("probes", i));
        if !IDENT.is_match(id) {
            cx.err(format!("{key}.id"), "must be 1-64 letters, digits, '.', '_' or '-' (it is used in metrics labels and globs)");
        }
        if !seen.insert(id.clone()) {
            cx.err(format!("{key}.id"), format!("duplicate probe id {id:?}"));
        }
        let mut found = Findings::default();
        let settings = p.validate(&mut found);
        for f in found.errors {
            cx.err(format!("{key}.{}", f.key), f.reason);
        }
        for f in found.warnings {
            cx.warn(format!("{key}.{}", f.key), f.reason);
        }
        out.extend(settings);
    }
    out
}

/// `http(s)://host...`; plain http only for loopback when `https_only`
/// (credentials must not cross a network in clear text, but the local
/// simulator speaks plain HTTP).
fn check_url(u: &str, https_only: bool) -> Result<(), String> {
    let url = url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if !https_only || loopback => {}
        "http" => {
            return Err(format!(
                "{u:?} must use https (plain http is only allowed for localhost)"
            ));
        }
        other => return Err(format!("{u:?}: scheme {other:?} is not http or https")),
    }
    if url.host().is_none() {
        return Err(format!("{u:?} has no host"));
    }
    Ok(())
}

fn rules(
    cx: &mut Cx,
    raw: &[RuleConfig],
    profile_names: &BTreeSet<String>,
    probe_ids: &[String],
    probe_specs: &[ProbeSpec],
    alert_inputs: bool,
) -> Vec<RuleSpec> {
    let ids: Vec<&str> = probe_ids.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("rules[{}] ({})", cx.index("rules", i), r.name);
        if !IDENT.is_match(&r.name) {
            cx.err(
                format!("{key}.name"),
                "must be 1-64 letters, digits, '.', '_' or '-'",
            );
        }
        if !seen.insert(r.name.clone()) {
            cx.err(
                format!("{key}.name"),
                format!("duplicate rule name {:?}", r.name),
            );
        }
        if !profile_names.contains(&r.profile) {
            cx.err(
                format!("{key}.profile"),
                unknown_profile(&r.profile, profile_names),
            );
        }
        duration_range(
            cx,
            &format!("{key}.for"),
            r.for_.get(),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        duration_range(
            cx,
            &format!("{key}.clear_for"),
            r.clear_for.get(),
            Duration::ZERO,
            Duration::from_secs(24 * 3600),
        );
        duration_range(
            cx,
            &format!("{key}.min_active"),
            r.min_active.get(),
            Duration::ZERO,
            Duration::from_secs(24 * 3600),
        );
        if r.clear_for.get().is_zero() {
            cx.warn(format!("{key}.clear_for"), "0s: calls come back the instant the condition clears, with no proof the recovery holds");
        }
        match expr::compile(&r.when, &format!("{key}.when"), &ids) {
            Err(errs) => errs.into_iter().for_each(|e| cx.err(e.path, e.reason)),
            Ok(when) => {
                if r.for_.get().is_zero()
                    && let Some(probe) = single_fall_one_trigger(&when, probe_specs)
                {
                    cx.warn(
                            format!("{key}.for"),
                            format!("0s with probe {probe:?} (fall = 1): one failed check switches real calls to the fallback; raise fall or for"),
                        );
                }
                if when.uses_alerts() && !when.uses_probes() && !alert_inputs {
                    cx.warn(format!("{key}.when"), "uses only alerts, but no [webhooks.*] source or API token with the alerts scope is configured");
                }
                out.push(RuleSpec {
                    name: r.name.clone(),
                    profile: r.profile.clone(),
                    priority: r.priority,
                    for_: r.for_.get(),
                    clear_for: r.clear_for.get(),
                    min_active: r.min_active.get(),
                    when,
                    checksum: checksum(r),
                });
            }
        }
    }
    out
}

/// A `down` leaf that a single probe with `fall = 1` can satisfy on its own.
fn single_fall_one_trigger(e: &Expr, specs: &[ProbeSpec]) -> Option<String> {
    match e {
        Expr::Probes {
            state: ProbeHealth::Down,
            probes,
            at_least,
            ..
        } => {
            let needed = at_least.map(|n| n as usize).unwrap_or(probes.len());
            if needed != 1 {
                return None;
            }
            probes
                .iter()
                .find(|id| specs.iter().any(|s| &s.id == *id && s.fall == 1))
                .cloned()
        }
        Expr::Probes { .. } | Expr::Alert { .. } | Expr::Not(_) => None,
        Expr::Any(v) => v.iter().find_map(|c| single_fall_one_trigger(c, specs)),
        Expr::All(v) if v.len() == 1 => single_fall_one_trigger(&v[0], specs),
        Expr::All(_) => None,
    }
}

/// Ties persisted rule state to the rule that produced it (gatus' `Checksum()`).
fn checksum(r: &RuleConfig) -> String {
    let json = serde_json::to_vec(r).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..8])
}

fn unknown_profile(name: &str, known: &BTreeSet<String>) -> String {
    let list = if known.is_empty() {
        "none are defined".to_string()
    } else {
        known.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    format!("unknown profile {name:?} (profiles: {list})")
}

fn engine(cx: &mut Cx, e: &EngineConfig) {
    if e.flap_max == 0 {
        cx.err(
            "engine.flap_max",
            "must be >= 1 (transitions allowed within flap_window before latching)",
        );
    }
    duration_range(
        cx,
        "engine.flap_window",
        e.flap_window.get(),
        Duration::from_secs(1),
        Duration::from_secs(7 * 24 * 3600),
    );
    duration_range(
        cx,
        "engine.self_check_interval",
        e.self_check_interval.get(),
        Duration::from_secs(1),
        Duration::from_secs(3600),
    );
    for (i, c) in e.self_check.iter().enumerate() {
        let k = format!("engine.self_check[{i}]");
        if let Some(hp) = c
            .strip_prefix("udp://")
            .or_else(|| c.strip_prefix("tcp://"))
        {
            let ok = hp
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                cx.err(
                    k,
                    format!("{c:?}: write udp://HOST:PORT or tcp://HOST:PORT"),
                );
            }
        } else if let Err(why) = check_url(c, false) {
            cx.err(
                k,
                format!("{why}; canaries are udp://HOST:PORT, tcp://HOST:PORT or http(s) URLs"),
            );
        }
    }
    if e.self_check.len() == 1 {
        cx.warn(
            "engine.self_check",
            "one canary: if it alone fails the agent believes itself blind; list two or more",
        );
    }
}

fn calendar(
    cx: &mut Cx,
    maint: &[MaintenanceConfig],
    drills: &[DrillConfig],
    profile_names: &BTreeSet<String>,
) {
    let mut seen = BTreeSet::new();
    for (i, m) in maint.iter().enumerate() {
        let key = format!("maintenance[{}] ({})", cx.index("maintenance", i), m.name);
        if !seen.insert(m.name.clone()) {
            cx.err(
                format!("{key}.name"),
                format!("duplicate maintenance window {:?}", m.name),
            );
        }
        if let Err(why) = check_cron(&m.cron) {
            cx.err(format!("{key}.cron"), why);
        }
        duration_range(
            cx,
            &format!("{key}.duration"),
            m.duration.get(),
            Duration::from_secs(1),
            Duration::from_secs(7 * 24 * 3600),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, d) in drills.iter().enumerate() {
        let key = format!("drills[{}] ({})", cx.index("drills", i), d.name);
        if !seen.insert(d.name.clone()) {
            cx.err(
                format!("{key}.name"),
                format!("duplicate drill {:?}", d.name),
            );
        }
        if let Err(why) = check_cron(&d.cron) {
            cx.err(format!("{key}.cron"), why);
        }
        if !profile_names.contains(&d.profile) {
            cx.err(
                format!("{key}.profile"),
                unknown_profile(&d.profile, profile_names),
            );
        }
        duration_range(
            cx,
            &format!("{key}.duration"),
            d.duration.get(),
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600),
        );
    }
}

/// 6 fields, seconds first, parsed exactly as tokio-cron-scheduler will.
pub fn check_cron(expr: &str) -> Result<(), String> {
    let n = expr.split_whitespace().count();
    if n != 6 {
        return Err(format!(
            "{expr:?} has {n} fields; write 6, seconds first (e.g. \"0 0 8 * * Sun\")"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| format!("{expr:?} is not a valid cron expression: {e}"))
}

/// Which credentials each webhook source understands.
fn webhooks(cx: &mut Cx, w: &mut WebhooksConfig, base: &Path) {
    type Slot<'a> = (&'static str, &'a mut Option<WebhookConfig>);
    let slots: [Slot; 7] = [
        ("alertmanager", &mut w.alertmanager),
        ("grafana", &mut w.grafana),
        ("pagerduty", &mut w.pagerduty),
        ("datadog", &mut w.datadog),
        ("opsgenie", &mut w.opsgenie),
        ("statuspage", &mut w.statuspage),
        ("generic", &mut w.generic),
    ];
    for (source, slot) in slots {
        let Some(c) = slot.as_mut() else { continue };
        let key = format!("webhooks.{source}");
        secret(
            cx,
            &format!("{key}.bearer_token"),
            &mut c.bearer_token,
            &c.bearer_token_file,
            base,
            false,
        );
        secret(
            cx,
            &format!("{key}.basic_password"),
            &mut c.basic_password,
            &c.basic_password_file,
            base,
            false,
        );
        secret(
            cx,
            &format!("{key}.hmac_secret"),
            &mut c.hmac_secret,
            &c.hmac_secret_file,
            base,
            false,
        );
        secret(
            cx,
            &format!("{key}.header_value"),
            &mut c.header_value,
            &c.header_value_file,
            base,
            false,
        );
        secret(
            cx,
            &format!("{key}.path_token"),
            &mut c.path_token,
            &c.path_token_file,
            base,
            false,
        );
        let has = |o: &Option<SecretString>| o.is_some();
        let kinds: [(&str, bool); 5] = [
            ("bearer_token", has(&c.bearer_token)),
            (
                "basic_password",
                has(&c.basic_password) || c.basic_user.is_some(),
            ),
            ("hmac_secret", has(&c.hmac_secret)),
            (
                "header_value",
                has(&c.header_value) || c.header_name.is_some(),
            ),
            ("path_token", has(&c.path_token)),
        ];
        let allowed: &[&str] = match source {
            "alertmanager" | "generic" => &["bearer_token", "basic_password"],
            "grafana" => &["bearer_token", "basic_password", "hmac_secret"],
            "pagerduty" => &["hmac_secret", "header_value"],
            "datadog" | "opsgenie" => &["bearer_token", "basic_password", "header_value"],
            _ => &["path_token"],
        };
        for (k, set) in kinds {
            if set && !allowed.contains(&k) {
                cx.err(
                    format!("{key}.{k}"),
                    format!(
                        "{source} cannot send this credential; it supports {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        if !kinds.iter().any(|(k, set)| *set && allowed.contains(k)) {
            cx.err(
                &key,
                format!(
                    "no credential: an open webhook lets anyone switch calls; set one of {}",
                    allowed.join(", ")
                ),
            );
        }
        if c.basic_user.is_some() != c.basic_password.is_some() {
            cx.err(
                format!("{key}.basic_user"),
                "basic_user and basic_password go together",
            );
        }
        if c.header_name.is_some() != c.header_value.is_some() {
            cx.err(
                format!("{key}.header_name"),
                "header_name and header_value go together",
            );
        }
        if let Some(h) = &c.header_name
            && axum::http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            cx.err(
                format!("{key}.header_name"),
                format!("{h:?} is not a valid HTTP header name"),
            );
        }
        if c.timestamp_header.is_some() && c.hmac_secret.is_none() {
            cx.err(
                format!("{key}.timestamp_header"),
                "only meaningful with hmac_secret (the timestamp is part of the signature)",
            );
        }
        if let Some(ttl) = c.ttl {
            duration_range(
                cx,
                &format!("{key}.ttl"),
                ttl.get(),
                Duration::from_secs(10),
                Duration::from_secs(7 * 24 * 3600),
            );
        }
        if c.max_skew.get() < Duration::from_secs(1) {
            cx.err(format!("{key}.max_skew"), "must be >= 1s");
        }
        if let Some(t) = &c.path_token {
            let t = t.expose_secret();
            if t.len() < 16
                || !t
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                cx.err(format!("{key}.path_token"), "must be at least 16 URL-safe characters (letters, digits, '-', '_'): it is the only protection");
            }
        }
    }
}

fn api(cx: &mut Cx, a: &mut ApiConfig, base: &Path) {
    let mut names = BTreeSet::new();
    for (i, t) in a.tokens.iter_mut().enumerate() {
        let key = format!("api.tokens[{i}] ({})", t.name);
        if !names.insert(t.name.clone()) {
            cx.err(
                format!("{key}.name"),
                format!("duplicate token name {:?}", t.name),
            );
        }
        secret(
            cx,
            &format!("{key}.token"),
            &mut t.token,
            &t.token_file,
            base,
            true,
        );
        if let Some(tok) = &t.token
            && tok.expose_secret().len() < 16
        {
            cx.err(format!("{key}.token"), "must be at least 16 characters");
        }
        if t.scopes.is_empty() {
            cx.err(
                format!("{key}.scopes"),
                "must list at least one of read, override, alerts",
            );
        }
    }
    duration_range(
        cx,
        "api.override_max_ttl",
        a.override_max_ttl.get(),
        Duration::from_secs(60),
        Duration::from_secs(30 * 24 * 3600),
    );
}

fn notify(cx: &mut Cx, list: &mut [NotifyConfig], base: &Path) {
    if !list.is_empty() {
        cx.warn(
            "notify",
            "notifications (slack, teams, webhook) are not sent by this build yet; decisions are in the logs, metrics and audit log",
        );
    }
    for (i, n) in list.iter_mut().enumerate() {
        let key = format!("notify[{}]", cx.index("notify", i));
        secret(
            cx,
            &format!("{key}.url"),
            &mut n.url,
            &n.url_file,
            base,
            true,
        );
        if let Some(u) = &n.url
            && let Err(why) = check_url(u.expose_secret(), true)
        {
            // The URL is a secret (Slack webhook URLs carry a token): do not echo it.
            let why = if why.contains("https") {
                "must be an https URL"
            } else {
                "is not a valid URL"
            };
            cx.err(format!("{key}.url"), why);
        }
    }
}

/// Resolves `key` / `key_file`: exactly one may be set; a file is read now
/// (relative paths against the config file's directory), trailing newline
/// trimmed. Errors never contain the secret.
fn secret(
    cx: &mut Cx,
    key: &str,
    inline: &mut Option<SecretString>,
    file: &Option<PathBuf>,
    base: &Path,
    required: bool,
) {
    match (inline.is_some(), file) {
        (true, Some(_)) => cx.err(
            key,
            format!("set `{}` or `{}_file`, not both", leaf(key), leaf(key)),
        ),
        (false, Some(path)) => {
            let full = if path.is_absolute() {
                path.clone()
            } else {
                base.join(path)
            };
            match std::fs::read_to_string(&full) {
                Ok(s) => {
                    let s = s.trim_end_matches(['\n', '\r']).to_string();
                    if s.is_empty() {
                        cx.err(
                            format!("{key}_file"),
                            format!("{} is empty", full.display()),
                        );
                    } else {
                        *inline = Some(SecretString::from(s));
                    }
                }
                Err(e) => cx.err(
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", full.display()),
                ),
            }
        }
        (true, None) => {
            if inline
                .as_ref()
                .is_some_and(|s| s.expose_secret().trim().is_empty())
            {
                cx.err(key, "must not be empty");
            }
        }
        (false, None) if required => cx.err(
            key,
            format!("missing: set `{}` or `{}_file`", leaf(key), leaf(key)),
        ),
        (false, None) => {}
    }
}

fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

fn duration_range(cx: &mut Cx, key: &str, d: Duration, min: Duration, max: Duration) {
    if d < min || d > max {
        let show = |d: Duration| super::Dur(d).to_string();
        cx.err(
            key,
            format!(
                "{} is out of range ({} to {})",
                show(d),
                show(min),
                show(max)
            ),
        );
    }
}
