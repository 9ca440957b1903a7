//! The agent's own reachability check: the engine's blind guard.
//!
//! If the agent's host loses its network, every probe fails at once, and
//! without this guard the engine would forward every call away although the
//! trunks are fine (Uptime Kuma #774, Gatus' connectivity checker). The
//! canaries come from `engine.self_check`:
//!
//! - `udp://host:port`: send a minimal DNS query (`. NS`, recursion desired)
//!   and wait for any reply with the same id (a public resolver such as
//!   `udp://9.9.9.9:53`);
//! - `tcp://host:port`: a TCP connection is accepted;
//! - `http://...` / `https://...`: any HTTP response, whatever its status
//!   (the network path works; the page's health is not our question).
//!
//! **Rule:** the self-check is `ok` when at least one canary answers. One
//! canary can be down on its own; all of them failing together means we are
//! the ones cut off. With no canaries configured the check always reports
//! ok (the guard is off) and says so in the detail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::Client;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use crate::engine::event::Event;

use super::{fmt_latency, timeout_detail};

/// Each canary gets this long. Generous: a false "blind" freezes rules, a
/// false "not blind" lets a real outage through, so neither must be quick
/// to conclude on one lost packet.
pub const CANARY_TIMEOUT: Duration = Duration::from_secs(3);

/// A check started now reports within this: the canary timeout plus a second
/// for the verdict to reach the engine. The engine holds a rule about to fire
/// on probe failures at most this long for a verdict newer than them.
pub const VERDICT_WITHIN: Duration = Duration::from_secs(CANARY_TIMEOUT.as_secs() + 1);

/// One parsed canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Canary {
    /// DNS query over UDP to `host:port`.
    Udp { host: String, port: u16 },
    /// TCP connect to `host:port`.
    Tcp { host: String, port: u16 },
    /// HTTP(S) GET; any response counts.
    Http { url: String },
}

/// Parse one `engine.self_check` entry. Errors are for operators.
pub fn parse_canary(s: &str) -> Result<Canary, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| {
        format!(
            "\"{s}\" is not a canary URL ({e}); use udp://host:port, tcp://host:port or https://..."
        )
    })?;
    match url.scheme() {
        "http" | "https" => Ok(Canary::Http {
            url: url.to_string(),
        }),
        scheme @ ("udp" | "tcp") => {
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("\"{s}\": missing host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = url.port().filter(|p| *p > 0).ok_or_else(|| {
                format!("\"{s}\": {scheme} canaries need a port, like {scheme}://{host}:53")
            })?;
            if url.path() != "" && url.path() != "/" {
                return Err(format!("\"{s}\": a {scheme} canary takes no path"));
            }
            Ok(if scheme == "udp" {
                Canary::Udp { host, port }
            } else {
                Canary::Tcp { host, port }
            })
        }
        other => Err(format!(
            "\"{s}\": unsupported scheme \"{other}\"; use udp://, tcp://, http:// or https://"
        )),
    }
}

/// The configured canaries, ready to run.
pub struct SelfCheck {
    canaries: Vec<(String, Canary)>,
    timeout: Duration,
    http: Client,
}

impl SelfCheck {
    /// Parse every canary; the error lists each bad entry.
    pub fn new(entries: &[String]) -> Result<SelfCheck, String> {
        Self::with_timeout(entries, CANARY_TIMEOUT)
    }

