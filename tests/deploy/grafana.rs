//! deploy/grafana/continuity-agent.json: an importable dashboard whose every
//! query is valid PromQL over metrics the agent exports, on a `${datasource}`
//! variable, covering what operators look at first.

use serde_json::Value;

const DASHBOARD: &str = "deploy/grafana/continuity-agent.json";

fn dashboard() -> Value {
    serde_json::from_str(&super::read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// The query with the dashboard's own variables replaced by "match anything".
fn substituted(d: &Value, expr: &str) -> String {
    let mut text = expr.to_string();
    for var in d["templating"]["list"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        text = text
            .replace(&format!("${{{name}}}"), ".*")
            .replace(&format!("${name}"), ".*");
    }
    text
}

#[test]
fn dashboard_queries_name_only_exported_metrics() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    assert_eq!(d["uid"], "continuity-agent");
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(
        (ds["type"].as_str(), ds["query"].as_str()),
        (Some("datasource"), Some("prometheus"))
    );
    for var in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(var["datasource"]["uid"], "${datasource}");
        let q = var["query"]["query"].as_str().unwrap();
        let metric = q
            .strip_prefix("label_values(")
            .and_then(|r| r.split(',').next())
            .unwrap_or_else(|| panic!("{q}"));
        super::promql::check(&format!("{DASHBOARD}: variable {}", var["name"]), metric);
    }

    let mut ids = std::collections::BTreeSet::new();
    let mut queries = 0;
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel ids are unique ({title})"
        );
        assert!(
            p["gridPos"]["w"].as_u64().is_some_and(|w| w > 0 && w <= 24),
            "{title}: gridPos"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: datasource"
        );
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "{title}: target datasource"
            );
            let expr = t["expr"].as_str().unwrap();
            super::promql::check(&format!("{DASHBOARD}: {title}"), &substituted(&d, expr));
            queries += 1;
        }
    }
    assert!(queries >= 15, "{queries} queries");
}

#[test]
fn dashboard_covers_state_decisions_probes_talkdesk_and_alerts() {
    let d = dashboard();
    let panels = d["panels"].as_array().unwrap();
    let uses = |metric: &str| {
        panels.iter().any(|p| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["expr"].as_str().unwrap().contains(metric))
        })
    };
    for metric in [
        "continuity_fallback_desired",
        "continuity_fallback_actual",
        "continuity_transitions_total",
        "continuity_rule_state",
        "continuity_probe_up",
        "continuity_probe_results_total",
        "continuity_talkdesk_requests_total",
        "continuity_talkdesk_request_duration_seconds_bucket",
        "continuity_actuation_failures_total",
        "continuity_alerts_active",
        "continuity_alerts_received_total",
        "continuity_leader",
        "continuity_divergence_seconds",
    ] {
        assert!(uses(metric), "no panel shows {metric}");
    }
    let heatmap = panels
        .iter()
        .find(|p| p["type"] == "heatmap")
        .expect("a probe latency heatmap");
    let t = &heatmap["targets"][0];
    assert!(
        t["expr"]
            .as_str()
            .unwrap()
            .contains("continuity_probe_duration_seconds_bucket")
    );
    assert!(
        t["expr"].as_str().unwrap().starts_with("sum by (le)"),
        "heatmap buckets by le"
    );
    assert_eq!(t["format"], "heatmap");
}

/// Every query over a per-account family follows the `account` variable
/// and keeps the account apart: several accounts are never summed into one
/// line, which would read as one fallback that is on when another is off.
#[test]
fn per_account_queries_keep_accounts_apart() {
    use continuity_agent::telemetry::metrics::ACCOUNT_METRICS;
    let d = dashboard();
    let var = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "account")
        .expect("an account variable");
    assert_eq!(
        var["query"]["query"],
        "label_values(continuity_fallback_desired, account)"
    );
    let by_account = regex::Regex::new(r"\bby \([^)]*\baccount\b[^)]*\)").unwrap();
    let mut checked = 0;
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            let selected = super::promql::selected("dashboard", &substituted(&d, expr));
            if !selected.iter().any(|s| {
                let family = s.strip_suffix("_bucket").unwrap_or(s);
                ACCOUNT_METRICS.contains(&family)
            }) {
                continue;
            }
            let title = p["title"].as_str().unwrap();
            assert!(
                expr.contains(r#"account=~"$account""#),
                "{title}: {expr} ignores the account variable"
            );
            assert!(
                by_account.is_match(expr),
                "{title}: {expr} aggregates accounts together"
            );
            assert!(
                t["legendFormat"]
                    .as_str()
                    .is_some_and(|l| l.contains("{{account}}")),
                "{title}: the legend does not name the account"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} per-account queries");
}
