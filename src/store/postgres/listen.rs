//! LISTEN/NOTIFY for the input queue: a replica learns at once that another
//! one appended inputs for one of its accounts.
//!
//! Every append sends `NOTIFY continuity_inputs, '<account>'` inside its
//! transaction (delivered on commit); a shared append sends `'*'`, which
//! wakes every account. One dedicated connection per opened store listens for
//! all its accounts' handles (a pooled connection would lose its LISTEN when
//! recycled, and one connection per account would not scale); it is opened
//! with the first `watch_inputs` and closed once every watcher is cancelled.
//! When it drops, it is reopened with backoff, and every loop is woken after
//! each (re)connection because notifications sent while disconnected are
//! lost. The loops also poll every second, so a listener that cannot connect
//! only slows delivery down to that.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, mpsc};
use tokio_postgres::AsyncMessage;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_util::sync::CancellationToken;

use super::connect::{ConnectOptions, Tls};
use super::tls::{self, MakeRustls};
use crate::store::wake::Wakers;

/// The notification channel appends send on (payload: the account).
pub(super) const CHANNEL: &str = "continuity_inputs";
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Registers `wake` for `account` until `cancel` fires; starts the store's
/// listener if none runs.
pub(super) fn watch(
    options: &ConnectOptions,
    wakers: &Arc<Wakers>,
    account: &str,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    if wakers.add(account, wake, cancel) {
        tokio::spawn(run(options.clone(), wakers.clone()));
    }
}

/// The listener: (re)connects until no watcher is left.
async fn run(options: ConnectOptions, wakers: Arc<Wakers>) {
    let mut backoff = BACKOFF_FIRST;
    let mut failing = false;
    loop {
        if wakers.stop_if_idle() {
            return;
        }
        match session(&options, &wakers).await {
            Ok(Ended::Idle) => return,
            Ok(Ended::Dropped) => backoff = BACKOFF_FIRST,
            Err(error) if !failing => {
                tracing::warn!(message = "Input notifications lost; reconnecting (the queue is polled every second meanwhile).", %error);
            }
            Err(_) => {}
        }
        failing = true;
        tokio::select! {
            _ = wakers.changed() => {}
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Why a connection's life ended without an error.
enum Ended {
    /// No watcher is left.
    Idle,
    /// The server closed it.
    Dropped,
}

/// One connection's life: LISTEN, then wake the loops each notification
/// names. Returns when the connection ends or no watcher is left.
async fn session(options: &ConnectOptions, wakers: &Wakers) -> Result<Ended, String> {
    match &options.tls {
        Tls::Off => listen(options, tokio_postgres::NoTls, wakers).await,
        Tls::On { check, roots } => {
            let tls = MakeRustls(tls::client_config(*check, roots.as_deref())?);
            listen(options, tls, wakers).await
        }
    }
}

async fn listen<T>(options: &ConnectOptions, tls: T, wakers: &Wakers) -> Result<Ended, String>
where
    T: MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = options.pg.connect(tls).await.map_err(|e| e.to_string())?;
    // The connection must be polled for the client's queries to complete and
    // for notifications to arrive.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    });
    let listening = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
    if let Err(e) = listening {
        driver.abort();
        return Err(e.to_string());
    }
    tracing::debug!(message = "Listening for inputs other replicas accept.");
    // Whatever was appended while we were not listening.
    wakers.wake_all();
    loop {
        tokio::select! {
            payload = rx.recv() => match payload {
                Some(account) => wakers.wake(&account),
                None => break,
            },
            _ = wakers.changed() => {
                if wakers.stop_if_idle() {
                    driver.abort();
                    return Ok(Ended::Idle);
                }
            }
        }
    }
    drop(client);
    driver.await.map_err(|e| e.to_string())??;
    Ok(Ended::Dropped)
}
