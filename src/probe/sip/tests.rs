//! SIP probe against the in-process responder and hand-rolled peers on
//! 127.0.0.1 (real sockets, real time, ephemeral ports). The sipp tests live
//! in `tests/probe_sip_sipp.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::*;
use crate::probe::Probe;

pub(super) const LOOPBACK: &str = "127.0.0.1:0";

fn probe(target: &str, accept: &[&str], timeout: Duration) -> SipProbe {
    SipProbe::new(
        "trunk",
        parse_target(target).unwrap(),
        Accept::parse(accept).unwrap(),
        timeout,
    )
}

fn udp_target(addr: SocketAddr) -> String {
    format!("sip:{addr}")
}

fn tcp_target(addr: SocketAddr) -> String {
    format!("sip:{addr};transport=tcp")
}

pub(super) async fn responder(mode: Mode) -> Responder {
    Responder::bind(LOOPBACK.parse().unwrap(), mode)
        .await
        .unwrap()
}

/// A local UDP port with nothing listening: bind, note the port, close.
pub(super) fn closed_udp_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind(LOOPBACK).unwrap();
    s.local_addr().unwrap()
}

#[tokio::test]
async fn udp_200_is_up_with_latency() {
    let r = responder(Mode::Answer(200)).await;
    let out = probe(&udp_target(r.udp_addr()), &["2xx"], Duration::from_secs(2))
        .check()
        .await;
    assert!(out.success, "{out:?}");
    assert!(out.detail.starts_with("200 OK in "), "{}", out.detail);
    // A latency is reported; how small it is belongs in the benchmarks.
    assert!(out.latency.is_some(), "{out:?}");
    assert_eq!(r.received(), 1);
}

#[tokio::test]
async fn udp_503_is_down_unless_accepted_and_404_up_when_accepted() {
    let r = responder(Mode::Answer(503)).await;
    let target = udp_target(r.udp_addr());
    let out = probe(&target, &["2xx"], Duration::from_secs(2))
        .check()
        .await;
    assert!(!out.success);
    assert!(
        out.detail
            .starts_with("503 Service Unavailable (not accepted: 2xx) in "),
        "{}",
        out.detail
    );
    assert!(
        out.latency.is_some(),
        "a response has a latency even when not accepted"
    );
    let out = probe(&target, &["2xx", "503"], Duration::from_secs(2))
        .check()
        .await;
    assert!(out.success, "{out:?}");

    r.set_mode(Mode::Answer(404));
    let out = probe(&target, &["2xx", "404"], Duration::from_secs(2))
        .check()
        .await;
    assert!(out.success, "{out:?}");
    let out = probe(&target, &["2xx"], Duration::from_secs(2))
        .check()
        .await;
    assert!(!out.success, "{out:?}");
}

#[tokio::test]
async fn provisional_responses_are_skipped() {
    let r = responder(Mode::Answer(200)).await;
    r.set_send_trying(true);
    let out = probe(&udp_target(r.udp_addr()), &["2xx"], Duration::from_secs(2))
        .check()
        .await;
    assert!(out.success && out.detail.starts_with("200 OK"), "{out:?}");
    let out = probe(&tcp_target(r.tcp_addr()), &["2xx"], Duration::from_secs(2))
        .check()
        .await;
    assert!(out.success && out.detail.starts_with("200 OK"), "{out:?}");
}

#[tokio::test]
async fn silent_target_times_out_after_retransmitting() {
    let r = responder(Mode::Silent).await;
    let started = Instant::now();
    let out = probe(&udp_target(r.udp_addr()), &["2xx"], Duration::from_secs(2))
        .check()
        .await;
    let took = started.elapsed();
    assert!(!out.success);
    assert_eq!(out.detail, "timeout after 2s");
    assert_eq!(out.latency, None);
    // It waited for its timeout (a lower bound, not a speed goal); the upper
    // bound only catches a hang, generous for a loaded machine.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // Sent at 0, 0.5 s and 1.5 s (Timer E).
    assert_eq!(r.received(), 3);
}

