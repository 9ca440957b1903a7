//! `[[probes]]` as operators write it, and what validation makes of it.
//!
//! An entry is the keys every probe has ([`CommonConfig`]: id, cadence,
//! hysteresis) plus the keys of its `type` ([`KindConfig`], one struct per
//! type in `probe/<kind>/config.rs`). Each part owns its documented defaults
//! and its checks. [`ProbeConfig::validate`] turns an entry into
//! [`ProbeSettings`]: every default resolved, every string parsed. That value
//! is what `check-config` reports on and what `run` builds the probe from
//! ([`super::build`]), so the two can never disagree.
//!
//! The config loader does not deserialize the enum through serde's internal
//! tagging (it would lose the key path of errors): it reads `type`, sorts the
//! other keys with [`KindConfig::kinds`] (which is how a key of another type
//! gets its precise "does not apply" error) and deserializes each part on its
//! own. The serde derives serve tests and tools that build entries from JSON.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{agents, call, http, sip, statuspage};
use crate::config::Dur;

/// While a probe is between states it is re-checked quickly to confirm (HAProxy `fastinter`).
pub const FAST_INTERVAL: Dur = Dur::from_secs(2);
/// HAProxy's default: 2 successes to come up.
pub const RISE: u32 = 2;
/// 10 consecutive failures to go down, not HAProxy's 3: with 3, a trunk
/// behind a path that loses 20% of probes would go down, and switch calls
/// away, about 19,000 times a year (390 at 5% loss). With 10, at the default
/// 10 s interval and 2 s fast interval and timeout, that is about 0.3 a
/// year, and a dead trunk is still down within 30 s (25 s on average). The
/// table and the simulation behind it: `docs/tuning.md`.
pub const FALL: u32 = 10;

/// One `[[probes]]` entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ProbeConfig {
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(flatten)]
    pub kind: KindConfig,
}

/// The keys every probe type has. Absent durations take the type's
/// [`KindDefaults`]; absent rise/fall take [`RISE`]/[`FALL`].
// No `deny_unknown_fields`: this struct is flattened beside the type's keys,
// and the type struct (which has it) rejects whatever is left.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CommonConfig {
    pub id: String,
    #[serde(default)]
    pub interval: Option<Dur>,
    #[serde(default)]
    pub fast_interval: Option<Dur>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub rise: Option<u32>,
    #[serde(default)]
    pub fall: Option<u32>,
}

/// The keys of each probe type, tagged by `type`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum KindConfig {
    Sip(sip::config::SipConfig),
    Http(http::config::HttpConfig),
    Statuspage(statuspage::config::StatusPageConfig),
    Agents(agents::config::AgentsConfig),
    Call(call::config::CallConfig),
}

/// Per-type cadence defaults and floor, declared by each type's `config.rs`.
#[derive(Clone, Copy, Debug)]
pub struct KindDefaults {
    pub interval: Dur,
    /// Capped by the interval when not configured.
    pub fast_interval: Dur,
    /// Capped by the interval when not configured.
    pub timeout: Dur,
    /// Neither `interval` nor `fast_interval` may be shorter.
    pub min_interval: Dur,
}

impl KindDefaults {
    /// What types without special needs start from (`..KindDefaults::COMMON`).
    pub const COMMON: KindDefaults = KindDefaults {
        interval: Dur::from_secs(10),
        fast_interval: FAST_INTERVAL,
        timeout: Dur::from_secs(2),
        min_interval: Dur::from_millis(100),
    };
}

/// Deserializes one part of an entry from the document. The config loader
/// implements it so that errors keep their key path.
pub trait LoadPart {
    fn load<T: DeserializeOwned>(&mut self) -> Option<T>;
}

/// One probe type as the loader sees it: its `type` value, the keys it owns
/// (read from its struct, so the list cannot drift from what
/// deserialization accepts) and how to load its part.
pub struct Kind<L> {
    pub name: &'static str,
    pub keys: &'static [&'static str],
    pub load: fn(&mut L) -> Option<KindConfig>,
}

impl KindConfig {
    /// Every probe type: the one table that maps `type` values to structs.
    pub fn kinds<L: LoadPart>() -> [Kind<L>; 5] {
        [
            Kind {
                name: "sip",
                keys: fields_of::<sip::config::SipConfig>(),
                load: |l| l.load().map(KindConfig::Sip),
            },
            Kind {
                name: "http",
                keys: fields_of::<http::config::HttpConfig>(),
                load: |l| l.load().map(KindConfig::Http),
            },
            Kind {
                name: "statuspage",
                keys: fields_of::<statuspage::config::StatusPageConfig>(),
                load: |l| l.load().map(KindConfig::Statuspage),
            },
            Kind {
                name: "agents",
                keys: fields_of::<agents::config::AgentsConfig>(),
                load: |l| l.load().map(KindConfig::Agents),
            },
            Kind {
                name: "call",
                keys: fields_of::<call::config::CallConfig>(),
                load: |l| l.load().map(KindConfig::Call),
            },
        ]
    }

