//! `[webhooks.*]` (which credentials each source can send) and `[alerts]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::secrets::{MIN_SECRET_CHARS, secret};
use super::shared::duration_range;
use crate::config::load::Cx;
use crate::config::schema::*;

/// Which credentials each webhook source understands.
pub(super) fn webhooks(cx: &mut Cx, w: &mut WebhooksConfig, base: &Path) {
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
        if let Some(c) = slot.as_mut() {
            webhook(cx, source, c, base);
        }
    }
}

/// One source's section: its secrets read, its credentials allowed for the
/// source, its settings in range.
fn webhook(cx: &mut Cx, source: &'static str, c: &mut WebhookConfig, base: &Path) {
    let key = format!("webhooks.{source}");
    read_secrets(cx, &key, c, base);
    credentials(cx, &key, source, c);
    settings(cx, &key, c);
    secret_strength(cx, &key, source, c);
}

/// Reads each `*_file` secret into its value.
fn read_secrets(cx: &mut Cx, key: &str, c: &mut WebhookConfig, base: &Path) {
    let slots: [(&str, &mut Option<SecretString>, &Option<PathBuf>); 5] = [
        ("bearer_token", &mut c.bearer_token, &c.bearer_token_file),
        (
            "basic_password",
            &mut c.basic_password,
            &c.basic_password_file,
        ),
        ("hmac_secret", &mut c.hmac_secret, &c.hmac_secret_file),
        ("header_value", &mut c.header_value, &c.header_value_file),
        ("path_token", &mut c.path_token, &c.path_token_file),
    ];
    for (name, value, file) in slots {
        secret(cx, &format!("{key}.{name}"), value, file, base, false);
    }
}

/// The credentials a source can send: at least one, none it cannot send, and
/// the pairs that go together.
fn credentials(cx: &mut Cx, key: &str, source: &str, c: &WebhookConfig) {
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
            key,
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
}

/// Header names, timestamps, TTL and skew.
fn settings(cx: &mut Cx, key: &str, c: &WebhookConfig) {
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
}

/// Shared secrets long enough not to be guessed, and a warning where a
/// signature can be replayed.
fn secret_strength(cx: &mut Cx, key: &str, source: &str, c: &WebhookConfig) {
    // A short shared secret is guessable by anyone who can reach the
    // API, and a webhook can switch calls away.
    for (k, v) in [
        ("bearer_token", &c.bearer_token),
        ("basic_password", &c.basic_password),
        ("hmac_secret", &c.hmac_secret),
        ("header_value", &c.header_value),
    ] {
        if v.as_ref()
            .is_some_and(|s| s.expose_secret().chars().count() < MIN_SECRET_CHARS)
        {
            cx.err(
                format!("{key}.{k}"),
                format!("must be at least {MIN_SECRET_CHARS} characters"),
            );
        }
    }
    if source == "grafana" && c.hmac_secret.is_some() && c.timestamp_header.is_none() {
        cx.warn(
            format!("{key}.timestamp_header"),
            "without a signed timestamp, a captured Grafana delivery can be replayed forever: set timestamp_header = \"X-Grafana-Alerting-Signature-Timestamp\" (Grafana sends it when the contact point's HMAC has a timestamp header configured)",
        );
    }
    if let Some(t) = &c.path_token {
        let t = t.expose_secret();
        if t.len() < MIN_SECRET_CHARS
            || !t
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            cx.err(format!("{key}.path_token"), "must be at least 16 URL-safe characters (letters, digits, '-', '_'): it is the only protection");
        }
    }
}

/// Alerts from re-sending sources must outlive the gap between deliveries.
pub(super) fn alerts(cx: &mut Cx, a: &AlertsConfig) {
    if !(1..=100_000).contains(&a.max_active) {
        cx.err(
            "alerts.max_active",
            format!("{} is out of range (1 to 100000)", a.max_active),
        );
    }
    if a.ttl.get() < Duration::from_secs(10) {
        cx.err(
            "alerts.ttl",
            format!(
                "{} is too short: alerts would expire between deliveries (use >= 10s)",
                a.ttl
            ),
        );
    }
}
