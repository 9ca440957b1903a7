//! Fault injection: make the next N calls of one operation (or any) slow,
//! fail with a status, or drop the connection without answering.
//!
//! `POST /_sim/faults` takes one [`Fault`] as JSON, e.g.
//! `{"op":"put_activation","status":503,"count":2,"retry_after":"1"}`,
//! `{"latency_ms":3000,"count":1}`, `{"drop":true}`, `{"wrong_body":true}` or
//! a seeded random mix of them all for every call until cleared:
//! `{"mix":{"percent":50,"seed":7,"timeout_ms":1500,"retry_after":"1"},"count":0}`.

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

/// Which calls a fault applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultOp {
    #[default]
    Any,
    Token,
    GetSettings,
    PutSettings,
    GetActivation,
    PutActivation,
}

impl FaultOp {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultOp::Any => "any",
            FaultOp::Token => "token",
            FaultOp::GetSettings => "get_settings",
            FaultOp::PutSettings => "put_settings",
            FaultOp::GetActivation => "get_activation",
            FaultOp::PutActivation => "put_activation",
        }
    }

    fn matches(self, op: FaultOp) -> bool {
        self == FaultOp::Any || self == op
    }
}

fn one() -> u32 {
    1
}

/// A seeded random mix: each matching call, with `percent` % probability,
/// gets one of a 5xx, a 429 with `Retry-After`, a timeout (an answer after
/// `timeout_ms`, applied like a slow server's), a dropped connection or a
/// `200` with the wrong body, picked by a generator seeded with `seed`: the
/// same seed gives the same faults for the same sequence of calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    pub percent: u8,
    pub seed: u64,
    /// How long a "timeout" waits before answering: make it longer than the
    /// client's request timeout.
    pub timeout_ms: u64,
    /// `Retry-After` sent with the 429s (none if absent).
    #[serde(default)]
    pub retry_after: Option<String>,
}

impl Mix {
    /// This call's fault, if the generator picks one.
    fn roll(&self, rng: &mut StdRng, op: FaultOp) -> Option<Fault> {
        if rng.random_range(0..100u8) >= self.percent {
            return None;
        }
        let one = Fault {
            op,
            ..Fault::default()
        };
        Some(match rng.random_range(0..6u8) {
            0 => Fault::status(op, 500, 1),
            1 => Fault::status(op, 503, 1),
            2 => match &self.retry_after {
                Some(ra) => Fault::status(op, 429, 1).with_retry_after(ra),
                None => Fault::status(op, 429, 1),
            },
            3 => Fault::latency(op, self.timeout_ms, 1),
            4 => Fault::drop_connection(op, 1),
            _ => Fault {
                wrong_body: true,
                ..one
            },
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default)]
    pub op: FaultOp,
    /// Answer with this status (and a Talkdesk-style error body) instead of serving.
    #[serde(default)]
    pub status: Option<u16>,
    /// `Retry-After` header value sent with `status` (e.g. `"1"`).
    #[serde(default)]
    pub retry_after: Option<String>,
    /// Wait this long before answering (the request is still served afterwards
    /// unless `status` or `drop` is set, like a slow server that did apply it).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Close the connection without any response.
    #[serde(default)]
    pub drop: bool,
    /// Answer `200 OK` with the wrong body, like a misrouted proxy or a
    /// half-deployed backend: a write is not applied and its reply shows
    /// what the account still has; a read gets a page that is not the API's.
    #[serde(default)]
    pub wrong_body: bool,
    /// Instead of one fault, a seeded random one per call (see [`Mix`]).
    #[serde(default)]
    pub mix: Option<Mix>,
    /// How many matching calls this fault affects; 0 means until cleared.
    #[serde(default = "one")]
    pub count: u32,
}

impl Fault {
    /// `count` calls of `op` answer `status`.
    pub fn status(op: FaultOp, status: u16, count: u32) -> Fault {
        Fault {
            op,
            status: Some(status),
            count,
            ..Fault::default()
        }
    }

    pub fn with_retry_after(mut self, v: &str) -> Fault {
        self.retry_after = Some(v.to_string());
        self
    }

    pub fn latency(op: FaultOp, ms: u64, count: u32) -> Fault {
        Fault {
            op,
            latency_ms: Some(ms),
            count,
            ..Fault::default()
        }
    }

    pub fn drop_connection(op: FaultOp, count: u32) -> Fault {
        Fault {
            op,
            drop: true,
            count,
            ..Fault::default()
        }
    }