    /// The `type` value, as in metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            KindConfig::Sip(_) => "sip",
            KindConfig::Http(_) => "http",
            KindConfig::Statuspage(_) => "statuspage",
            KindConfig::Agents(_) => "agents",
            KindConfig::Call(_) => "call",
        }
    }

    fn defaults(&self) -> KindDefaults {
        match self {
            KindConfig::Sip(_) => sip::config::DEFAULTS,
            KindConfig::Http(_) => http::config::DEFAULTS,
            KindConfig::Statuspage(_) => statuspage::config::DEFAULTS,
            KindConfig::Agents(_) => agents::config::DEFAULTS,
            KindConfig::Call(_) => call::config::DEFAULTS,
        }
    }

    fn validate(
        &self,
        cadence: &Cadence,
        base: &Path,
        found: &mut Findings,
    ) -> Option<KindSettings> {
        Some(match self {
            KindConfig::Sip(c) => KindSettings::Sip(c.validate(found)?),
            KindConfig::Http(c) => KindSettings::Http(c.validate(found)?),
            KindConfig::Statuspage(c) => KindSettings::Statuspage(c.validate(found)?),
            KindConfig::Agents(c) => KindSettings::Agents(c.validate(found)?),
            KindConfig::Call(c) => {
                c.check_timeout(cadence.timeout, found);
                KindSettings::Call(c.validate(base, found)?)
            }
        })
    }
}

/// A validated probe: what the scheduler runs.
#[derive(Clone, Debug)]
pub struct ProbeSettings {
    pub id: String,
    /// The `type` value, as in metrics labels.
    pub type_name: &'static str,
    pub cadence: Cadence,
    pub rise: u32,
    pub fall: u32,
    pub kind: KindSettings,
}

/// The validated keys of each type.
#[derive(Clone, Debug)]
pub enum KindSettings {
    Sip(sip::config::SipSettings),
    Http(http::config::HttpSettings),
    Statuspage(statuspage::config::StatusPageSettings),
    Agents(agents::config::AgentsSettings),
    Call(call::config::CallSettings),
}

impl ProbeSettings {
    /// How long one check may take before the scheduler cuts it off (plus
    /// its grace): the timeout, or for a call everything up to the BYE.
    pub fn check_budget(&self) -> Duration {
        match &self.kind {
            KindSettings::Call(c) => c.check_limit(),
            _ => self.cadence.timeout,
        }
    }
}

/// How often a probe runs and how long one check may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    pub interval: Duration,
    pub fast_interval: Duration,
    pub timeout: Duration,
}

impl ProbeConfig {
    /// Checks the entry and resolves its defaults. Problems are added to
    /// `found` (keys relative to the entry); `None` if any is an error.
    pub fn validate(&self, found: &mut Findings) -> Option<ProbeSettings> {
        self.validate_at(Path::new("."), found)
    }

    /// [`validate`](Self::validate) with `*_file` paths relative to `base`
    /// (the configuration file's directory).
    pub fn validate_at(&self, base: &Path, found: &mut Findings) -> Option<ProbeSettings> {
        let before = found.errors.len();
        let cadence = self.common.cadence(self.kind.defaults(), found);
        let (rise, fall) = self.common.hysteresis(found);
        let kind = self.kind.validate(&cadence, base, found);
        if found.errors.len() > before {
            return None;
        }
        Some(ProbeSettings {
            id: self.common.id.clone(),
            type_name: self.kind.name(),
            cadence,
            rise,
            fall,
            kind: kind?,
        })
    }

    /// [`validate`](Self::validate) for callers that only want the result.
    pub fn settings(&self) -> Result<ProbeSettings, Findings> {
        let mut found = Findings::default();
        self.validate(&mut found).ok_or(found)
    }
}

impl CommonConfig {
    /// The keys every type has.
    pub fn keys() -> &'static [&'static str] {
        fields_of::<CommonConfig>()
    }

    /// The configured durations, or the type's defaults; a default fast
    /// interval or timeout never exceeds the interval.
    fn cadence(&self, defaults: KindDefaults, found: &mut Findings) -> Cadence {
        let interval = self.interval.unwrap_or(defaults.interval).get();
        let or_default = |set: Option<Dur>, default: Dur| {
            set.map(Dur::get).unwrap_or(default.get().min(interval))
        };
        let cadence = Cadence {
            interval,
            fast_interval: or_default(self.fast_interval, defaults.fast_interval),
            timeout: or_default(self.timeout, defaults.timeout),
        };
        let ms = Duration::from_millis;
        let hour = Duration::from_secs(3600);
        let floor = defaults.min_interval.get();
        found.range("interval", cadence.interval, floor, hour);
        found.range("fast_interval", cadence.fast_interval, floor, hour);
        found.range("timeout", cadence.timeout, ms(10), Duration::from_secs(120));
        if cadence.fast_interval > interval {
            found.err("fast_interval", "must not be longer than interval: it is the faster cadence used while confirming a change");
        }
        if cadence.timeout > interval {
            found.warn(
                "timeout",
                "longer than interval: a slow target delays this probe's next check",
            );
        }
        cadence
    }

    fn hysteresis(&self, found: &mut Findings) -> (u32, u32) {
        let rise = self.rise.unwrap_or(RISE);
        let fall = self.fall.unwrap_or(FALL);
        for (k, v) in [("rise", rise), ("fall", fall)] {
            if !(1..=100).contains(&v) {
                found.err(
                    k,
                    format!("{v} is out of range: must be 1 to 100 consecutive results"),
                );
            }
        }
        (rise, fall)
    }
}

