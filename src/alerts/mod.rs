//! Alert webhooks: `POST /v1/alerts/{source}` turns a monitoring tool's
//! notification into engine events. One family of routes on top of the
//! server's plumbing (`server::error`, `server::auth`, `server::body`).
//!
//! A forged or misparsed alert can send real customers' calls away, so this
//! module is strict at every step, and each step can only *reject*:
//!
//! 1. [`http`]: rate limit per client, authenticate ([`auth`], or an API token
//!    through `server::auth`), check the media type and the body size, read
//!    the body under a timeout (`server::body`);
//! 2. one parser per source (`alertmanager`, `grafana`, `pagerduty`, `datadog`,
//!    `opsgenie`, `statuspage`, `generic`) maps the payload to a list of
//!    [`AlertUpdate`]s, validating *all* of it before anything is emitted;
//! 3. [`dedupe`] drops deliveries the sender already made (PagerDuty
//!    `X-Webhook-Id`, CloudEvents `source`+`id`);
//! 4. the updates go into the engine's channel all at once or not at all.
//!
//! Parsers are pure functions from bytes to updates: no I/O, no clock, no
//! panics on any input (a proptest and cargo-fuzz targets hold them to it).
//!
//! | source | credentials (`[webhooks.NAME]`) | key | fires | resolves | accepted, ignored |
//! |---|---|---|---|---|---|
//! | `alertmanager` | bearer or basic | `fingerprint` (else SHA-256 of labels) | alert `status` `firing` | `resolved` | — |
//! | `grafana` | bearer or basic, + HMAC if set | `fingerprint` | `firing` | `resolved` | — |
//! | `pagerduty` | HMAC `v1=` (and/or custom header) | `event.data.id` | `incident.triggered`, `incident.reopened` | `incident.resolved` | every other event type |
//! | `datadog` | bearer, basic or custom header | `id` + `/scope` | `Triggered`, `Re-Triggered` | `Recovered` | `Warn`, `Re-Warn`, `No Data`, `Re-No Data` |
//! | `opsgenie` | bearer, basic or custom header | `alert.alertId` (else `alias`) | `Create` | `Close`, `Delete` | every other action |
//! | `statuspage` | secret path token only | component id / incident id | status not `operational` / not `resolved`,`postmortem`,`completed` | the others | — |
//! | `generic` | bearer or basic | `id` (CloudEvents: `data.id` or `subject`) | `firing` | `resolved` | — |
//!
//! Every route but `statuspage` also accepts an API token with the `alerts`
//! scope instead of the source's credentials. Unknown status values are 422,
//! except Statuspage's, which count as degraded (firing). The labels each
//! source sets are listed in its module.

pub mod alertmanager;
pub mod auth;
pub mod datadog;
pub mod dedupe;
pub mod generic;
pub mod grafana;
pub mod http;
pub mod intake;
pub mod opsgenie;
pub mod order;
pub mod pagerduty;
pub mod ratelimit;
pub mod statuspage;

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::domain::AlertKey;
use crate::engine::event::Event;
use crate::server::body::{MediaType, ParseError, check_well_formed};
use crate::server::error::truncate;

pub use http::{AlertsState, Clock, router};
pub use intake::{Intake, IntakeError};

/// Longest accepted alert id (fingerprint, incident id...). Real ids are tens
/// of bytes; the cap keeps a hostile payload from bloating engine state.
pub const MAX_ID_LEN: usize = 512;
/// Most labels one alert may carry.
pub const MAX_LABELS: usize = 128;
/// Longest label name or value; summaries are cut to about this length.
pub const MAX_LABEL_LEN: usize = 4096;

/// One alert's new state, as every source reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertUpdate {
    pub key: AlertKey,
    /// `true`: the alert fires (or is refreshed); `false`: it is resolved.
    pub firing: bool,
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
    /// When the sender says the change happened, if it says so: used to
    /// ignore an older event delivered after a newer one (see `order`).
    pub at: Option<crate::domain::Timestamp>,
}

impl AlertUpdate {
    /// Sets the sender's event time.
    pub fn at(mut self, at: Option<crate::domain::Timestamp>) -> Self {
        self.at = at;
        self
    }

    pub fn firing(
        source: Source,
        id: impl Into<String>,
        labels: BTreeMap<String, String>,
        summary: Option<String>,
    ) -> Self {
        AlertUpdate {
            key: source.key(id),
            firing: true,
            labels,
            summary,
            at: None,
        }
    }

    pub fn resolved(
        source: Source,
        id: impl Into<String>,
        labels: BTreeMap<String, String>,
    ) -> Self {
        AlertUpdate {
            key: source.key(id),
            firing: false,
            labels,
            summary: None,
            at: None,
        }
    }

    /// The engine event for this update. A resolved alert needs only its key.
    pub fn into_event(self) -> Event {
        self.into_input().into_event()
    }

