//! The signalling connection of one test call.
//!
//! Unlike OPTIONS pings, a call is a conversation: provisional responses,
//! retransmitted 2xx, a BYE from the callee. So each call has its own
//! channel instead of a waiter on the shared OPTIONS socket: a *connected*
//! UDP socket (the kernel filters other senders and reports ICMP errors as
//! `ECONNREFUSED`), or one TCP/TLS connection opened with the OPTIONS
//! probe's `tcp_connect` and TLS set-up and framed with its `message_len`.
//! A call every few minutes makes the extra descriptor irrelevant.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::UdpSocket;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::probe::sip::parse::message_len;
use crate::probe::sip::transport::{self, TransportError};
use crate::probe::sip::{Host, SipTarget, Transport};

/// A byte stream to the peer: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

pub type Stream = Box<dyn Io>;

pub enum Channel {
    Udp(Arc<UdpSocket>, SocketAddr),
    Stream {
        peer: SocketAddr,
        reader: ReadHalf<Stream>,
        /// Taken by a teardown that outlives the call (see `Call::drop`).
        writer: Option<WriteHalf<Stream>>,
        buf: BytesMut,
    },
}

/// Where a teardown request goes when the call's future is dropped.
pub enum Detached {
    Udp(Arc<UdpSocket>),
    Stream(WriteHalf<Stream>),
}

impl Channel {
    /// Connect to `dest`; returns the channel and our address as the peer sees it.
    pub async fn open(
        target: &SipTarget,
        dest: SocketAddr,
        tls: Option<Arc<ClientConfig>>,
    ) -> Result<(Channel, SocketAddr), String> {
        match target.transport {
            Transport::Udp => {
                let any: IpAddr = match dest {
                    SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                    SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
                };
                let sock = UdpSocket::bind((any, 0))
                    .await
                    .map_err(|e| TransportError::Socket(e.to_string()).to_string())?;
                sock.connect(dest)
                    .await
                    .map_err(|e| TransportError::Connect(dest, e).to_string())?;
                let local = sock.local_addr().map_err(|e| e.to_string())?;
                Ok((Channel::Udp(Arc::new(sock), dest), local))
            }
            Transport::Tcp | Transport::Tls => {
                let tcp = transport::tcp_connect(dest)
                    .await
                    .map_err(|e| e.to_string())?;
                let local = tcp.local_addr().map_err(|e| e.to_string())?;
                let stream: Stream = if target.transport == Transport::Tls {
                    let config = match tls {
                        Some(c) => c,
                        None => transport::tls_config()?,
                    };
                    let name = match &target.host {
                        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
                        Host::Name(n) => ServerName::try_from(n.clone())
                            .map_err(|e| format!("invalid TLS server name {n}: {e}"))?,
                    };
                    Box::new(
                        TlsConnector::from(config)
                            .connect(name, tcp)
                            .await
                            .map_err(|e| TransportError::Tls(dest, e.to_string()).to_string())?,
                    )
                } else {
                    Box::new(tcp)
                };
                let (reader, writer) = tokio::io::split(stream);
                Ok((
                    Channel::Stream {
                        peer: dest,
                        reader,
                        writer: Some(writer),
                        buf: BytesMut::new(),
                    },
                    local,
                ))
            }
        }
    }

    /// Whether the transport retransmits for us (RFC 3261 17.1.1.2: no Timer A).
    pub fn reliable(&self) -> bool {
        matches!(self, Channel::Stream { .. })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Channel::Udp(s, peer) => s
                .send(bytes)
                .await
                .map(drop)
                .map_err(|e| udp_error(*peer, e)),
            Channel::Stream { peer, writer, .. } => {
                let w = writer
                    .as_mut()
                    .ok_or_else(|| TransportError::Closed(*peer).to_string())?;
                w.write_all(bytes)
                    .await
                    .map_err(|e| TransportError::Send(*peer, e).to_string())
            }
        }
    }

    /// The next message from the peer. Cancel-safe: partial stream data
    /// stays in the buffer.
    pub async fn recv(&mut self) -> Result<Vec<u8>, String> {
        match self {
            Channel::Udp(s, peer) => {
                let mut buf = vec![0u8; 65_535];
                let n = s.recv(&mut buf).await.map_err(|e| udp_error(*peer, e))?;
                buf.truncate(n);
                Ok(buf)
            }
            Channel::Stream {
                peer, reader, buf, ..
            } => loop {
                match message_len(buf) {
                    Ok(Some(n)) => return Ok(buf.split_to(n).to_vec()),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(TransportError::Protocol(*peer, e.to_string()).to_string());
                    }
                }
                let n = reader
                    .read_buf(buf)
                    .await
                    .map_err(|e| TransportError::Read(*peer, e).to_string())?;
                if n == 0 {
                    return Err(TransportError::Closed(*peer).to_string());
                }
            },
        }
    }

    /// Hand the sending side to a teardown that must outlive the call.
    pub fn detach(&mut self) -> Option<Detached> {
        match self {
            Channel::Udp(s, _) => Some(Detached::Udp(s.clone())),
            Channel::Stream { writer, .. } => writer.take().map(Detached::Stream),
        }
    }
}

impl Detached {
    /// Send `bytes` once, from a destructor: synchronously on UDP, on a
    /// spawned task for streams (when a runtime is there to run it).
    pub fn send_now(self, bytes: Vec<u8>) {
        match self {
            Detached::Udp(s) => {
                let _ = s.try_send(&bytes);
            }
            Detached::Stream(mut w) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        let _ = w.write_all(&bytes).await;
                        let _ = w.shutdown().await;
                    });
                }
            }
        }
    }
}

fn udp_error(peer: SocketAddr, e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        TransportError::Unreachable("port unreachable".into(), peer).to_string()
    } else {
        TransportError::Read(peer, e).to_string()
    }
}
