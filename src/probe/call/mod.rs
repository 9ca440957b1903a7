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

mod attempt;
pub mod channel;
pub mod config;
pub mod dialog;
pub mod digest;
mod media;
pub mod rtp;
pub mod sdp;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_rustls::rustls::ClientConfig;

use crate::domain::ProbeOutcome;
use crate::telemetry::Metrics;

use super::{Probe, fmt_duration};
use attempt::{Call, State};
use channel::Channel;
pub use config::{CallConfig, CallSettings};
use dialog::{Dialog, Reply};

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
            let limit = self.s.check_limit();
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
