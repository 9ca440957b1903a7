//! The actuator runs supervised: if it ends while the agent is not shutting
//! down (a panic or an early return), the loop hears of it and the agent
//! exits 1, because it must not keep deciding while nothing applies the
//! decisions.

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::Desired;
use crate::engine::Event;
use crate::talkdesk::actuator::Actuator;

/// Holds the actuator until the start gate opens, then runs and watches it.
pub(super) struct Supervisor {
    /// The actuator not yet started, with its desired-state receiver.
    pending: Option<(Actuator, watch::Receiver<Desired>)>,
    task: Option<JoinHandle<()>>,
    /// Feedback to the loop (`ActualObserved`).
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
    dead_tx: mpsc::Sender<String>,
    dead_rx: mpsc::Receiver<String>,
}

impl Supervisor {
    pub(super) fn new(
        actuator: Actuator,
        desired: watch::Receiver<Desired>,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> Supervisor {
        let (dead_tx, dead_rx) = mpsc::channel(1);
        Supervisor {
            pending: Some((actuator, desired)),
            task: None,
            events,
            cancel,
            dead_tx,
            dead_rx,
        }
    }

    /// Whether the actuator still waits for the start gate.
    pub(super) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Starts the actuator (once; later calls do nothing).
    pub(super) fn start(&mut self) {
        if let Some((actuator, desired)) = self.pending.take() {
            self.task = Some(spawn_supervised(
                actuator,
                desired,
                self.events.clone(),
                self.cancel.child_token(),
                self.dead_tx.clone(),
            ));
        }
    }

    /// Resolves with the reason if the actuator ended on its own; pends
    /// forever otherwise.
    pub(super) async fn died(&mut self) -> Option<String> {
        self.dead_rx.recv().await
    }

    /// Shutdown (after cancelling): the actuator finishes its in-flight
    /// Talkdesk call, then returns. One that never started (fresh start, gate
    /// still closed) is dropped: it holds an audit handle the audit writer
    /// waits for.
    pub(super) async fn finish(self) {
        drop(self.pending);
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

/// Runs the actuator and reports on `dead` if it ends while the agent is not
/// shutting down.
fn spawn_supervised(
    actuator: Actuator,
    desired: watch::Receiver<Desired>,
    events: mpsc::Sender<Event>,
    token: CancellationToken,
    dead: mpsc::Sender<String>,
) -> JoinHandle<()> {
    let watch_token = token.clone();
    tokio::spawn(async move {
        let result = tokio::spawn(actuator.run(desired, events, token)).await;
        if !watch_token.is_cancelled() {
            let why = match result {
                Ok(()) => "the actuator returned".to_string(),
                Err(e) if e.is_panic() => "the actuator panicked".to_string(),
                Err(e) => format!("the actuator task failed: {e}"),
            };
            let _ = dead.send(why).await;
        }
    })
}