    /// Short label for the journal.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ms) = self.latency_ms {
            parts.push(format!("latency {ms}ms"));
        }
        if self.drop {
            parts.push("drop".to_string());
        }
        if self.wrong_body {
            parts.push("wrong body".to_string());
        }
        if let Some(m) = &self.mix {
            parts.push(format!("mix {}% seed {}", m.percent, m.seed));
        }
        if let Some(s) = self.status {
            parts.push(format!("status {s}"));
        }
        if let Some(r) = &self.retry_after {
            parts.push(format!("retry-after {r}"));
        }
        parts.join(", ")
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(s) = self.status
            && !(100..=599).contains(&s)
        {
            return Err(format!("status {s} is not an HTTP status"));
        }
        if let Some(m) = &self.mix {
            if m.percent > 100 {
                return Err(format!("mix.percent {} is more than 100", m.percent));
            }
            if m.timeout_ms == 0 {
                return Err("mix.timeout_ms must be more than 0".into());
            }
            if self.status.is_some() || self.latency_ms.is_some() || self.drop || self.wrong_body {
                return Err("a mix picks its own faults: give it alone (with op and count)".into());
            }
            return Ok(());
        }
        if self.status.is_none() && self.latency_ms.is_none() && !self.drop && !self.wrong_body {
            return Err("a fault needs status, latency_ms, drop, wrong_body or mix".into());
        }
        Ok(())
    }
}

/// Faults waiting to fire, first match wins.
#[derive(Default)]
pub(crate) struct Faults {
    pending: Vec<Fault>,
    /// The generator of the last mix added (seeded by it).
    rng: Option<StdRng>,
}

impl Faults {
    pub fn add(&mut self, f: Fault) {
        if let Some(m) = &f.mix {
            self.rng = Some(StdRng::seed_from_u64(m.seed));
        }
        self.pending.push(f);
    }

    pub fn clear(&mut self) {
        self.pending.clear();
        self.rng = None;
    }

    pub fn list(&self) -> Vec<Fault> {
        self.pending.clone()
    }

    /// The fault that applies to this call, consuming one of its uses.
    pub fn take(&mut self, op: FaultOp) -> Option<Fault> {
        let i = self.pending.iter().position(|f| f.op.matches(op))?;
        let f = self.pending[i].clone();
        match self.pending[i].count {
            0 => {}
            1 => {
                self.pending.remove(i);
            }
            _ => self.pending[i].count -= 1,
        }
        match &f.mix {
            Some(mix) => {
                let rng = self
                    .rng
                    .get_or_insert_with(|| StdRng::seed_from_u64(mix.seed));
                mix.roll(rng, op)
            }
            None => Some(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_count_times_in_order() {
        let mut fs = Faults::default();
        fs.add(Fault::status(FaultOp::PutActivation, 503, 2));
        fs.add(Fault::drop_connection(FaultOp::Any, 1));
        assert_eq!(fs.take(FaultOp::PutActivation).unwrap().status, Some(503));
        assert!(fs.take(FaultOp::GetSettings).unwrap().drop);
        assert_eq!(fs.take(FaultOp::PutActivation).unwrap().status, Some(503));
        assert!(fs.take(FaultOp::PutActivation).is_none());
    }

    #[test]
    fn fault_json_shape() {
        let f: Fault = serde_json::from_str(
            r#"{"op":"put_activation","status":503,"count":2,"retry_after":"1"}"#,
        )
        .unwrap();
        assert_eq!(f.count, 2);
        let f: Fault = serde_json::from_str(r#"{"latency_ms":3000}"#).unwrap();
        assert_eq!((f.op, f.count), (FaultOp::Any, 1));
        assert!(serde_json::from_str::<Fault>(r#"{"op":"nope","drop":true}"#).is_err());
        assert!(Fault::default().validate().is_err());
        let f: Fault = serde_json::from_str(r#"{"wrong_body":true}"#).unwrap();
        assert!(f.validate().is_ok());
        let f: Fault =
            serde_json::from_str(r#"{"mix":{"percent":50,"seed":7,"timeout_ms":100},"count":0}"#)
                .unwrap();
        assert!(f.validate().is_ok());
        let mut bad = f.clone();
        bad.drop = true;
        assert!(bad.validate().is_err(), "a mix with a fault of its own");
        let mut bad = f;
        bad.mix.as_mut().unwrap().percent = 101;
        assert!(bad.validate().is_err());
    }

    /// The same seed gives the same faults for the same calls; about
    /// `percent` of the calls get one; every kind comes up.
    #[test]
    fn a_mix_is_seeded_and_covers_every_kind() {
        let mix = Fault {
            mix: Some(Mix {
                percent: 50,
                seed: 7,
                timeout_ms: 1500,
                retry_after: Some("1".into()),
            }),
            count: 0,
            ..Fault::default()
        };
        let run = || {
            let mut fs = Faults::default();
            fs.add(mix.clone());
            (0..2000)
                .map(|_| fs.take(FaultOp::PutActivation).map(|f| f.label()))
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same faults");
        let hit = a.iter().flatten().count();
        assert!((900..=1100).contains(&hit), "{hit} of 2000 calls");
        for kind in [
            "status 500",
            "status 503",
            "status 429, retry-after 1",
            "latency 1500ms",
            "drop",
            "wrong body",
        ] {
            assert!(
                a.iter().flatten().any(|l| l == kind),
                "{kind} never came up"
            );
        }
    }
}
