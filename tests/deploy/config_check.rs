//! Runs the real `continuity-agent check-config` on a configuration as a
//! deployment would give it to the agent: the file plus `CONTINUITY_AGENT_*`
//! environment variables. Absolute paths the deployment mounts (secrets
//! under /run/secrets, the state under /var/lib/continuity-agent) are moved
//! into a temporary directory, with a placeholder in each secret file.

use std::path::Path;
use std::process::Command;

/// Paths deployments mount that a test must not touch.
const MOUNTS: [&str; 2] = ["/run/secrets/", "/var/lib/continuity-agent/"];

/// The effective `agent.listen` port after `check-config` accepted the
/// configuration (environment over file, as the loader merges them).
pub fn check(origin: &str, toml: &str, env: &[(String, String)]) -> u16 {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let toml = relocate(toml, root);
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.clone(), relocate(v, root)))
        .collect();
    let file = root.join("agent.toml");
    std::fs::write(&file, &toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_continuity-agent"));
    cmd.args(["check-config", "-c"]).arg(&file);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CONTINUITY_AGENT_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().expect("run check-config");
    assert!(
        out.status.success(),
        "{origin}: check-config refused the deployed configuration (env {env:?}):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let listen = env
        .iter()
        .find(|(k, _)| k == "CONTINUITY_AGENT_AGENT__LISTEN")
        .map(|(_, v)| v.clone())
        .or_else(|| {
            let doc: toml::Table = toml.parse().unwrap();
            doc.get("agent")?.get("listen")?.as_str().map(str::to_string)
        })
        .unwrap_or_else(|| panic!("{origin}: agent.listen is not set (default 127.0.0.1: unreachable from outside a container)"));
    let (host, port) = listen.rsplit_once(':').expect("listen is host:port");
    assert!(
        host == "0.0.0.0" || host == "[::]",
        "{origin}: agent.listen {listen} is unreachable from outside the container"
    );
    port.parse().unwrap()
}

/// Moves every mounted path under `root`, creating secret files (with a
/// placeholder) and directories as the deployment's mounts would.
fn relocate(text: &str, root: &Path) -> String {
    let mut out = text.to_string();
    for mount in MOUNTS {
        let mut rest = text;
        while let Some(at) = rest.find(mount) {
            let path: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect();
            let local = root.join(path.trim_start_matches('/'));
            if mount == "/run/secrets/" {
                std::fs::create_dir_all(local.parent().unwrap()).unwrap();
                std::fs::write(&local, "placeholder-secret-value\n").unwrap();
            } else {
                std::fs::create_dir_all(local.parent().unwrap()).unwrap();
            }
            rest = &rest[at + path.len()..];
        }
        out = out.replace(mount, &format!("{}{mount}", root.display()));
    }
    out
}
