//! `[[notify]]`: notification targets. Names are resolved (default
//! `<type>-<n>`) and must be unique; secrets are read (`url`, `routing_key`,
//! `hmac_secret`, inline or `*_file`); keys of another type are refused; `on`
//! lists only events the type can send.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::secrets::secret;
use super::shared::{IDENT, check_https_url, duration_range};
use crate::config::load::Cx;
use crate::config::schema::*;

pub(super) fn notify(cx: &mut Cx, list: &mut [NotifyConfig], base: &Path) {
    let mut per_type: BTreeMap<NotifyType, usize> = BTreeMap::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (i, n) in list.iter_mut().enumerate() {
        let key = format!("notify[{}]", cx.index("notify", i));
        let nth = per_type.entry(n.kind).or_default();
        *nth += 1;
        let name = n
            .name
            .get_or_insert_with(|| format!("{}-{nth}", n.kind))
            .clone();
        if !IDENT.is_match(&name) {
            cx.err(
                format!("{key}.name"),
                format!("{name:?}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
            );
        } else if let Some(first) = names.insert(name.clone(), key.clone()) {
            cx.err(
                format!("{key}.name"),
                format!("{name:?} is also the name of {first}; names label metrics and logs, so each target needs its own (set `name`)"),
            );
        }
        secrets(cx, n, &key, base);
        events(cx, n, &key);
        duration_range(
            cx,
            &format!("{key}.stuck_after"),
            n.stuck_after(),
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600),
        );
    }
}

/// `url`, `routing_key`, `hmac_secret`: read, required where the type needs
/// them, refused where it has no use for them.
fn secrets(cx: &mut Cx, n: &mut NotifyConfig, key: &str, base: &Path) {
    let kind = n.kind;
    // PagerDuty has a well-known endpoint; the others are nothing without one.
    let url_required = kind != NotifyType::PagerDuty;
    secret(
        cx,
        &format!("{key}.url"),
        &mut n.url,
        &n.url_file,
        base,
        url_required,
    );
    if let Some(u) = &n.url {
        check_url(cx, &format!("{key}.url"), u);
    }
    let pagerduty = kind == NotifyType::PagerDuty;
    only_for(
        cx,
        (pagerduty, "pagerduty"),
        &format!("{key}.routing_key"),
        (&mut n.routing_key, &n.routing_key_file),
        (base, kind),
    );
    let webhook = kind == NotifyType::Webhook;
    only_for(
        cx,
        (webhook, "webhook"),
        &format!("{key}.hmac_secret"),
        (&mut n.hmac_secret, &n.hmac_secret_file),
        (base, kind),
    );
    if pagerduty && n.routing_key.is_none() && n.routing_key_file.is_none() {
        cx.err(
            format!("{key}.routing_key"),
            "missing: set `routing_key` or `routing_key_file` (the integration key of a PagerDuty service, Events API v2)",
        );
    }
}

/// A secret key that only one type uses: read it for that type, refuse it
/// for the others.
fn only_for(
    cx: &mut Cx,
    (applies, owner): (bool, &str),
    key: &str,
    (inline, file): (&mut Option<SecretString>, &Option<std::path::PathBuf>),
    (base, kind): (&Path, NotifyType),
) {
    if applies {
        secret(cx, key, inline, file, base, false);
        return;
    }
    if inline.is_some() {
        cx.err(key, format!("does not apply to type {kind} (only {owner})"));
    }
    if file.is_some() {
        cx.err(
            format!("{key}_file"),
            format!("does not apply to type {kind} (only {owner})"),
        );
    }
}

/// The URL is a secret (Slack and Teams webhook URLs carry a token): the
/// error never echoes it.
fn check_url(cx: &mut Cx, key: &str, u: &SecretString) {
    if let Err(why) = check_https_url(u.expose_secret()) {
        let why = if why.contains("https") {
            "must be an https URL (plain http only to localhost)"
        } else {
            "is not a valid http(s) URL"
        };
        cx.err(key, why);
    }
}

/// `on`: not empty, only events the type can send; set to the default when
/// left out so the running agent reads one list.
fn events(cx: &mut Cx, n: &mut NotifyConfig, key: &str) {
    let kind = n.kind;
    let on = n.on.get_or_insert_with(|| kind.default_events());
    if on.is_empty() {
        cx.err(
            format!("{key}.on"),
            "is empty: this target would never be sent anything (leave `on` out for every event)",
        );
    }
    for e in on.iter().filter(|e| !kind.supports(**e)) {
        cx.err(
            format!("{key}.on"),
            format!("{kind} cannot send {e}: an incident needs an end to resolve it with, and a change made outside the agent has none (what the agent does about it is sent as activate or deactivate)"),
        );
    }
    on.sort();
    on.dedup();
    let opens_incidents = on.contains(&NoticeKind::Activate) || on.contains(&NoticeKind::Profile);
    if kind == NotifyType::PagerDuty && opens_incidents && !on.contains(&NoticeKind::Deactivate) {
        cx.warn(
            format!("{key}.on"),
            "has activate but not deactivate: the incidents it opens are never resolved by the agent",
        );
    }
}
