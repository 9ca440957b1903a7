//! The blind guard against a fast rule, over real sockets: the agent's
//! canary (a DNS "resolver" on UDP) stops answering, a blackhole rather than
//! a refused port, just before the trunk (an in-process SIP responder) goes
//! silent too. The rule (`for = 0`) is due to fire as soon as the trunk is
//! down, about 1.5 s after its first failure, while the self-check those
//! failures triggered needs the whole canary timeout (3 s) to conclude. The
//! engine must wait for that verdict and freeze the rule, not switch every
//! call away because the agent itself lost the network.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use continuity_agent::config;
use continuity_agent::probe::sip::responder::Mode;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// A DNS "resolver" that echoes each query as a reply while `answering`,
/// and swallows it (no reply, no ICMP: a blackhole) otherwise.
async fn canary(answering: Arc<AtomicBool>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if n >= 12 && answering.load(Ordering::SeqCst) {
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80;
                let _ = sock.send_to(&reply, from).await;
            }
        }
    });
    addr
}

async fn wait_for(what: &str, secs: u64, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_canary_just_before_the_trunk_dies_freezes_the_rule() {
    let support::world::Peers {
        sim,
        server,
        trunk,
        dir,
    } = support::world::Peers::start().await;
    let answering = Arc::new(AtomicBool::new(true));
    let dns = canary(answering.clone()).await;
    let toml = format!(
        r#"{head}
[profiles.backup]
default = "+14155558888"
[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:{trunk};transport=udp"
interval = "1s"
fast_interval = "200ms"
timeout = "500ms"
rise = 2
fall = 3
[[rules]]
name = "trunk-down"
profile = "backup"
for = "0s"
when = {{ down = "trunk-a" }}
[engine]
self_check = ["udp://{dns}"]
self_check_interval = "1h"
"#,
        head = support::store_and_talkdesk(dir.path(), &server.base_url()),
        trunk = trunk.udp_addr(),
    );
    let cfg = config::from_toml_str_strict(&toml, "blind.toml", dir.path(), false).unwrap();
    let agent = support::inproc::start(cfg).await;
    let m = agent.running.metrics.account(config::DEFAULT_ACCOUNT);
    wait_for("the trunk up", 10, || agent.running.probe_up("trunk-a")).await;
    assert_eq!(m.blind.get(), 0, "the canary answers");
    // Still within the 5 s debounce of the checks the probes triggered at
    // start-up, so the trunk's first failure triggers none: only the
    // engine's request (`SelfCheckNeeded`, not debounced) gets a verdict
    // newer than the failures, within the engine's 4 s wait.

    answering.store(false, Ordering::SeqCst);
    trunk.set_mode(Mode::Silent);
    let cut = Instant::now();

    wait_for("the blind guard", 15, || m.blind.get() == 1).await;
    wait_for("the trunk down", 10, || !agent.running.probe_up("trunk-a")).await;
    // Well past the bounded wait (4 s): the rule stayed frozen.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut.elapsed())).await;
    assert_eq!(
        m.fallback_desired.get(),
        0,
        "a rule fired on failures the blind guard had not judged"
    );
    assert!(!sim.state().enabled, "Talkdesk was switched");
    agent.stop().await;
}
