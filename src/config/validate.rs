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
const DOWN_AT: &[&str] = &["degraded_performance", "partial_outage", "major_outage"];
const STATUSPAGE_FORMATS: &[&str] = &["statuspage", "incidentio", "instatus"];

pub(super) fn validate(
    mut raw: RawConfig,
    cx: &mut Cx,
    base: &Path,
    strictness: Strictness,
) -> Result<Config, ConfigErrors> {
    agent(cx, &raw.agent);
    store(cx, &mut raw.store, raw.cluster.as_ref(), base);
    talkdesk(cx, &mut raw.talkdesk, base, strictness);
    let profiles = profiles(cx, &raw.profiles);
    // Names that exist even if their element failed to parse, so that a broken
    // element produces one error, not one more per reference to it.
    let mut profile_names: BTreeSet<String> = profiles.keys().cloned().collect();
    profile_names.extend(raw_labels(cx, "profiles", ""));
    let probe_specs = probes(cx, &raw.probes);
    let mut probe_ids: Vec<String> = Vec::new();
    for id in raw
        .probes
        .iter()
        .map(|p| p.id.clone())
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

fn store(cx: &mut Cx, s: &mut StoreConfig, cluster: Option<&ClusterConfig>, base: &Path) {
    let postgres = s.url.starts_with("postgres://") || s.url.starts_with("postgresql://");
    if let Some(path) = s.url.strip_prefix("sqlite://") {
        if path.is_empty() {
            cx.err(
                "store.url",
                "sqlite:// needs a file path, e.g. sqlite://state/continuity-agent.db",
            );
        }
        if s.password_file.is_some() {
            cx.err(
                "store.password_file",
                "only a postgres:// store has a password",
            );
        }
    } else if !postgres {
        cx.err(
            "store.url",
            "use sqlite://PATH or postgres://USER@HOST/DB (the value is not shown: it may hold a password)",
        );
    } else {
        secret(
            cx,
            "store.password",
            &mut s.password,
            &s.password_file,
            base,
            false,
        );
        // The store's own parser: check-config refuses exactly what `run` would.
        if let Err(why) = crate::store::postgres::ConnectOptions::parse(&s.url, s.password.as_ref())
        {
            cx.err("store.url", why);
        }
    }
    if cluster.is_some() {
        // Honest rather than a surprise at `run`: a config that validates must run.
        cx.err(
            "cluster",
            "several replicas (leader election) are not available in this build yet; run one replica without [cluster]",
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

fn probes(cx: &mut Cx, raw: &[ProbeConfig]) -> Vec<ProbeSpec> {
    let mut seen = BTreeSet::new();
    let mut specs = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let key = format!("probes[{}] ({})", cx.index("probes", i), p.id);
        if !IDENT.is_match(&p.id) {
            cx.err(format!("{key}.id"), "must be 1-64 letters, digits, '.', '_' or '-' (it is used in metrics labels and globs)");
        }
        if !seen.insert(p.id.clone()) {
            cx.err(
                format!("{key}.id"),
                format!("duplicate probe id {:?}", p.id),
            );
        }
        let d = probe_defaults(p.kind);
        let interval = p.interval.map(|d| d.get()).unwrap_or(d.interval);
        let fast = p
            .fast_interval
            .map(|d| d.get())
            .unwrap_or(d.fast_interval.min(interval));
        let timeout = p
            .timeout
            .map(|d| d.get())
            .unwrap_or(d.timeout.min(interval));
        duration_range(
            cx,
            &format!("{key}.interval"),
            interval,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        );
        duration_range(
            cx,
            &format!("{key}.fast_interval"),
            fast,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        );
        duration_range(
            cx,
            &format!("{key}.timeout"),
            timeout,
            Duration::from_millis(10),
            Duration::from_secs(120),
        );
        if fast > interval {
            cx.err(format!("{key}.fast_interval"), "must not be longer than interval: it is the faster cadence used while confirming a change");
        }
        if timeout > interval {
            cx.warn(
                format!("{key}.timeout"),
                "longer than interval: a slow target delays this probe's next check",
            );
        }
        let rise = p.rise.unwrap_or(defaults::RISE);
        let fall = p.fall.unwrap_or(defaults::FALL);
        for (k, v) in [("rise", rise), ("fall", fall)] {
            if !(1..=100).contains(&v) {
                cx.err(
                    format!("{key}.{k}"),
                    format!("{v} is out of range: must be 1 to 100 consecutive results"),
                );
            }
        }
        not_applicable(cx, &key, p);
        match p.kind {
            ProbeType::Sip => sip_probe(cx, &key, p),
            ProbeType::Http => http_probe(cx, &key, p),
            ProbeType::Statuspage => statuspage_probe(cx, &key, p),
            ProbeType::Agents => agents_probe(cx, &key, p),
        }
        specs.push(ProbeSpec {
            id: p.id.clone(),
            kind: p.kind.as_str(),
            rise,
            fall,
        });
    }
    specs
}

/// Per-type cadence defaults (see `schema::defaults`).
pub struct ProbeDefaults {
    pub interval: Duration,
    pub fast_interval: Duration,
    pub timeout: Duration,
}

pub fn probe_defaults(kind: ProbeType) -> ProbeDefaults {
    let interval = match kind {
        ProbeType::Statuspage => defaults::STATUSPAGE_INTERVAL,
        _ => defaults::PROBE_INTERVAL,
    };
    ProbeDefaults {
        interval: interval.get(),
        fast_interval: defaults::PROBE_FAST_INTERVAL.get(),
        timeout: match kind {
            ProbeType::Sip => defaults::PROBE_TIMEOUT.get(),
            _ => Duration::from_secs(5),
        },
    }
}

/// Keys that belong to other probe types are errors, named precisely.
fn not_applicable(cx: &mut Cx, key: &str, p: &ProbeConfig) {
    let present: [(&str, bool); 11] = [
        ("target", p.target.is_some()),
        ("accept", p.accept.is_some()),
        ("from_user", p.from_user.is_some()),
        ("url", p.url.is_some()),
        ("expect_status", p.expect_status.is_some()),
        ("expect_json", p.expect_json.is_some()),
        ("headers", p.headers.is_some()),
        ("components", p.components.is_some()),
        ("down_at", p.down_at.is_some()),
        ("format", p.format.is_some()),
        ("value", p.value.is_some() || p.min.is_some()),
    ];
    let allowed: &[&str] = match p.kind {
        ProbeType::Sip => &["target", "accept", "from_user"],
        ProbeType::Http => &["url", "expect_status", "expect_json", "headers"],
        ProbeType::Statuspage => &["url", "components", "down_at", "format", "headers"],
        ProbeType::Agents => &["url", "value", "headers"],
    };
    for (k, set) in present {
        if set && !allowed.contains(&k) {
            let k = if k == "value" && p.value.is_none() {
                "min"
            } else {
                k
            };
            cx.err(
                format!("{key}.{k}"),
                format!("`{k}` does not apply to probes of type {}", p.kind.as_str()),
            );
        }
    }
}

fn sip_probe(cx: &mut Cx, key: &str, p: &ProbeConfig) {
    match &p.target {
        None => cx.err(
            format!("{key}.target"),
            "missing: a SIP URI like sip:trunk.example.net:5060;transport=udp",
        ),
        Some(t) => {
            if let Err(why) = check_sip_target(t) {
                cx.err(format!("{key}.target"), why);
            }
        }
    }
    if let Some(codes) = &p.accept {
        if codes.is_empty() {
            cx.err(
                format!("{key}.accept"),
                "must list at least one code or class, e.g. [\"2xx\"]",
            );
        }
        for (i, c) in codes.iter().enumerate() {
            match check_accept_code(c) {
                Err(why) => cx.err(format!("{key}.accept[{i}]"), why),
                Ok(true) => cx.warn(
                    format!("{key}.accept[{i}]"),
                    "accepting 408 hides dead trunks behind proxies that answer 408 (a local timeout never counts as success)",
                ),
                Ok(false) => {}
            }
        }
    }
    if let Some(u) = &p.from_user
        && (u.is_empty()
            || u.contains(|c: char| {
                c.is_whitespace() || c == '@' || c == ':' || c == '<' || c == '>'
            }))
    {
        cx.err(
            format!("{key}.from_user"),
            format!("{u:?} is not a SIP user part"),
        );
    }
}

/// One `accept` entry: the SIP probe's own parser decides the syntax (so
/// validation and probing agree); validation adds what only makes sense to an
/// operator: provisional responses can never be accepted (the probe waits for
/// a final one), and `Ok(true)` flags a risky 408.
fn check_accept_code(c: &str) -> Result<bool, String> {
    let c = c.trim();
    crate::probe::sip::Accept::parse(&[c])?;
    if c.eq_ignore_ascii_case("1xx") || c.parse::<u16>().is_ok_and(|n| n < 200) {
        return Err(format!(
            "{c} is provisional; only final responses (200-699) can be accepted"
        ));
    }
    Ok(c == "408")
}

/// SIP target syntax, checked by the SIP probe's own parser so validation
/// and probing can never disagree.
pub fn check_sip_target(t: &str) -> Result<(), String> {
    crate::probe::sip::parse_target(t).map(|_| ())
}

fn url_required(cx: &mut Cx, key: &str, p: &ProbeConfig) {
    match &p.url {
        None => cx.err(format!("{key}.url"), "missing: an http:// or https:// URL"),
        Some(u) => {
            if let Err(why) = check_url(u, false) {
                cx.err(format!("{key}.url"), why);
            }
        }
    }
}

fn http_probe(cx: &mut Cx, key: &str, p: &ProbeConfig) {
    url_required(cx, key, p);
    if let Some(codes) = &p.expect_status {
        if codes.is_empty() {
            cx.err(
                format!("{key}.expect_status"),
                "must list at least one status code",
            );
        }
        for (i, c) in codes.iter().enumerate() {
            if !(100..=599).contains(c) {
                cx.err(
                    format!("{key}.expect_status[{i}]"),
                    format!("{c} is not an HTTP status code (100-599)"),
                );
            }
        }
    }
    if let Some(path) = &p.expect_json {
        jsonpath(cx, &format!("{key}.expect_json"), path);
    }
}

fn statuspage_probe(cx: &mut Cx, key: &str, p: &ProbeConfig) {
    url_required(cx, key, p);
    if let Some(d) = &p.down_at
        && !DOWN_AT.contains(&d.as_str())
    {
        cx.err(
            format!("{key}.down_at"),
            format!("{d:?}: use one of {}", DOWN_AT.join(", ")),
        );
    }
    if let Some(f) = &p.format
        && !STATUSPAGE_FORMATS.contains(&f.as_str())
    {
        cx.err(
            format!("{key}.format"),
            format!("{f:?}: use one of {}", STATUSPAGE_FORMATS.join(", ")),
        );
    }
    for (i, c) in p.components.iter().flatten().enumerate() {
        if c.trim().is_empty() {
            cx.err(
                format!("{key}.components[{i}]"),
                "component name must not be empty",
            );
        }
    }
}

fn agents_probe(cx: &mut Cx, key: &str, p: &ProbeConfig) {
    url_required(cx, key, p);
    match &p.value {
        None => cx.err(
            format!("{key}.value"),
            "missing: a JSONPath to the number of available agents, e.g. \"$.available\"",
        ),
        Some(v) => jsonpath(cx, &format!("{key}.value"), v),
    }
}

fn jsonpath(cx: &mut Cx, key: &str, path: &str) {
    if let Err(e) = serde_json_path::JsonPath::parse(path) {
        cx.err(
            key,
            format!("{path:?} is not a JSONPath (RFC 9535) expression: {e}"),
        );
    }
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
