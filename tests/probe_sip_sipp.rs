//! SIP OPTIONS probe against a real SIP implementation: sipp as a UAS
//! (scenarios in tests/sipp/), over UDP and TCP on 127.0.0.1.
//!
//! sipp is required: if it is missing these tests FAIL with instructions
//! rather than skip, so CI cannot pass without exercising a real peer.
//! Set `SIPP=/path/to/sipp` to use another binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use continuity_agent::domain::ProbeOutcome;
use tokio::net::UdpSocket;

mod support;

use support::sipp::{Sipp, sip_probe};

async fn check(target: &str, accept: &[&str]) -> ProbeOutcome {
    sip_probe(target, accept, 2000).check().await
}

#[tokio::test]
async fn sipp_udp_200_is_up() {
    let sipp = Sipp::start("options-uas.xml", false).await;
    let out = check(&sipp.target(), &["2xx"]).await;
    assert!(out.success, "{out:?}");
    assert!(out.detail.starts_with("200 OK in "), "{}", out.detail);
    // A latency is reported; how small it is belongs in the benchmarks.
    assert!(out.latency.is_some(), "{out:?}");
}

#[tokio::test]
async fn sipp_tcp_200_is_up() {
    let sipp = Sipp::start("options-uas.xml", true).await;
    let out = check(&sipp.target(), &["2xx"]).await;
    assert!(out.success, "{out:?}");
    assert!(out.detail.starts_with("200 OK in "), "{}", out.detail);
}

#[tokio::test]
async fn sipp_503_is_down_unless_accepted() {
    for tcp in [false, true] {
        let sipp = Sipp::start("options-uas-503.xml", tcp).await;
        let out = check(&sipp.target(), &["2xx"]).await;
        assert!(!out.success, "{out:?}");
        assert!(
            out.detail
                .starts_with("503 Service Unavailable (not accepted: 2xx)"),
            "{}",
            out.detail
        );
        let out = check(&sipp.target(), &["2xx", "503"]).await;
        assert!(out.success, "{out:?}");
    }
}

#[tokio::test]
async fn sipp_404_is_up_when_accepted() {
    for tcp in [false, true] {
        let sipp = Sipp::start("options-uas-404.xml", tcp).await;
        let out = check(&sipp.target(), &["2xx", "404"]).await;
        assert!(out.success, "{out:?}");
        assert!(
            out.detail.starts_with("404 Not Found in "),
            "{}",
            out.detail
        );
        let out = check(&sipp.target(), &["2xx"]).await;
        assert!(!out.success, "{out:?}");
    }
}

#[tokio::test]
async fn sipp_killed_means_fast_failure() {
    // The trunk process dies: UDP gets ICMP port unreachable, TCP a refusal.
    // The detail proves the fast path (a timeout would read "timeout after
    // 3s"); how fast it is belongs in the benchmarks, not in a timed test.
    for tcp in [false, true] {
        let sipp = Sipp::start("options-uas.xml", tcp).await;
        let target = sipp.target();
        let addr = sipp.addr;
        drop(sipp);
        let out = sip_probe(&target, &["2xx"], 3000).check().await;
        assert!(!out.success, "{out:?}");
        let expected = if tcp {
            format!("connection refused by {addr}")
        } else {
            format!("ICMP port unreachable from {addr}")
        };
        assert_eq!(out.detail, expected);
    }
}

/// A UDP relay in front of sipp that drops the first request datagram.
struct LossyRelay {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

async fn lossy_relay(upstream: SocketAddr) -> LossyRelay {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    let addr = front.local_addr().unwrap();
    {
        let (front, back, requests, client) = (
            front.clone(),
            back.clone(),
            requests.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                if requests.fetch_add(1, Ordering::SeqCst) == 0 {
                    continue; // Lost in the network.
                }
                let _ = back.send_to(&buf[..n], upstream).await;
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, _)) = back.recv_from(&mut buf).await {
            let to = *client.lock().unwrap();
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    LossyRelay { addr, requests }
}

#[tokio::test]
async fn sipp_lost_first_datagram_is_recovered_by_retransmission() {
    let sipp = Sipp::start("options-uas.xml", false).await;
    let relay = lossy_relay(sipp.addr).await;
    let out = check(&format!("sip:{}", relay.addr), &["2xx"]).await;
    assert!(out.success, "{out:?}");
    assert_eq!(
        relay.requests.load(Ordering::SeqCst),
        2,
        "first request dropped, retransmission after T1 answered"
    );
    assert!(out.detail.ends_with("(2 sends)"), "{}", out.detail);
    assert!(out.latency.unwrap() >= Duration::from_millis(450));
}
