//! `[[probes]] type = "sip"`: the keys, defaults and checks of a SIP probe.

use serde::{Deserialize, Serialize};

use super::{Accept, SipTarget, parse_target};
use crate::config::Dur;
use crate::probe::config::{Findings, KindDefaults};

/// HAProxy's `inter` is 2s for LAN servers; trunks are remote and some carriers ban
/// faster pings (Twilio: no more than one OPTIONS every 10-15s), so 10s by default.
/// A trunk's signalling stack answers OPTIONS in milliseconds, so 2s without an
/// answer is already a failure.
pub const DEFAULTS: KindDefaults = KindDefaults {
    interval: Dur::from_secs(10),
    timeout: Dur::from_secs(2),
    ..KindDefaults::COMMON
};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// `sip:host[:port][;transport=udp|tcp|tls]` (or `sips:`). Required.
    #[serde(default)]
    pub target: Option<String>,
    /// Response codes that count as success: `"2xx"`, `"404"`, ... (default `["2xx"]`).
    #[serde(default)]
    pub accept: Option<Vec<String>>,
    /// SIP From/Request user, e.g. `"ping"`; absent pings the host itself (RFC 3261 11).
    #[serde(default)]
    pub from_user: Option<String>,
}

/// A validated SIP probe.
#[derive(Clone, Debug)]
pub struct SipSettings {
    pub target: SipTarget,
    pub accept: Accept,
    pub from_user: Option<String>,
}

impl SipConfig {
    pub fn validate(&self, found: &mut Findings) -> Option<SipSettings> {
        let target = match &self.target {
            None => {
                found.err(
                    "target",
                    "missing: a SIP URI like sip:trunk.example.net:5060;transport=udp",
                );
                None
            }
            Some(t) => found.check("target", parse_target(t)),
        };
        let accept = self.accept(found);
        let from_user = self.user_part(found);
        Some(SipSettings {
            target: target?,
            accept: accept?,
            from_user: from_user?,
        })
    }

    fn accept(&self, found: &mut Findings) -> Option<Accept> {
        match &self.accept {
            None => Some(Accept::default()),
            Some(codes) => check_accept_list(codes, found),
        }
    }

    fn user_part(&self, found: &mut Findings) -> Option<Option<String>> {
        match &self.from_user {
            Some(u)
                if u.is_empty()
                    || u.contains(|c: char| {
                        c.is_whitespace() || c == '@' || c == ':' || c == '<' || c == '>'
                    }) =>
            {
                found.err("from_user", format!("{u:?} is not a SIP user part"));
                None
            }
            other => Some(other.clone()),
        }
    }
}

/// A configured `accept` list (shared with the call probe): errors at
/// `accept[i]`, a warning for a risky 408.
pub(crate) fn check_accept_list(codes: &[String], found: &mut Findings) -> Option<Accept> {
    if codes.is_empty() {
        found.err(
            "accept",
            "must list at least one code or class, e.g. [\"2xx\"]",
        );
        return None;
    }
    let before = found.errors.len();
    for (i, c) in codes.iter().enumerate() {
        match check_accept_code(c) {
            Err(why) => found.err(format!("accept[{i}]"), why),
            Ok(true) => found.warn(
                format!("accept[{i}]"),
                "accepting 408 hides dead trunks behind proxies that answer 408 (a local timeout never counts as success)",
            ),
            Ok(false) => {}
        }
    }
    if found.errors.len() > before {
        return None;
    }
    found.check("accept", Accept::parse(codes))
}

/// One `accept` entry: [`Accept::parse`] decides the syntax (so validation
/// and probing agree); validation adds what only makes sense to an operator:
/// provisional responses can never be accepted (the probe waits for a final
/// one), and `Ok(true)` flags a risky 408.
fn check_accept_code(c: &str) -> Result<bool, String> {
    let c = c.trim();
    Accept::parse(&[c])?;
    if c.eq_ignore_ascii_case("1xx") || c.parse::<u16>().is_ok_and(|n| n < 200) {
        return Err(format!(
            "{c} is provisional; only final responses (200-699) can be accepted"
        ));
    }
    Ok(c == "408")
}
