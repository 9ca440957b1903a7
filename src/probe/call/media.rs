//! The media check of an answered call: send 20ms packets of silence to the
//! address the answer's SDP gives, measure the inbound stream, judge it
//! against `min_media`, `media_timeout` and `expect_audio`.

use std::time::Duration;

use rand::Rng;
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};

use super::attempt::{Answer, Call};
use super::sdp::MediaAnswer;
use super::{CallProbe, round_duration, rtp, sdp, secs};
use crate::domain::ProbeOutcome;
use crate::probe::fmt_latency;

impl Call {
    /// Send silence, measure what comes back, judge it.
    pub(super) async fn media(
        &mut self,
        p: &CallProbe,
        rtp: &UdpSocket,
        a: Answer,
    ) -> ProbeOutcome {
        let remote = match sdp::parse_answer(&a.reply.body) {
            Ok(r) => r,
            Err(e) => return ProbeOutcome::failure(format!("answered, {e}"), Some(a.at)),
        };
        let answered = Instant::now();
        let deadline = (answered + p.s.media_timeout).min(self.start + p.s.max_duration);
        let (rx, hung_up) = self.exchange(p, rtp, remote, answered, deadline).await;
        let s = rx.stats();
        record(p, &s);
        let waited = answered.elapsed().min(deadline - answered);
        verdict(p, &a, &s, hung_up, waited)
    }

    /// RTP both ways until enough media arrived, the deadline, or the callee
    /// hangs up (the second value).
    async fn exchange(
        &mut self,
        p: &CallProbe,
        rtp: &UdpSocket,
        remote: MediaAnswer,
        answered: Instant,
        deadline: Instant,
    ) -> (rtp::Receiver, bool) {
        let mut rx = rtp::Receiver::default();
        let (mut seq, mut ts, ssrc): (u16, u32, u32) = {
            let mut r = rand::rng();
            (r.random(), r.random(), r.random())
        };
        let mut tick = tokio::time::interval(rtp::PACKET_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut buf = vec![0u8; 2048];
        loop {
            let stats = rx.stats();
            if stats.audio >= p.s.min_media && (!p.s.expect_audio || stats.heard_audio) {
                return (rx, false);
            }
            tokio::select! {
                _ = tick.tick() => {
                    let pkt = rtp::packet(remote.payload_type, seq, ts, ssrc);
                    let _ = rtp.send_to(&pkt, remote.addr).await;
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(rtp::FRAME as u32);
                }
                r = rtp.recv_from(&mut buf) => {
                    if let Ok((n, _)) = r
                        && let Some(h) = rtp::parse(&buf[..n])
                    {
                        rx.on_packet(&h, answered.elapsed());
                    }
                }
                m = self.chan.recv() => match m {
                    Ok(bytes) => if self.in_call(&bytes).await {
                        return (rx, true);
                    },
                    // Signalling is gone: the media verdict still stands, and
                    // the destructor's BYE is the last attempt to end the call.
                    Err(_) => return (rx, false),
                },
                _ = sleep_until(deadline) => return (rx, false),
            }
        }
    }
}

fn record(p: &CallProbe, s: &rtp::MediaStats) {
    let m = &p.metrics;
    m.call_media_packets
        .with_label_values(&[&p.id])
        .set(s.packets as i64);
    m.call_media_loss_ratio
        .with_label_values(&[&p.id])
        .set(s.loss);
    m.call_media_jitter_seconds
        .with_label_values(&[&p.id])
        .set(s.jitter.as_secs_f64());
}

/// `answered, no media for 3s`, `answered, silence (...)`, or success with
/// the call's figures.
fn verdict(
    p: &CallProbe,
    a: &Answer,
    s: &rtp::MediaStats,
    hung_up: bool,
    waited: Duration,
) -> ProbeOutcome {
    let latency = Some(a.at);
    let figures = format!(
        "{} of media: {} packets, loss {:.1}%, jitter {}",
        secs(s.audio),
        s.packets,
        s.loss * 100.0,
        fmt_latency(s.jitter)
    );
    let why_short = if hung_up { "callee hung up, " } else { "" };
    let waited = round_duration(waited);
    if s.packets == 0 {
        ProbeOutcome::failure(
            format!("answered, {why_short}no media for {waited}"),
            latency,
        )
    } else if s.audio < p.s.min_media {
        ProbeOutcome::failure(
            format!("answered, {why_short}only {figures} within {waited}"),
            latency,
        )
    } else if p.s.expect_audio && !s.heard_audio {
        ProbeOutcome::failure(format!("answered, silence ({figures})"), latency)
    } else {
        let mut head = format!("answered in {}", secs(a.at));
        if let Some((status, at)) = &a.ringing {
            head.push_str(&format!(" ({status} at {})", secs(*at)));
        }
        ProbeOutcome::success(format!("{head}; {figures}"), latency)
    }
}
