//! SIP OPTIONS probe (RFC 3261 section 11): is the trunk answering?
//!
//! Each attempt resolves the target (so DNS changes are followed), sends a
//! fresh OPTIONS (new branch, Call-ID, tag, CSeq) over UDP, TCP or TLS, waits
//! for the matching final response, and judges its code against `accept`.
//! Latency is measured from the first send to the final response, so a
//! response that needed retransmissions shows its true cost.
//!
//! Failure details an operator will see: `timeout after 2s`,
//! `ICMP port unreachable from 10.0.0.1:5060`, `connection refused by ...`,
//! `cannot resolve trunk.example.net: ...`, `503 Service Unavailable (not accepted) in 4ms`.

pub mod accept;
pub mod config;
pub mod fleet;
pub mod message;
pub mod parse;
mod recverr;
pub mod responder;
pub mod target;
pub mod transport;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::domain::ProbeOutcome;

pub use accept::Accept;
pub use config::{SipConfig, SipSettings};
pub use message::{OptionsRequest, RequestParams, RequestTemplate, TransactionKey};
pub use parse::{ParseError, SipResponse, parse_response};
pub use responder::{Mode, Responder};
pub use target::{Host, SipTarget, Transport, parse_target};
pub use transport::{TransportError, UdpMux};

use super::{Probe, fmt_latency, timeout_detail};

/// A SIP OPTIONS probe.
pub struct SipProbe {
    id: String,
    target: SipTarget,
    accept: Accept,
    timeout: Duration,
    from_user: Option<String>,
    /// TLS client settings; `None` uses the OS trust store ([`transport::tls_config`]).
    tls: Option<Arc<ClientConfig>>,
    /// Our address towards the target over UDP, for Via and Contact.
    route: transport::RouteCache,
}

impl SipProbe {
    pub fn new(
        id: impl Into<String>,
        target: SipTarget,
        accept: Accept,
        timeout: Duration,
    ) -> Self {
        SipProbe {
            id: id.into(),
            target,
            accept,
            timeout,
            from_user: None,
            tls: None,
            route: transport::RouteCache::default(),
        }
    }

    /// Use this user in From and Contact (default `continuity-agent`).
    pub fn with_from_user(mut self, user: Option<String>) -> Self {
        self.from_user = user;
        self
    }

