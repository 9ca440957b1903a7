//! deploy/systemd/: `systemd-analyze verify` on the unit, pointed at the
//! binary just built (verify refuses a unit whose ExecStart does not exist).

use super::tools;

const UNIT: &str = "deploy/systemd/continuity-agent.service";

#[test]
fn systemd_analyze_verifies_the_unit() {
    let unit = super::read(UNIT);
    let installed = "/usr/local/bin/continuity-agent";
    assert!(unit.contains(&format!(
        "ExecStart={installed} run -c /etc/continuity-agent/agent.toml"
    )));
    assert!(
        unit.contains(&format!("ExecStartPre={installed} check-config -c ")),
        "refuse to start on an invalid configuration"
    );
    assert!(
        unit.contains("Restart=always"),
        "the agent exits 1 when its actuator dies: restart it"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("continuity-agent.service");
    std::fs::write(
        &file,
        unit.replace(installed, env!("CARGO_BIN_EXE_continuity-agent")),
    )
    .unwrap();
    let out = tools::run(
        "systemd-analyze",
        "systemd",
        &["verify", &file.to_string_lossy()],
    );
    // verify exits 0 on unknown keys and bad values too, and only says so on stderr.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "{}",
        tools::text(&out)
    );
}
