//! The fleet against the in-process responder and hand-rolled peers on
//! loopback (real sockets, real time, generous bounds): the same behaviour
//! `sip/tests.rs` asks of a probe in a task of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::domain::ProbeResult;
use crate::probe::scheduler::{self, Runner, Scheduled};
use crate::probe::sip::tests::{LOOPBACK, closed_udp_port, responder};
use crate::probe::sip::{Accept, Mode, parse_target};

/// Bound on waiting for any one result: only catches a hang.
const HANG: Duration = Duration::from_secs(20);

fn probe(id: &str, dest: SocketAddr, timeout: Duration) -> SipProbe {
    SipProbe::new(
        id,
        parse_target(&format!("sip:{dest}")).unwrap(),
        Accept::parse(&["2xx"]).unwrap(),
        timeout,
    )
}

async fn once(p: SipProbe) -> ProbeOutcome {
    timeout(HANG, check_once(p))
        .await
        .expect("no hang")
        .expect("a literal SIP/UDP probe runs in the fleet")
}

#[tokio::test]
async fn answers_are_judged_as_a_probe_task_judges_them() {
    let r = responder(Mode::Answer(200)).await;
    let out = once(probe("t", r.udp_addr(), Duration::from_secs(2))).await;
    assert!(out.success, "{out:?}");
    assert!(out.detail.starts_with("200 OK in "), "{}", out.detail);
    assert!(out.latency.is_some(), "{out:?}");
    assert_eq!(r.received(), 1);

    r.set_mode(Mode::Answer(503));
    let out = once(probe("t", r.udp_addr(), Duration::from_secs(2))).await;
    assert!(!out.success, "{out:?}");
    assert!(
        out.detail
            .starts_with("503 Service Unavailable (not accepted: 2xx) in "),
        "{}",
        out.detail
    );

    r.set_send_trying(true);
    r.set_mode(Mode::Answer(200));
    let out = once(probe("t", r.udp_addr(), Duration::from_secs(2))).await;
    assert!(out.success && out.detail.starts_with("200 OK"), "{out:?}");
}

#[tokio::test]
async fn names_and_other_transports_are_not_the_fleets() {
    let named = SipProbe::new(
        "n",
        parse_target("sip:trunk.example.net").unwrap(),
        Accept::default(),
        Duration::from_secs(1),
    );
    assert_eq!(named.literal_udp_dest(), None);
    assert!(check_once(named).await.is_none());
    let tcp = SipProbe::new(
        "t",
        parse_target("sip:192.0.2.1;transport=tcp").unwrap(),
        Accept::default(),
        Duration::from_secs(1),
    );
    assert_eq!(tcp.literal_udp_dest(), None);
    let udp = probe(
        "u",
        "192.0.2.1:5070".parse().unwrap(),
        Duration::from_secs(1),
    );
    assert_eq!(
        udp.literal_udp_dest(),
        Some("192.0.2.1:5070".parse().unwrap())
    );
}

