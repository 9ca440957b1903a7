//! Synthetic inbound call probe: can a caller actually get through?
//!
//! Each check places one real test call the way a caller's carrier would:
//! an INVITE with an SDP offer (PCMU, PCMA) to `target` over UDP, TCP or TLS,
//! through 100/18x, answering one 401/407 challenge with digest credentials
//! ([`digest`]), then, once answered, sends 20ms RTP packets of silence to
//! the answered address and measures the inbound stream ([`rtp`]): the call
//! is up only when `min_media` of audio arrives within `media_timeout` (and,
//! with `expect_audio`, is not silence). Then BYE.
//!
//! RFC 3261 transaction rules: INVITE retransmitted on UDP (Timer A) until a
//! provisional response; ACK for every final response (same transaction for
//! non-2xx, a new one for 2xx); CANCEL when the ring timeout (`timeout`)
//! passes, only after a provisional response (RFC 3261 9.1), then ACK the
//! 487; BYE retransmitted (Timer E) until answered.
//!
//! **Never leave a call up.** A check is bounded by `max_duration` (the
//! media phase ends there) plus [`TEARDOWN`] for the CANCEL/BYE exchange.
//! [`Call`] sends CANCEL or BYE from its destructor when the check is
//! dropped mid-call (the scheduler cut it off, or the agent shuts down).
//!
//! Outcomes an operator sees: `rejected 503 Service Unavailable`,
//! `no answer within 8s (180 Ringing at 1.2s)`, `answered, no media for 3s`,
//! `answered, silence (...)`, `auth failed 403 Forbidden`, and on success
//! `answered in 1.2s (180 Ringing at 0.3s); 1.0s of media: 50 packets, loss 0.0%, jitter 0.4ms`.
//! The same figures go to the `continuity_call_*` metrics.

pub mod channel;
pub mod config;
pub mod dialog;
pub mod digest;
pub mod rtp;
pub mod sdp;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_rustls::rustls::ClientConfig;

use crate::domain::ProbeOutcome;
use crate::telemetry::Metrics;

use super::sip::transport::{T1, T2};
use super::{Probe, fmt_duration};
use channel::Channel;
pub use config::{CallConfig, CallSettings};
use dialog::{Dialog, Incoming, Reply, parse_incoming};

/// Time allowed after `max_duration` to tear the call down (CANCEL and its
/// 487, or BYE and its 200).
pub const TEARDOWN: Duration = Duration::from_secs(2);

/// A call probe.
pub struct CallProbe {
    id: String,
    s: CallSettings,
    /// How long the call may ring (`timeout`).
    ring_timeout: Duration,
    metrics: Metrics,
    /// TLS client settings; `None` uses the OS trust store.
    tls: Option<Arc<ClientConfig>>,
}

impl CallProbe {
    pub fn new(
        id: impl Into<String>,
        s: &CallSettings,
        ring_timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        CallProbe {
            id: id.into(),
            s: s.clone(),
            ring_timeout,
            metrics,
            tls: None,
        }
    }

    /// Use these TLS client settings instead of the OS trust store.
    pub fn with_tls_config(mut self, tls: Arc<ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    async fn run(&self) -> ProbeOutcome {
        let start = Instant::now();
        let target = &self.s.target;
        let dest = match super::sip::resolve(target).await {
            Ok(addrs) => addrs[0],
            Err(e) => return ProbeOutcome::failure(e, None),
        };
        let (chan, local) = match Channel::open(target, dest, self.tls.clone()).await {
            Ok(c) => c,
            Err(e) => return ProbeOutcome::failure(e, None),
        };
        let rtp = match UdpSocket::bind((local.ip(), 0)).await {
            Ok(s) => s,
            Err(e) => {
                return ProbeOutcome::failure(format!("cannot open an RTP socket: {e}"), None);
            }
        };
        let rtp_local = match rtp.local_addr() {
            Ok(a) => a,
            Err(e) => {
                return ProbeOutcome::failure(format!("cannot open an RTP socket: {e}"), None);
            }
        };
        let session = rand::rng().random_range(1..=u32::MAX.into());
        let dialog = Dialog::new(
            target,
            self.s.from.as_ref(),
            local,
            sdp::offer(rtp_local, session),
        );
        let mut call = Call {
            chan,
            dialog,
            state: State::Inviting { provisional: false },
            start,
        };
        let outcome = match call.ring(self).await {
            Err(outcome) => outcome,
            Ok(answer) => call.media(self, &rtp, answer).await,
        };
        call.hang_up().await;
        outcome
    }
}

impl Probe for CallProbe {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "call"
    }

