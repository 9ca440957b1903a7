//! Getting an OPTIONS request to a trunk and its final response back.
//!
//! **UDP**: one unconnected socket per address family serves every SIP/UDP
//! probe that runs in a task of its own (named trunks, and any caller of
//! `Probe::check`) ([`UdpMux`]); the probes of address literals run in the
//! fleet (`fleet.rs`), on its own sockets, through the same reading loop
//! ([`pump`]), reply rule ([`is_reply`]) and ICMP rule. A demultiplexer task reads every
//! datagram, parses it, and hands a final response whose top Via branch,
//! Call-ID and CSeq match a waiting transaction to that transaction through a
//! oneshot channel. Thousands of trunks therefore cost one file descriptor and
//! one task, not one socket each. The requester retransmits on the RFC 3261
//! Timer E schedule (T1 = 500 ms, doubling up to T2 = 4 s) until the probe's
//! timeout, which [`super::SipProbe`] enforces.
//!
//! Closed ports fail fast through `IP_RECVERR` on that shared socket (see
//! `recverr.rs`): the ICMP error is routed to the transaction by the
//! branch quoted back in it, else by destination address.
//!
//! The muxes live on a dedicated thread with its own small runtime, so they
//! outlive whichever runtime first used them (tests create one per test, and
//! the daemon may restart its probe runtime on reload).
//!
//! **TCP/TLS**: one connection per attempt (a ping every few seconds does not
//! justify connection reuse, and a fresh connect proves the listener is up);
//! responses are framed by Content-Length. No retransmission (RFC 3261 17.1.2.2).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

use super::message::{TransactionKey, answers};
use super::parse::{
    Header, SipResponse, canonical, message_len, parse_response, split_head, via_branch,
};
use super::recverr;

/// RFC 3261 timer T1: round-trip estimate, first retransmission interval.
pub const T1: Duration = Duration::from_millis(500);
/// RFC 3261 timer T2: cap on the non-INVITE retransmission interval.
pub const T2: Duration = Duration::from_secs(4);

/// Receive buffer asked for the shared socket: about 4000 typical answers.
const RECV_BUFFER: usize = 2 << 20;

/// Why an exchange produced no final response.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("ICMP {0} from {1}")]
    Unreachable(String, SocketAddr),
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, io::Error),
    #[error("send to {0} failed: {1}")]
    Send(SocketAddr, io::Error),
    /// Every send was refused with an error ICMP reported for some other
    /// datagram (see `UdpMux::send`): the request never left.
    #[error(
        "send to {0} kept failing with errors reported for other datagrams ({1}); the target was not tested"
    )]
    Echoes(SocketAddr, io::Error),
    #[error("read from {0} failed: {1}")]
    Read(SocketAddr, io::Error),
    #[error("{0} closed the connection before a final response")]
    Closed(SocketAddr),
    #[error("unparsable response from {0}: {1}")]
    Protocol(SocketAddr, String),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(SocketAddr, String),
    #[error("local SIP/UDP socket unavailable: {0}")]
    Socket(String),
}

impl TransportError {
    /// This host ran out of something (descriptors, buffers, a local
    /// address): the target was not tested (see `probe::local`).
    pub fn is_local(&self) -> bool {
        match self {
            TransportError::Connect(_, e)
            | TransportError::Send(_, e)
            | TransportError::Read(_, e) => crate::probe::local::is_local_io(e),
            TransportError::Socket(_) | TransportError::Echoes(..) => true,
            _ => false,
        }
    }
}

/// A final response and when it arrived.
#[derive(Debug)]
pub struct Reply {
    pub response: SipResponse,
    pub at: Instant,
    /// How many times the request was sent (1 + retransmissions).
    pub sends: u32,
}

type Waiter = oneshot::Sender<Result<(SipResponse, Instant), TransportError>>;

struct Pending {
    dest: SocketAddr,
    call_id: String,
    cseq: u32,
    tx: Waiter,
}

/// The shared SIP/UDP socket of one address family.
pub struct UdpMux {
    socket: Arc<UdpSocket>,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    local_port: u16,
}