    /// The queued input for this update: the event plus the sender's event
    /// time, which the applier checks against what it already applied.
    pub fn into_input(self) -> crate::store::Input {
        use crate::store::Input;
        if self.firing {
            Input::AlertFiring {
                key: self.key,
                labels: self.labels,
                summary: self.summary,
                at: self.at,
            }
        } else {
            Input::AlertResolved {
                key: self.key,
                at: self.at,
            }
        }
    }

    /// Bounds on what one update may carry. Checked for every update of a
    /// delivery before any of them is emitted.
    pub fn validate(&self) -> Result<(), ParseError> {
        let id = &self.key.id;
        if id.trim().is_empty() {
            return Err(ParseError::Invalid("alert id is empty".into()));
        }
        if id.len() > MAX_ID_LEN {
            return Err(ParseError::Invalid(format!(
                "alert id is {} bytes long (max {MAX_ID_LEN})",
                id.len()
            )));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(ParseError::Invalid(format!(
                "alert {id:?} has {} labels (max {MAX_LABELS})",
                self.labels.len()
            )));
        }
        for (k, v) in &self.labels {
            if k.is_empty() {
                return Err(ParseError::Invalid(format!(
                    "alert {id:?} has a label with an empty name"
                )));
            }
            if k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN {
                return Err(ParseError::Invalid(format!(
                    "alert {id:?}: label {:?} is longer than {MAX_LABEL_LEN} bytes",
                    truncate(k, 64)
                )));
            }
        }
        Ok(())
    }
}

/// What a parser made of one delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Updates to emit, in payload order.
    pub updates: Vec<AlertUpdate>,
    /// Notifications understood but deliberately not acted on (a PagerDuty
    /// acknowledgement, an Opsgenie note, a Datadog warning...).
    pub ignored: usize,
    /// A delivery id from the body (PagerDuty `event.id`, CloudEvents
    /// `source`+`id`), used for dedupe when no header carries one.
    pub delivery_id: Option<String>,
}

impl Parsed {
    fn push(&mut self, u: AlertUpdate) {
        self.updates.push(u);
    }

    /// Validates every update (the first bad one rejects the whole delivery)
    /// and shortens long summaries: a summary is prose for humans, so an
    /// overlong one is cut rather than a reason to drop the alert.
    pub fn validate(mut self) -> Result<Parsed, ParseError> {
        for u in &mut self.updates {
            u.validate()?;
            if let Some(s) = &mut u.summary
                && s.len() > MAX_LABEL_LEN
            {
                let cut = truncate(s, MAX_LABEL_LEN / 4).len();
                s.truncate(cut);
                s.push('…');
            }
        }
        Ok(self)
    }
}

/// The alert sources, one per route and one module each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Alertmanager,
    Grafana,
    PagerDuty,
    Datadog,
    Opsgenie,
    Statuspage,
    Generic,
}

impl Source {
    pub const ALL: [Source; 7] = [
        Source::Alertmanager,
        Source::Grafana,
        Source::PagerDuty,
        Source::Datadog,
        Source::Opsgenie,
        Source::Statuspage,
        Source::Generic,
    ];

    /// Route segment, `[webhooks.NAME]` key, `AlertKey::source` and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::PagerDuty => "pagerduty",
            Source::Datadog => "datadog",
            Source::Opsgenie => "opsgenie",
            Source::Statuspage => "statuspage",
            Source::Generic => "generic",
        }
    }

    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn key(self, id: impl Into<String>) -> AlertKey {
        AlertKey {
            source: self.as_str().to_string(),
            id: id.into(),
        }
    }

    /// Parses and validates one delivery. Never panics, whatever the bytes.
    pub fn parse(self, body: &[u8], media: MediaType) -> Result<Parsed, ParseError> {
        check_well_formed(body)?;
        let parsed = match self {
            Source::Alertmanager => alertmanager::parse(body)?,
            Source::Grafana => grafana::parse(body)?,
            Source::PagerDuty => pagerduty::parse(body)?,
            Source::Datadog => datadog::parse(body)?,
            Source::Opsgenie => opsgenie::parse(body)?,
            Source::Statuspage => statuspage::parse(body)?,
            Source::Generic => match media {
                MediaType::CloudEvent => generic::parse_cloudevent(body)?,
                MediaType::CloudEventBatch => generic::parse_cloudevent_batch(body)?,
                MediaType::Json => generic::parse(body)?,
            },
        };
        parsed.validate()
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fallback alert id when a source gives no fingerprint: the first 16 hex
/// digits of SHA-256 over the sorted labels. SHA-256 rather than `Hash`, since
/// the id is persisted and must not change between Rust releases.
pub fn labels_fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        // Length-prefixed, so `a=bc` and `ab=c` differ.
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Inserts `k=v` when `v` is present and not blank.
fn put(labels: &mut BTreeMap<String, String>, k: &str, v: Option<&str>) {
    if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) {
        labels.insert(k.to_string(), v.to_string());
    }
}

