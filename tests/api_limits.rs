//! The API cannot be used to exhaust the agent (issue 15, critical finding):
//! idle connections once took every file descriptor of the process, a
//! SIP/TCP probe then failed with "Too many open files", that counted as a
//! trunk failure, and the fallback went ON while the trunk answered. Real
//! processes: the agent binary with a 128-descriptor limit, sipp over TCP as
//! the trunk, the Talkdesk simulator over HTTP.

mod support;

use std::path::Path;
use std::time::Duration;

use continuity_agent::talkdesk::simulator::{self, SimServer, Simulator};
use support::agent::AgentProcess;
use support::sipp::Sipp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn config(sim: &str, target: &str, port: u16, dir: &Path, agent_extra: &str) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
{agent_extra}
{head}
[profiles.backup]
default = "+14155558888"
[[probes]]
id = "trunk-tcp"
type = "sip"
target = "{target}"
interval = "1s"
timeout = "1s"
rise = 1
fall = 2
[[rules]]
name = "trunk-down"
profile = "backup"
for = "0s"
when = {{ down = "trunk-tcp" }}
"#,
        head = support::store_and_talkdesk(dir, sim),
    )
}

struct World {
    sim: Simulator,
    _server: SimServer,
    dir: tempfile::TempDir,
    port: u16,
    _sipp: Sipp,
}

async fn world(agent_extra: &str) -> (World, std::path::PathBuf) {
    let sipp = Sipp::start("options-uas.xml", true).await;
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("agent.toml");
    let text = config(
        &server.base_url(),
        &sipp.target(),
        port,
        dir.path(),
        agent_extra,
    );
    std::fs::write(&cfg, text).unwrap();
    let w = World {
        sim,
        _server: server,
        dir,
        port,
        _sipp: sipp,
    };
    (w, cfg)
}

async fn wait_metric(agent: &AgentProcess, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.metric(name).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{name} never became {want}; log:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 400 idle connections against an agent limited to 128 descriptors, held
/// for six probe intervals: the fallback stays off, the trunk is never
/// failed for a local reason, and the API answers again once they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_switch_the_fallback_on() {
    let (w, cfg) = world("").await;
    let log = w.dir.path().join("agent.log");
    let mut agent = AgentProcess::spawn_with_nofile(&cfg, w.port, &log, 128);
    agent.wait_ready().await;
    wait_metric(
        &agent,
        r#"continuity_probe_up{probe="trunk-tcp",type="sip"}"#,
        1.0,
    )
    .await;
    wait_metric(&agent, "continuity_fallback_actual", 0.0).await;

    // Connections the server no longer accepts wait in the backlog, then
    // time out: that is part of the attack, not a test failure.
    let mut held = Vec::new();
    for _ in 0..400 {
        let connect = TcpStream::connect(("127.0.0.1", w.port));
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
            held.push(s);
        }
    }
    assert!(
        held.len() > 128,
        "only {} connections were made",
        held.len()
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let writes: Vec<_> = w
        .sim
        .journal()
        .into_iter()
        .filter(|e| e.is_write())
        .collect();
    assert!(
        writes.is_empty(),
        "the fallback was switched while the trunk answered: {writes:?}\nlog:\n{}",
        agent.logs()
    );
    drop(held);

    // The API is back, and the probe never failed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent
        .metric("continuity_api_connections_rejected_total")
        .await
        .is_none()
    {
        assert!(Instant::now() < deadline, "the API did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rejected = agent
        .metric("continuity_api_connections_rejected_total")
        .await;
    assert!(
        rejected.unwrap_or(0.0) > 0.0,
        "the cap was never reached: {rejected:?}"
    );
    let failures = agent
        .metric(r#"continuity_probe_results_total{probe="trunk-tcp",result="failure"}"#)
        .await;
    assert_eq!(failures, Some(0.0), "log:\n{}", agent.logs());
    assert_eq!(
        agent
            .metric(r#"continuity_probe_up{probe="trunk-tcp",type="sip"}"#)
            .await,
        Some(1.0)
    );
    assert!(agent.terminate().success(), "log:\n{}", agent.logs());
}

/// A connection that sends nothing, or its headers too slowly, is closed
/// after `agent.header_read_timeout`; so is a kept-alive one left idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_the_header_deadline() {
    let (w, cfg) = world("header_read_timeout = \"1s\"").await;
    let mut agent = AgentProcess::spawn(&cfg, w.port, &w.dir.path().join("agent.log"));
    agent.wait_ready().await;

    // Silent.
    let mut silent = TcpStream::connect(("127.0.0.1", w.port)).await.unwrap();
    assert_closed_within(&mut silent, Duration::from_secs(5)).await;

    // Slow loris: a header line every 400 ms never completes in time.
    let mut slow = TcpStream::connect(("127.0.0.1", w.port)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for i in 0..25 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if slow
            .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            // A 408 or an EOF: either way the server gave up on it.
            closed = n == 0 || buf.starts_with(b"HTTP/1.1 408");
            if closed {
                break;
            }
        }
    }
    assert!(
        closed,
        "a slow-loris connection stayed open for {:?}",
        started.elapsed()
    );

    // Kept alive after an answer, then idle.
    let mut idle = TcpStream::connect(("127.0.0.1", w.port)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(agent.terminate().success(), "log:\n{}", agent.logs());
}

async fn assert_closed_within(s: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            // A 408 before the close is fine; keep reading to the EOF.
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was still open after {within:?}"),
        }
    }
}

/// `agent.tls_cert_file`/`tls_key_file`: the API speaks TLS, and plain HTTP
/// on the same port gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_tls_when_given_a_certificate() {
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let extra = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        tls.join("server.pem").display(),
        tls.join("server.key").display()
    );
    let (w, cfg) = world(&extra).await;
    let _agent = AgentProcess::spawn(&cfg, w.port, &w.dir.path().join("agent.log"));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/healthz", w.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match client.get(&url).send().await {
            Ok(r) => break r.status(),
            Err(e) => {
                assert!(Instant::now() < deadline, "no TLS answer: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(status, 200);
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", w.port)).await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
}
