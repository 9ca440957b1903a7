//! deploy/helm/continuity-agent: rendered with its default values (one
//! replica, SQLite on a volume) and with ci/replicas-values.yaml (three
//! replicas, PostgreSQL), checked like the plain manifests, plus what only
//! the chart decides (the store, the update strategy, refusing several
//! replicas without PostgreSQL).

use serde_json::{Value, json};

use super::helm::{Chart, Rendered};
use super::kube;

const CHART: &str = "deploy/helm/continuity-agent";

fn chart() -> Chart {
    Chart::load(&super::repo().join(CHART))
}

/// Every rendered manifest as objects; NOTES.txt is text, not YAML.
fn objects(rendered: &Rendered) -> Vec<Value> {
    let mut objects = Vec::new();
    for (file, text) in rendered {
        assert!(
            !text.contains("<no value>"),
            "{file} reads a value missing from values.yaml:\n{text}"
        );
        if file.ends_with(".yaml") {
            objects.extend(super::yaml_docs(file, text));
        }
    }
    objects
}

fn render(values: Value) -> Result<Rendered, String> {
    chart().render(values)
}

#[test]
fn chart_metadata_is_helm_v2() {
    let meta = super::yaml_file(&format!("{CHART}/Chart.yaml"));
    assert_eq!(meta["apiVersion"], "v2");
    assert_eq!(meta["type"], "application");
    assert_eq!(
        meta["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "appVersion is the agent's version"
    );
    for file in [
        "values.yaml",
        "templates/_helpers.tpl",
        "templates/NOTES.txt",
        ".helmignore",
    ] {
        assert!(
            super::repo().join(CHART).join(file).exists(),
            "{CHART}/{file} missing"
        );
    }
}

#[test]
fn default_values_render_one_replica_on_sqlite() {
    let c = chart();
    let rendered = c.render(c.values(None)).unwrap();
    let d = kube::check("chart defaults", objects(&rendered));
    assert_eq!(d.replicas, 1);
    let mut kinds = d.kinds();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Service"
        ]
    );
    let dep = d.one("Deployment");
    assert_eq!(
        dep["spec"]["strategy"]["type"], "Recreate",
        "one SQLite file: never two pods at once"
    );
    let env = d.env();
    assert!(env.contains(&(
        "CONTINUITY_AGENT_STORE__URL".into(),
        "sqlite:///var/lib/continuity-agent/state.db".into()
    )));
    assert!(
        !env.iter()
            .any(|(k, _)| k.starts_with("CONTINUITY_AGENT_CLUSTER__"))
    );
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("continuity-agent:{}", env!("CARGO_PKG_VERSION"))
    );
    let notes = &rendered["NOTES.txt"];
    assert!(
        notes.contains("1 replica(s), state in SQLite") && notes.contains("docs/runbook.md"),
        "{notes}"
    );
}

#[test]
fn replicas_values_render_fenced_replicas_on_postgres() {
    let c = chart();
    let rendered = c.render(c.values(Some("ci/replicas-values.yaml"))).unwrap();
    let d = kube::check("chart ci/replicas-values.yaml", objects(&rendered));
    assert_eq!(d.replicas, 3);
    let mut kinds = d.kinds();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceMonitor"
        ]
    );
    assert_eq!(d.one("PodDisruptionBudget")["spec"]["minAvailable"], 2);
    let spec = &d.one("Deployment")["spec"];
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(
        spec["template"]["spec"]["topologySpreadConstraints"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let env = d.env();
    for key in [
        "CONTINUITY_AGENT_STORE__PASSWORD_FILE",
        "CONTINUITY_AGENT_CLUSTER__LEASE_TTL",
        "CONTINUITY_AGENT_CLUSTER__RENEW_DEADLINE",
    ] {
        assert!(
            env.iter().any(|(k, _)| k == key),
            "{key} missing from {env:?}"
        );
    }
    assert_eq!(
        d.one("ServiceMonitor")["metadata"]["labels"]["release"],
        "prometheus"
    );
}

#[test]
fn several_replicas_without_postgres_fail_to_render() {
    let c = chart();
    let mut values = c.values(None);
    values["replicaCount"] = json!(2);
    let e = render(values).unwrap_err();
    assert!(
        e.contains("replicaCount > 1 needs store.postgresUrl"),
        "{e}"
    );
}

#[test]
fn a_disruption_budget_that_blocks_every_drain_fails_to_render() {
    let c = chart();
    let mut values = c.values(Some("ci/replicas-values.yaml"));
    values["podDisruptionBudget"]["minAvailable"] = json!(3);
    let e = render(values).unwrap_err();
    assert!(e.contains("minAvailable must be below replicaCount"), "{e}");
}

#[test]
fn a_missing_secret_name_or_config_fails_to_render() {
    let c = chart();
    let mut values = c.values(None);
    values["secrets"]["name"] = json!("");
    assert!(render(values).unwrap_err().contains("secrets.name"));
    let mut values = c.values(None);
    values["config"] = json!(null);
    assert!(
        render(values)
            .unwrap_err()
            .contains("config: the agent's configuration file")
    );
}

#[test]
fn a_config_change_rolls_the_pods() {
    let c = chart();
    let checksum = |values: Value| {
        let objects = objects(&c.render(values).unwrap());
        let dep = objects
            .into_iter()
            .find(|o| o["kind"] == "Deployment")
            .unwrap();
        dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone()
    };
    let before = checksum(c.values(None));
    let mut values = c.values(None);
    values["config"] = json!(format!(
        "{}\n# changed\n",
        values["config"].as_str().unwrap()
    ));
    assert_ne!(before, checksum(values));
}

#[test]
fn persistence_off_keeps_sqlite_on_an_empty_dir() {
    let c = chart();
    let mut values = c.values(None);
    values["persistence"]["enabled"] = json!(false);
    let d = kube::check(
        "chart persistence.enabled=false",
        objects(&c.render(values).unwrap()),
    );
    assert!(d.find("PersistentVolumeClaim").is_none());
    let volumes = &d.one("Deployment")["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "state" && v["emptyDir"].is_object())
    );
}