    /// Use these TLS client settings (a private CA, client certificates)
    /// instead of the OS trust store.
    pub fn with_tls_config(mut self, tls: Arc<ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The probe a validated `[[probes]]` entry describes.
    pub fn from_settings(id: impl Into<String>, s: &SipSettings, timeout: Duration) -> Self {
        SipProbe::new(id, s.target.clone(), s.accept.clone(), timeout)
            .with_from_user(s.from_user.clone())
    }

    pub fn target(&self) -> &SipTarget {
        &self.target
    }

    /// Where a SIP/UDP probe of an address literal sends, `None` for other
    /// probes: the ones the scheduler runs in its shared SIP task
    /// ([`fleet`]). A host name is resolved at each attempt and may fail
    /// over between its addresses (RFC 3263), and TCP and TLS connect per
    /// attempt: those keep a task of their own.
    pub fn literal_udp_dest(&self) -> Option<SocketAddr> {
        match (&self.target.host, self.target.transport) {
            (Host::Ip(ip), Transport::Udp) => {
                Some(SocketAddr::new(*ip, self.target.effective_port()))
            }
            _ => None,
        }
    }

    /// One attempt, without the timeout (the caller applies it).
    async fn attempt(&self) -> Result<(SipResponse, Duration, u32), AttemptError> {
        // RFC 3263 4.3: when a name has several addresses and one fails at
        // the transport level (ICMP, refused, TLS), try the next. A host
        // without an IPv6 route must not report a dual-stack trunk down.
        // Silence is not skipped: it runs into the probe timeout.
        let addrs = resolve(&self.target).await.map_err(AttemptError::Remote)?;
        self.attempt_addrs(&addrs).await
    }

    /// Try each address in turn until one gives a final response. If any
    /// address could not be tried for a local reason, the attempt is
    /// inconclusive: part of the trunk went untested.
    async fn attempt_addrs(
        &self,
        addrs: &[SocketAddr],
    ) -> Result<(SipResponse, Duration, u32), AttemptError> {
        let mut errors = Vec::new();
        let mut local = false;
        for &dest in addrs {
            match self.attempt_at(dest).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    local |= matches!(e, AttemptError::Local(_));
                    errors.push(e.to_string());
                }
            }
        }
        let all = errors.join("; ");
        Err(if local {
            AttemptError::Local(all)
        } else {
            AttemptError::Remote(all)
        })
    }

    /// One attempt against one resolved address.
    async fn attempt_at(
        &self,
        dest: SocketAddr,
    ) -> Result<(SipResponse, Duration, u32), AttemptError> {
        let start = Instant::now();
        let reply = match self.target.transport {
            Transport::Udp => {
                let mux = UdpMux::for_dest(dest)?;
                let local = SocketAddr::new(self.route.local_ip(dest), mux.local_port());
                let req = self.request(local, Transport::Udp);
                mux.transact(dest, &req.key, &req.bytes).await
            }
            Transport::Tcp => {
                let mut stream = transport::tcp_connect(dest).await?;
                let local = stream.local_addr().map_err(AttemptError::io)?;
                let req = self.request(local, Transport::Tcp);
                transport::stream_transact(&mut stream, dest, &req.key, &req.bytes).await
            }
            Transport::Tls => {
                let stream = transport::tcp_connect(dest).await?;
                let local = stream.local_addr().map_err(AttemptError::io)?;
                let config = match &self.tls {
                    Some(c) => c.clone(),
                    None => transport::tls_config().map_err(AttemptError::Remote)?,
                };
                let name = match &self.target.host {
                    Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
                    Host::Name(n) => ServerName::try_from(n.clone()).map_err(|e| {
                        AttemptError::Remote(format!("invalid TLS server name {n}: {e}"))
                    })?,
                };
                let mut tls = TlsConnector::from(config)
                    .connect(name, stream)
                    .await
                    .map_err(|e| TransportError::Tls(dest, e.to_string()))?;
                let req = self.request(local, Transport::Tls);
                transport::stream_transact(&mut tls, dest, &req.key, &req.bytes).await
            }
        }?;
        Ok((
            reply.response,
            reply.at.saturating_duration_since(start),
            reply.sends,
        ))
    }

    fn request(&self, local: SocketAddr, transport: Transport) -> OptionsRequest {
        OptionsRequest::new(&self.params(local, transport))
    }

    /// The request this probe sends from `local`, laid out for the fleet to
    /// renew per transaction.
    fn template(&self, local: SocketAddr, transport: Transport) -> RequestTemplate {
        RequestTemplate::new(&self.params(local, transport))
    }

    fn params(&self, local: SocketAddr, transport: Transport) -> RequestParams<'_> {
        RequestParams {
            target: &self.target,
            transport,
            local,
            from_user: self.from_user.as_deref(),
        }
    }

    /// What an attempt's result says about the trunk: the one mapping of
    /// both paths (a task's [`Probe::check`] and the [`fleet`]).
    fn outcome(&self, attempt: Result<(SipResponse, Duration, u32), AttemptError>) -> ProbeOutcome {
        match attempt {
            Err(AttemptError::Remote(detail)) => ProbeOutcome::failure(detail, None),
            Err(AttemptError::Local(detail)) => ProbeOutcome::inconclusive(detail),
            Ok((resp, latency, sends)) => self.judge(&resp, latency, sends),
        }
    }

    /// No final response within the probe's timeout, while the kernel
    /// dropped `dropped` datagrams for the probe's UDP socket (its receive
    /// buffer full). Then the answer may have been lost on this host (a
    /// flood at our port, an overloaded agent): inconclusive, not the
    /// trunk's failure.
    fn timed_out(&self, dropped: u32) -> ProbeOutcome {
        let detail = timeout_detail(self.timeout);
        if dropped == 0 {
            return ProbeOutcome::failure(detail, None);
        }
        ProbeOutcome::inconclusive(format!(
            "{detail}, while this host dropped {dropped} datagrams for the probe's socket \
             (receive buffer full): the answer may have been one of them"
        ))
    }

    /// Datagrams dropped so far for the mux's sockets, if this probe's
    /// attempts go through them (UDP); 0 for TCP and TLS.
    fn mux_drops(&self) -> u32 {
        if self.target.transport == Transport::Udp {
            UdpMux::drops()
        } else {
            0
        }
    }

    fn judge(&self, resp: &SipResponse, latency: Duration, sends: u32) -> ProbeOutcome {
        let resent = if sends > 1 {
            format!(" ({sends} sends)")
        } else {
            String::new()
        };
        let status = format!("{} {}", resp.code, resp.reason);
        if self.accept.accepts(resp.code) {
            ProbeOutcome::success(
                format!("{} in {}{resent}", status.trim_end(), fmt_latency(latency)),
                Some(latency),
            )
        } else {
            ProbeOutcome::failure(
                format!(
                    "{} (not accepted: {}) in {}{resent}",
                    status.trim_end(),
                    self.accept,
                    fmt_latency(latency)
                ),
                Some(latency),
            )
        }
    }
}

/// Why an attempt got no final response: something the target or the
/// network did (a failure), or something this host ran out of (see
/// `probe::local`: inconclusive).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttemptError {
    #[error("{0}")]
    Remote(String),
    #[error("{0}")]
    Local(String),
}

impl AttemptError {
    fn io(e: std::io::Error) -> Self {
        if super::local::is_local_io(&e) {
            AttemptError::Local(e.to_string())
        } else {
            AttemptError::Remote(e.to_string())
        }
    }
}

impl From<TransportError> for AttemptError {
    fn from(e: TransportError) -> Self {
        if e.is_local() {
            AttemptError::Local(e.to_string())
        } else {
            AttemptError::Remote(e.to_string())
        }
    }
}

/// At most this many addresses of a name are tried per attempt.
const MAX_ADDRESSES: usize = 4;

/// Resolve the target at each attempt (DNS may move a trunk). Literal
/// addresses skip the resolver. Never empty on success.
pub(crate) async fn resolve(t: &SipTarget) -> Result<Vec<SocketAddr>, String> {
    let port = t.effective_port();
    match &t.host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => {
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for a in tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?
            {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            addrs.truncate(MAX_ADDRESSES);
            if addrs.is_empty() {
                return Err(format!("cannot resolve {name}: no address"));
            }
            Ok(addrs)
        }
    }
}

impl Probe for SipProbe {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "sip"
    }

    fn check(&self) -> BoxFuture<'_, ProbeOutcome> {
        Box::pin(async move {
            let drops = self.mux_drops();
            match tokio::time::timeout(self.timeout, self.attempt()).await {
                Err(_) => self.timed_out(self.mux_drops().wrapping_sub(drops)),
                Ok(attempt) => self.outcome(attempt),
            }
        })
    }
}