/// The process-wide muxes, created on first successful use. A failed bind
/// (out of descriptors at that moment) is not remembered: the next attempt
/// tries again, so a passing shortage never disables SIP/UDP for good.
static MUX_V4: Mutex<Option<&'static UdpMux>> = Mutex::new(None);
static MUX_V6: Mutex<Option<&'static UdpMux>> = Mutex::new(None);

impl UdpMux {
    /// The process-wide mux for `dest`'s address family, created on first use.
    pub fn for_dest(dest: SocketAddr) -> Result<&'static UdpMux, TransportError> {
        let cell = match dest {
            SocketAddr::V4(_) => &MUX_V4,
            SocketAddr::V6(_) => &MUX_V6,
        };
        let bind = any_addr(dest);
        let mut slot = cell.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mux) = *slot {
            return Ok(mux);
        }
        let mux: &'static UdpMux = Box::leak(Box::new(
            UdpMux::start(bind).map_err(|e| TransportError::Socket(e.to_string()))?,
        ));
        *slot = Some(mux);
        Ok(mux)
    }

    /// Datagrams the kernel dropped for the muxes' sockets (both families,
    /// those open) since they were opened: see [`recverr::drops`].
    pub fn drops() -> u32 {
        [&MUX_V4, &MUX_V6]
            .into_iter()
            .filter_map(|cell| *cell.lock().unwrap_or_else(|p| p.into_inner()))
            .filter_map(|mux| recverr::drops(&*mux.socket))
            .fold(0, u32::wrapping_add)
    }

    /// Bind a socket and start its demultiplexer on a dedicated thread.
    pub fn start(bind: SocketAddr) -> io::Result<UdpMux> {
        let std_socket = open_socket(bind)?;
        let local_port = std_socket.local_addr()?.port();
        let pending: Arc<Mutex<HashMap<String, Pending>>> = Arc::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let pending2 = pending.clone();
        std::thread::Builder::new()
            .name("sip-udp-mux".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    // Registering with this thread's reactor: the socket stays
                    // usable from any runtime for as long as this thread lives.
                    match UdpSocket::from_std(std_socket) {
                        Ok(s) => {
                            let s = Arc::new(s);
                            let _ = ready_tx.send(Ok(s.clone()));
                            demux(s, pending2).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        let socket = ready_rx
            .recv()
            .map_err(|_| io::Error::other("SIP/UDP mux thread exited"))??;
        Ok(UdpMux {
            socket,
            pending,
            local_port,
        })
    }

    /// The port every SIP/UDP request of this family is sent from.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Number of transactions waiting for a response (for tests and debugging).
    pub fn in_flight(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Send `bytes` and wait for the matching final response, retransmitting
    /// on Timer E. Runs until a response, an ICMP error, or the caller drops
    /// the future (the probe's timeout); the transaction is unregistered in
    /// every case.
    pub async fn transact(
        &self,
        dest: SocketAddr,
        key: &TransactionKey,
        bytes: &[u8],
    ) -> Result<Reply, TransportError> {
        let (tx, mut rx) = oneshot::channel();
        let _guard = self.register(dest, key, tx);
        let mut sends = 0u32;
        let mut gap = T1;
        let mut next = Instant::now();
        loop {
            tokio::select! {
                biased;
                r = &mut rx => {
                    return match r {
                        Ok(Ok((response, at))) => Ok(Reply { response, at, sends }),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(TransportError::Socket("demultiplexer stopped".into())),
                    };
                }
                _ = sleep_until(next) => {
                    self.send(dest, bytes).await?;
                    sends += 1;
                    // Timer E: gaps of 0.5, 1, 2, 4, 4... seconds.
                    next += gap;
                    gap = (gap * 2).min(T2);
                }
            }
        }
    }

    async fn send(&self, dest: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
        // With IP_RECVERR, every ICMP error this shared, unconnected socket
        // receives (for any destination, proven or forged) also sets its
        // pending error, which the next socket call reports instead of
        // sending: this send, say. It says nothing about `dest` (the
        // demultiplexer routes real errors from the error queue, checked
        // against their offender), and reporting it cleared it, so send
        // again. A stream of them (a forged ICMP flood at our port) that
        // outlasts the retries leaves the attempt inconclusive: nothing was
        // learned about the target, which must not count as its failure.
        let mut last = None;
        for _ in 0..ECHO_RETRIES {
            match self.socket.send_to(bytes, dest).await {
                Ok(_) => return Ok(()),
                Err(e) if is_icmp_echo(&e) => {
                    last = Some(e);
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(TransportError::Send(dest, e)),
            }
        }
        Err(TransportError::Echoes(
            dest,
            last.unwrap_or_else(|| io::Error::other("send failed")),
        ))
    }

    fn register(&self, dest: SocketAddr, key: &TransactionKey, tx: Waiter) -> PendingGuard<'_> {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(
                key.branch.clone(),
                Pending {
                    dest,
                    call_id: key.call_id.clone(),
                    cseq: key.cseq,
                    tx,
                },
            );
        }
        PendingGuard {
            mux: self,
            branch: key.branch.clone(),
        }
    }
}

/// A non-blocking UDP socket for SIP on `bind`, with ICMP errors queued
/// (`IP_RECVERR`) and a receive buffer sized for bursts of answers: what
/// every SIP/UDP socket of the agent is (the mux's and the fleet's).
pub(super) fn open_socket(bind: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let std_socket = std::net::UdpSocket::bind(bind)?;
    std_socket.set_nonblocking(true)?;
    if let Err(e) = recverr::enable(&std_socket, bind.is_ipv6()) {
        tracing::warn!(
            message = "Closed SIP/UDP ports will only be detected by timeout.",
            error = %e
        );
    }
    // Thousands of trunks answering within the same few milliseconds
    // must not overflow the default ~200 KiB buffer (a dropped answer
    // costs a retransmission). The kernel caps this at rmem_max.
    if let Err(e) = socket2::SockRef::from(&std_socket).set_recv_buffer_size(RECV_BUFFER) {
        tracing::debug!(message = "Could not enlarge the SIP/UDP receive buffer.", error = %e);
    }
    Ok(std_socket)
}

/// The unspecified address of `dest`'s family, port 0: where a SIP/UDP
/// socket for `dest` binds.
pub(super) fn any_addr(dest: SocketAddr) -> SocketAddr {
    match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Removes the transaction when the requester finishes or is cancelled.
struct PendingGuard<'a> {
    mux: &'a UdpMux,
    branch: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.mux.pending.lock() {
            p.remove(&self.branch);
        }
    }
}