#[tokio::test]
async fn lost_first_datagram_is_recovered_by_retransmission() {
    let r = responder(Mode::Answer(200)).await;
    r.drop_next(1);
    let out = probe(&udp_target(r.udp_addr()), &["2xx"], Duration::from_secs(2))
        .check()
        .await;
    assert!(out.success, "{out:?}");
    assert_eq!(
        r.received(),
        2,
        "the first request was dropped, the retransmission answered"
    );
    assert!(out.detail.ends_with("(2 sends)"), "{}", out.detail);
    // Latency counts from the first send: the lost datagram is part of the cost.
    let latency = out.latency.unwrap();
    assert!(latency >= Duration::from_millis(450), "{latency:?}");
}

#[tokio::test]
async fn closed_udp_port_fails_fast_via_icmp() {
    let addr = closed_udp_port();
    let out = probe(&udp_target(addr), &["2xx"], Duration::from_secs(3))
        .check()
        .await;
    assert!(!out.success);
    // The detail proves the path: a timeout would read "timeout after 3s".
    // How fast it is belongs in the benchmarks, not here.
    assert_eq!(out.detail, format!("ICMP port unreachable from {addr}"));
}

#[tokio::test]
async fn closed_port_does_not_disturb_other_transactions() {
    // An ICMP error for one destination must fail only that transaction, even
    // though both share the socket (and the kernel's pending error).
    let r = responder(Mode::Answer(200)).await;
    let good = probe(&udp_target(r.udp_addr()), &["2xx"], Duration::from_secs(2));
    let bad = probe(
        &udp_target(closed_udp_port()),
        &["2xx"],
        Duration::from_secs(2),
    );
    for _ in 0..5 {
        let (g, b) = tokio::join!(good.check(), bad.check());
        assert!(g.success, "{g:?}");
        assert!(
            !b.success && b.detail.starts_with("ICMP port unreachable"),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn many_udp_probes_share_one_socket() {
    // 2000 trunks probed at the same instant: one socket, one demultiplexer,
    // every probe answered (a datagram dropped by a full buffer is recovered
    // by retransmission within the timeout). The timeout is generous: this
    // asserts that every probe is answered, not how fast (benchmarks).
    let r = responder(Mode::Answer(200)).await;
    let probes: Vec<SipProbe> = (0..2000)
        .map(|_| probe(&udp_target(r.udp_addr()), &["2xx"], Duration::from_secs(20)))
        .collect();
    let outs = futures::future::join_all(probes.iter().map(|p| p.check())).await;
    assert!(
        outs.iter().all(|o| o.success),
        "{:?}",
        outs.iter().find(|o| !o.success)
    );
    assert!(r.received() >= 2000);
    assert_eq!(
        r.udp_peers(),
        1,
        "all requests came from the one shared socket"
    );
    let mux = UdpMux::for_dest(r.udp_addr()).unwrap();
    assert_eq!(
        mux.local_port(),
        UdpMux::for_dest(r.udp_addr()).unwrap().local_port()
    );
}

#[tokio::test]
async fn responses_must_match_branch_call_id_and_cseq() {
    // A peer that first answers with a wrong Call-ID, then a wrong CSeq, then
    // a wrong branch, then correctly: only the last one may count.
    let peer = UdpSocket::bind(LOOPBACK).await.unwrap();
    let addr = peer.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        let req = String::from_utf8_lossy(&buf[..n]).to_string();
        let header = |name: &str| {
            req.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap()
                .to_string()
        };
        let (via, call_id, cseq) = (header("Via"), header("Call-ID"), header("CSeq"));
        let wrong_branch = via.replace("branch=z9hG4bK", "branch=z9hG4bKx");
        for (code, v, c, s) in [
            (500, via.as_str(), "other@x", cseq.as_str()),
            (501, via.as_str(), call_id.as_str(), "1 OPTIONS"),
            (502, wrong_branch.as_str(), call_id.as_str(), cseq.as_str()),
            (200, via.as_str(), call_id.as_str(), cseq.as_str()),
        ] {
            let resp = format!(
                "SIP/2.0 {code} X\r\nVia: {v}\r\nCall-ID: {c}\r\nCSeq: {s}\r\nContent-Length: 0\r\n\r\n"
            );
            peer.send_to(resp.as_bytes(), from).await.unwrap();
        }
        // Garbage must not disturb the demultiplexer either.
        peer.send_to(b"\x00\xffnot sip", from).await.unwrap();
    });
    let out = probe(&udp_target(addr), &["2xx"], Duration::from_secs(2))
        .check()
        .await;
    assert!(out.success && out.detail.starts_with("200 X"), "{out:?}");
}

#[tokio::test]
async fn tcp_answers_and_refusals() {
    let r = responder(Mode::Answer(200)).await;
    let target = tcp_target(r.tcp_addr());
    let out = probe(&target, &["2xx"], Duration::from_secs(2))
        .check()
        .await;
    assert!(
        out.success && out.detail.starts_with("200 OK in "),
        "{out:?}"
    );
    r.set_mode(Mode::Answer(503));
    let out = probe(&target, &["2xx"], Duration::from_secs(2))
        .check()
        .await;
    assert!(
        !out.success && out.detail.starts_with("503 Service Unavailable"),
        "{out:?}"
    );
    r.set_mode(Mode::Silent);
    let out = probe(&target, &["2xx"], Duration::from_millis(300))
        .check()
        .await;
    assert_eq!(out.detail, "timeout after 300ms");

    // Nothing listening: refused at once.
    let closed = {
        let l = std::net::TcpListener::bind(LOOPBACK).unwrap();
        l.local_addr().unwrap()
    };
    let out = probe(&tcp_target(closed), &["2xx"], Duration::from_secs(3))
        .check()
        .await;
    assert_eq!(out.detail, format!("connection refused by {closed}"));
}

#[tokio::test]
async fn stopped_responder_turns_probe_down() {
    let r = responder(Mode::Answer(200)).await;
    let p = probe(&udp_target(r.udp_addr()), &["2xx"], Duration::from_secs(1));
    assert!(p.check().await.success);
    r.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let out = p.check().await;
    assert!(!out.success, "{out:?}");
}

#[tokio::test]
async fn host_names_are_resolved_each_attempt() {
    let r = responder(Mode::Answer(200)).await;
    let port = r.udp_addr().port();
    let out = probe(
        &format!("sip:localhost:{port}"),
        &["2xx"],
        Duration::from_secs(2),
    )
    .check()
    .await;
    // localhost may resolve to ::1 first, where nothing listens on this
    // port: that address fails fast and the next (127.0.0.1) answers.
    assert!(out.success, "{out:?}");
    let out = probe("sip:no-such-host.invalid", &["2xx"], Duration::from_secs(3))
        .check()
        .await;
    assert!(!out.success);
    assert!(
        out.detail
            .starts_with("cannot resolve no-such-host.invalid")
            || out.detail.starts_with("timeout"),
        "{}",
        out.detail
    );
}

#[test]
fn validation_reports_bad_keys_and_builds_what_runs() {
    use crate::probe::testutil::{probe_config, probe_settings};
    let f = probe_config(serde_json::json!({"id": "trunk-a", "type": "sip"}))
        .settings()
        .unwrap_err();
    assert_eq!(f.errors[0].key, "target", "{f}");
    assert!(f.errors[0].reason.starts_with("missing: a SIP URI"), "{f}");
    let f = probe_config(serde_json::json!({
        "id": "trunk-a", "type": "sip", "target": "sip:h.example",
        "accept": ["2xx", "banana", "180"], "from_user": "a b"
    }))
    .settings()
    .unwrap_err();
    let keys: Vec<&str> = f.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["accept[1]", "accept[2]", "from_user"], "{f}");
    assert!(f.errors[1].reason.contains("provisional"), "{f}");

    let mut found = crate::probe::Findings::default();
    let s = probe_config(serde_json::json!({
        "id": "trunk-a", "type": "sip", "target": "sip:h.example", "accept": ["2xx", "408"]
    }))
    .validate(&mut found)
    .unwrap();
    assert_eq!(found.warnings[0].key, "accept[1]", "408 is legal but risky");
    let crate::probe::KindSettings::Sip(k) = &s.kind else {
        unreachable!()
    };
    let p = SipProbe::from_settings(&s.id, k, s.cadence.timeout);
    assert_eq!(p.target().effective_port(), 5060);
    assert_eq!((p.id(), p.kind()), ("trunk-a", "sip"));
    let s = probe_settings(serde_json::json!({"id": "t", "type": "sip", "target": "sip:h"}));
    let crate::probe::KindSettings::Sip(k) = &s.kind else {
        unreachable!()
    };
    assert_eq!(k.accept, Accept::default());
}

