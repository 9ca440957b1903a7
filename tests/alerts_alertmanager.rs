//! A real Prometheus Alertmanager delivering to the webhook route: its v4
//! payload, its fingerprints, its bearer `authorization`, and its resolved
//! notifications, rather than our reading of the docs.
//!
//! Alertmanager is required: if it is missing this test FAILS with
//! instructions rather than skip (scripts/test installs Debian's
//! `prometheus-alertmanager`). Set `ALERTMANAGER=/path/to/alertmanager` to use
//! another binary.

mod alerts_support;

use std::net::TcpListener as StdTcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alerts_support::*;
use continuity_agent::domain::AlertKey;
use continuity_agent::engine::event::Event;

const CONFIG: &str = r#"
[webhooks.alertmanager]
bearer_token = "am-real-token-0123456789"
"#;

fn alertmanager_bin() -> String {
    let candidates = match std::env::var("ALERTMANAGER") {
        Ok(b) => vec![b],
        Err(_) => vec!["prometheus-alertmanager".into(), "alertmanager".into()],
    };
    for bin in &candidates {
        if Command::new(bin).arg("--version").output().is_ok() {
            return bin.clone();
        }
    }
    panic!(
        "Alertmanager is required for this test but none of {candidates:?} can run. \
         Install it (Debian/Ubuntu: `apt-get install prometheus-alertmanager`) \
         or set ALERTMANAGER=/path/to/alertmanager."
    );
}

/// An Alertmanager child process, killed on drop.
struct Alertmanager {
    child: Child,
    api: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts Alertmanager with two receivers: alerts labelled `team="intruder"`
/// go out with a wrong token, everything else with the right one.
async fn start_alertmanager(webhook: &str) -> Alertmanager {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
route:
  receiver: continuity
  group_by: ['alertname']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - receiver: intruder
      matchers: ['team="intruder"']
receivers:
  - name: continuity
    webhook_configs:
      - url: "{webhook}"
        send_resolved: true
        http_config:
          authorization:
            credentials: am-real-token-0123456789
  - name: intruder
    webhook_configs:
      - url: "{webhook}"
        http_config:
          authorization:
            credentials: not-the-token
"#
    );
    let cfg_path = dir.path().join("alertmanager.yml");
    std::fs::write(&cfg_path, config).unwrap();
    let port = free_port();
    // Its log goes to a file (it logs the refused forged delivery as an
    // error, which is expected here); shown if it fails to start.
    let log_path = dir.path().join("alertmanager.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(alertmanager_bin())
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn alertmanager");
    let am = Alertmanager {
        child,
        api: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{}/-/ready", am.api)).send().await
            && r.status().is_success()
        {
            return am;
        }
        assert!(
            Instant::now() < deadline,
            "alertmanager did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post_alerts(am: &Alertmanager, alerts: serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.api))
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

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
    let am = start_alertmanager(&format!("{}/v1/alerts/alertmanager", a.base)).await;

    let labels = serde_json::json!({"alertname": "TalkdeskVoiceDown", "severity": "critical"});
    post_alerts(
        &am,
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
    post_alerts(
        &am,
        serde_json::json!([{ "labels": labels, "endsAt": ended.to_rfc3339() }]),
    )
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
    post_alerts(
        &am,
        serde_json::json!([{ "labels": {"alertname": "Forged", "team": "intruder"} }]),
    )
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