    fn check(&self) -> BoxFuture<'_, ProbeOutcome> {
        Box::pin(async move {
            // The phases bound themselves; this is the backstop. Dropping
            // the call on the way out sends its CANCEL or BYE.
            let limit = self.s.max_duration + TEARDOWN;
            tokio::time::timeout(limit, self.run())
                .await
                .unwrap_or_else(|_| {
                    ProbeOutcome::failure(
                        format!("call cut off after {}", fmt_duration(limit)),
                        None,
                    )
                })
        })
    }
}

/// Where our side of the call stands, for the destructor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Inviting { provisional: bool },
    Answered,
    Done,
}

/// An answered call.
struct Answer {
    reply: Reply,
    at: Duration,
    ringing: Option<(String, Duration)>,
}

/// One test call in progress. Dropping it while the INVITE is pending sends
/// CANCEL; while answered, BYE.
struct Call {
    chan: Channel,
    dialog: Dialog,
    state: State,
    start: Instant,
}

impl Drop for Call {
    fn drop(&mut self) {
        let bytes = match self.state {
            // Before a provisional response RFC 3261 9.1 says to wait for
            // one; a destructor cannot wait, and an early CANCEL is at worst
            // answered with 481.
            State::Inviting { .. } => self.dialog.cancel(),
            State::Answered => self.dialog.bye().0,
            State::Done => return,
        };
        tracing::info!(
            message = "Test call abandoned mid-way; tearing it down.",
            call_id = %self.dialog.call_id,
            state = ?self.state
        );
        if let Some(d) = self.chan.detach() {
            d.send_now(bytes);
        }
    }
}