mod tls {
    use std::sync::Arc;

    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    const CA: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/ca.pem"
    ));
    const CERT: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/server.pem"
    ));
    const KEY: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/server.key"
    ));

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn server_config() -> Arc<rustls::ServerConfig> {
        let certs = vec![CertificateDer::from_pem_slice(CERT).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        )
    }

    fn client_trusting_test_ca() -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(CA).unwrap())
            .unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    #[tokio::test]
    async fn sips_target_answers_over_verified_tls() {
        let r = responder(Mode::Answer(200)).await;
        let addr = r
            .serve_tls(LOOPBACK.parse().unwrap(), server_config())
            .await
            .unwrap();
        for target in [
            format!("sips:localhost:{}", addr.port()),
            format!("sip:127.0.0.1:{};transport=tls", addr.port()),
        ] {
            let p = probe(&target, &["2xx"], Duration::from_secs(2))
                .with_tls_config(client_trusting_test_ca());
            let out = p.check().await;
            assert!(out.success, "{target}: {out:?}");
            assert!(out.detail.starts_with("200 OK in "), "{}", out.detail);
        }
        r.set_mode(Mode::Answer(503));
        let p = probe(
            &format!("sip:127.0.0.1:{};transport=tls", addr.port()),
            &["2xx"],
            Duration::from_secs(2),
        )
        .with_tls_config(client_trusting_test_ca());
        assert!(
            p.check()
                .await
                .detail
                .starts_with("503 Service Unavailable")
        );
    }

    #[tokio::test]
    async fn untrusted_certificate_is_a_failure_that_says_so() {
        let r = responder(Mode::Answer(200)).await;
        let addr = r
            .serve_tls(LOOPBACK.parse().unwrap(), server_config())
            .await
            .unwrap();
        // Default settings: the OS trust store does not know the test CA.
        let out = probe(
            &format!("sip:127.0.0.1:{};transport=tls", addr.port()),
            &["2xx"],
            Duration::from_secs(2),
        )
        .check()
        .await;
        assert!(!out.success);
        assert!(
            out.detail
                .starts_with(&format!("TLS handshake with {addr} failed: ")),
            "{}",
            out.detail
        );
        assert!(
            out.detail.to_lowercase().contains("certificate"),
            "{}",
            out.detail
        );
    }
}

