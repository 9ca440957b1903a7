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
use crate::store::SnapshotDoc;

/// What the loop persists beside the engine snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Progress {
    /// The last queued input applied to the engine (0: none).
    #[serde(default)]
    pub inputs_applied: i64,
    #[serde(default)]
    pub alert_order: Order,
}

/// The document to store: the engine snapshot's fields (a [`Snapshot`], or
/// the engine's [`SnapshotView`] of one) and the progress, encoded straight
/// to JSON text (no intermediate tree).
///
/// `capacity`: the buffer to start with, in bytes (the previous document's
/// length, see [`SnapshotDoc::encode`]).
///
/// [`Snapshot`]: crate::engine::snapshot::Snapshot
/// [`SnapshotView`]: crate::engine::snapshot::SnapshotView
pub(super) fn encode<E: Serialize>(
    engine: &E,
    progress: &Progress,
    capacity: usize,
) -> Result<SnapshotDoc, serde_json::Error> {
    #[derive(Serialize)]
    struct Document<'a, E> {
        #[serde(flatten)]
        engine: &'a E,
        #[serde(flatten)]
        progress: &'a Progress,
    }
    SnapshotDoc::encode(&Document { engine, progress }, capacity)
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
    use crate::domain::{AlertKey, ProbeOutcome, Timestamp};
    use crate::engine::snapshot::Snapshot;
    use crate::engine::{Engine, Event};

    /// An engine with two probes, one of them failing, and a firing alert.
    fn engine() -> Engine {
        let src = r#"
[profiles.backup]
default = "+14155550100"
[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:a.example.net"
[[probes]]
id = "trunk-b"
type = "sip"
target = "sip:b.example.net"
[[rules]]
name = "voice"
profile = "backup"
when = { alert = ['alertname="VoiceDown"'] }
"#;
        let config = crate::config::from_toml_str(src, "test").expect("valid");
        let mut engine = Engine::new(config.engine_spec());
        let events = [
            Event::ProbeResult {
                probe: "trunk-a".into(),
                outcome: ProbeOutcome::success("200 OK", None),
            },
            Event::ProbeResult {
                probe: "trunk-b".into(),
                outcome: ProbeOutcome::failure("timeout", None),
            },
            Event::AlertFiring {
                key: AlertKey {
                    source: "alertmanager".into(),
                    id: "a1".into(),
                },
                labels: [("alertname".to_string(), "VoiceDown".to_string())].into(),
                summary: Some("voice is down".into()),
            },
        ];
        for (i, event) in events.into_iter().enumerate() {
            engine.step(event, Timestamp(1_000 + i as i64));
        }
        engine
    }

    /// The text is what the tree it replaced held (the engine snapshot's
    /// fields, then the progress's beside them), and restores to the same
    /// snapshot and progress.
    #[test]
    fn the_encoded_document_is_the_snapshot_and_the_progress_side_by_side() {
        let engine = engine();
        let snapshot = engine.snapshot();
        let mut order = Order::default();
        let key = AlertKey {
            source: "alertmanager".into(),
            id: "a1".into(),
        };
        order.record(&key, Timestamp(5), Timestamp(6));
        let p = Progress {
            inputs_applied: 7,
            alert_order: order,
        };
        let doc: serde_json::Value =
            serde_json::from_str(encode(&snapshot, &p, 0).unwrap().as_str()).unwrap();

        let mut tree = serde_json::to_value(&snapshot).unwrap();
        let serde_json::Value::Object(extra) = serde_json::to_value(&p).unwrap() else {
            panic!("progress is an object")
        };
        tree.as_object_mut().unwrap().extend(extra);
        assert_eq!(doc, tree);
        assert!(doc["probes"]["trunk-b"].is_object(), "{doc:#}");
        assert_eq!(
            serde_json::from_value::<Snapshot>(doc.clone()).unwrap(),
            snapshot
        );
        assert_eq!(progress(&doc), p);
        // The persister encodes the engine's view, which borrows the probes'
        // state instead of copying it: the same document.
        let viewed: serde_json::Value =
            serde_json::from_str(encode(&engine.snapshot_view(), &p, 64).unwrap().as_str())
                .unwrap();
        assert_eq!(viewed, doc);
    }

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
        let doc: serde_json::Value =
            serde_json::from_str(encode(&engine().snapshot(), &p, 0).unwrap().as_str()).unwrap();
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
