//! A real Prometheus Alertmanager delivering to the webhook route: its v4
//! payload, its fingerprints, its bearer `authorization`, and its resolved
//! notifications, rather than our reading of the docs.
//!
//! Alertmanager is required: if it is missing this test FAILS with
//! instructions rather than skip (scripts/test installs Debian's
//! `prometheus-alertmanager`). Set `ALERTMANAGER=/path/to/alertmanager` to use
//! another binary.

mod alerts_support;
mod support;

use std::time::{Duration, Instant};

use alerts_support::*;
use continuity_agent::domain::AlertKey;
use continuity_agent::engine::event::Event;

const CONFIG: &str = r#"
[webhooks.alertmanager]
bearer_token = "am-real-token-0123456789"
"#;

async fn next_event(a: &mut Agent) -> Event {
    tokio::time::timeout(Duration::from_secs(20), a.rx.recv())
        .await
        .expect("an event from Alertmanager within 20s")
        .expect("channel open")
}

#[tokio::test]
async fn real_alertmanager_fires_and_resolves_and_wrong_token_is_refused() {
    let mut a = start(Opts {
        config: CONFIG,
        ..Opts::default()
    })
    .await;
    let am = support::alertmanager::start(
        &format!("{}/v1/alerts/alertmanager", a.base),
        "am-real-token-0123456789",
    )
    .await;

    let labels = serde_json::json!({"alertname": "TalkdeskVoiceDown", "severity": "critical"});
    am.post_alerts(
        serde_json::json!([{ "labels": labels, "annotations": {"summary": "voice down"} }]),
    )
    .await;
    let key: AlertKey = match next_event(&mut a).await {
        Event::AlertFiring {
            key,
            labels,
            summary,
        } => {
            assert_eq!(key.source, "alertmanager");
            assert_eq!(key.id.len(), 16, "Alertmanager's fingerprint: {key:?}");
            assert_eq!(labels["alertname"], "TalkdeskVoiceDown");
            assert_eq!(summary.as_deref(), Some("voice down"));
            key
        }
        other => panic!("expected a firing alert, got {other:?}"),
    };

    // Ending the alert makes Alertmanager send `resolved` for the same fingerprint.
    let ended = chrono::Utc::now() - chrono::Duration::seconds(1);
    am.post_alerts(serde_json::json!([{ "labels": labels, "endsAt": ended.to_rfc3339() }]))
        .await;
    loop {
        match next_event(&mut a).await {
            // A repeat of the firing notification may still be in flight.
            Event::AlertFiring { key: k, .. } if k == key => continue,
            Event::AlertResolved { key: k } => {
                assert_eq!(k, key);
                break;
            }
            other => panic!("expected the resolution, got {other:?}"),
        }
    }

    // Wrong credentials: Alertmanager gets 401 and nothing reaches the engine.
    am.post_alerts(serde_json::json!([{ "labels": {"alertname": "Forged", "team": "intruder"} }]))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.count("alertmanager", "unauthorized") == 0 {
        assert!(
            Instant::now() < deadline,
            "Alertmanager's forged delivery never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a.drain().is_empty(), "a forged delivery emitted events");
}