#[tokio::test]
async fn ipv6_literals_use_the_ipv6_socket() {
    // Not skipped when ::1 is missing: a test that passes without running
    // proves nothing. Every machine this suite runs on has IPv6 loopback.
    let r = Responder::bind("[::1]:0".parse().unwrap(), Mode::Answer(200))
        .await
        .expect("IPv6 loopback (::1) is needed by this test; enable it on the host");
    let port = r.udp_addr().port();
    let out = probe(
        &format!("sip:[::1]:{port}"),
        &["2xx"],
        Duration::from_secs(2),
    )
    .check()
    .await;
    assert!(out.success, "{out:?}");
    let out = probe(
        &format!("sip:ping@[::1]:{};transport=tcp", r.tcp_addr().port()),
        &["2xx"],
        Duration::from_secs(2),
    )
    .check()
    .await;
    assert!(out.success, "{out:?}");
    // ICMPv6 port unreachable is routed through IPV6_RECVERR too.
    let closed = std::net::UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = probe(&format!("sip:{closed}"), &["2xx"], Duration::from_secs(3))
        .check()
        .await;
    assert_eq!(out.detail, format!("ICMP port unreachable from {closed}"));
}

#[tokio::test]
async fn next_address_is_tried_after_a_transport_failure() {
    let r = responder(Mode::Answer(200)).await;
    let (dead_a, dead_b) = (closed_udp_port(), closed_udp_port());
    let p = probe(&udp_target(r.udp_addr()), &["2xx"], Duration::from_secs(2));
    let (resp, _, _) = p.attempt_addrs(&[dead_a, r.udp_addr()]).await.unwrap();
    assert_eq!(resp.code, 200);
    let err = p.attempt_addrs(&[dead_a, dead_b]).await.unwrap_err();
    assert!(matches!(err, super::AttemptError::Remote(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("ICMP port unreachable from {dead_a}; ICMP port unreachable from {dead_b}")
    );
}

/// Running out of descriptors or buffers says nothing about the trunk: such
/// transport errors are local, what the peer or the network did is not.
#[test]
fn local_resource_errors_are_told_apart_from_the_trunk_failing() {
    use std::io::Error;
    let dest: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    let emfile = || Error::from_raw_os_error(libc::EMFILE);
    assert!(TransportError::Connect(dest, emfile()).is_local());
    assert!(TransportError::Send(dest, Error::from_raw_os_error(libc::ENOBUFS)).is_local());
    assert!(TransportError::Socket("Too many open files (os error 24)".into()).is_local());
    assert!(!TransportError::Refused(dest).is_local());
    assert!(
        !TransportError::Connect(dest, Error::from_raw_os_error(libc::EHOSTUNREACH)).is_local()
    );
    assert!(!TransportError::Unreachable("port unreachable".into(), dest).is_local());
    let e: super::AttemptError = TransportError::Connect(dest, emfile()).into();
    assert!(matches!(e, super::AttemptError::Local(_)));
}

/// A timeout while this host's receive buffer dropped datagrams for the
/// probe's socket may be our loss, not the trunk's silence: inconclusive.
/// The kernel's count is real: a socket with a full buffer reports what it
/// dropped.
#[test]
fn a_timeout_with_datagrams_dropped_here_is_inconclusive() {
    let p = probe("sip:192.0.2.1", &["2xx"], Duration::from_secs(2));
    let silent = p.timed_out(0);
    assert!(!silent.success && !silent.inconclusive, "{silent:?}");
    assert_eq!(silent.detail, "timeout after 2s");
    let lost = p.timed_out(3);
    assert!(lost.inconclusive && !lost.success, "{lost:?}");
    assert!(
        lost.detail
            .starts_with("timeout after 2s, while this host dropped 3 datagrams"),
        "{}",
        lost.detail
    );

    let full = std::net::UdpSocket::bind(LOOPBACK).unwrap();
    socket2::SockRef::from(&full)
        .set_recv_buffer_size(1)
        .unwrap(); // the kernel's minimum
    assert_eq!(super::recverr::drops(&full), Some(0));
    let sender = std::net::UdpSocket::bind(LOOPBACK).unwrap();
    let to = full.local_addr().unwrap();
    for _ in 0..200 {
        sender.send_to(&[0u8; 1000], to).unwrap();
    }
    let dropped = super::recverr::drops(&full).unwrap();
    assert!((1..=200).contains(&dropped), "{dropped}");
}

/// A reply with the right branch from another host (a spoofer on the path,
/// or anyone who saw the request) decides nothing; the trunk's own does.
#[tokio::test]
async fn a_reply_from_another_host_is_ignored() {
    let trunk = UdpSocket::bind(LOOPBACK).await.unwrap();
    let spoofer = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let p = probe(
        &udp_target(trunk.local_addr().unwrap()),
        &["2xx"],
        Duration::from_secs(2),
    );
    let check = tokio::spawn(async move { p.check().await });
    let mut buf = vec![0u8; 4096];
    let (n, agent) = trunk.recv_from(&mut buf).await.unwrap();
    let ok = super::responder::build_answers(&buf[..n], 200, false).unwrap();
    spoofer.send_to(&ok[0], agent).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = super::responder::build_answers(&buf[..n], 503, false).unwrap();
    trunk.send_to(&busy[0], agent).await.unwrap();
    let out = check.await.unwrap();
    assert!(!out.success, "the spoofed 200 was taken: {out:?}");
    assert!(
        out.detail.starts_with("503 Service Unavailable"),
        "{}",
        out.detail
    );
}