/// Problems found in one entry, keyed below it (`target`, `accept[2]`).
#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub key: String,
    pub reason: String,
}

impl Findings {
    pub fn err(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(Finding {
            key: key.into(),
            reason: reason.into(),
        });
    }

    pub fn warn(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push(Finding {
            key: key.into(),
            reason: reason.into(),
        });
    }

    /// Records an error unless `min <= d <= max`.
    pub fn range(&mut self, key: &str, d: Duration, min: Duration, max: Duration) {
        if d < min || d > max {
            self.err(
                key,
                format!("{} is out of range ({} to {})", Dur(d), Dur(min), Dur(max)),
            );
        }
    }

    /// Records `result`'s error at `key`; the value if there was none.
    pub fn check<T>(&mut self, key: impl Into<String>, result: Result<T, String>) -> Option<T> {
        result.map_err(|why| self.err(key, why)).ok()
    }
}

impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "{}: {}", e.key, e.reason)?;
        }
        Ok(())
    }
}

/// The field names a derived `Deserialize` struct accepts, read by asking it
/// to deserialize from a deserializer that only records them.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("field names recorded"))
    }

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads parts from JSON, as the config loader does from TOML.
    struct FromJson(serde_json::Value);

    impl LoadPart for FromJson {
        fn load<T: DeserializeOwned>(&mut self) -> Option<T> {
            serde_json::from_value(self.0.clone()).ok()
        }
    }

    #[test]
    fn the_kind_table_agrees_with_the_structs_and_names() {
        assert_eq!(
            CommonConfig::keys(),
            ["id", "interval", "fast_interval", "timeout", "rise", "fall"]
        );
        let kinds = KindConfig::kinds::<FromJson>();
        assert_eq!(kinds[0].keys, ["target", "accept", "from_user"]);
        assert_eq!(kinds[3].keys, ["url", "value", "min", "headers"]);
        for k in kinds {
            let loaded = (k.load)(&mut FromJson(serde_json::json!({}))).unwrap();
            assert_eq!(loaded.name(), k.name);
            let tagged = serde_json::json!({"id": "x", "type": k.name});
            let via_serde: ProbeConfig = serde_json::from_value(tagged).unwrap();
            assert_eq!(via_serde.kind.name(), k.name);
        }
    }

    fn entry(v: serde_json::Value) -> ProbeConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_are_per_type_and_bounded_by_the_interval() {
        let secs = Duration::from_secs;
        for (v, want) in [
            (
                serde_json::json!({"id": "t", "type": "sip", "target": "sip:h"}),
                (secs(10), secs(2), secs(2)),
            ),
            (
                serde_json::json!({"id": "c", "type": "http", "url": "https://h/"}),
                (secs(10), secs(2), secs(5)),
            ),
            (
                serde_json::json!({"id": "s", "type": "statuspage", "url": "https://h/"}),
                (secs(60), secs(2), secs(5)),
            ),
            (
                serde_json::json!({"id": "a", "type": "agents", "url": "https://h/", "value": "$.n", "interval": "1s"}),
                (secs(1), secs(1), secs(1)),
            ),
        ] {
            let s = entry(v).settings().unwrap();
            let c = s.cadence;
            assert_eq!((c.interval, c.fast_interval, c.timeout), want, "{}", s.id);
            assert_eq!((s.rise, s.fall), (RISE, FALL));
        }
    }

    #[test]
    fn common_keys_are_checked() {
        let f = entry(serde_json::json!({
            "id": "t", "type": "sip", "target": "sip:h",
            "interval": "1s", "fast_interval": "2s", "timeout": "5m", "rise": 0
        }))
        .settings()
        .unwrap_err();
        let keys: Vec<&str> = f.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["timeout", "fast_interval", "rise"], "{f}");
    }

    #[test]
    fn serde_rejects_keys_of_another_type() {
        let e = serde_json::from_value::<ProbeConfig>(serde_json::json!({
            "id": "c", "type": "http", "url": "https://h/", "accept": ["2xx"]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `accept`"), "{e}");
    }
}