/// Send one datagram without waiting, as the fleet sends every request due
/// in a step. An echo of another datagram's ICMP error is retried at once,
/// as in `UdpMux::send` (reporting it cleared it). `Ok(false)`: the socket's
/// send buffer is full, nothing was sent, try again shortly.
pub(super) fn try_send(
    socket: &UdpSocket,
    bytes: &[u8],
    dest: SocketAddr,
) -> Result<bool, TransportError> {
    let mut last = None;
    for _ in 0..ECHO_RETRIES {
        match socket.try_send_to(bytes, dest) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if is_icmp_echo(&e) => last = Some(e),
            Err(e) => return Err(TransportError::Send(dest, e)),
        }
    }
    Err(TransportError::Echoes(
        dest,
        last.unwrap_or_else(|| io::Error::other("send failed")),
    ))
}

/// How many times a send refused with an echo of another datagram's ICMP
/// error is tried (see `UdpMux::send`).
const ECHO_RETRIES: usize = 32;

pub(super) fn is_icmp_echo(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// Where [`pump`] delivers what a SIP/UDP socket received.
pub(super) trait Sink {
    /// A final response (provisional ones and anything that does not parse
    /// as a response were dropped) from `from`, with the branch of its top
    /// Via, read at `at`.
    fn response(&mut self, response: SipResponse, branch: String, from: SocketAddr, at: Instant);
    /// An error from the socket's ICMP error queue.
    fn icmp(&mut self, err: recverr::IcmpError);
}

/// Read what `ready` says is waiting on `socket`: queued ICMP errors and
/// datagrams, until the socket would block or [`PUMP_BUDGET`] of each were
/// read. The one reading loop of both SIP/UDP paths (the mux's thread and the
/// fleet's task). Returns whether it stopped on a budget, with more
/// possibly waiting: the caller then yields before it pumps again.
///
/// Errors and datagrams have a budget each. With one shared budget, a flood
/// of forged ICMP errors (hundreds of thousands a second, easy to send)
/// refilled the error queue faster than each pump drained it, so every pump
/// spent its whole budget there and never read the answers waiting behind:
/// a healthy trunk's check timed out, with no datagram dropped to show why.
#[must_use = "a pump that stopped on its budget must be followed by a yield"]
pub(super) fn pump(
    socket: &UdpSocket,
    ready: tokio::io::Ready,
    buf: &mut [u8],
    sink: &mut impl Sink,
) -> bool {
    let mut errors = PUMP_BUDGET;
    let mut reads = PUMP_BUDGET;
    if ready.is_error() {
        // Drain the queue; `try_io` clears ERROR readiness only on
        // WouldBlock, and only if no new error arrived meanwhile, so none is
        // missed; a drain cut short by the budget keeps it set.
        let _ = socket.try_io(Interest::ERROR, || {
            if drain_errors(socket, sink, &mut errors) {
                Ok(())
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        });
    }
    if ready.is_readable() {
        while reads > 0 {
            reads -= 1;
            match socket.try_recv_from(buf) {
                Ok((n, from)) => route(&buf[..n], from, sink),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return errors == 0,
                // The pending ICMP error surfaced here; its details are in the queue.
                Err(e) if is_icmp_echo(&e) => {
                    let _ = drain_errors(socket, sink, &mut errors);
                }
                Err(e) => {
                    tracing::debug!(message = "SIP/UDP receive error.", error = %e);
                    return errors == 0;
                }
            }
        }
    }
    errors == 0 || reads == 0
}

/// How many datagrams, and how many ICMP errors, one [`pump`] reads at most.
/// A sender faster than the reader (a flood at our port) would otherwise
/// keep it reading for good: the fleet's timers would stop firing (no check
/// starts or ends) and the mux's runtime would never poll its reactor again.
/// 256 small answers are a fraction of a millisecond of work and a pass of
/// the fleet's largest start slot.
pub(super) const PUMP_BUDGET: usize = 256;

/// The largest datagram: a big response is never truncated into something
/// that parses differently.
pub(super) const MAX_DATAGRAM: usize = 65_536;

/// The demultiplexer: route every datagram and every ICMP error.
async fn demux(socket: Arc<UdpSocket>, pending: Arc<Mutex<HashMap<String, Pending>>>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sink = MuxSink(&pending);
    loop {
        let ready = match socket.ready(Interest::READABLE | Interest::ERROR).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(message = "SIP/UDP socket failed.", error = %e);
                return;
            }
        };
        if pump(&socket, ready, &mut buf, &mut sink) {
            // Flooded: let this thread's runtime poll its reactor (sends
            // waiting for room) before reading on.
            tokio::task::yield_now().await;
        }
    }
}

