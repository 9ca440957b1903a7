//! Writes audit records to the store without blocking the caller: records are
//! queued and a writer task commits them in batches (one transaction per
//! batch keeps SQLite's fsync cost per decision small).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Store;
use crate::telemetry::{AuditRecord, AuditSink};

/// Queue depth: far above any burst the agent produces (a decision writes a
/// handful of records); if the store stalls this long, records are dropped
/// and counted rather than blocking decisions.
const QUEUE: usize = 10_000;
/// Records per transaction.
const BATCH: usize = 256;

pub struct StoreAudit {
    tx: mpsc::Sender<AuditRecord>,
    dropped: AtomicU64,
}

impl StoreAudit {
    /// Starts the writer. It ends once every `StoreAudit` handle is dropped and
    /// the queue is flushed; await the handle on shutdown.
    pub fn spawn(store: Arc<dyn Store>) -> (Arc<StoreAudit>, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<AuditRecord>(QUEUE);
        let handle = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let n = batch.len();
                if let Err(error) = store.append_audit(std::mem::take(&mut batch)).await {
                    tracing::error!(message = "Failed to write audit records.", records = n, %error);
                }
            }
            // Every handle is gone: commit what a backend still holds back.
            if let Err(error) = store.flush_audit().await {
                tracing::error!(message = "Failed to write audit records.", %error);
            }
        });
        (
            Arc::new(StoreAudit {
                tx,
                dropped: AtomicU64::new(0),
            }),
            handle,
        )
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AuditSink for StoreAudit {
    fn record(&self, record: AuditRecord) {
        if self.tx.try_send(record).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::error!(
                    message = "Audit queue full or closed; records dropped.",
                    dropped = n
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::store::SqliteStore;
    use crate::telemetry::AuditKind;

    #[tokio::test]
    async fn records_reach_the_store_and_are_flushed_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("a.db")).await.unwrap());
        let (sink, writer) = StoreAudit::spawn(store.clone());
        for i in 0..600 {
            sink.record(AuditRecord::new(
                Timestamp(i),
                AuditKind::Probe,
                format!("r{i}"),
            ));
        }
        drop(sink);
        writer.await.unwrap();
        let events = store.events(1000, None).await.unwrap();
        assert_eq!(events.len(), 600);
        assert_eq!(events[0].record.message, "r599");
    }
}
