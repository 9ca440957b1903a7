//! sipp as a real SIP UAS (scenarios in tests/sipp/), killed on drop.
//!
//! sipp is required: if it is missing, tests FAIL with instructions rather
//! than skip, so CI cannot pass without exercising a real peer. Set
//! `SIPP=/path/to/sipp` to use another binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use continuity_agent::probe::ProbeConfig;
use continuity_agent::probe::{self, Probe};
use tokio::time::Instant;

pub fn sipp_bin() -> String {
    let bin = std::env::var("SIPP").unwrap_or_else(|_| "sipp".into());
    match Command::new(&bin).arg("-v").output() {
        Ok(_) => bin,
        Err(e) => panic!(
            "sipp is required for the SIP tests but `{bin}` cannot run ({e}). \
             Install it (Debian/Ubuntu: `apt-get install sip-tester`, or run scripts/test) or set SIPP=/path/to/sipp."
        ),
    }
}

/// A sipp UAS child process, killed on drop.
pub struct Sipp {
    child: Child,
    pub addr: SocketAddr,
    pub tcp: bool,
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sipp {
    /// Starts `scenario` on a free port and waits until it answers.
    pub async fn start(scenario: &str, tcp: bool) -> Sipp {
        Self::start_on(scenario, tcp, super::free_port()).await
    }

    /// Starts `scenario` on `port` (to restart a "trunk" at the same address).
    pub async fn start_on(scenario: &str, tcp: bool, port: u16) -> Sipp {
        let bin = sipp_bin();
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(scenario);
        assert!(file.exists(), "missing scenario {}", file.display());
        let child = Command::new(bin)
            .arg("-sf")
            .arg(&file)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", if tcp { "t1" } else { "u1" }])
            .arg("-nostdin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp");
        let sipp = Sipp {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            tcp,
        };
        sipp.wait_ready().await;
        sipp
    }

    pub fn target(&self) -> String {
        if self.tcp {
            format!("sip:{};transport=tcp", self.addr)
        } else {
            format!("sip:{}", self.addr)
        }
    }

    /// Stops sipp now (the trunk dies).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// sipp needs a moment to bind; poll until it answers anything.
    async fn wait_ready(&self) {
        let any = sip_probe(&self.target(), &["2xx", "3xx", "4xx", "5xx", "6xx"], 300);
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            if any.check().await.success {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sipp did not start on {}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn sip_probe(target: &str, accept: &[&str], timeout_ms: u64) -> Box<dyn Probe> {
    let cfg: ProbeConfig = serde_json::from_value(serde_json::json!({
        "id": "trunk-sipp",
        "type": "sip",
        "target": target,
        "accept": accept,
        "timeout": format!("{timeout_ms}ms"),
    }))
    .unwrap();
    probe::build(&cfg.settings().unwrap()).unwrap()
}

/// A sipp UAS for one test call (`-m 1`: it exits after the call, with
/// status 0 only if the whole scenario ran), RTP on its own media port.
/// Killed on drop.
pub struct CallUas {
    child: Child,
    pub addr: SocketAddr,
    pub tcp: bool,
}

impl Drop for CallUas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CallUas {
    /// Starts `scenario`; `rtp_echo` makes sipp return the RTP it receives.
    pub async fn start(scenario: &str, tcp: bool, rtp_echo: bool) -> CallUas {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(scenario);
        assert!(file.exists(), "missing scenario {}", file.display());
        let port = super::free_port();
        let media_port = super::free_port();
        let mut cmd = Command::new(sipp_bin());
        cmd.arg("-sf")
            .arg(&file)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", if tcp { "t1" } else { "u1" }])
            .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
            .args(["-m", "1", "-nostdin"]);
        if rtp_echo {
            cmd.arg("-rtp_echo");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp");
        let uas = CallUas {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            tcp,
        };
        uas.wait_bound().await;
        uas
    }

    /// `sip:<user>@127.0.0.1:<port>`, with `;transport=tcp` over TCP.
    pub fn target(&self, user: &str) -> String {
        let tr = if self.tcp { ";transport=tcp" } else { "" };
        format!("sip:{user}@{}{tr}", self.addr)
    }

    /// Waits up to `within` for sipp to finish its one call: `Some(true)`
    /// if every message of the scenario was exchanged, `None` if still running.
    pub async fn finished(&mut self, within: Duration) -> Option<bool> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("sipp status") {
                return Some(status.success());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sending a call before sipp binds would meet a closed port, and a
    /// probe request would count as a (failed) call: watch the kernel's
    /// socket table instead.
    async fn wait_bound(&self) {
        let (table, state) = if self.tcp {
            ("/proc/net/tcp", Some("0A")) // LISTEN
        } else {
            ("/proc/net/udp", None)
        };
        let local = format!("0100007F:{:04X}", self.addr.port());
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            let bound = text.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1) == Some(&local.as_str()) && state.is_none_or(|s| f.get(3) == Some(&s))
            });
            if bound {
                return;
            }
            assert!(Instant::now() < deadline, "sipp did not bind {}", self.addr);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A call probe at `target`; `extra` adds or overrides keys.
pub fn call_probe(target: &str, extra: serde_json::Value) -> ProbeConfig {
    let mut v = serde_json::json!({
        "id": "test-call",
        "type": "call",
        "target": target,
    });
    if let (Some(map), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        map.extend(more.clone());
    }
    serde_json::from_value(v).unwrap()
}
