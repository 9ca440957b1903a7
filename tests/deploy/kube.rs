//! Structural checks of a set of Kubernetes objects for the agent, shared by
//! the plain manifests (deploy/kubernetes/) and the Helm chart's renders:
//! references resolve (labels and selectors, ports, volumes, the ConfigMap
//! and the Secret), the pod runs locked down, probes hit /healthz and
//! /readyz, and the configuration the pod gets is one `check-config` accepts
//! with the API on the container port the image EXPOSEs.

use serde_json::Value;

/// What a set of objects deploys, for further assertions.
pub struct Deployed {
    pub replicas: u64,
    pub objects: Vec<Value>,
}

impl Deployed {
    pub fn kinds(&self) -> Vec<&str> {
        self.objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect()
    }

    pub fn one(&self, kind: &str) -> &Value {
        let found: Vec<_> = self.objects.iter().filter(|o| o["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
        found[0]
    }

    pub fn find(&self, kind: &str) -> Option<&Value> {
        self.objects.iter().find(|o| o["kind"] == kind)
    }

    pub fn container(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    }

    /// The container's environment variables with literal values.
    pub fn env(&self) -> Vec<(String, String)> {
        self.container()["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_string(),
                    e["value"].as_str()?.to_string(),
                ))
            })
            .collect()
    }
}

/// Checks `objects` as one deployment of the agent; `origin` names them in failures.
pub fn check(origin: &str, objects: Vec<Value>) -> Deployed {
    for o in &objects {
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            o["apiVersion"].is_string() && o["kind"].is_string() && is_dns_label(name),
            "{origin}: every object needs apiVersion, kind and a DNS-1123 metadata.name: {o}"
        );
    }
    let deployed = Deployed {
        replicas: 0,
        objects,
    };
    let deployment = deployed.one("Deployment");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(
        selects(&deployment["spec"]["selector"]["matchLabels"], pod_labels),
        "{origin}: the Deployment's selector does not match its pod labels"
    );
    let port = check_pod(origin, &deployed);
    check_config(origin, &deployed, port);
    check_service(origin, &deployed, pod_labels, port);
    check_disruption_budget(origin, &deployed, pod_labels, replicas);
    check_network_policy(origin, &deployed, pod_labels, port);
    check_service_monitor(origin, &deployed);
    Deployed {
        replicas,
        ..deployed
    }
}

