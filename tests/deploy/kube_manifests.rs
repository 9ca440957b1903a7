//! deploy/kubernetes/: the plain manifests, as `kubectl apply -k` takes them.

use super::{kube, read, yaml_docs};

#[test]
fn plain_manifests_deploy_two_fenced_replicas() {
    let kustomization = super::yaml_file("deploy/kubernetes/kustomization.yaml");
    let mut objects = Vec::new();
    for file in kustomization["resources"].as_array().expect("resources") {
        let rel = format!("deploy/kubernetes/{}", file.as_str().unwrap());
        objects.extend(yaml_docs(&rel, &read(&rel)));
    }
    let listed = objects.len();
    let on_disk = std::fs::read_dir(super::repo().join("deploy/kubernetes"))
        .unwrap()
        .count()
        - 1;
    assert_eq!(
        listed, on_disk,
        "every manifest in deploy/kubernetes/ is listed in kustomization.yaml"
    );

    let d = kube::check("deploy/kubernetes", objects);
    assert_eq!(d.replicas, 2);
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
    let strategy = &d.one("Deployment")["spec"]["strategy"];
    assert_eq!(
        strategy["rollingUpdate"]["maxUnavailable"], 0,
        "a rollout never lowers the ready replicas"
    );
}