impl Call {
    /// Send during the INVITE transaction. A channel that fails is gone:
    /// nothing is left to tear down through it.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), ProbeOutcome> {
        self.chan.send(bytes).await.map_err(|e| self.broken(e))
    }

    fn broken(&mut self, e: String) -> ProbeOutcome {
        self.state = State::Done;
        ProbeOutcome::failure(e, None)
    }

    /// INVITE until a final response or the ring timeout.
    async fn ring(&mut self, p: &CallProbe) -> Result<Answer, ProbeOutcome> {
        let deadline = self.start + p.ring_timeout;
        let mut auth_tried = false;
        let mut ringing: Option<(String, Duration)> = None;
        let mut invite = self.dialog.invite();
        self.send(&invite).await?;
        let (mut every, mut resend) = (T1, Instant::now() + T1);
        let reliable = self.chan.reliable();
        loop {
            let retransmit = !reliable && self.state == (State::Inviting { provisional: false });
            let msg = tokio::select! {
                m = self.chan.recv() => m,
                _ = sleep_until(resend), if retransmit => {
                    self.send(&invite).await?;
                    every *= 2; // Timer A doubles without a cap (RFC 3261 17.1.1.2).
                    resend = Instant::now() + every;
                    continue;
                }
                _ = sleep_until(deadline) => {
                    let seen = match &ringing {
                        Some((status, at)) => format!("{status} at {}", secs(*at)),
                        None if self.state == (State::Inviting { provisional: true }) => "no ringing".into(),
                        None => "no response".into(),
                    };
                    self.cancel().await;
                    return Err(ProbeOutcome::failure(
                        format!("no answer within {} ({seen})", fmt_duration(p.ring_timeout)),
                        None,
                    ));
                }
            };
            let msg = msg.map_err(|e| self.broken(e))?;
            let r = match parse_incoming(&msg) {
                Ok(Incoming::Response(r)) if self.dialog.is_invite_reply(&r.status) => r,
                _ => continue,
            };
            let (code, status) = (r.status.code, status(&r));
            let at = self.start.elapsed();
            if code < 200 {
                self.state = State::Inviting { provisional: true };
                if code >= 180 && ringing.is_none() {
                    p.metrics
                        .call_post_dial_delay_seconds
                        .with_label_values(&[&p.id])
                        .observe(at.as_secs_f64());
                    ringing = Some((status, at));
                }
                continue;
            }
            if code < 300 {
                self.dialog.established(&r);
                self.state = State::Answered;
                let ack = self.dialog.ack_answer();
                self.send(&ack).await?;
                p.metrics
                    .call_answer_seconds
                    .with_label_values(&[&p.id])
                    .observe(at.as_secs_f64());
                return Ok(Answer {
                    reply: r,
                    at,
                    ringing,
                });
            }
            let ack = self.dialog.ack_failure(r.to_tag.as_deref());
            self.state = State::Done;
            self.send(&ack).await?;
            if code == 401 || code == 407 {
                let answer = self.answer_challenge(p, &r, auth_tried, &status)?;
                auth_tried = true;
                self.dialog.reinvite_with(code == 407, answer);
                self.state = State::Inviting { provisional: false };
                invite = self.dialog.invite();
                self.send(&invite).await?;
                (every, resend) = (T1, Instant::now() + T1);
                continue;
            }
            if auth_tried && code == 403 {
                return Err(ProbeOutcome::failure(
                    format!("auth failed {status}"),
                    Some(at),
                ));
            }
            return Err(if p.s.accept.accepts(code) {
                ProbeOutcome::success(format!("{status} (accepted) in {}", secs(at)), Some(at))
            } else {
                ProbeOutcome::failure(format!("rejected {status}"), Some(at))
            });
        }
    }

    /// The Authorization value for a 401/407, or why the call failed.
    fn answer_challenge(
        &self,
        p: &CallProbe,
        r: &Reply,
        auth_tried: bool,
        status: &str,
    ) -> Result<String, ProbeOutcome> {
        let fail = |why: String| Err(ProbeOutcome::failure(why, None));
        let Some(creds) = &p.s.credentials else {
            return fail(format!(
                "auth required {status}: set username and password_file"
            ));
        };
        if auth_tried {
            // Our credentials were refused (a fresh challenge, not "stale").
            return fail(format!("auth failed {status}"));
        }
        let Some((_, challenge)) = &r.challenge else {
            return fail(format!(
                "auth failed {status}: no challenge in the response"
            ));
        };
        let ch = match digest::parse_challenge(challenge) {
            Ok(ch) => ch,
            Err(why) => return fail(format!("auth failed {status}: {why}")),
        };
        Ok(digest::authorization(
            &ch,
            "INVITE",
            self.dialog.request_uri(),
            &creds.username,
            &creds.password,
            &dialog::random_token(16),
            1,
        ))
    }

    /// Give up on a pending INVITE: CANCEL once it is proceeding, ACK the
    /// 487; a 2xx that crosses the CANCEL is ACKed and hung up.
    async fn cancel(&mut self) {
        let until = Instant::now() + TEARDOWN;
        let cancel = self.dialog.cancel();
        let mut sent = false;
        let mut cancel_answered = false;
        let (mut every, mut resend) = (T1, Instant::now());
        let reliable = self.chan.reliable();
        loop {
            let can_send = self.state == (State::Inviting { provisional: true });
            tokio::select! {
                _ = sleep_until(resend), if can_send && !cancel_answered && (!sent || !reliable) => {
                    if self.chan.send(&cancel).await.is_err() {
                        return;
                    }
                    sent = true;
                    every = (every * 2).min(T2);
                    resend = Instant::now() + every;
                }
                m = self.chan.recv() => {
                    let Ok(Ok(Incoming::Response(r))) = m.map(|b| parse_incoming(&b)) else {
                        continue;
                    };
                    if self.dialog.matches(&r.status, self.dialog.cseq, "CANCEL") {
                        cancel_answered = r.status.code >= 200;
                    } else if self.dialog.is_invite_reply(&r.status) {
                        match r.status.code {
                            0..=199 => self.state = State::Inviting { provisional: true },
                            200..=299 => {
                                self.dialog.established(&r);
                                self.state = State::Answered;
                                let _ = self.chan.send(&self.dialog.ack_answer()).await;
                                return; // run() hangs up.
                            }
                            _ => {
                                let _ = self.chan.send(&self.dialog.ack_failure(r.to_tag.as_deref())).await;
                                self.state = State::Done;
                                return;
                            }
                        }
                    }
                }
                _ = sleep_until(until) => return,
            }
        }
    }

    /// Send silence, measure what comes back, judge it.
    async fn media(&mut self, p: &CallProbe, rtp: &UdpSocket, a: Answer) -> ProbeOutcome {
        let answered = Instant::now();
        let latency = Some(a.at);
        let mut head = format!("answered in {}", secs(a.at));
        if let Some((status, at)) = &a.ringing {
            head.push_str(&format!(" ({status} at {})", secs(*at)));
        }
        let remote = match sdp::parse_answer(&a.reply.body) {
            Ok(r) => r,
            Err(e) => return ProbeOutcome::failure(format!("answered, {e}"), latency),
        };
        let hard = self.start + p.s.max_duration;
        let deadline = (answered + p.s.media_timeout).min(hard);
        let mut rx = rtp::Receiver::default();
        let (mut seq, mut ts, ssrc): (u16, u32, u32) = {
            let mut r = rand::rng();
            (r.random(), r.random(), r.random())
        };
        let mut tick = tokio::time::interval(rtp::PACKET_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut buf = vec![0u8; 2048];
        let mut hung_up = false;
        loop {
            let stats = rx.stats();
            if stats.audio >= p.s.min_media && (!p.s.expect_audio || stats.heard_audio) {
                break;
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
                        hung_up = true;
                        break;
                    },
                    // Signalling is gone: the media verdict still stands, and
                    // the destructor's BYE is the last attempt to end the call.
                    Err(_) => break,
                },
                _ = sleep_until(deadline) => break,
            }
        }
        let s = rx.stats();
        self.record(p, &s);
        let figures = format!(
            "{} of media: {} packets, loss {:.1}%, jitter {}",
            secs(s.audio),
            s.packets,
            s.loss * 100.0,
            super::fmt_latency(s.jitter)
        );
        let waited = answered.elapsed().min(deadline - answered);
        let why_short = if hung_up { "callee hung up, " } else { "" };
        if s.packets == 0 {
            ProbeOutcome::failure(
                format!(
                    "answered, {why_short}no media for {}",
                    round_duration(waited)
                ),
                latency,
            )
        } else if s.audio < p.s.min_media {
            ProbeOutcome::failure(
                format!(
                    "answered, {why_short}only {figures} within {}",
                    round_duration(waited)
                ),
                latency,
            )
        } else if p.s.expect_audio && !s.heard_audio {
            ProbeOutcome::failure(format!("answered, silence ({figures})"), latency)
        } else {
            ProbeOutcome::success(format!("{head}; {figures}"), latency)
        }
    }

    fn record(&self, p: &CallProbe, s: &rtp::MediaStats) {
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

    /// A message during the call: re-ACK a retransmitted 2xx, answer the
    /// callee's BYE. Returns whether the callee hung up.
    async fn in_call(&mut self, bytes: &[u8]) -> bool {
        match parse_incoming(bytes) {
            Ok(Incoming::Response(r))
                if r.status.code / 100 == 2 && self.dialog.is_invite_reply(&r.status) =>
            {
                let _ = self.chan.send(&self.dialog.ack_answer()).await;
                false
            }
            Ok(Incoming::Request { method, copy }) if method == "BYE" => {
                let _ = self.chan.send(&dialog::ok_for(&copy)).await;
                self.state = State::Done;
                true
            }
            _ => false,
        }
    }

    /// BYE until answered (Timer E on UDP) or [`TEARDOWN`] passes.
    async fn hang_up(&mut self) {
        if self.state != State::Answered {
            return;
        }
        let until = Instant::now() + TEARDOWN;
        let (bye, cseq) = self.dialog.bye();
        let (mut every, mut resend) = (T1, Instant::now());
        let reliable = self.chan.reliable();
        let mut sent = false;
        loop {
            tokio::select! {
                _ = sleep_until(resend), if !sent || !reliable => {
                    if self.chan.send(&bye).await.is_err() {
                        break;
                    }
                    sent = true;
                    every = (every * 2).min(T2);
                    resend = Instant::now() + every;
                }
                m = self.chan.recv() => match m.map(|b| parse_incoming(&b)) {
                    Ok(Ok(Incoming::Response(r))) if r.status.code >= 200 && self.dialog.matches(&r.status, cseq, "BYE") => {
                        self.state = State::Done;
                        return;
                    }
                    Ok(Ok(Incoming::Response(r))) if r.status.code / 100 == 2 && self.dialog.is_invite_reply(&r.status) => {
                        let _ = self.chan.send(&self.dialog.ack_answer()).await;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
                _ = sleep_until(until) => break,
            }
        }
        tracing::warn!(
            message = "Test call BYE was not answered; the callee may keep the line until its own timeout.",
            call_id = %self.dialog.call_id
        );
        self.state = State::Done;
    }
}

/// `503 Service Unavailable`.
fn status(r: &Reply) -> String {
    format!("{} {}", r.status.code, r.status.reason)
        .trim_end()
        .to_string()
}

/// Seconds with one decimal, the precision people read call timings in: `1.2s`.
fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `3s` for 3.0004s: the windows are configured in whole units.
fn round_duration(d: Duration) -> String {
    fmt_duration(Duration::from_millis(
        (d.as_secs_f64() * 10.0).round() as u64 * 100,
    ))
}
