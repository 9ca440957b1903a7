//! `[talkdesk]`: region, account, OAuth client and API paths.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use super::secrets::secret;
use super::shared::{check_https_url, duration_range};
use crate::config::Strictness;
use crate::config::load::Cx;
use crate::config::schema::*;

static SCOPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9-]*(:[a-z][a-z0-9-]*)+$").expect("valid regex"));

static ACCOUNT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9-]{0,62}$").expect("valid regex"));

const REGIONS: &[&str] = &["us", "eu", "ca"];

const REQUIRED_SCOPES: &[(&str, &str)] = &[
    ("continuity-settings:write", "write the fallback settings"),
    (
        "continuity-settings-activation:write",
        "switch the fallback on and off",
    ),
];

pub(super) fn talkdesk(cx: &mut Cx, t: &mut TalkdeskConfig, base: &Path, strictness: Strictness) {
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
            && let Err(why) = check_https_url(u)
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
        "talkdesk.drift_override_ttl",
        t.drift_override_ttl.get(),
        Duration::from_secs(60),
        Duration::from_secs(7 * 24 * 3600),
    );
    duration_range(
        cx,
        "talkdesk.request_timeout",
        t.request_timeout.get(),
        Duration::from_millis(100),
        Duration::from_secs(120),
    );
}
