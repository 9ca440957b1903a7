//! End to end with a real Prometheus Alertmanager: an alert pushed into
//! Alertmanager's API reaches the agent's webhook, the rule fires, and the
//! Talkdesk simulator sees settings then activation; ending the alert makes
//! Alertmanager send `resolved`, and the fallback goes off after `clear_for`.

mod support;

use std::time::Duration;

use continuity_agent::config;
use continuity_agent::talkdesk::simulator::{self, Simulator};
use serde_json::json;
use tokio::time::Instant;

const TOKEN: &str = "am-e2e-token-0123456789";
const CLEAR_FOR: f64 = 2.0;

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_alert_switches_the_fallback_on_and_its_end_switches_it_off() {
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
{head}[profiles.backup]
default = "+14155558888"
message = {{ text = "Talkdesk voice is down; your call is being forwarded.", language = "en-US" }}
[[rules]]
name = "voice-down"
profile = "backup"
for = "0s"
clear_for = "{CLEAR_FOR}s"
min_active = "1s"
when = {{ alert = ['alertname="TalkdeskVoiceDown"', 'severity=~"critical|page"'] }}
[webhooks.alertmanager]
bearer_token = "{TOKEN}"
"#,
        head = support::store_and_talkdesk(dir.path(), &server.base_url()),
    );
    let cfg =
        config::from_toml_str_strict(&toml, "e2e-alertmanager.toml", dir.path(), false).unwrap();
    let agent = support::inproc::start(cfg).await;
    let am = support::alertmanager::start(&format!("{}/v1/alerts/alertmanager", agent.base), TOKEN)
        .await;
    let writes = || {
        sim.journal()
            .into_iter()
            .filter(|e| e.is_write())
            .map(|e| e.op)
            .collect::<Vec<_>>()
    };

    // A forged delivery (wrong token) changes nothing.
    am.post_alerts(json!([{ "labels": {"alertname": "TalkdeskVoiceDown", "severity": "critical", "team": "intruder"} }])).await;
    let m = agent.running.metrics.clone();
    wait_until("the forged delivery", Duration::from_secs(20), || {
        m.alerts_received_total
            .with_label_values(&["alertmanager", "unauthorized"])
            .get()
            > 0
    })
    .await;
    support::several_reconciles().await;
    assert!(writes().is_empty());

    // The real alert: on, settings first.
    let labels = json!({"alertname": "TalkdeskVoiceDown", "severity": "critical"});
    am.post_alerts(
        json!([{ "labels": labels, "annotations": {"summary": "calls failing in us-east"} }]),
    )
    .await;
    wait_until("activation", Duration::from_secs(20), || {
        sim.state().enabled
    })
    .await;
    assert_eq!(writes(), ["put_settings", "put_activation"]);
    assert_eq!(
        agent
            .running
            .metrics
            .account(config::DEFAULT_ACCOUNT)
            .alerts_active
            .get(),
        1
    );

    // Ending the alert: Alertmanager sends `resolved`; off after clear_for.
    let ended = chrono::Utc::now() - chrono::Duration::seconds(1);
    let end_posted = Instant::now();
    am.post_alerts(json!([{ "labels": labels, "endsAt": ended.to_rfc3339() }]))
        .await;
    let off = wait_until("deactivation", Duration::from_secs(30), || {
        !sim.state().enabled
    })
    .await;
    let took = off.duration_since(end_posted).as_secs_f64();
    assert!(
        took >= CLEAR_FOR,
        "off {took:.2}s after the alert ended, before clear_for"
    );
    assert_eq!(
        writes(),
        ["put_settings", "put_activation", "put_activation"]
    );
    assert_eq!(
        agent
            .running
            .metrics
            .account(config::DEFAULT_ACCOUNT)
            .alerts_active
            .get(),
        0
    );
    agent.stop().await;
}