/// Locked-down pod, probes, resources, mounts; returns the API container port.
fn check_pod(origin: &str, d: &Deployed) -> u64 {
    let pod = &d.one("Deployment")["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{origin}: pod runAsNonRoot");
    assert!(
        psc["runAsUser"].as_u64().is_some_and(|u| u > 0),
        "{origin}: numeric non-root runAsUser"
    );
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "{origin}: no API token in the pod"
    );
    let c = d.container();
    let sc = &c["securityContext"];
    assert_eq!(
        sc["readOnlyRootFilesystem"], true,
        "{origin}: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "{origin}: allowPrivilegeEscalation"
    );
    assert!(
        sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.contains(&"ALL".into())),
        "{origin}: drop ALL capabilities"
    );

    let http = c["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "http"))
        .unwrap_or_else(|| panic!("{origin}: the container needs a port named http"));
    let port = http["containerPort"].as_u64().unwrap();
    assert_eq!(
        port,
        u64::from(super::exposed_port()),
        "{origin}: container port vs the image's EXPOSE"
    );
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{origin}: {probe} path");
        assert!(
            get["port"] == "http" || get["port"] == port,
            "{origin}: {probe} port"
        );
    }
    let res = &c["resources"];
    for key in ["requests/cpu", "requests/memory", "limits/memory"] {
        let (a, b) = key.split_once('/').unwrap();
        assert!(
            res[a][b].is_string(),
            "{origin}: resources.{a}.{b} must be set"
        );
    }

    let volumes = pod["volumes"].as_array().expect("volumes");
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name);
    for m in c["volumeMounts"].as_array().expect("volumeMounts") {
        let v = volume(m["name"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{origin}: mount {} has no volume", m["name"]));
        if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
            assert!(d.objects.iter().any(|o| o["kind"] == "PersistentVolumeClaim" && o["metadata"]["name"] == claim), "{origin}: claim {claim} is not deployed");
        }
    }
    let mount = |path: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .and_then(|m| volume(m["name"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{origin}: nothing mounted at {path}"))
    };
    let cm = mount("/etc/continuity-agent")["configMap"]["name"]
        .as_str()
        .expect("config from a ConfigMap");
    assert!(
        d.objects
            .iter()
            .any(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == cm),
        "{origin}: ConfigMap {cm} is not deployed"
    );
    let secret = &mount("/run/secrets/continuity-agent")["secret"];
    assert!(
        secret["secretName"].as_str().is_some_and(|s| !s.is_empty()),
        "{origin}: secrets come from a Secret reference"
    );
    assert!(
        !d.objects.iter().any(|o| o["kind"] == "Secret"),
        "{origin}: no Secret with values in the manifests"
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        ["run", "-c", "/etc/continuity-agent/agent.toml"],
        "{origin}: container args"
    );
    port
}

/// The ConfigMap's agent.toml plus the container's environment is a
/// configuration the agent accepts, listening on the container port.
fn check_config(origin: &str, d: &Deployed, port: u64) {
    let toml = d.one("ConfigMap")["data"]["agent.toml"]
        .as_str()
        .expect("agent.toml in the ConfigMap");
    let listen = super::config_check::check(origin, toml, &d.env());
    assert_eq!(
        u64::from(listen),
        port,
        "{origin}: agent.listen vs the container port"
    );
    if d.one("Deployment")["spec"]["replicas"]
        .as_u64()
        .unwrap_or(1)
        > 1
    {
        let env_url = d
            .env()
            .into_iter()
            .find(|(k, _)| k == "CONTINUITY_AGENT_STORE__URL")
            .map(|(_, v)| v);
        let url = env_url.unwrap_or_else(|| {
            toml.parse::<toml::Table>().unwrap()["store"]["url"]
                .as_str()
                .unwrap()
                .to_string()
        });
        assert!(
            url.starts_with("postgres"),
            "{origin}: several replicas need a postgres store, not {url}"
        );
    }
}

fn check_service(origin: &str, d: &Deployed, pod_labels: &Value, port: u64) {
    let svc = d.one("Service");
    assert!(
        selects(&svc["spec"]["selector"], pod_labels),
        "{origin}: the Service selects no agent pod"
    );
    let p = &svc["spec"]["ports"][0];
    assert!(
        p["targetPort"] == "http" || p["targetPort"] == port,
        "{origin}: Service targetPort {} is not the container port",
        p["targetPort"]
    );
    assert_eq!(
        p["name"], "http",
        "{origin}: the ServiceMonitor scrapes the port named http"
    );
}

fn check_disruption_budget(origin: &str, d: &Deployed, pod_labels: &Value, replicas: u64) {
    match d.find("PodDisruptionBudget") {
        None => assert!(
            replicas <= 1,
            "{origin}: {replicas} replicas need a PodDisruptionBudget"
        ),
        Some(pdb) => {
            assert!(
                selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels),
                "{origin}: the PodDisruptionBudget selects no agent pod"
            );
            let min = pdb["spec"]["minAvailable"].as_u64().expect("minAvailable");
            assert!(
                min >= 1 && min < replicas,
                "{origin}: minAvailable {min} with {replicas} replicas blocks drains or protects nothing"
            );
        }
    }
}

fn check_network_policy(origin: &str, d: &Deployed, pod_labels: &Value, port: u64) {
    let np = d.one("NetworkPolicy");
    assert!(
        selects(&np["spec"]["podSelector"]["matchLabels"], pod_labels),
        "{origin}: the NetworkPolicy selects no agent pod"
    );
    let ports = |rules: &Value| -> Vec<(String, String)> {
        rules
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["ports"].as_array().cloned().unwrap_or_default())
            .map(|p| {
                (
                    p["port"].to_string().trim_matches('"').to_string(),
                    p["protocol"].as_str().unwrap_or("TCP").to_string(),
                )
            })
            .collect()
    };
    let ingress = ports(&np["spec"]["ingress"]);
    assert!(
        ingress
            .iter()
            .any(|(p, proto)| (p == "http" || *p == port.to_string()) && proto == "TCP"),
        "{origin}: ingress must allow the API port: {ingress:?}"
    );
    let egress = ports(&np["spec"]["egress"]);
    for (p, proto) in [
        ("53", "UDP"),
        ("53", "TCP"),
        ("443", "TCP"),
        ("5432", "TCP"),
        ("5060", "UDP"),
        ("5060", "TCP"),
    ] {
        assert!(
            egress.contains(&(p.to_string(), proto.to_string())),
            "{origin}: egress must allow {p}/{proto}: {egress:?}"
        );
    }
}

fn check_service_monitor(origin: &str, d: &Deployed) {
    if let Some(sm) = d.find("ServiceMonitor") {
        let svc = d.one("Service");
        assert!(
            selects(
                &sm["spec"]["selector"]["matchLabels"],
                &svc["metadata"]["labels"]
            ),
            "{origin}: the ServiceMonitor selects no agent Service"
        );
        let ep = &sm["spec"]["endpoints"][0];
        assert_eq!(
            ep["port"], svc["spec"]["ports"][0]["name"],
            "{origin}: ServiceMonitor port"
        );
        assert_eq!(ep["path"], "/metrics", "{origin}: ServiceMonitor path");
    }
}

/// Whether a non-empty selector's labels are all among `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
