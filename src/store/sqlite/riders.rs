//! Audit records ride in the next write transaction instead of paying for
//! a commit of their own.
//!
//! Why: the file has one writing connection, and with `synchronous = FULL`
//! every commit waits for an fsync. An audit batch committed on its own lands
//! exactly where it hurts: just after a delivery's 202, ahead of the snapshot
//! the loop is about to commit, and just before a Talkdesk write, ahead of
//! the fence's record. Each such commit held the alert-to-Talkdesk path up
//! by a whole fsync (BENCHMARKS.md, "Alert to Talkdesk"). So
//! `append_audit` parks its records here, and the next write transaction of
//! any handle (an input append, a snapshot, a fence record, a lease claim, a
//! membership heartbeat) inserts them before it commits. If none comes
//! within [`RIDE`], a flush scheduled when the first of them was parked
//! commits them on their own ([`Parked::flush`]).
//!
//! What callers keep: a read of the audit log first commits whatever is
//! parked, so a reader sees what was appended, and `Store::flush_audit`
//! (the audit writer's last act on shutdown) commits it at once.
//! `append_audit` itself returns as soon as the records are parked: the
//! audit writer must not sit out the ride while newer records wait in its
//! queue, out of a reader's sight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, Transaction, params};

use crate::store::StoreError;
use crate::telemetry::AuditRecord;

/// How long parked records wait for another transaction to ride in before
/// they commit on their own: longer than the loop takes from a delivery to
/// its snapshot, or the actuator from its read to its fenced write (about a
/// millisecond each), short enough that the audit log is current to a
/// reader within a blink. (Unit tests take longer, so that a loaded
/// machine pausing a test between two statements cannot stand in for it.)
pub(super) const RIDE: Duration = if cfg!(test) {
    Duration::from_secs(1)
} else {
    Duration::from_millis(50)
};

/// Audit records waiting for a transaction, with the account of the handle
/// that appended them (every handle of the file shares one).
#[derive(Default)]
pub(super) struct Parked {
    records: Mutex<Vec<(Arc<str>, AuditRecord)>>,
    /// A flush is scheduled and has not begun yet: records parked now are
    /// taken by it (or by a transaction before it).
    flush_due: AtomicBool,
}

impl Parked {
    /// Parks `records`; true if no flush is scheduled, so the caller must
    /// schedule one (in [`RIDE`]) that calls [`Parked::flush_begins`] first.
    #[must_use]
    pub fn park(&self, account: &Arc<str>, records: Vec<AuditRecord>) -> bool {
        self.lock()
            .extend(records.into_iter().map(|r| (account.clone(), r)));
        !self.flush_due.swap(true, Ordering::AcqRel)
    }

    /// The scheduled flush begins: records parked from now on schedule the
    /// next one. (Those parked before are in the buffer it is about to take.)
    pub fn flush_begins(&self) {
        self.flush_due.store(false, Ordering::Release);
    }

    /// Commits `tx` with every parked record inserted into it. The records
    /// go in a savepoint: if they cannot be inserted, only they are rolled
    /// back (and dropped, logged as the audit writer logs a failed batch),
    /// never the transaction they ride in. If the commit itself fails, they
    /// are parked again, ahead of newer ones, for the next transaction or
    /// their own flush.
    pub fn commit(&self, mut tx: Transaction<'_>) -> Result<(), StoreError> {
        let riders = self.take();
        if riders.is_empty() {
            return Ok(tx.commit()?);
        }
        let inserted = tx.savepoint().map_err(StoreError::from).and_then(|sp| {
            insert(&sp, &riders)?;
            Ok(sp.commit()?)
        });
        if let Err(error) = inserted {
            tracing::error!(message = "Failed to write audit records.", records = riders.len(), %error);
            return Ok(tx.commit()?);
        }
        tx.commit().inspect_err(|_| self.unpark(riders))?;
        Ok(())
    }

    /// Commits the parked records in a transaction of their own (none if
    /// nothing is parked). Call with the writing connection held, so a
    /// transaction they may be riding in has ended: on return, everything
    /// parked before the call is committed or its failure is the error.
    pub fn flush(&self, c: &mut Connection) -> Result<(), StoreError> {
        let riders = self.take();
        if riders.is_empty() {
            return Ok(());
        }
        let tx = c.transaction()?;
        insert(&tx, &riders)?;
        tx.commit()?;
        Ok(())
    }

    /// Everything parked, taken out to be committed.
    pub(super) fn take(&self) -> Vec<(Arc<str>, AuditRecord)> {
        std::mem::take(&mut *self.lock())
    }

    fn unpark(&self, mut riders: Vec<(Arc<str>, AuditRecord)>) {
        let mut parked = self.lock();
        riders.append(&mut parked);
        *parked = riders;
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Arc<str>, AuditRecord)>> {
        // A panic while holding it leaves a plain Vec, still consistent.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) fn insert(
    c: &Connection,
    records: &[(Arc<str>, AuditRecord)],
) -> Result<(), StoreError> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO audit (account, at, kind, message, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (account, r) in records {
        let data = if r.data.is_null() {
            None
        } else {
            Some(serde_json::to_string(&r.data)?)
        };
        stmt.execute(params![
            &**account,
            r.at.as_millis(),
            r.kind.as_str(),
            r.message,
            data
        ])?;
    }
    Ok(())
}