/// Serde helpers shared by the parsers.
mod de {
    use serde::{Deserialize, Deserializer};

    /// A string that some templates send as a number (`"id": $ALERT_ID`).
    pub fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Sn {
            S(String),
            U(u64),
            I(i64),
        }
        Ok(match Sn::deserialize(d)? {
            Sn::S(s) => s,
            Sn::U(n) => n.to_string(),
            Sn::I(n) => n.to_string(),
        })
    }

    /// Same as [`string_or_number`], but `null` or absent is `None`.
    pub fn opt_string_or_number<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Sn {
            S(String),
            U(u64),
            I(i64),
            F(f64),
        }
        Ok(Option::<Sn>::deserialize(d)?.map(|v| match v {
            Sn::S(s) => s,
            Sn::U(n) => n.to_string(),
            Sn::I(n) => n.to_string(),
            Sn::F(n) => n.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests;

/// A sender's event time given as RFC 3339 text.
pub(crate) fn rfc3339_time(s: Option<&str>) -> Option<crate::domain::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(s?.trim()).ok()?;
    Some(crate::domain::Timestamp(t.timestamp_millis()))
}

/// A sender's event time given as a Unix epoch number (or numeric string) in
/// seconds, milliseconds, microseconds or nanoseconds, told apart by size
/// (senders differ: Datadog `$DATE_POSIX` is seconds, Opsgenie `updatedAt`
/// nanoseconds).
pub(crate) fn epoch_time(v: Option<&serde_json::Value>) -> Option<crate::domain::Timestamp> {
    let n: f64 = match v? {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    if !n.is_finite() || n <= 0.0 {
        return None;
    }
    let ms = if n < 1e11 {
        n * 1e3
    } else if n < 1e14 {
        n
    } else if n < 1e17 {
        n / 1e3
    } else {
        n / 1e6
    };
    Some(crate::domain::Timestamp(ms as i64))
}

#[cfg(test)]
mod time_tests {
    use super::*;
    use crate::domain::Timestamp;

    #[test]
    fn epoch_units_are_told_apart_by_size() {
        let ms = Timestamp(1_420_452_193_166);
        assert_eq!(
            epoch_time(Some(&serde_json::json!(1_420_452_193_166_002_000u64))),
            Some(ms),
            "ns"
        );
        assert_eq!(
            epoch_time(Some(&serde_json::json!(1_420_452_193_166_002u64))),
            Some(ms),
            "us"
        );
        assert_eq!(
            epoch_time(Some(&serde_json::json!(1_420_452_193_166u64))),
            Some(ms),
            "ms"
        );
        assert_eq!(
            epoch_time(Some(&serde_json::json!("1420452193"))),
            Some(Timestamp(1_420_452_193_000)),
            "s as text"
        );
        assert_eq!(epoch_time(Some(&serde_json::json!("$DATE_POSIX"))), None);
        assert_eq!(epoch_time(Some(&serde_json::json!(-5))), None);
        assert_eq!(
            rfc3339_time(Some("2013-05-29T21:32:28Z")),
            Some(Timestamp(1_369_863_148_000))
        );
        assert_eq!(rfc3339_time(Some("yesterday")), None);
    }

    #[test]
    fn change_only_senders_carry_their_event_time() {
        let og = opsgenie::parse(br#"{"action":"Create","alert":{"alertId":"a1","message":"m","updatedAt":1420452193166002000,"createdAt":1420452191104}}"#).unwrap();
        assert_eq!(og.updates[0].at, Some(Timestamp(1_420_452_193_166)));
        let dd =
            datadog::parse(br#"{"id":"12","transition":"Recovered","date":"1420452193"}"#).unwrap();
        assert_eq!(dd.updates[0].at, Some(Timestamp(1_420_452_193_000)));
        let sp = statuspage::parse(br#"{"component_update":{"component_id":"c9","new_status":"major_outage","created_at":"2013-05-29T21:32:28Z"}}"#).unwrap();
        assert_eq!(sp.updates[0].at, Some(Timestamp(1_369_863_148_000)));
        let inc = statuspage::parse(
            br#"{"incident":{"id":"i1","status":"resolved","updated_at":"2013-05-29T21:32:28Z"}}"#,
        )
        .unwrap();
        assert_eq!(inc.updates[0].at, Some(Timestamp(1_369_863_148_000)));
        let am = alertmanager::parse(br#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"X"},"fingerprint":"f"}]}"#);
        assert!(
            am.map(|p| p.updates.iter().all(|u| u.at.is_none()))
                .unwrap_or(true),
            "re-sending sources are not ordered"
        );
    }
}