fn route(bytes: &[u8], from: SocketAddr, sink: &mut impl Sink) {
    let at = Instant::now();
    let response = match parse_response(bytes) {
        Ok(r) => r,
        Err(e) => {
            // Stray requests, keep-alives and garbage land here; none is ours.
            tracing::trace!(message = "Ignored SIP/UDP datagram.", %from, error = %e);
            return;
        }
    };
    if response.is_provisional() {
        return; // 1xx: keep waiting for the final response.
    }
    let Some(branch) = response.branch.clone() else {
        return;
    };
    sink.response(response, branch, from, at);
}

/// Whether `response`, which came from `from`, answers the transaction
/// (`branch`, `call_id`, `cseq`) sent to `dest`: it echoes our identifiers
/// ([`answers`]) and comes from the host the request went to (the branch is
/// random, but a reply from elsewhere has no business deciding a trunk).
pub(super) fn is_reply(
    response: &SipResponse,
    from: SocketAddr,
    dest: SocketAddr,
    branch: &str,
    call_id: &str,
    cseq: u32,
) -> bool {
    same_ip(from.ip(), dest.ip()) && answers(response, branch, call_id, cseq)
}

/// The mux's transactions as a [`Sink`]: each answer or proven ICMP error
/// goes to its waiting requester.
struct MuxSink<'a>(&'a Mutex<HashMap<String, Pending>>);