#[tokio::test]
async fn silence_times_out_after_the_timer_e_retransmissions() {
    let r = responder(Mode::Silent).await;
    let started = Instant::now();
    let out = once(probe("t", r.udp_addr(), Duration::from_secs(2))).await;
    assert_eq!(out.detail, "timeout after 2s");
    assert!(!out.success && out.latency.is_none(), "{out:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    // Sent at 0, 0.5 and 1.5 s; the next (3.5 s) is past the timeout.
    assert_eq!(r.received(), 3);
}

#[tokio::test]
async fn a_lost_datagram_is_recovered_by_retransmission() {
    let r = responder(Mode::Answer(200)).await;
    r.drop_next(1);
    let out = once(probe("t", r.udp_addr(), Duration::from_secs(2))).await;
    assert!(out.success, "{out:?}");
    assert!(out.detail.ends_with("(2 sends)"), "{}", out.detail);
    assert_eq!(r.received(), 2);
    // Latency counts from the first send.
    assert!(
        out.latency.unwrap() >= Duration::from_millis(450),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_closed_port_fails_by_icmp_without_disturbing_the_others() {
    let r = responder(Mode::Answer(200)).await;
    let closed = closed_udp_port();
    let out = once(probe("t", closed, Duration::from_secs(3))).await;
    // The detail proves the path: a timeout would read "timeout after 3s".
    assert_eq!(out.detail, format!("ICMP port unreachable from {closed}"));

    // In one fleet, on one socket: only the closed port's probe fails.
    let (events, mut results) = mpsc::channel(64);
    let (_switch, cadence) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let members = vec![
        member(probe("good", r.udp_addr(), Duration::from_secs(2)), 300),
        member(probe("bad", closed, Duration::from_secs(2)), 300),
    ];
    let metrics = Metrics::new();
    let fleet = tokio::spawn(run(
        members,
        Instant::now(),
        cadence,
        events,
        metrics.clone(),
        shutdown.clone(),
    ));
    let mut seen = HashMap::<String, usize>::new();
    while seen.values().min().copied().unwrap_or(0) < 3 || seen.len() < 2 {
        let Some(Event::ProbeResult { probe, outcome }) =
            timeout(HANG, results.recv()).await.expect("no hang")
        else {
            panic!("unexpected event");
        };
        match probe.as_str() {
            "good" => assert!(outcome.success, "{outcome:?}"),
            "bad" => assert!(
                !outcome.success && outcome.detail.starts_with("ICMP port unreachable"),
                "{outcome:?}"
            ),
            other => panic!("{other}"),
        }
        *seen.entry(probe).or_default() += 1;
    }
    assert_eq!(r.udp_peers(), 1, "one socket for the whole fleet");
    // Each result was counted in the probe's own series.
    let counted = |id: &str, result| metrics.probes.results(id, result);
    assert!(counted("good", ProbeResult::Success) >= 3);
    assert!(counted("bad", ProbeResult::Failure) >= 3);
    shutdown.cancel();
    timeout(HANG, fleet).await.expect("stops").unwrap();
}

fn member(probe: SipProbe, interval_ms: u64) -> Member {
    Member {
        dest: probe.literal_udp_dest().expect("a literal UDP target"),
        probe,
        interval: Duration::from_millis(interval_ms),
        fast_interval: Duration::from_millis(interval_ms),
    }
}

/// A reply with the right identifiers from another host decides nothing;
/// the trunk's own does.
#[tokio::test]
async fn a_reply_from_another_host_is_ignored() {
    let trunk = UdpSocket::bind(LOOPBACK).await.unwrap();
    let spoofer = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let p = probe("t", trunk.local_addr().unwrap(), Duration::from_secs(2));
    let check = tokio::spawn(once(p));
    let mut buf = vec![0u8; 4096];
    let (n, agent) = trunk.recv_from(&mut buf).await.unwrap();
    let ok = super::super::responder::build_answers(&buf[..n], 200, false).unwrap();
    spoofer.send_to(&ok[0], agent).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = super::super::responder::build_answers(&buf[..n], 503, false).unwrap();
    trunk.send_to(&busy[0], agent).await.unwrap();
    let out = check.await.unwrap();
    assert!(!out.success, "the spoofed 200 was taken: {out:?}");
    assert!(
        out.detail.starts_with("503 Service Unavailable"),
        "{}",
        out.detail
    );
}

/// Through the scheduler: a literal SIP/UDP probe goes to the fleet, its
/// cadence switches there, and shutdown stops it.
#[tokio::test]
async fn the_scheduler_runs_literal_udp_probes_in_the_fleet_and_switches_their_pace() {
    let r = responder(Mode::Answer(200)).await;
    let scheduled = Scheduled {
        probe: Runner::Sip(Box::new(probe(
            "trunk",
            r.udp_addr(),
            Duration::from_secs(1),
        ))),
        interval: Duration::from_secs(3),
        fast_interval: Duration::from_millis(100),
        timeout: Duration::from_secs(1),
        slots: None,
    };
    let (events, mut results) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let handle = scheduler::spawn(vec![scheduled], events, Metrics::new(), shutdown.clone());
    let first = timeout(HANG, results.recv()).await.expect("a result");
    assert!(
        matches!(first, Some(Event::ProbeResult { ref probe, ref outcome }) if probe == "trunk" && outcome.success),
        "{first:?}"
    );
    assert!(handle.set_fast("trunk", true), "the fleet's probe is known");
    // At 100 ms, ten results come well before the 3 s interval would give
    // a second one.
    let switched = Instant::now();
    for _ in 0..10 {
        timeout(HANG, results.recv()).await.expect("a result");
    }
    assert!(
        switched.elapsed() < Duration::from_secs(3),
        "fast cadence: {:?}",
        switched.elapsed()
    );
    // Back to 3 s: after the check in flight, nothing for well over a second.
    assert!(handle.set_fast("trunk", false));
    tokio::time::sleep(Duration::from_millis(300)).await;
    while results.try_recv().is_ok() {}
    assert!(
        timeout(Duration::from_millis(1500), results.recv())
            .await
            .is_err(),
        "slow cadence again"
    );
    shutdown.cancel();
    timeout(HANG, handle.join()).await.expect("stops");
}

/// A flood of datagrams at the fleet's port, faster than one task reads
/// them, must not stall it: its timers keep firing (checks start and end)
/// and the trunk's answers, queued among the garbage, are still read. The
/// fleet runs on a runtime of its own thread, as it does in the daemon's
/// multi-thread runtime beside the engine; the test's runtime (the
/// responder, the clock of the bound) stays free, so a stalled fleet fails
/// the bound instead of hanging the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_datagram_flood_at_the_fleets_port_does_not_stall_it() {
    let r = responder(Mode::Answer(200)).await;
    let (events, mut results) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    // A short timeout: an answer the flood crowded out of the receive
    // buffer ends its check as inconclusive within 300 ms, so the checks
    // keep cycling however many answers are lost (with 2 s, a fast flooder
    // left room for two or three checks in the window).
    let members = vec![member(
        probe("t", r.udp_addr(), Duration::from_millis(300)),
        100,
    )];
    let fleet_shutdown = shutdown.clone();
    let fleet = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_switch, cadence) = mpsc::unbounded_channel();
        rt.block_on(run(
            members,
            Instant::now(),
            cadence,
            events,
            Metrics::new(),
            fleet_shutdown,
        ));
    });
    // The first result: the fleet's socket is open and known.
    let first = timeout(HANG, results.recv()).await.expect("no hang");
    assert!(matches!(first, Some(Event::ProbeResult { ref outcome, .. }) if outcome.success));
    let [port] = r.udp_peer_addrs()[..] else {
        panic!("one socket for the fleet");
    };

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let s = std::net::UdpSocket::bind(LOOPBACK).unwrap();
            // Garbage, and a response with another branch: parsed, matched
            // against nothing, dropped.
            let stray = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKflood\r\n\
                Call-ID: flood\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
            while !stop.load(Ordering::Relaxed) {
                for datagram in [&b"flood"[..], &stray[..]] {
                    if s.send_to(datagram, port).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    // Checks go on starting and ending under the flood, the trunk's answers
    // get through, and none fails: a check whose answer may have been
    // dropped in this host's full receive buffer is inconclusive. Whether
    // an answer finds room in the buffer is chance (the flooder and the
    // fleet share the cores with whatever else runs), so the window runs
    // until both were seen, for at most 10 s.
    let (mut outcomes, mut answered, mut unsure) = (0, 0, 0);
    let window = Instant::now() + Duration::from_secs(10);
    while Instant::now() < window && (outcomes < 5 || answered < 1) {
        let Some(Event::ProbeResult { outcome, .. }) = timeout(HANG, results.recv())
            .await
            .expect("the fleet stalled under the flood")
        else {
            panic!("the fleet stopped");
        };
        assert!(
            outcome.success || outcome.inconclusive,
            "a healthy trunk failed under the flood: {outcome:?}"
        );
        outcomes += 1;
        answered += usize::from(outcome.success);
        unsure += usize::from(outcome.inconclusive);
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 10_000, "a flood: {sent} datagrams");
    assert!(
        outcomes >= 5 && answered >= 1,
        "{outcomes} results ({answered} answered, {unsure} inconclusive) in 10 s under a flood of {sent} datagrams"
    );

    // After it, every check is answered again.
    let out = timeout(HANG, async {
        loop {
            if let Some(Event::ProbeResult { outcome, .. }) = results.recv().await
                && outcome.success
            {
                return outcome;
            }
        }
    })
    .await
    .expect("answered again");
    assert!(out.detail.starts_with("200 OK"), "{out:?}");
    shutdown.cancel();
    fleet.join().unwrap();
}