    pub fn with_timeout(entries: &[String], timeout: Duration) -> Result<SelfCheck, String> {
        let mut canaries = Vec::new();
        let mut errors = Vec::new();
        for e in entries {
            match parse_canary(e) {
                Ok(c) => canaries.push((e.trim().to_string(), c)),
                Err(err) => errors.push(err),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let http = super::http::fetch::client(timeout, &Default::default())?;
        Ok(SelfCheck {
            canaries,
            timeout,
            http,
        })
    }

    /// Run every canary concurrently; `Event::SelfCheck` with the rule above.
    pub async fn run(&self) -> Event {
        if self.canaries.is_empty() {
            return Event::SelfCheck {
                ok: true,
                detail: "no canaries configured (blind guard off)".into(),
            };
        }
        let results = futures::future::join_all(self.canaries.iter().map(|(raw, c)| async move {
            let started = Instant::now();
            let r = tokio::time::timeout(self.timeout, self.one(c))
                .await
                .unwrap_or_else(|_| Err(timeout_detail(self.timeout)));
            (raw, r.map(|_| started.elapsed()))
        }))
        .await;
        let answered = results.iter().filter(|(_, r)| r.is_ok()).count();
        let parts: Vec<String> = results
            .iter()
            .map(|(raw, r)| match r {
                Ok(took) => format!("{raw} ok in {}", fmt_latency(*took)),
                Err(e) => format!("{raw} failed: {e}"),
            })
            .collect();
        Event::SelfCheck {
            ok: answered > 0,
            detail: format!(
                "{answered}/{} canaries answered: {}",
                results.len(),
                parts.join("; ")
            ),
        }
    }

    async fn one(&self, c: &Canary) -> Result<(), String> {
        match c {
            Canary::Udp { host, port } => dns_ping(&resolve(host, *port).await?).await,
            Canary::Tcp { host, port } => {
                let addr = resolve(host, *port).await?;
                TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|e| format!("connect to {addr}: {e}"))
            }
            Canary::Http { url } => super::http::fetch::get(&self.http, url, false)
                .await
                .map(drop)
                .map_err(|outcome| outcome.detail),
        }
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}: no address"))
}

/// A DNS query for `. NS`: 17 bytes any resolver answers (even with REFUSED,
/// which still proves the path). Sent again after one second in case the
/// first datagram was lost.
async fn dns_ping(addr: &SocketAddr) -> Result<(), String> {
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().map_err(|_| "bad bind address")?
    } else {
        "0.0.0.0:0".parse().map_err(|_| "bad bind address")?
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    // Connected: replies from elsewhere are filtered out by the kernel, and
    // ICMP port unreachable surfaces as ECONNREFUSED.
    sock.connect(addr).await.map_err(|e| e.to_string())?;
    let id: u16 = rand::rng().random();
    let mut q = Vec::with_capacity(17);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // flags: RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    q.push(0); // root name
    q.extend_from_slice(&[0, 2, 0, 1]); // QTYPE NS, QCLASS IN
    let mut buf = [0u8; 512];
    for attempt in 0..2u32 {
        sock.send(&q)
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        // One second for the first reply, then until the canary timeout
        // (enforced by the caller) for a reply to either datagram.
        let wait = tokio::time::sleep(if attempt == 0 {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(3600)
        });
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                r = sock.recv(&mut buf) => match r {
                    Ok(n) if n >= 2 && buf[..2] == id.to_be_bytes() => return Ok(()),
                    Ok(_) => continue,
                    Err(e) => return Err(format!("{addr}: {e}")),
                },
            }
        }
    }
    Err(format!("no DNS reply from {addr}"))
}

/// Run the self-check every `every` until shutdown, sending each result.
pub fn spawn(
    check: SelfCheck,
    every: Duration,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    spawn_with_trigger(check, every, events, shutdown, Arc::new(Notify::new()))
}