impl Sink for MuxSink<'_> {
    fn response(&mut self, response: SipResponse, branch: String, from: SocketAddr, at: Instant) {
        let Ok(mut p) = self.0.lock() else { return };
        let matches = p
            .get(&branch)
            .is_some_and(|w| is_reply(&response, from, w.dest, &branch, &w.call_id, w.cseq));
        if !matches {
            tracing::debug!(message = "SIP/UDP response matches no transaction.", %from, %branch);
            return;
        }
        if let Some(w) = p.remove(&branch) {
            let _ = w.tx.send(Ok((response, at)));
        }
    }

    fn icmp(&mut self, err: recverr::IcmpError) {
        let Ok(mut p) = self.0.lock() else { return };
        let victim = icmp_victim(&err, |b| p.get(b).map(|w| w.dest));
        if let Some(w) = victim.and_then(|k| p.remove(&k)) {
            let _ = w.tx.send(Err(unreachable(&err, w.dest)));
        }
    }
}

/// The failure a proven ICMP error means for a transaction to `dest`.
pub(super) fn unreachable(err: &recverr::IcmpError, dest: SocketAddr) -> TransportError {
    TransportError::Unreachable(describe_icmp(&err.error), dest)
}

/// Deliver queued ICMP errors while `budget` lasts. Returns whether it
/// stopped on the budget (the queue may hold more).
fn drain_errors(socket: &UdpSocket, sink: &mut impl Sink, budget: &mut usize) -> bool {
    while *budget > 0 {
        // WouldBlock (queue empty) or unsupported ends it.
        let Ok(err) = recverr::recv(socket) else {
            return false;
        };
        *budget -= 1;
        sink.icmp(err);
    }
    true
}

/// The one transaction an ICMP error may fail, if any. An ICMP message is
/// easy to forge, so it must prove which datagram it is about: the branch of
/// our request in the quoted bytes, sent to the destination it quotes, and
/// for "port unreachable" (which only the destination host sends) coming
/// from that host. Anything less (a router quoting 8 bytes, a forged
/// message) fails nothing: the transaction runs into its timeout instead.
///
/// `dest_of` gives the destination of the pending transaction with a branch.
pub(super) fn icmp_victim(
    err: &recverr::IcmpError,
    dest_of: impl Fn(&str) -> Option<SocketAddr>,
) -> Option<String> {
    let victim = proven_victim(err, dest_of);
    if victim.is_none() {
        tracing::debug!(message = "ICMP error matches no transaction; ignored (the probe times out if the trunk is really unreachable).", dest = ?err.dest, offender = ?err.offender, error = %err.error);
    }
    victim
}

fn proven_victim(
    err: &recverr::IcmpError,
    dest_of: impl Fn(&str) -> Option<SocketAddr>,
) -> Option<String> {
    let (_, headers) = split_head(&err.payload).ok()?;
    let branch = headers
        .iter()
        .find(|(n, _)| canonical(n) == Some(Header::Via))
        .and_then(|(_, v)| via_branch(v))?;
    let dest = dest_of(&branch)?;
    if err.dest != Some(dest) {
        return None;
    }
    let port_unreachable = err.error.kind() == io::ErrorKind::ConnectionRefused;
    if port_unreachable && err.offender.is_some_and(|o| !same_ip(o, dest.ip())) {
        return None;
    }
    Some(branch)
}

/// IPv4 and its IPv4-mapped IPv6 form are the same host.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

