//! Accepting API connections with limits, so that clients cannot exhaust
//! the agent: at most `agent.max_connections` open at once (more are closed
//! as they arrive), a deadline for each request's headers that also closes
//! kept-alive connections left idle (`agent.header_read_timeout`), the same
//! deadline for a TLS handshake, and the per-request timeout of the router
//! (`server::REQUEST_TIMEOUT`).
//!
//! Why by hand rather than `axum::serve`: it has no connection cap and no
//! header deadline, and 1,010 idle connections once took every descriptor
//! of the process, so a SIP/TCP probe could not open a socket (issue 15).
//! The cap is also held to a quarter of the descriptor limit
//! ([`Limits::capped`]): whatever clients do, the probes keep descriptors.
//!
//! HTTP/1.1 only: every webhook sender and the CLI speak it, and one
//! protocol keeps the limits simple to reason about.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::telemetry::Metrics;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(15);

/// The connection limits of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Limits {
    /// From `[agent]`, with the cap held to a quarter of `nofile` (the
    /// process's descriptor limit, when known).
    pub fn capped(
        max_connections: u32,
        header_read_timeout: Duration,
        nofile: Option<u64>,
    ) -> Limits {
        let budget = nofile.map_or(usize::MAX, |n| usize::try_from(n / 4).unwrap_or(usize::MAX));
        Limits {
            max_connections: (max_connections as usize).min(budget).max(1),
            header_read_timeout,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting and lets connections finish their requests (at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before it
                    // was taken: the kernel keeps the backlog; try again soon.
                    tracing::warn!(message = "Accepting an API connection failed.", error = %e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.api_connections_rejected_total.inc();
            tracing::debug!(message = "API connection refused: at agent.max_connections.", %remote);
            drop(stream);
            continue;
        };
        let conn = Conn {
            app: app.clone(),
            remote,
            limits: limits.clone(),
            tls: tls.clone(),
            watcher: graceful.watcher(),
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            metrics.api_connections.inc();
            conn.run(stream).await;
            metrics.api_connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            message = "API connections still open after the drain period; closing them."
        );
    }
    Ok(())
}

/// One accepted connection.
struct Conn {
    app: Router,
    remote: SocketAddr,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Conn {
    async fn run(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => self.http(TokioIo::new(stream)).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                match tokio::time::timeout(self.limits.header_read_timeout, handshake).await {
                    Ok(Ok(tls)) => self.http(TokioIo::new(tls)).await,
                    Ok(Err(e)) => {
                        tracing::debug!(message = "TLS handshake failed.", remote = %self.remote, error = %e)
                    }
                    Err(_) => {
                        tracing::debug!(message = "TLS handshake timed out.", remote = %self.remote)
                    }
                }
            }
        }
    }

    async fn http<I>(self, io: TokioIo<I>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (app, remote) = (self.app, self.remote);
        // What `into_make_service_with_connect_info` does, per request.
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            app.clone().call(req)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        let conn = builder.serve_connection(io, service);
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(message = "API connection ended with an error.", %remote, error = %e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_three_quarters_of_the_descriptors_to_the_rest() {
        let t = Duration::from_secs(10);
        assert_eq!(Limits::capped(512, t, Some(1024)).max_connections, 256);
        assert_eq!(Limits::capped(512, t, Some(1 << 20)).max_connections, 512);
        assert_eq!(Limits::capped(512, t, None).max_connections, 512);
        assert_eq!(Limits::capped(512, t, Some(2)).max_connections, 1);
    }
}
