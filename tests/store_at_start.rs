//! A SQLite store that cannot be used as usual at start must not put the
//! agent into a crash loop (issue 15):
//!
//! - a damaged file is moved aside to `<name>.damaged-<UTC time>` (with its
//!   `-wal`), the agent starts with a fresh store, audits and counts it;
//! - a read-only store (0444 file in a 0555 directory) is served read-only:
//!   the stored decision is restored for display, status and metrics
//!   answer, `/readyz` is 503 "store is read-only: ...", and nothing reaches
//!   Talkdesk. Over real processes, so the permissions bind: as root (CI)
//!   the agent runs without `CAP_DAC_OVERRIDE` (`support::agent`), and the
//!   test first checks that a write really is refused.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use continuity_agent::config;
use continuity_agent::talkdesk::simulator::{self, Simulator};
use support::agent::{AgentProcess, without_dac_override};
use tokio::time::Instant;

const TOKEN: &str = "store-test-token-0123456789abcdef";

fn toml(dir: &Path, sim: &str, port: u16) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
{head}
[api]
tokens = [{{ name = "ops", token = "{TOKEN}", scopes = ["read", "override"] }}]
[profiles.backup]
default = "+14155558888"
"#,
        head = support::store_and_talkdesk(dir, sim),
    )
}

async fn get(base: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_moved_aside_and_the_agent_starts_fresh() {
    let sim = simulator::spawn(Simulator::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let garbage = b"this is no SQLite database ".repeat(400);
    std::fs::write(dir.path().join("state.db"), &garbage).unwrap();
    std::fs::write(dir.path().join("state.db-wal"), b"and no WAL either").unwrap();
    let cfg = config::from_toml_str_strict(
        &toml(dir.path(), &sim.base_url(), 0),
        "store-test.toml",
        dir.path(),
        false,
    )
    .unwrap();
    let before = chrono::Utc::now();
    let agent = support::inproc::start(cfg).await;

    // Moved aside next to it, named by the UTC time, its WAL alongside.
    let moved: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with("state.db.damaged-"))
        .collect();
    assert_eq!(moved.len(), 2, "{:?}", names(dir.path()));
    let main = &moved[0];
    assert_eq!(moved[1], format!("{main}-wal"));
    let stamp = main.trim_start_matches("state.db.damaged-");
    let at = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .unwrap_or_else(|e| panic!("{main}: not <name>.damaged-<UTC timestamp>: {e}"))
        .and_utc();
    assert!(
        at.timestamp() >= before.timestamp() && at <= chrono::Utc::now(),
        "{main}"
    );
    assert_eq!(std::fs::read(dir.path().join(main)).unwrap(), garbage);
    assert_eq!(
        std::fs::read(dir.path().join(&moved[1])).unwrap(),
        b"and no WAL either"
    );

    // A fresh store: the agent leads and serves its status.
    let r = get(&agent.base, "/v1/status").await;
    assert_eq!(r.status(), 200);
    let status: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status["leader"], true, "{status}");
    // The lease is the fresh file's (its first epoch), not the damaged one's.
    assert_eq!(status["epoch"], 1, "{status}");
    assert_eq!(status["leader_id"], status["instance_id"], "{status}");
    assert_eq!(status["desired"]["state"], "inactive", "{status}");

    // Audited (under the kind `store`, naming both files) and counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let events = agent.running.store.events(100, None).await.unwrap();
        if let Some(e) = events
            .into_iter()
            .find(|e| e.record.kind.as_str() == "store")
        {
            break e.record;
        }
        assert!(Instant::now() < deadline, "no `store` audit record");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(record.message.contains("damaged"), "{}", record.message);
    assert!(record.message.contains(main.as_str()), "{}", record.message);
    let path = dir.path().join("state.db");
    assert!(
        record.message.contains(&path.display().to_string()),
        "{}",
        record.message
    );
    let metrics = agent.running.metrics.render();
    assert!(
        metrics.contains("\ncontinuity_store_recovered_total 1\n"),
        "{metrics}"
    );
    agent.stop().await;
}

