//! `/readyz` is not "ready" while Talkdesk rejects the credentials (401/403
//! from the token endpoint): it says so, naming the keys to check; the log
//! says it once, not once per retry. Over real processes: the agent binary
//! and the Talkdesk simulator over HTTP.

mod support;

use std::time::Duration;

use continuity_agent::talkdesk::simulator::{self, Simulator};
use support::agent::AgentProcess;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_when_talkdesk_rejects_the_credentials() {
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("agent.toml");
    let text = format!(
        "[agent]\nlisten = \"127.0.0.1:{port}\"\n{head}[profiles.backup]\ndefault = \"+14155558888\"\n",
        head = support::store_and_talkdesk(dir.path(), &server.base_url())
            .replace("demo-secret", "not-the-secret"),
    );
    std::fs::write(&cfg, text).unwrap();
    let agent = AgentProcess::spawn(&cfg, port, &dir.path().join("agent.log"));

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(r) = http.get(format!("{}/readyz", agent.api)).send().await {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if body.contains("credentials") {
                assert_eq!(status, 503, "{body}");
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never mentioned the credentials; log:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        body.contains("talkdesk.client_id")
            && body.contains("client_secret")
            && body.contains("401"),
        "{body}"
    );
    assert!(!body.contains("not-the-secret"), "{body}");

    // Several retries later, the rejection is logged once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let logs = agent.logs();
    let token_calls = sim.journal().iter().filter(|e| e.op == "token").count();
    assert!(
        token_calls >= 2,
        "it kept retrying: {token_calls} token calls"
    );
    // Each loud line about the 401 says something new: the rejection once
    // (not once per retry), and at most once each what the agent does about
    // it (after a few failed reads the actuator says, once, that it writes
    // without reading first; when that happens depends on the retries' timing).
    let loud = |l: &&str| l.contains("WARN") || l.contains("ERROR");
    let said = logs
        .lines()
        .filter(loud)
        .filter(|l| l.contains("401"))
        .collect::<Vec<_>>();
    let rejections = said
        .iter()
        .filter(|l| l.contains("rejects the credentials"))
        .collect::<Vec<_>>();
    assert_eq!(
        rejections.len(),
        1,
        "the rejection is logged once per change, not per retry:\n{}",
        said.join("\n")
    );
    assert!(rejections[0].contains("client_id"), "{}", rejections[0]);
    let mut messages = said
        .iter()
        .map(|l| l.split_once(": ").map_or(*l, |(_, m)| m))
        .collect::<Vec<_>>();
    messages.sort_unstable();
    let all = messages.len();
    messages.dedup();
    assert_eq!(
        messages.len(),
        all,
        "no loud line about the 401 repeats:\n{}",
        said.join("\n")
    );
}
