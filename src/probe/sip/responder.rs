//! A tiny in-process SIP UAS for the demo and tests: it answers every request
//! (OPTIONS in practice) with a configurable code over UDP and TCP on the same
//! port, and can be switched to another code, to silence, or told to drop the
//! next few datagrams (to exercise retransmission), then stopped.
//!
//! It is deliberately not a SIP stack: it copies Via, From, To, Call-ID and
//! CSeq from the request, adds a To tag, and answers to the datagram's source
//! address (as `rport` asks).

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::parse::{Header, canonical, message_len, split_head};

/// How the responder answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answer with this final code (and send `100 Trying` first if asked).
    Answer(u16),
    /// Read requests but never answer (a hung trunk).
    Silent,
}

struct Shared {
    mode: Mutex<Mode>,
    trying: std::sync::atomic::AtomicBool,
    drop_next: AtomicUsize,
    received: AtomicU64,
    /// Distinct UDP source addresses seen (proves the probes share a socket).
    udp_peers: Mutex<HashSet<SocketAddr>>,
}

/// A running responder. Dropping it stops it.
pub struct Responder {
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Responder {
    /// Listen on `addr` over UDP and TCP (same port; port 0 picks a free one).
    pub async fn bind(addr: SocketAddr, mode: Mode) -> io::Result<Responder> {
        let (udp, tcp) = bind_pair(addr).await?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            trying: false.into(),
            drop_next: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            udp_peers: Mutex::default(),
        });
        let stop = CancellationToken::new();
        let r = Responder {
            udp_addr: udp.local_addr()?,
            tcp_addr: tcp.local_addr()?,
            shared: shared.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(serve_udp(udp, shared.clone(), stop.clone()));
        tokio::spawn(serve_tcp(tcp, shared, stop));
        Ok(r)
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    pub fn set_mode(&self, mode: Mode) {
        if let Ok(mut m) = self.shared.mode.lock() {
            *m = mode;
        }
    }

    /// Send `100 Trying` before each final response (probes must skip it).
    pub fn set_send_trying(&self, on: bool) {
        self.shared.trying.store(on, Ordering::Relaxed);
    }

    /// Silently drop the next `n` UDP datagrams (they still count as received).
    pub fn drop_next(&self, n: usize) {
        self.shared.drop_next.store(n, Ordering::Relaxed);
    }

    /// Requests received so far (UDP datagrams and TCP messages).
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// How many distinct source addresses sent UDP requests.
    pub fn udp_peers(&self) -> usize {
        self.shared.udp_peers.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// The source addresses that sent UDP requests (a test learns the
    /// prober's port from them).
    pub fn udp_peer_addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .udp_peers
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Also answer over TLS on `addr` (port 0 picks one), with the same mode
    /// and counters. Returns the TLS listener's address.
    pub async fn serve_tls(
        &self,
        addr: SocketAddr,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (shared, stop) = (self.shared.clone(), self.stop.clone());
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                };
                let (acceptor, shared, stop) = (acceptor.clone(), shared.clone(), stop.clone());
                tokio::spawn(async move {
                    // A failed handshake is the client's problem to report.
                    if let Ok(tls) = acceptor.accept(conn).await {
                        serve_conn(tls, shared, stop).await;
                    }
                });
            }
        });
        Ok(local)
    }

    /// Stop listening; the ports are closed once the tasks notice (promptly).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        return Ok((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?));
    }
    // Find a port free for both protocols.
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr).await?;
        let port_addr = udp.local_addr()?;
        match TcpListener::bind(port_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port")))
}

/// The answers to send for one request, or nothing (silent, or not a request).
fn answers(shared: &Shared, request: &[u8]) -> Vec<Vec<u8>> {
    let mode = shared.mode.lock().map(|m| *m).unwrap_or(Mode::Silent);
    let Mode::Answer(code) = mode else {
        return Vec::new();
    };
    build_answers(request, code, shared.trying.load(Ordering::Relaxed)).unwrap_or_default()
}

pub(crate) fn build_answers(request: &[u8], code: u16, trying: bool) -> Option<Vec<Vec<u8>>> {
    let (start, headers) = split_head(request).ok()?;
    if start.starts_with("SIP/") {
        return None; // A response, not a request.
    }
    let mut copied = String::new();
    for (name, value) in &headers {
        match canonical(name) {
            Some(Header::Via) => copied.push_str(&format!("Via: {value}\r\n")),
            Some(Header::From) => copied.push_str(&format!("From: {value}\r\n")),
            Some(Header::To) if value.contains(";tag=") => {
                copied.push_str(&format!("To: {value}\r\n"))
            }
            Some(Header::To) => copied.push_str(&format!("To: {value};tag=responder\r\n")),
            Some(Header::CallId) => copied.push_str(&format!("Call-ID: {value}\r\n")),
            Some(Header::CSeq) => copied.push_str(&format!("CSeq: {value}\r\n")),
            _ => {}
        }
    }
    let one = |code: u16| {
        format!(
            "SIP/2.0 {code} {}\r\n{copied}Server: continuity-agent-responder\r\nContent-Length: 0\r\n\r\n",
            reason(code)
        )
        .into_bytes()
    };
    let mut out = Vec::new();
    if trying {
        out.push(one(100));
    }
    out.push(one(code));
    Some(out)
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>, stop: CancellationToken) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = tokio::select! {
            _ = stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue, // e.g. ICMP from a previous answer; keep serving.
            },
        };
        shared.received.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut p) = shared.udp_peers.lock() {
            p.insert(from);
        }
        let dropped = shared
            .drop_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1))
            .is_ok();
        if dropped {
            continue;
        }
        for answer in answers(&shared, &buf[..n]) {
            let _ = socket.send_to(&answer, from).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        tokio::spawn(serve_conn(conn, shared.clone(), stop.clone()));
    }
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: S,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok(Some(len)) = message_len(&buf) {
            let msg: Vec<u8> = buf.drain(..len).collect();
            shared.received.fetch_add(1, Ordering::Relaxed);
            for answer in answers(&shared, &msg) {
                if conn.write_all(&answer).await.is_err() {
                    return;
                }
            }
        }
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            r = conn.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 1 << 20 {
            return;
        }
    }
}
