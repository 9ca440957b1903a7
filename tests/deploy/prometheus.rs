//! deploy/prometheus/ and deploy/alertmanager/: the real validators
//! (`promtool check rules`, `amtool check-config`), every expression against
//! the agent's metrics, and every alert tied to its section of
//! docs/runbook.md by a `runbook_url` annotation, both ways.

use std::collections::BTreeSet;

use super::tools;

const RULES: &str = "deploy/prometheus/continuity-agent.rules.yml";
const RUNBOOK: &str = "docs/runbook.md";

fn alerts() -> Vec<serde_json::Value> {
    let doc = super::yaml_file(RULES);
    doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn promtool_accepts_the_rules() {
    let out = tools::run(
        "promtool",
        "prometheus",
        &[
            "check",
            "rules",
            &super::repo().join(RULES).to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "{}", tools::text(&out));
}

#[test]
fn rules_name_only_metrics_the_agent_exports() {
    let alerts = alerts();
    assert!(alerts.len() >= 6);
    for rule in &alerts {
        let name = rule["alert"].as_str().expect("alerting rules only");
        super::promql::check(&format!("{RULES}: {name}"), rule["expr"].as_str().unwrap());
        assert!(
            rule["annotations"]["summary"].is_string(),
            "{name}: summary"
        );
        assert!(
            ["page", "warning", "info"]
                .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
    }
}

/// GitHub's anchor for a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_has_a_runbook_section_and_links_to_it() {
    let runbook = super::read(RUNBOOK);
    let mut in_alerts = false;
    let mut sections = BTreeSet::new();
    for line in runbook.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            in_alerts = h.trim() == "Alerts";
        } else if let Some(h) = line.strip_prefix("### ").filter(|_| in_alerts) {
            sections.insert(h.trim().to_string());
        }
    }
    let names: BTreeSet<String> = alerts()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names, sections,
        "{RULES} alerts vs the \"### \" sections under \"## Alerts\" in {RUNBOOK}"
    );
    for rule in alerts() {
        let name = rule["alert"].as_str().unwrap();
        let want = format!(
            "{}/blob/main/{RUNBOOK}#{}",
            env!("CARGO_PKG_REPOSITORY"),
            anchor(name)
        );
        assert_eq!(
            rule["annotations"]["runbook_url"],
            want.as_str(),
            "{name}: runbook_url"
        );
    }
}

#[test]
fn alertmanager_receiver_is_a_valid_config_fragment() {
    let fragment = super::yaml_file("deploy/alertmanager/receiver.yml");
    let mut receivers = vec![serde_json::json!({ "name": "default" })];
    receivers.extend(fragment["receivers"].as_array().unwrap().iter().cloned());
    let config = serde_json::json!({
        "route": { "receiver": "default", "routes": fragment["route"]["routes"] },
        "receivers": receivers,
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alertmanager.yml");
    std::fs::write(&file, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    let out = tools::run(
        "amtool",
        "prometheus-alertmanager",
        &["check-config", &file.to_string_lossy()],
    );
    assert!(out.status.success(), "{}", tools::text(&out));

    let hook = &fragment["receivers"][0]["webhook_configs"][0];
    assert!(
        hook["url"]
            .as_str()
            .unwrap()
            .ends_with(":8080/v1/alerts/alertmanager"),
        "{hook}"
    );
    assert_eq!(
        hook["send_resolved"], true,
        "resolved notifications switch the fallback off"
    );
    // Re-sent well within the agent's alerts.ttl (15m), or a firing alert expires.
    let repeat = humantime::parse_duration(
        fragment["route"]["routes"][0]["repeat_interval"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(
        repeat.as_secs() * 2 <= 15 * 60,
        "repeat_interval {repeat:?} too close to alerts.ttl"
    );
}

/// An alert on a per-account series fires once per account: its summary
/// says which, or a page from a deployment of several accounts would not.
#[test]
fn per_account_alerts_name_the_account() {
    use continuity_agent::telemetry::metrics::ACCOUNT_METRICS;
    for rule in alerts() {
        let name = rule["alert"].as_str().unwrap();
        let selected = super::promql::selected(name, rule["expr"].as_str().unwrap());
        if selected
            .iter()
            .any(|s| ACCOUNT_METRICS.contains(&s.as_str()))
        {
            let summary = rule["annotations"]["summary"].as_str().unwrap();
            assert!(
                summary.contains("{{ $labels.account }}"),
                "{name}: {summary:?} does not name the account"
            );
        }
    }
}