/// How the first run, which leaves a decision in the store, ends.
#[derive(Clone, Copy, Debug)]
enum FirstRun {
    /// SIGTERM: the store is closed cleanly, its `-wal` and `-shm` removed.
    Stopped,
    /// `kill -9`: the last writes are still in the `-wal`.
    Killed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_is_served_read_only_after_a_clean_stop() {
    read_only_store(FirstRun::Stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_is_served_read_only_after_a_kill() {
    read_only_store(FirstRun::Killed).await;
}

async fn read_only_store(first: FirstRun) {
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, toml(dir.path(), &server.base_url(), port)).unwrap();

    // First run: the fallback switched on by an override, in the store.
    let mut agent = AgentProcess::spawn(&cfg, port, &dir.path().join("first.log"));
    agent.wait_ready().await;
    let r = reqwest::Client::new()
        .put(format!("{}/v1/override", agent.api))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"state": "active", "profile": "backup", "ttl": "2h", "reason": "read-only test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.metric("continuity_fallback_actual").await != Some(1.0) {
        assert!(Instant::now() < deadline, "log:\n{}", agent.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What Talkdesk was told is persisted before the loop sleeps again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    match first {
        FirstRun::Stopped => assert!(agent.terminate().success(), "log:\n{}", agent.logs()),
        FirstRun::Killed => agent.kill9(),
    }
    drop(agent);

    // Read-only: the store files 0444, their directory 0555.
    let store_files: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with("state.db"))
        .collect();
    match first {
        FirstRun::Stopped => assert_eq!(store_files, ["state.db"]),
        FirstRun::Killed => assert!(
            store_files.contains(&"state.db-wal".to_string()),
            "{store_files:?}"
        ),
    }
    for name in &store_files {
        chmod(&dir.path().join(name), 0o444);
    }
    chmod(dir.path(), 0o555);
    let contents = |names: &[String]| -> Vec<Vec<u8>> {
        names
            .iter()
            .map(|n| std::fs::read(dir.path().join(n)).unwrap())
            .collect()
    };
    let before = contents(&store_files);
    // The premise, with the agent's privileges: writes are refused.
    for script in [": >> state.db", ": > new-file"] {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(script).current_dir(dir.path());
        without_dac_override(&mut sh);
        let status = sh.status().expect("run sh");
        assert!(!status.success(), "`{script}` was allowed: not read-only");
    }
    let calls_before = sim.journal().len();

    // Its log outside the read-only directory.
    let logs = tempfile::tempdir().unwrap();
    let mut agent =
        AgentProcess::spawn_without_dac_override(&cfg, port, &logs.path().join("second.log"));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(r) = http.get(format!("{}/readyz", agent.api)).send().await {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if body.starts_with("store is read-only: ") {
                assert_eq!(status, 503, "{body}");
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never said the store is read-only; log:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!body.contains(TOKEN), "{body}");

    // The decision in the store, restored for display; this replica does
    // not lead (its lease cannot be written).
    let r = get(&agent.api, "/v1/status").await;
    assert_eq!(r.status(), 200);
    let status: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status["desired"]["state"], "active", "{status}");
    assert_eq!(status["leader"], false, "{status}");
    let r = get(&agent.api, "/metrics").await;
    assert_eq!(r.status(), 200);
    let metrics = r.text().await.unwrap();
    assert!(
        metrics.contains("continuity_leader{account=\"default\"} 0"),
        "{metrics}"
    );
    // An override cannot be made durable: refused, nothing applied.
    let r = http
        .put(format!("{}/v1/override", agent.api))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"state": "inactive", "ttl": "1h", "reason": "read-only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    // Nothing reaches Talkdesk: no actuation, not even a read-back (it
    // reconciles every second when it runs).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls: Vec<_> = sim.journal().into_iter().skip(calls_before).collect();
    assert!(calls.is_empty(), "{calls:?}\nlog:\n{}", agent.logs());
    // Said loudly, with how the file could be read: after a clean stop
    // there is no `-shm` to share in the read-only directory, so only as
    // an immutable file; after a kill its `-wal` holds the last decision,
    // read through the `-shm` left behind.
    let logs = agent.logs();
    let said = logs
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("read-only"))
        .unwrap_or_else(|| panic!("not logged:\n{logs}"));
    let how = match first {
        FirstRun::Stopped => "opened=\"immutable=1\"",
        FirstRun::Killed => "opened=\"mode=ro\"",
    };
    assert!(said.contains(how), "{said}");
    assert!(agent.terminate().success(), "log:\n{}", agent.logs());

    // Nothing was written, moved or created.
    assert_eq!(contents(&store_files), before);
    let now: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with("state.db"))
        .collect();
    assert_eq!(now, store_files);
    chmod(dir.path(), 0o755);
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
