//! Checks used by several sections.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use crate::config::load::Cx;
use crate::probe::http::config::http_url;

/// Probe ids, rule names, profile names: safe in metrics labels, URLs and globs.
pub(super) static IDENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$").expect("valid regex"));

/// An `https://` URL, or plain http to loopback only: credentials must not
/// cross a network in clear text, but the local simulator speaks plain HTTP.
/// The URL syntax itself is the HTTP probe's ([`http_url`]).
pub(super) fn check_https_url(u: &str) -> Result<(), String> {
    let url = http_url(u)?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    if url.scheme() == "http" && !loopback {
        return Err(format!(
            "{u:?} must use https (plain http is only allowed for localhost)"
        ));
    }
    Ok(())
}

pub(super) fn unknown_profile(name: &str, known: &BTreeSet<String>) -> String {
    let list = if known.is_empty() {
        "none are defined".to_string()
    } else {
        known.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    format!("unknown profile {name:?} (profiles: {list})")
}

pub(super) fn duration_range(cx: &mut Cx, key: &str, d: Duration, min: Duration, max: Duration) {
    if d < min || d > max {
        let show = |d: Duration| crate::config::Dur(d).to_string();
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
