//! LISTEN/NOTIFY for the input queue: a replica learns at once that another
//! one appended inputs for its account.
//!
//! Every append sends `NOTIFY continuity_inputs, '<account>'` inside its
//! transaction (delivered on commit). One dedicated connection per store
//! listens (a pooled connection would lose its LISTEN when recycled); when it
//! drops, it is reopened with backoff, and the loop is woken after each
//! (re)connection because notifications sent while disconnected are lost.
//! The loop also polls every second, so a listener that cannot connect only
//! slows delivery down to that.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, mpsc};
use tokio_postgres::AsyncMessage;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_util::sync::CancellationToken;

use super::connect::{ConnectOptions, Tls};
use super::tls::{self, MakeRustls};

/// The notification channel appends send on (payload: the account).
pub(super) const CHANNEL: &str = "continuity_inputs";
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Listens until `cancel` fires, waking `wake` for each append to `account`.
pub(super) fn spawn(
    options: ConnectOptions,
    account: String,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = BACKOFF_FIRST;
        let mut failing = false;
        loop {
            let ended = tokio::select! {
                _ = cancel.cancelled() => return,
                ended = session(&options, &account, &wake) => ended,
            };
            match ended {
                Ok(()) => backoff = BACKOFF_FIRST,
                Err(error) if !failing => {
                    tracing::warn!(message = "Input notifications lost; reconnecting (the queue is polled every second meanwhile).", %error);
                }
                Err(_) => {}
            }
            failing = true;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
}

/// One connection's life: LISTEN, then wake on each notification for our
/// account. Returns when the connection ends.
async fn session(options: &ConnectOptions, account: &str, wake: &Notify) -> Result<(), String> {
    match &options.tls {
        Tls::Off => listen(options, tokio_postgres::NoTls, account, wake).await,
        Tls::On { check, roots } => {
            let tls = MakeRustls(tls::client_config(*check, roots.as_deref())?);
            listen(options, tls, account, wake).await
        }
    }
}

async fn listen<T>(
    options: &ConnectOptions,
    tls: T,
    account: &str,
    wake: &Notify,
) -> Result<(), String>
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
    wake.notify_one();
    while let Some(payload) = rx.recv().await {
        if payload == account {
            wake.notify_one();
        }
    }
    drop(client);
    driver.await.map_err(|e| e.to_string())?
}
