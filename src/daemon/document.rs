//! The stored snapshot document: the engine's snapshot plus what the loop
//! must restore with it, written together (one row, one write) so they can
//! never disagree:
//! - `inputs_applied`: the id of the last queued input the engine state
//!   contains. After a crash or a takeover the loop replays exactly the
//!   inputs after it (`store/inputs.rs`).
//! - `alert_order`: the newest event time applied per alert
//!   (`alerts/order.rs`), so a sender's late retry is still recognised.
//!
//! Both sit beside the engine's own fields in one JSON object; a document
//! written before they existed reads as "nothing applied, nothing
//! remembered", and the engine ignores keys it does not know.

use serde::{Deserialize, Serialize};

use crate::alerts::order::Order;

/// What the loop persists beside the engine snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Progress {
    /// The last queued input applied to the engine (0: none).
    #[serde(default)]
    pub inputs_applied: i64,
    #[serde(default)]
    pub alert_order: Order,
}

/// The document to store: the engine snapshot's fields and the progress.
pub(super) fn encode(
    engine: serde_json::Value,
    progress: &Progress,
) -> Result<serde_json::Value, serde_json::Error> {
    let mut doc = engine;
    if let (serde_json::Value::Object(doc), serde_json::Value::Object(extra)) =
        (&mut doc, serde_json::to_value(progress)?)
    {
        doc.extend(extra);
    }
    Ok(doc)
}

/// The progress stored in a document, each part on its own: an unreadable
/// event-time memory is forgotten (logged), but the cursor is kept, so the
/// inputs the engine already contains are not applied a second time.
pub(super) fn progress(doc: &serde_json::Value) -> Progress {
    let inputs_applied = doc
        .get("inputs_applied")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let alert_order = match doc.get("alert_order") {
        None => Order::default(),
        Some(v) => serde_json::from_value(v.clone()).unwrap_or_else(|error| {
            tracing::warn!(message = "Stored alert event-time memory is unreadable; starting it empty.", %error);
            Order::default()
        }),
    };
    Progress {
        inputs_applied,
        alert_order,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AlertKey, Timestamp};

    #[test]
    fn progress_rides_beside_the_engine_fields_and_defaults_when_absent() {
        let mut order = Order::default();
        let key = AlertKey {
            source: "pagerduty".into(),
            id: "P1".into(),
        };
        order.record(&key, Timestamp(10), Timestamp(20));
        let p = Progress {
            inputs_applied: 42,
            alert_order: order,
        };
        let doc = encode(serde_json::json!({"version": 1, "desired": "inactive"}), &p).unwrap();
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["inputs_applied"], 42);
        assert_eq!(progress(&doc), p);
        assert_eq!(
            progress(&serde_json::json!({"version": 1})),
            Progress::default(),
            "a document from before the queue"
        );
        let damaged = serde_json::json!({"inputs_applied": 9, "alert_order": "garbage"});
        assert_eq!(
            progress(&damaged).inputs_applied,
            9,
            "a damaged memory does not lose the cursor"
        );
    }
}
