//! The binary's commands as operators run them: exit codes and output.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_continuity-agent"));
    c.env_remove("RUST_LOG");
    c
}

#[test]
fn demo_runs_to_completion_and_shows_the_outage_and_recovery() {
    let stdout = demo(&[]);
    for needle in [
        "==> healthy",
        "trunk-a: unknown -> up",
        "==> outage",
        "trunk-a: up -> down",
        "trunk-down: pending -> firing",
        "desired active(backup-site)",
        "PUT",
        "==> recovery",
        "desired inactive",
        "Talkdesk writes: PUT /fallback-experience/settings, PUT /fallback-experience/activation, PUT /fallback-experience/activation",
    ] {
        assert!(
            stdout.contains(needle),
            "demo output lacks {needle:?}:\n{stdout}"
        );
    }
    // Order: the decision comes after the probe went down, and before recovery.
    let pos = |s: &str| stdout.find(s).unwrap();
    assert!(pos("trunk-a: up -> down") < pos("desired active(backup-site)"));
    assert!(pos("desired active(backup-site)") < pos("==> recovery"));
}

/// Runs `demo ARGS`, which must succeed; its standard output.
fn demo(args: &[&str]) -> String {
    let out = bin().arg("demo").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `demo --accounts`: two Talkdesk accounts share the trunk; each switches
/// with its own profile, on its own simulated account, and back.
#[test]
fn demo_with_two_accounts_switches_each_with_its_own_profile() {
    let stdout = demo(&["--accounts"]);
    for needle in [
        "acme   decision  desired active(backup-site)",
        "globex decision  desired active(announce)",
        "acme   decision  desired inactive",
        "globex decision  desired inactive",
        "Talkdesk writes: acme PUT /fallback-experience/settings, acme PUT /fallback-experience/activation, acme PUT /fallback-experience/activation, globex PUT /fallback-experience/settings, globex PUT /fallback-experience/activation, globex PUT /fallback-experience/activation",
    ] {
        assert!(
            stdout.contains(needle),
            "demo output lacks {needle:?}:\n{stdout}"
        );
    }
    // Each account wrote through its own routes.
    assert!(stdout.contains("/accounts/acme/fallback-experience/settings"));
    assert!(stdout.contains("/accounts/globex/fallback-experience/settings"));
}

#[test]
fn test_rules_exit_codes_follow_promtool() {
    let scenarios: Vec<_> = std::fs::read_dir("tests/scenarios")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    assert!(scenarios.len() >= 10);
    let ok = bin().arg("test-rules").args(&scenarios).output().unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let failing = bin()
        .args([
            "test-rules",
            "tests/scenarios/failing/wrong-expectation.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(failing.status.code(), Some(1));
    let text = String::from_utf8_lossy(&failing.stdout);
    assert!(
        text.contains("expected") && text.contains("got"),
        "a failure shows a diff:\n{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[[input]]\nat = \"soon\"\n").unwrap();
    let out = bin().arg("test-rules").arg(&bad).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let port = support::free_port();
    let mut child = bin()
        .args([
            "--log-format",
            "json",
            "simulate-talkdesk",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["message"], "Talkdesk simulator listening.", "{v}");
    assert!(v["timestamp"].is_string(), "{v}");
}

/// Starts `simulate-talkdesk` and returns its base URL (read from its banner).
fn simulator() -> (std::process::Child, String) {
    let port = support::free_port();
    let mut child = bin()
        .args([
            "simulate-talkdesk",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains(&format!("127.0.0.1:{port}")),
        "banner: {line}"
    );
    (child, format!("http://127.0.0.1:{port}"))
}

fn breakglass_config(dir: &Path, sim: &str) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    let src = std::fs::read_to_string("config/demo.toml")
        .unwrap()
        .replace("http://127.0.0.1:8099", sim);
    std::fs::write(&path, src).unwrap();
    path
}

#[test]
fn break_glass_commands_act_on_talkdesk_directly() {
    let (mut sim, base) = simulator();
    let dir = tempfile::tempdir().unwrap();
    let cfg = breakglass_config(dir.path(), &base);
    let run = |args: &[&str]| {
        let out = bin()
            .arg("talkdesk")
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, _) = run(&["get"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("fallback: disabled"), "{out}");
    let (code, out, _) = run(&["apply", "backup-site"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("+14155558888"), "{out}");
    let (code, out, _) = run(&["activate"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), "fallback: disabled -> enabled")
    );
    let (code, out, _) = run(&["get"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("fallback: enabled") && out.contains("settings match profile: backup-site"),
        "{out}"
    );
    let (code, out, _) = run(&["deactivate"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), "fallback: enabled -> disabled")
    );
    let (code, _, err) = run(&["apply", "nope"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown profile"), "{err}");
    // The secret never reaches the terminal.
    assert!(!err.contains("demo-secret") && !out.contains("demo-secret"));
    sim.kill().unwrap();
    let _ = sim.wait();

    // Talkdesk unreachable: a runtime failure (exit 1), reported clearly.
    let (code, _, err) = run(&["get"]);
    assert_eq!(code, Some(1), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_override_clients_drive_a_running_agent() {
    let (mut sim, base) = simulator();
    let trunk = continuity_agent::probe::sip::responder::Responder::bind(
        "127.0.0.1:0".parse().unwrap(),
        continuity_agent::probe::sip::responder::Mode::Answer(200),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let src = std::fs::read_to_string("config/demo.toml")
        .unwrap()
        .replace("http://127.0.0.1:8099", &base)
        .replace("127.0.0.1:5060", &trunk.udp_addr().to_string())
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "sqlite://state/demo.db",
            &format!("sqlite://{}", dir.path().join("s.db").display()),
        )
        + "\n[api]\ntokens = [ { name = \"cli\", token = \"cli-token-0123456789abcdef\", scopes = [\"read\", \"override\"] } ]\n";
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, src).unwrap();
    let mut agent = support::agent::AgentProcess::spawn(&cfg, port, &dir.path().join("agent.log"));
    agent.wait_ready().await;
    let url = agent.api.clone();
    let cli = move |args: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let out = bin()
                    .args(&args)
                    .args(["--url", &url])
                    .env("CONTINUITY_AGENT_TOKEN", "cli-token-0123456789abcdef")
                    .output()
                    .unwrap();
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout).to_string(),
                    String::from_utf8_lossy(&out.stderr).to_string(),
                )
            })
            .await
            .unwrap()
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (code, out, err) = cli(s(&["status"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("mode:      automatic") && out.contains("trunk-a"),
        "{out}"
    );

    let (code, out, err) = cli(s(&[
        "override",
        "on",
        "--profile",
        "backup-site",
        "--ttl",
        "10m",
        "--reason",
        "drill by hand",
    ]))
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("override set: fallback active with profile backup-site"),
        "{out}"
    );
    let (_, out, _) = cli(s(&["status", "--json"])).await;
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["mode"], "override");

    let (code, _, err) = cli(s(&[
        "override",
        "on",
        "--profile",
        "ghost",
        "--ttl",
        "10m",
        "--reason",
        "x",
    ]))
    .await;
    assert_eq!(code, Some(2), "a 422 is the operator's mistake");
    assert!(err.contains("unknown profile"), "{err}");

    let (code, out, _) = cli(s(&["override", "clear", "--reason", "done"])).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("back to automatic"), "{out}");
    let (code, out, _) = cli(s(&["override", "clear"])).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("no override was in force"), "{out}");

    let status = agent.terminate();
    assert!(status.success());
    sim.kill().unwrap();
    let _ = sim.wait();
    drop(trunk);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[test]
fn text_logs_have_no_colours_when_stderr_is_not_a_terminal() {
    let port = support::free_port();
    let mut child = bin()
        .args([
            "--log-format",
            "text",
            "simulate-talkdesk",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env_remove("CONTINUITY_AGENT_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(line.contains("Talkdesk simulator listening."), "{line:?}");
    assert!(
        !line.contains('\u{1b}'),
        "ANSI escape in a piped log: {line:?}"
    );
}

/// Starts `simulate-talkdesk` with `args` and returns it, its banner (read
/// up to the `agent config:` line) and its base URL.
fn simulator_with(args: &[&str]) -> (KillOnDrop, String, String) {
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = KillOnDrop(
        bin()
            .args(["simulate-talkdesk", "--listen", &listen])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Read on a thread so a short banner fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let out = BufReader::new(child.0.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut banner = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("agent config:") {
            break;
        }
    }
    (child, banner, format!("http://{listen}"))
}

/// The answer's status to a client-credentials token request.
fn token_status(url: &str, client_id: &str, secret: &str) -> u16 {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(url)
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

/// The banner is all a user needs to point an agent at the simulator: the
/// credentials it prints are the ones it accepts.
#[test]
fn simulator_prints_its_credentials_and_control_routes_at_start() {
    let (child, banner, base) = simulator_with(&[]);
    let field = |name: &str| {
        banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name:?} in banner:\n{banner}"))
    };
    let (id, secret) = (field("client id:"), field("client secret:"));
    for route in [
        "/_sim/faults",
        "/_sim/expire-tokens",
        "/_sim/journal",
        "/_sim/state",
        "/oauth/token",
    ] {
        assert!(banner.contains(route), "{route} missing from:\n{banner}");
    }
    let status = token_status(&format!("{base}/oauth/token"), &id, &secret);
    drop(child);
    assert_eq!(
        status, 200,
        "the printed credentials were refused:\n{banner}"
    );
}

/// `--account` (repeatable) serves several accounts, each printed with the
/// credentials it accepts and reachable under its own URLs; a malformed or
/// clashing value is refused (exit 2) without echoing a secret.
#[test]
fn simulator_serves_the_accounts_given_on_the_command_line() {
    let (child, banner, base) = simulator_with(&[
        "--account",
        "alpha:alpha-client:alpha-secret",
        "--account",
        "beta:beta-client:be:ta",
    ]);
    for line in [
        "account:       alpha",
        "client id:     alpha-client",
        "client secret: alpha-secret",
        "account:       beta",
        "client id:     beta-client",
        "client secret: be:ta",
        "/_sim/accounts/ID/",
    ] {
        assert!(banner.contains(line), "{line:?} missing from:\n{banner}");
    }
    assert!(!banner.contains("demo-secret"), "{banner}");
    let token = format!("{base}/oauth/token");
    let beta_token = format!("{base}/accounts/beta/oauth/token");
    let statuses = [
        token_status(&token, "alpha-client", "alpha-secret"),
        token_status(&token, "beta-client", "be:ta"),
        token_status(&beta_token, "beta-client", "be:ta"),
        token_status(&beta_token, "alpha-client", "alpha-secret"),
        token_status(&token, "demo", "demo-secret"),
    ];
    drop(child);
    assert_eq!(statuses, [200, 200, 200, 401, 401], "{banner}");

    for (args, why) in [
        (
            vec!["--account", "a-secret-in-the-wrong-place"],
            "ID:CLIENT_ID:CLIENT_SECRET",
        ),
        (
            vec![
                "--account",
                "a:same:first-secret",
                "--account",
                "b:same:second-secret",
            ],
            "share the client id",
        ),
    ] {
        let out = bin()
            .args(["simulate-talkdesk", "--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
        for secret in [
            "a-secret-in-the-wrong-place",
            "first-secret",
            "second-secret",
        ] {
            assert!(
                !stderr.contains(secret),
                "{args:?} echoed a secret: {stderr}"
            );
        }
    }
}

/// The child process ends with the test, even when the test fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_config_flag_works_in_the_same_position_for_every_subcommand() {
    let (mut sim, base) = simulator();
    let dir = tempfile::tempdir().unwrap();
    let cfg = breakglass_config(dir.path(), &base);
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["talkdesk", "get", "-c", cfg],
        vec!["talkdesk", "-c", cfg, "get"],
        vec!["talkdesk", "get", "--config", cfg],
        vec!["check-config", "-c", cfg],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    sim.kill().unwrap();
    let _ = sim.wait();
}

#[test]
fn check_config_online_proves_the_talkdesk_credentials_and_paths() {
    let (mut sim, base) = simulator();
    let dir = tempfile::tempdir().unwrap();
    let cfg = breakglass_config(dir.path(), &base);
    let out = bin()
        .args(["check-config", "--online", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("online: token OK")
            && stdout.contains("settings readable")
            && stdout.contains("fallback off"),
        "{stdout}"
    );

    let wrong = dir.path().join("wrong.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("demo-secret", "not-the-secret");
    std::fs::write(&wrong, text).unwrap();
    let out = bin()
        .args(["check-config", "--online", "-c"])
        .arg(&wrong)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("talkdesk.client_secret") && stderr.contains("401"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
    sim.kill().unwrap();
    let _ = sim.wait();
}