fn describe_icmp(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "port unreachable".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

/// How long a probe reuses the local address it found for its destination.
/// A route lookup is four system calls (socket, connect, getsockname,
/// close), as much as the ping itself; routes change far less often than
/// once a minute, and a reply is sent back to our source address anyway
/// (`rport`), so a Via that lags a route change by this much costs nothing.
pub const ROUTE_TTL: Duration = Duration::from_secs(60);

/// One probe's local address for its destination, looked up at most every
/// [`ROUTE_TTL`] (or when the destination changes).
#[derive(Debug, Default)]
pub struct RouteCache(Mutex<Option<(IpAddr, IpAddr, Instant)>>);

impl RouteCache {
    /// The local address to put in Via and Contact for `dest`.
    pub fn local_ip(&self, dest: SocketAddr) -> IpAddr {
        let now = Instant::now();
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((to, local, at)) = *cached
            && to == dest.ip()
            && now.saturating_duration_since(at) < ROUTE_TTL
        {
            return local;
        }
        let local = local_ip_for(dest);
        // A failed lookup (no route) is asked again next time.
        *cached = (!local.is_unspecified()).then_some((dest.ip(), local, now));
        local
    }
}

/// The local address the kernel would use to reach `dest`, for Via and
/// Contact. `connect` on a UDP socket only consults the routing table: no
/// packet is sent.
pub fn local_ip_for(dest: SocketAddr) -> IpAddr {
    let unspecified = any_addr(dest);
    std::net::UdpSocket::bind(unspecified)
        .and_then(|s| s.connect(dest).and_then(|_| s.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(unspecified.ip())
}

/// Connect over TCP, mapping "refused" to its own error (it fails fast and
/// means "nothing listens", which operators want to see as such).
pub async fn tcp_connect(dest: SocketAddr) -> Result<TcpStream, TransportError> {
    match TcpStream::connect(dest).await {
        Ok(s) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(TransportError::Refused(dest))
        }
        Err(e) => Err(TransportError::Connect(dest, e)),
    }
}

/// Write the request on a stream and read messages until the matching final
/// response. Provisional and foreign messages are skipped.
pub async fn stream_transact<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    dest: SocketAddr,
    key: &TransactionKey,
    bytes: &[u8],
) -> Result<Reply, TransportError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| TransportError::Send(dest, e))?;
    stream
        .flush()
        .await
        .map_err(|e| TransportError::Send(dest, e))?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // Consume every complete message already buffered.
        while let Some(len) =
            message_len(&buf).map_err(|e| TransportError::Protocol(dest, e.to_string()))?
        {
            let at = Instant::now();
            let msg: Vec<u8> = buf.drain(..len).collect();
            let Ok(response) = parse_response(&msg) else {
                continue; // A request or keep-alive from the peer.
            };
            if key.answered_by(&response) && !response.is_provisional() {
                return Ok(Reply {
                    response,
                    at,
                    sends: 1,
                });
            }
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| TransportError::Read(dest, e))?;
        if n == 0 {
            return Err(TransportError::Closed(dest));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The TLS client configuration: the OS trust store through the platform
/// verifier, and the aws-lc-rs provider reqwest already builds.
pub fn tls_config() -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<tokio_rustls::rustls::ClientConfig>, String>> =
        OnceLock::new();
    CONFIG
        .get_or_init(|| {
            use rustls_platform_verifier::BuilderVerifierExt;
            use tokio_rustls::rustls;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_platform_verifier()
                .map(|b| Arc::new(b.with_no_client_auth()))
                .map_err(|e| e.to_string())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRANCH: &str = "z9hG4bK-continuity-1";

    fn pending(dest: SocketAddr) -> HashMap<String, Pending> {
        let (tx, _rx) = oneshot::channel();
        let w = Pending {
            dest,
            call_id: "c1".into(),
            cseq: 1,
            tx,
        };
        [(BRANCH.to_string(), w)].into()
    }

    fn quoted(branch: &str) -> Vec<u8> {
        format!(
            "OPTIONS sip:trunk SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\nCall-ID: c1\r\n\r\n"
        )
        .into_bytes()
    }

    fn icmp(dest: SocketAddr, offender: &str, payload: Vec<u8>, errno: i32) -> recverr::IcmpError {
        recverr::IcmpError {
            dest: Some(dest),
            error: io::Error::from_raw_os_error(errno),
            offender: Some(offender.parse().unwrap()),
            payload,
        }
    }

    /// Only an ICMP error that names our request (its branch), was about the
    /// request's destination and, for port unreachable, came from that host
    /// fails a transaction; a forged or truncated one fails nothing.
    #[test]
    fn an_icmp_error_must_prove_which_request_it_is_about() {
        let dest: SocketAddr = "192.0.2.10:5060".parse().unwrap();
        let p = pending(dest);
        let refused = libc::ECONNREFUSED;
        let genuine = icmp(dest, "192.0.2.10", quoted(BRANCH), refused);
        assert_eq!(
            icmp_victim(&genuine, |b| p.get(b).map(|w| w.dest)),
            Some(BRANCH.to_string())
        );
        // A router's host unreachable may come from elsewhere.
        let router = icmp(dest, "198.51.100.1", quoted(BRANCH), libc::EHOSTUNREACH);
        assert_eq!(
            icmp_victim(&router, |b| p.get(b).map(|w| w.dest)),
            Some(BRANCH.to_string())
        );

        // Before: each of these failed every transaction to `dest`.
        let truncated = icmp(dest, "192.0.2.10", b"OPTIONS ".to_vec(), refused);
        assert_eq!(icmp_victim(&truncated, |b| p.get(b).map(|w| w.dest)), None);
        let unknown_branch = icmp(dest, "192.0.2.10", quoted("z9hG4bK-other"), refused);
        assert_eq!(
            icmp_victim(&unknown_branch, |b| p.get(b).map(|w| w.dest)),
            None
        );
        let elsewhere: SocketAddr = "192.0.2.99:5060".parse().unwrap();
        let wrong_dest = icmp(elsewhere, "192.0.2.99", quoted(BRANCH), refused);
        assert_eq!(icmp_victim(&wrong_dest, |b| p.get(b).map(|w| w.dest)), None);
        let forged = icmp(dest, "203.0.113.66", quoted(BRANCH), refused);
        assert_eq!(icmp_victim(&forged, |b| p.get(b).map(|w| w.dest)), None);
    }

    /// Counts what a pump delivers.
    #[derive(Default)]
    struct Tally {
        responses: usize,
        errors: usize,
    }

    impl Sink for Tally {
        fn response(&mut self, _: SipResponse, _: String, _: SocketAddr, _: Instant) {
            self.responses += 1;
        }
        fn icmp(&mut self, _: recverr::IcmpError) {
            self.errors += 1;
        }
    }

    /// An answer waiting behind more queued ICMP errors than one pump drains
    /// is read by that pump. With one budget for both, the errors used it up
    /// and a flood of forged ones kept answers unread until checks timed out
    /// (`hostile_sip::forged_icmp_flood_fails_no_healthy_trunk`, under load).
    #[tokio::test]
    async fn a_pump_reads_answers_waiting_behind_a_flood_of_icmp_errors() {
        let socket = open_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // Each datagram to the closed port comes back as a port unreachable
        // on the error queue (every other send reports the last one instead).
        // Sent before the socket joins the runtime, which would refuse a
        // `try_send_to` until it has seen the socket writable.
        for _ in 0..4 * PUMP_BUDGET {
            let _ = socket.send_to(b"ping", closed);
        }
        let trunk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let answer = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch={BRANCH}\r\n\
             Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        trunk
            .send_to(answer.as_bytes(), socket.local_addr().unwrap())
            .unwrap();
        let socket = UdpSocket::from_std(socket).unwrap();
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let r = socket
                    .ready(Interest::READABLE | Interest::ERROR)
                    .await
                    .unwrap();
                if r.is_readable() && r.is_error() {
                    break r;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the answer and the errors are waiting");
        let mut tally = Tally::default();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let more = pump(&socket, ready, &mut buf, &mut tally);
        assert_eq!(
            tally.errors, PUMP_BUDGET,
            "setup: more errors queued than one pump drains"
        );
        assert_eq!(tally.responses, 1, "the answer behind the errors was read");
        assert!(more, "errors still queued: the caller must pump again");
    }
}