/// Like [`spawn`], and also checks at once when `now` is notified (the daemon
/// does so when a probe starts failing): the blind guard must know whether
/// the agent itself lost the network *before* the probes' evidence makes a
/// rule fire, not up to a whole interval later.
pub fn spawn_with_trigger(
    check: SelfCheck,
    every: Duration,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    now: Arc<Notify>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = interval(every.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
                _ = now.notified() => ticker.reset(),
            }
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = check.run() => ev,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = events.send(ev) => if r.is_err() { return },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::testutil::{closed_tcp_port, serve};

    #[test]
    fn canaries_parse_with_operator_errors() {
        assert_eq!(
            parse_canary("udp://9.9.9.9:53"),
            Ok(Canary::Udp {
                host: "9.9.9.9".into(),
                port: 53
            })
        );
        assert_eq!(
            parse_canary("tcp://[2620:fe::fe]:853"),
            Ok(Canary::Tcp {
                host: "2620:fe::fe".into(),
                port: 853
            })
        );
        assert!(matches!(
            parse_canary("https://www.google.com/generate_204"),
            Ok(Canary::Http { .. })
        ));
        assert!(
            parse_canary("udp://9.9.9.9")
                .unwrap_err()
                .contains("need a port")
        );
        assert!(
            parse_canary("icmp://1.1.1.1")
                .unwrap_err()
                .contains("unsupported scheme")
        );
        assert!(parse_canary("9.9.9.9:53").is_err());
        assert!(
            parse_canary("udp://9.9.9.9:0").is_err(),
            "port 0 is no port"
        );
        let err = SelfCheck::new(&["udp://a".into(), "ftp://b".into()])
            .err()
            .unwrap();
        assert!(err.contains("udp://a") && err.contains("ftp://b"), "{err}");
    }

    /// A tiny DNS "server" that answers every query with its id echoed.
    async fn fake_resolver() -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                if n >= 12 {
                    let mut reply = buf[..n].to_vec();
                    reply[2] |= 0x80; // QR: response
                    let _ = sock.send_to(&reply, from).await;
                }
            }
        });
        addr
    }

    fn closed_udp() -> SocketAddr {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn ok_when_at_least_one_canary_answers() {
        let dns = fake_resolver().await;
        let web = serve(axum::Router::new().route(
            "/",
            axum::routing::get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "x") }),
        ))
        .await;
        let tcp_closed = closed_tcp_port();
        let udp_closed = closed_udp();

        let all_good = SelfCheck::new(&[
            format!("udp://{dns}"),
            format!("http://{web}/"),
            format!("tcp://{web}"),
        ])
        .unwrap();
        let Event::SelfCheck { ok, detail } = all_good.run().await else {
            panic!("not a self-check event")
        };
        assert!(ok, "{detail}");
        assert!(detail.starts_with("3/3 canaries answered"), "{detail}");

        let one_good = SelfCheck::new(&[
            format!("udp://{udp_closed}"),
            format!("tcp://{tcp_closed}"),
            format!("udp://{dns}"),
        ])
        .unwrap();
        let Event::SelfCheck { ok, detail } = one_good.run().await else {
            panic!("not a self-check event")
        };
        assert!(ok, "{detail}");
        assert!(detail.starts_with("1/3 canaries answered"), "{detail}");

        let started = Instant::now();
        let none = SelfCheck::with_timeout(
            &[format!("udp://{udp_closed}"), format!("tcp://{tcp_closed}")],
            Duration::from_secs(2),
        )
        .unwrap();
        let Event::SelfCheck { ok, detail } = none.run().await else {
            panic!("not a self-check event")
        };
        assert!(!ok, "{detail}");
        assert!(detail.starts_with("0/2 canaries answered"), "{detail}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed ports fail fast"
        );

        let off = SelfCheck::new(&[]).unwrap();
        assert_eq!(
            off.run().await,
            Event::SelfCheck {
                ok: true,
                detail: "no canaries configured (blind guard off)".into()
            }
        );
    }

    #[tokio::test]
    async fn spawned_check_reports_until_shutdown() {
        let dns = fake_resolver().await;
        let (tx, mut rx) = mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let task = spawn(
            SelfCheck::new(&[format!("udp://{dns}")]).unwrap(),
            Duration::from_millis(50),
            tx,
            shutdown.clone(),
        );
        for _ in 0..2 {
            let ev = tokio::time::timeout(Duration::from_secs(2), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(ev, Event::SelfCheck { ok: true, .. }), "{ev:?}");
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
    }

    /// A notified trigger runs the check at once, not at the next interval.
    #[tokio::test]
    async fn trigger_runs_the_check_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                drop(sock);
            }
        });
        let check = SelfCheck::new(&[format!("tcp://{addr}")]).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let now = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        spawn_with_trigger(
            check,
            Duration::from_secs(3600),
            tx,
            stop.clone(),
            now.clone(),
        );
        // The interval's first tick is immediate.
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(first, Event::SelfCheck { ok: true, .. }),
            "{first:?}"
        );
        now.notify_one();
        let second = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert!(
            matches!(second, Ok(Some(Event::SelfCheck { ok: true, .. }))),
            "{second:?}"
        );
        stop.cancel();
    }
}
