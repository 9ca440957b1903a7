//! The call probe against a real SIP peer: sipp as the callee (scenarios in
//! tests/sipp/call-uas-*.xml), on 127.0.0.1 only. sipp is run with `-m 1`,
//! so its exit status says whether the call went exactly as the scenario
//! expects: ACK, CANCEL or BYE included.
//!
//! Media: Debian's sipp is built with RTP and pcap support
//! (`SIPp v3.6.1-SCTP-PCAP-RTPSTREAM`): `-rtp_echo` returns the probe's own
//! stream (silence), and `play_pcap_audio` plays the G.711 sample Debian
//! ships (`/usr/share/sip-tester/g711a.pcap`) as an IVR greeting.

use std::time::Duration;

use continuity_agent::engine::Event;
use continuity_agent::probe::{self, ProbeSettings, scheduler};
use continuity_agent::telemetry::Metrics;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod support;

use support::sipp::{CallUas, call_probe};

fn settings(target: &str, extra: serde_json::Value) -> ProbeSettings {
    call_probe(target, extra)
        .settings()
        .unwrap_or_else(|f| panic!("{f}"))
}

const DONE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn answered_with_media_is_up_with_figures() {
    for tcp in [false, true] {
        let mut uas = CallUas::start("call-uas-answer.xml", tcp, true).await;
        let s = settings(&uas.target("+15550100"), serde_json::json!({}));
        let metrics = Metrics::new();
        let out = probe::build_with(&s, &metrics).unwrap().check().await;
        assert!(out.success, "tcp={tcp}: {out:?}");
        assert!(
            out.detail.starts_with("answered in 0.") && out.detail.contains("(180 Ringing at 0."),
            "{}",
            out.detail
        );
        assert!(out.detail.contains("s of media: "), "{}", out.detail);
        assert!(
            out.detail.contains(" packets, loss 0.0%, jitter "),
            "{}",
            out.detail
        );
        assert!(out.latency.is_some());
        assert_eq!(uas.finished(DONE).await, Some(true), "sipp saw ACK and BYE");
        let text = metrics.render();
        let packets = text
            .lines()
            .find_map(|l| l.strip_prefix("continuity_call_media_packets{probe=\"test-call\"} "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{text}"));
        assert!(packets >= 50, "1s of 20ms packets: {packets}");
        assert!(
            text.contains("continuity_call_answer_seconds_count{probe=\"test-call\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("continuity_call_post_dial_delay_seconds_count{probe=\"test-call\"} 1"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn rejected_503_is_down_with_the_code_and_acked() {
    for tcp in [false, true] {
        let mut uas = CallUas::start("call-uas-503.xml", tcp, false).await;
        let s = settings(&uas.target("+15550100"), serde_json::json!({}));
        let out = probe::build(&s).unwrap().check().await;
        assert!(!out.success, "{out:?}");
        assert_eq!(out.detail, "rejected 503 Service Unavailable");
        assert_eq!(uas.finished(DONE).await, Some(true), "sipp got the ACK");

        // Accepted like a SIP probe's codes: a reachable number that is busy
        // or unavailable can count as up when the operator says so.
        let mut uas = CallUas::start("call-uas-503.xml", tcp, false).await;
        let s = settings(
            &uas.target("+15550100"),
            serde_json::json!({"accept": ["2xx", "503"]}),
        );
        let out = probe::build(&s).unwrap().check().await;
        assert!(out.success, "{out:?}");
        assert!(
            out.detail
                .starts_with("503 Service Unavailable (accepted) in "),
            "{}",
            out.detail
        );
        assert_eq!(uas.finished(DONE).await, Some(true));
    }
}

#[tokio::test]
async fn ringing_without_answer_is_down_with_timing_and_cancelled() {
    let mut uas = CallUas::start("call-uas-no-answer.xml", false, false).await;
    let s = settings(
        &uas.target("+15550100"),
        serde_json::json!({"timeout": "2s", "max_duration": "4s"}),
    );
    let out = probe::build(&s).unwrap().check().await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.detail
            .starts_with("no answer within 2s (180 Ringing at 0."),
        "{}",
        out.detail
    );
    assert_eq!(
        uas.finished(DONE).await,
        Some(true),
        "sipp got CANCEL and the ACK of its 487"
    );
}

#[tokio::test]
async fn answered_without_rtp_is_down_no_media_and_hung_up() {
    let mut uas = CallUas::start("call-uas-answer.xml", false, false).await;
    let s = settings(
        &uas.target("+15550100"),
        serde_json::json!({"media_timeout": "1s", "min_media": "500ms"}),
    );
    let out = probe::build(&s).unwrap().check().await;
    assert!(!out.success, "{out:?}");
    assert_eq!(out.detail, "answered, no media for 1s");
    assert_eq!(uas.finished(DONE).await, Some(true), "sipp got the BYE");
}

#[tokio::test]
async fn expect_audio_calls_an_echoed_silence_silence() {
    // The probe sends silence; sipp echoes it: the media path works, but no
    // greeting plays.
    let mut uas = CallUas::start("call-uas-answer.xml", false, true).await;
    let s = settings(
        &uas.target("+15550100"),
        serde_json::json!({"expect_audio": true, "media_timeout": "1500ms", "min_media": "500ms"}),
    );
    let out = probe::build(&s).unwrap().check().await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.detail.starts_with("answered, silence ("),
        "{}",
        out.detail
    );
    assert_eq!(uas.finished(DONE).await, Some(true));
}

fn password_file(dir: &tempfile::TempDir, password: &str) -> String {
    let path = dir.path().join("call-password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn digest_challenge_with_right_credentials_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut uas = CallUas::start("call-uas-auth.xml", false, true).await;
    let s = settings(
        &uas.target("+15550100"),
        serde_json::json!({"username": "probe", "password_file": password_file(&dir, "s3cret")}),
    );
    let out = probe::build(&s).unwrap().check().await;
    assert!(out.success, "{out:?}");
    assert!(out.detail.starts_with("answered in "), "{}", out.detail);
    assert_eq!(uas.finished(DONE).await, Some(true));
}

#[tokio::test]
async fn digest_challenge_with_wrong_credentials_is_auth_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut uas = CallUas::start("call-uas-auth.xml", false, true).await;
    let s = settings(
        &uas.target("+15550100"),
        serde_json::json!({"username": "probe", "password_file": password_file(&dir, "wrong")}),
    );
    let out = probe::build(&s).unwrap().check().await;
    assert!(!out.success, "{out:?}");
    assert_eq!(out.detail, "auth failed 403 Forbidden");
    assert!(
        !format!("{s:?}").contains("wrong"),
        "the password never shows in Debug"
    );
    assert_eq!(
        uas.finished(DONE).await,
        Some(true),
        "sipp got the ACK of its 403"
    );

    // Without credentials the challenge cannot be answered.
    let uas = CallUas::start("call-uas-auth.xml", false, true).await;
    let s = settings(&uas.target("+15550100"), serde_json::json!({}));
    let out = probe::build(&s).unwrap().check().await;
    assert!(
        out.detail.starts_with("auth required 401 Unauthorized"),
        "{}",
        out.detail
    );
}

#[tokio::test]
async fn shutdown_mid_call_sends_bye() {
    let mut uas = CallUas::start("call-uas-answer.xml", false, true).await;
    // The call would last 8s; the agent shuts down after about one second.
    let s = settings(
        &uas.target("+15550100"),
        serde_json::json!({"min_media": "8s", "media_timeout": "9s", "max_duration": "10s", "timeout": "2s"}),
    );
    let metrics = Metrics::new();
    let mut run = probe::build_scheduled(&s, &metrics, &scheduler::CallSlots::new(2)).unwrap();
    run.interval = Duration::ZERO; // No start jitter: call now.
    let (tx, mut rx) = mpsc::channel::<Event>(8);
    let shutdown = CancellationToken::new();
    let handle = scheduler::spawn(vec![run], tx, metrics, shutdown.clone());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(uas.finished(Duration::ZERO).await, None, "the call is up");
    shutdown.cancel();
    handle.join().await;
    assert!(rx.try_recv().is_err(), "no result: the call was cut short");
    assert_eq!(uas.finished(DONE).await, Some(true), "sipp got the BYE");
}

#[tokio::test]
async fn a_closed_port_fails_fast() {
    let port = support::free_port();
    let s = settings(
        &format!("sip:+15550100@127.0.0.1:{port}"),
        serde_json::json!({}),
    );
    let started = std::time::Instant::now();
    let out = probe::build(&s).unwrap().check().await;
    assert!(!out.success, "{out:?}");
    assert_eq!(
        out.detail,
        format!("ICMP port unreachable from 127.0.0.1:{port}")
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no waiting for the ring timeout"
    );
}

#[tokio::test]
async fn expect_audio_hears_a_played_greeting() {
    let pcap = "/usr/share/sip-tester/g711a.pcap";
    assert!(
        std::path::Path::new(pcap).exists(),
        "{pcap} is missing: it ships with Debian's sip-tester (apt-get install sip-tester)"
    );
    let mut uas = CallUas::start("call-uas-greeting.xml", false, false).await;
    let s = settings(
        &uas.target("+15550100"),
        serde_json::json!({"expect_audio": true, "media_timeout": "3s", "min_media": "1s"}),
    );
    let out = probe::build(&s).unwrap().check().await;
    assert!(out.success, "{out:?}");
    assert!(out.detail.contains("s of media: "), "{}", out.detail);
    assert_eq!(uas.finished(DONE).await, Some(true), "sipp got the BYE");
}

/// TLS: sipp here has no TLS transport, so a TLS terminator (the test
/// fixtures' certificate for 127.0.0.1) forwards one connection to sipp over
/// TCP. The probe verifies the certificate against the fixtures' CA.
#[tokio::test]
async fn answered_over_tls() {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/tls/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let provider = || Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(&fixture("server.pem")).unwrap()],
            PrivateKeyDer::from_pem_slice(&fixture("server.key")).unwrap(),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&fixture("ca.pem")).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let mut uas = CallUas::start("call-uas-answer.xml", true, true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = listener.local_addr().unwrap();
    let sipp = uas.addr;
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut back = tokio::net::TcpStream::connect(sipp).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
    });

    let s = settings(
        &format!("sip:+15550100@{front};transport=tls"),
        serde_json::json!({}),
    );
    let probe::KindSettings::Call(call) = &s.kind else {
        panic!("a call probe")
    };
    let p = probe::call::CallProbe::new("tls-call", call, s.cadence.timeout, Metrics::new())
        .with_tls_config(Arc::new(client));
    let out = probe::Probe::check(&p).await;
    assert!(out.success, "{out:?}");
    assert!(out.detail.contains(" packets, loss 0.0%"), "{}", out.detail);
    assert_eq!(
        uas.finished(DONE).await,
        Some(true),
        "sipp got ACK and BYE through TLS"
    );
}

#[tokio::test]
async fn callee_hanging_up_first_is_answered_and_reported() {
    let mut uas = CallUas::start("call-uas-hangup.xml", false, false).await;
    let s = settings(&uas.target("+15550100"), serde_json::json!({}));
    let out = probe::build(&s).unwrap().check().await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.detail
            .starts_with("answered, callee hung up, no media for "),
        "{}",
        out.detail
    );
    assert_eq!(
        uas.finished(DONE).await,
        Some(true),
        "sipp got the 200 to its BYE"
    );
}

#[tokio::test]
async fn a_stale_nonce_is_answered_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut uas = CallUas::start("call-uas-stale.xml", false, true).await;
    let s = settings(
        &uas.target("+15550100"),
        serde_json::json!({"username": "probe", "password_file": password_file(&dir, "s3cret")}),
    );
    let out = probe::build(&s).unwrap().check().await;
    assert!(out.success, "{out:?}");
    assert_eq!(uas.finished(DONE).await, Some(true));
}
