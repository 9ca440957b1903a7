//! Where an accepted delivery goes: [`Intake`]. The daemon hands the routes
//! the durable input queue (`store::inputs::Queue`: the 202 is sent only
//! once the alerts are in the store); the route tests hand them a bounded
//! channel of engine events, to see exactly what a delivery emits.

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::engine::event::Event;
use crate::store::inputs::{Input, Queue};

/// Why a delivery could not be taken (503: nothing was accepted).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the event queue is full; nothing was applied")]
    Full,
    #[error("the agent is shutting down; nothing was applied")]
    Closed,
    #[error("the store cannot take the alerts now; nothing was accepted ({0})")]
    Store(String),
}

/// Takes all of a delivery's inputs or none of them.
pub trait Intake: Send + Sync + 'static {
    fn accept(&self, inputs: Vec<Input>) -> BoxFuture<'_, Result<(), IntakeError>>;
    /// The most inputs one delivery may carry.
    fn max_batch(&self) -> usize;
}

/// Most alerts one delivery may carry into the store queue.
pub const MAX_DELIVERY: usize = 4096;

impl Intake for Queue {
    fn accept(&self, inputs: Vec<Input>) -> BoxFuture<'_, Result<(), IntakeError>> {
        Box::pin(async move {
            self.append(inputs)
                .await
                .map(drop)
                .map_err(|e| IntakeError::Store(e.to_string()))
        })
    }

    fn max_batch(&self) -> usize {
        MAX_DELIVERY
    }
}

/// Straight to the engine's channel, without waiting: room is reserved for
/// every event before any is sent.
impl Intake for mpsc::Sender<Event> {
    fn accept(&self, inputs: Vec<Input>) -> BoxFuture<'_, Result<(), IntakeError>> {
        Box::pin(async move {
            let permits = self.try_reserve_many(inputs.len()).map_err(|e| match e {
                TrySendError::Full(()) => IntakeError::Full,
                TrySendError::Closed(()) => IntakeError::Closed,
            })?;
            for (permit, input) in permits.zip(inputs) {
                permit.send(input.into_event());
            }
            Ok(())
        })
    }

    fn max_batch(&self) -> usize {
        self.max_capacity()
    }
}
