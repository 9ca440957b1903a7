//! One test call in progress: the INVITE transaction (retransmission,
//! provisional responses, one digest challenge, ACK), CANCEL on the ring
//! timeout, the callee's BYE, our BYE. The media phase is in `media.rs`.
//!
//! [`Call`] knows where it stands ([`State`]) so that dropping it (the check
//! was cut off, the agent is shutting down) still sends CANCEL or BYE.

use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::channel::Channel;
use super::dialog::{self, Dialog, Incoming, Reply, parse_incoming};
use super::{CallProbe, TEARDOWN, digest, secs, status};
use crate::domain::ProbeOutcome;
use crate::probe::fmt_duration;
use crate::probe::sip::transport::{T1, T2};

/// Where our side of the call stands, for the destructor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Inviting { provisional: bool },
    Answered,
    Done,
}

/// An answered call.
pub(super) struct Answer {
    pub(super) reply: Reply,
    pub(super) at: Duration,
    pub(super) ringing: Option<(String, Duration)>,
}

/// One test call in progress. Dropping it while the INVITE is pending sends
/// CANCEL; while answered, BYE.
pub(super) struct Call {
    pub(super) chan: Channel,
    pub(super) dialog: Dialog,
    pub(super) state: State,
    /// When the first INVITE left: the origin of every figure and limit.
    pub(super) start: Instant,
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
    pub(super) async fn ring(&mut self, p: &CallProbe) -> Result<Answer, ProbeOutcome> {
        let deadline = self.start + p.ring_timeout;
        // Challenges answered so far: one, or two when the second only says
        // our nonce went stale (RFC 7616 3.3).
        let mut answered_challenges = 0u32;
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
                _ = sleep_until(deadline) => return Err(self.no_answer(p, ringing).await),
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
                let answer = self.answer_challenge(p, &r, answered_challenges, &status)?;
                answered_challenges += 1;
                self.dialog.reinvite_with(code == 407, answer);
                self.state = State::Inviting { provisional: false };
                invite = self.dialog.invite();
                self.send(&invite).await?;
                (every, resend) = (T1, Instant::now() + T1);
                continue;
            }
            return Err(judge_final(p, code, &status, at, answered_challenges > 0));
        }
    }

    /// The ring timeout passed: cancel, and say how far the call got.
    async fn no_answer(
        &mut self,
        p: &CallProbe,
        ringing: Option<(String, Duration)>,
    ) -> ProbeOutcome {
        let seen = match &ringing {
            Some((status, at)) => format!("{status} at {}", secs(*at)),
            None if self.state == (State::Inviting { provisional: true }) => "no ringing".into(),
            None => "no response".into(),
        };
        self.cancel().await;
        ProbeOutcome::failure(
            format!("no answer within {} ({seen})", fmt_duration(p.ring_timeout)),
            None,
        )
    }

    /// The Authorization value for a 401/407, or why the call failed.
    fn answer_challenge(
        &self,
        p: &CallProbe,
        r: &Reply,
        answered_before: u32,
        status: &str,
    ) -> Result<String, ProbeOutcome> {
        let fail = |why: String| Err(ProbeOutcome::failure(why, None));
        let Some(creds) = &p.s.credentials else {
            return fail(format!(
                "auth required {status}: set username and password_file"
            ));
        };
        let Some((_, challenge)) = &r.challenge else {
            return fail(format!(
                "auth failed {status}: no challenge in the response"
            ));
        };
        let ch = match digest::parse_challenge(challenge) {
            Ok(ch) => ch,
            Err(why) => return fail(format!("auth failed {status}: {why}")),
        };
        // A fresh challenge after our answer means the credentials were
        // refused; a stale one only asks for the same answer with a new nonce.
        if answered_before >= 2 || (answered_before == 1 && !ch.stale) {
            return fail(format!("auth failed {status}"));
        }
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

    /// A message during the call: re-ACK a retransmitted 2xx, answer the
    /// callee's BYE. Returns whether the callee hung up.
    pub(super) async fn in_call(&mut self, bytes: &[u8]) -> bool {
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
    pub(super) async fn hang_up(&mut self) {
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

/// A final response other than 2xx (and not a challenge we answer).
fn judge_final(
    p: &CallProbe,
    code: u16,
    status: &str,
    at: Duration,
    auth_tried: bool,
) -> ProbeOutcome {
    if auth_tried && code == 403 {
        ProbeOutcome::failure(format!("auth failed {status}"), Some(at))
    } else if p.s.accept.accepts(code) {
        ProbeOutcome::success(format!("{status} (accepted) in {}", secs(at)), Some(at))
    } else {
        ProbeOutcome::failure(format!("rejected {status}"), Some(at))
    }
}
