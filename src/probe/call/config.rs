//! `[[probes]] type = "call"`: the keys, defaults and checks of a synthetic
//! inbound call probe.
//!
//! Test calls cost money and occupy a line, so the cadence is bounded here
//! (interval and fast re-check at least 30s) and the global number of calls
//! in flight by `engine.max_concurrent_calls` (enforced by the scheduler).

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::Dur;
use crate::probe::config::{Findings, KindDefaults};
use crate::probe::sip::config::check_accept_list;
use crate::probe::sip::{Accept, SipTarget, parse_target};

/// One test call every five minutes: cheap enough to run all day, frequent
/// enough that two failed calls confirm an outage within ten minutes (the
/// engine's fast re-check, at [`MIN_INTERVAL`], confirms sooner). `timeout`
/// is how long the call may ring: carriers give up on unanswered calls after
/// 30s or more, but an IVR test number answers within a few seconds.
pub const DEFAULTS: KindDefaults = KindDefaults {
    interval: Dur::from_secs(300),
    fast_interval: MIN_INTERVAL,
    timeout: Dur::from_secs(8),
    min_interval: MIN_INTERVAL,
};

/// No call probe runs more often than this, fast re-checks included: each
/// check is a billed call that holds a line.
pub const MIN_INTERVAL: Dur = Dur::from_secs(30);
/// A call is never up longer than this (from the first INVITE to the BYE).
pub const MAX_DURATION: Dur = Dur::from_secs(10);
/// One second of inbound audio (50 packets of 20ms) proves the media path.
pub const MIN_MEDIA: Dur = Dur::from_secs(1);
/// After the answer, media must arrive within this.
pub const MEDIA_TIMEOUT: Dur = Dur::from_secs(3);

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallConfig {
    /// The number to call: `sip:+15551234567@sbc.example.net;transport=tls`. Required.
    #[serde(default)]
    pub target: Option<String>,
    /// Caller identity (From), a SIP URI with a user part; default `sip:continuity-agent@<local address>`.
    #[serde(default)]
    pub from: Option<String>,
    /// Digest user name for 401/407 challenges; requires `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the digest password (relative to the config file).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Hard limit on the call, from INVITE to BYE (default 10s).
    #[serde(default)]
    pub max_duration: Option<Dur>,
    /// Inbound audio needed to call the media path up (default 1s).
    #[serde(default)]
    pub min_media: Option<Dur>,
    /// How long after the answer `min_media` must have arrived (default 3s).
    #[serde(default)]
    pub media_timeout: Option<Dur>,
    /// Also require the inbound audio not to be silence (an IVR greeting plays).
    #[serde(default)]
    pub expect_audio: Option<bool>,
    /// Final codes that count as success, as for `sip` probes (default `["2xx"]`).
    /// Only a 2xx answer goes on to the media check.
    #[serde(default)]
    pub accept: Option<Vec<String>>,
}

/// A validated call probe.
#[derive(Clone, Debug)]
pub struct CallSettings {
    pub target: SipTarget,
    /// Caller URI; `None` uses `sip:continuity-agent@<local address>`.
    pub from: Option<SipTarget>,
    pub credentials: Option<Credentials>,
    pub max_duration: Duration,
    pub min_media: Duration,
    pub media_timeout: Duration,
    pub expect_audio: bool,
    pub accept: Accept,
}

impl CallSettings {
    /// The longest one check can take: the call, then its teardown.
    pub fn check_limit(&self) -> Duration {
        self.max_duration + super::TEARDOWN
    }
}

/// Digest credentials. `Debug` shows the user name only.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: SecretString,
}

impl CallConfig {
    /// `base` is the configuration file's directory (for `password_file`).
    pub fn validate(&self, base: &Path, found: &mut Findings) -> Option<CallSettings> {
        let target = match &self.target {
            None => {
                found.err(
                    "target",
                    "missing: the test number as a SIP URI, like sip:+15551234567@sbc.example.net",
                );
                None
            }
            Some(t) => found.check("target", parse_target(t)),
        };
        let from = self.from(found);
        let credentials = self.credentials(base, found);
        let get = |d: Option<Dur>, default: Dur| d.unwrap_or(default).get();
        let max_duration = get(self.max_duration, MAX_DURATION);
        let min_media = get(self.min_media, MIN_MEDIA);
        let media_timeout = get(self.media_timeout, MEDIA_TIMEOUT);
        let secs = Duration::from_secs;
        found.range("max_duration", max_duration, secs(2), secs(60));
        found.range("min_media", min_media, Duration::from_millis(100), secs(30));
        found.range(
            "media_timeout",
            media_timeout,
            Duration::from_millis(100),
            secs(60),
        );
        if min_media > media_timeout {
            found.err(
                "min_media",
                "longer than media_timeout: that much audio can never arrive in time",
            );
        }
        let accept = match &self.accept {
            None => Some(Accept::default()),
            Some(codes) => check_accept_list(codes, found),
        };
        Some(CallSettings {
            target: target?,
            from: from?,
            credentials: credentials?,
            max_duration,
            min_media,
            media_timeout,
            expect_audio: self.expect_audio.unwrap_or(false),
            accept: accept?,
        })
    }

    /// Checks what relates `timeout` (how long the call may ring) to the
    /// call's own limits.
    pub fn check_timeout(&self, timeout: Duration, found: &mut Findings) {
        let max = self.max_duration.unwrap_or(MAX_DURATION).get();
        if timeout >= max {
            found.err(
                "timeout",
                format!(
                    "{} is not shorter than max_duration ({}): an answered call would have no time left for the media check",
                    Dur(timeout),
                    Dur(max)
                ),
            );
        }
    }

