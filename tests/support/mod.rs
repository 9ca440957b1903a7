//! Shared helpers for integration tests that drive real peers: sipp, the
//! agent binary, the Talkdesk simulator, PostgreSQL, headless Chromium. Each
//! test binary includes what it uses with `mod support;`.
#![allow(dead_code)]

pub mod agent;
pub mod alertmanager;
pub mod browser;
pub mod inproc;
pub mod pg;
pub mod receiver;
pub mod sipp;
pub mod world;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

/// A port free on 127.0.0.1 for both UDP and TCP, reserved for this test
/// process until it exits, for a child process (the agent, sipp, PostgreSQL)
/// to bind.
///
/// Not "bind port 0, note it, close it": that port goes back to the kernel's
/// ephemeral pool at once, and any `bind(0)` or outgoing connection of any
/// process (the other tests run in parallel) may get it before the child
/// binds it. The ports here come from *outside* the ephemeral range
/// (`net.ipv4.ip_local_port_range`), which the kernel never hands out by
/// itself, and a lock file per port (`flock`, released when this process
/// exits) keeps two test processes from choosing the same one.
pub fn free_port() -> u16 {
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let (first, last) = reservable_ports();
    let dir = std::env::temp_dir().join("continuity-agent-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let span = u32::from(last - first) + 1;
    let start = rand::random::<u32>() % span;
    for i in 0..span {
        let port = first + ((start + i) % span) as u16;
        let lock = std::fs::File::create(dir.join(port.to_string())).unwrap();
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // another test process holds it
        }
        let free = UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free {
            HELD.lock().unwrap().push(lock);
            return port;
        }
    }
    panic!("no free port in {first}..={last} outside the ephemeral range");
}

/// The ports the kernel never assigns by itself: below the ephemeral range
/// (from 10000), or above it when it starts too low.
fn reservable_ports() -> (u16, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".into());
    let mut bounds = range.split_whitespace().map(|v| v.parse::<u16>().unwrap());
    let (lo, hi) = (bounds.next().unwrap(), bounds.next().unwrap());
    if lo >= 12_000 {
        (10_000, lo - 1)
    } else if hi <= 63_000 {
        (hi + 1, 65_000)
    } else {
        panic!(
            "net.ipv4.ip_local_port_range is {lo}-{hi}: no room outside it for test ports; \
             narrow it (e.g. sysctl net.ipv4.ip_local_port_range=\"32768 60999\")"
        )
    }
}

/// The `talkdesk.reconcile_interval` of [`store_and_talkdesk`].
pub const RECONCILE: std::time::Duration = std::time::Duration::from_secs(1);

/// Long enough for two reconciles of [`store_and_talkdesk`]'s agent: a check
/// that nothing was written to Talkdesk must wait at least this long, or it
/// would pass before the actuator even looked again.
pub async fn several_reconciles() {
    tokio::time::sleep(RECONCILE * 2 + std::time::Duration::from_millis(200)).await;
}

/// `[store]` in `dir` and `[talkdesk]` pointing at the simulator at `sim`
/// (its default credentials), reconciling every second: the common head of
/// the integration tests' configurations.
pub fn store_and_talkdesk(dir: &std::path::Path, sim: &str) -> String {
    format!(
        r#"
[store]
url = "sqlite://{db}"
[talkdesk]
account = "demo"
api_base = "{sim}"
token_url = "{sim}/oauth/token"
client_id = "demo"
client_secret = "demo-secret"
reconcile_interval = "{reconcile}s"
"#,
        db = dir.join("state.db").display(),
        reconcile = RECONCILE.as_secs(),
    )
}

/// A deadline for a store append (`Store::append_inputs`) far enough away
/// that no test append not about slowness comes near it.
pub fn soon() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(60)
}
