//! Fault injection: make the next N calls of one operation (or any) slow,
//! fail with a status, or drop the connection without answering.
//!
//! `POST /_sim/faults` takes one [`Fault`] as JSON, e.g.
//! `{"op":"put_activation","status":503,"count":2,"retry_after":"1"}`,
//! `{"latency_ms":3000,"count":1}` or `{"drop":true}`.

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
        if self.status.is_none() && self.latency_ms.is_none() && !self.drop {
            return Err("a fault needs status, latency_ms or drop".into());
        }
        Ok(())
    }
}

/// Faults waiting to fire, first match wins.
#[derive(Default)]
pub(crate) struct Faults {
    pending: Vec<Fault>,
}

impl Faults {
    pub fn add(&mut self, f: Fault) {
        self.pending.push(f);
    }

    pub fn clear(&mut self) {
        self.pending.clear();
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
        Some(f)
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
    }
}