    fn from(&self, found: &mut Findings) -> Option<Option<SipTarget>> {
        let Some(f) = &self.from else {
            return Some(None);
        };
        let uri = found.check("from", parse_target(f))?;
        if uri.user.is_none() {
            found.err(
                "from",
                "needs a user part, like sip:+15557654321@agent.example.net",
            );
            return None;
        }
        Some(Some(uri))
    }

    fn credentials(&self, base: &Path, found: &mut Findings) -> Option<Option<Credentials>> {
        match (&self.username, &self.password_file) {
            (None, None) => Some(None),
            (Some(_), None) => {
                found.err("password_file", "missing: `username` needs `password_file`");
                None
            }
            (None, Some(_)) => {
                found.err("username", "missing: `password_file` needs `username`");
                None
            }
            (Some(u), Some(path)) => {
                if u.is_empty() || u.contains(['"', '\r', '\n']) {
                    found.err(
                        "username",
                        format!("{u:?} is not a usable digest user name"),
                    );
                    return None;
                }
                let full = if path.is_absolute() {
                    path.clone()
                } else {
                    base.join(path)
                };
                // Never echo the file's content: only its path.
                let password = match std::fs::read_to_string(&full) {
                    Ok(s) => s.trim_end_matches(['\n', '\r']).to_string(),
                    Err(e) => {
                        found.err(
                            "password_file",
                            format!("cannot read {}: {e}", full.display()),
                        );
                        return None;
                    }
                };
                if password.is_empty() {
                    found.err("password_file", format!("{} is empty", full.display()));
                    return None;
                }
                Some(Some(Credentials {
                    username: u.clone(),
                    password: SecretString::from(password),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::probe::testutil::{probe_config, probe_settings};
    use crate::probe::{KindSettings, ProbeConfig};
    use std::time::Duration;

    fn errors(v: serde_json::Value) -> Vec<(String, String)> {
        let p: ProbeConfig = probe_config(v);
        let f = p.settings().unwrap_err();
        f.errors.into_iter().map(|e| (e.key, e.reason)).collect()
    }

    #[test]
    fn defaults_keep_calls_rare_and_short() {
        let s = probe_settings(
            serde_json::json!({"id": "c", "type": "call", "target": "sip:+1555@sbc.example"}),
        );
        let secs = Duration::from_secs;
        assert_eq!(
            (
                s.cadence.interval,
                s.cadence.fast_interval,
                s.cadence.timeout
            ),
            (secs(300), secs(30), secs(8))
        );
        let KindSettings::Call(c) = &s.kind else {
            panic!("a call")
        };
        assert_eq!(
            (c.max_duration, c.min_media, c.media_timeout),
            (secs(10), secs(1), secs(3))
        );
        assert!(!c.expect_audio && c.credentials.is_none() && c.from.is_none());
        assert!(c.accept.accepts(200) && !c.accept.accepts(486));
        assert_eq!(
            s.check_budget(),
            secs(12),
            "the scheduler waits for the BYE"
        );
    }

    #[test]
    fn no_check_faster_than_thirty_seconds() {
        let e = errors(serde_json::json!({
            "id": "c", "type": "call", "target": "sip:h", "interval": "10s", "fast_interval": "5s"
        }));
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["interval", "fast_interval"], "{e:?}");
        assert!(e[0].1.contains("out of range (30s to "), "{e:?}");
        // A fast interval defaults to 30s, so an interval of 30s is valid alone.
        probe_settings(
            serde_json::json!({"id": "c", "type": "call", "target": "sip:h", "interval": "30s"}),
        );
    }

    #[test]
    fn durations_must_fit_together() {
        let e = errors(serde_json::json!({
            "id": "c", "type": "call", "target": "sip:h",
            "timeout": "10s", "min_media": "4s", "media_timeout": "3s"
        }));
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].0, "timeout");
        assert!(
            e[0].1.contains("not shorter than max_duration (10s)"),
            "{e:?}"
        );
        assert_eq!(e[1].0, "min_media");
        let e = errors(
            serde_json::json!({"id": "c", "type": "call", "target": "sip:h", "max_duration": "5m"}),
        );
        assert_eq!(e[0].0, "max_duration");
    }

    #[test]
    fn identity_and_credentials_are_checked_and_the_password_stays_secret() {
        let e = errors(serde_json::json!({
            "id": "c", "type": "call", "from": "sip:host.example", "username": "u"
        }));
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["target", "from", "password_file"], "{e:?}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "hunter2\n").unwrap();
        let mut found = crate::probe::Findings::default();
        let s = probe_config(serde_json::json!({
            "id": "c", "type": "call", "target": "sip:h", "from": "sip:+1555@agent.example",
            "username": "u", "password_file": "pw"
        }))
        .validate_at(dir.path(), &mut found)
        .unwrap();
        let KindSettings::Call(c) = &s.kind else {
            panic!("a call")
        };
        use secrecy::ExposeSecret;
        assert_eq!(
            c.credentials.as_ref().unwrap().password.expose_secret(),
            "hunter2"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            c.from.as_ref().unwrap().request_uri(),
            "sip:+1555@agent.example"
        );

        let e = errors(serde_json::json!({
            "id": "c", "type": "call", "target": "sip:h", "username": "u", "password_file": "/nonexistent/pw"
        }));
        assert!(e[0].1.starts_with("cannot read /nonexistent/pw"), "{e:?}");
    }
}
