//! [`Fence`]: the check right before every Talkdesk write.
//!
//! Talkdesk accepts no fencing token, so the fence cannot travel with the
//! request; it narrows the window instead. A write is sent only if, in this
//! order:
//! 1. this replica still believes it leads and its renewal deadline has not
//!    passed (local, free);
//! 2. the store confirms, in one statement, that this process's token holds
//!    the lease under the same epoch and that the lease outlives the request
//!    by `talkdesk.request_timeout`, and records the write under the epoch
//!    (the `writes` table);
//! 3. the answer came back quickly enough: the time spent asking is taken
//!    off the lease that was left, and what remains must still exceed the
//!    request timeout (a process paused while asking, e.g. by SIGSTOP, is
//!    refused when it resumes).
//!
//! What remains is the time between step 3 and the request leaving the
//! socket (microseconds, unless the process is paused exactly there), plus
//! the request itself, bounded by `request_timeout`. The lease outlives both
//! by construction, so a new leader (which can only take the lease after it
//! expired) never overlaps a write of the old one unless the old process is
//! frozen for longer than the remaining margin inside that last window.
//!
//! A refused write is logged and audited (`leadership`). Why it was refused
//! decides what the actuator does next ([`Verdict`]): when this replica
//! does not lead, nothing (the leader writes); when it still leads but the
//! store did not confirm the lease in time (slow, failing, or a lease left
//! short by a slow renewal), it retries with backoff until the write is
//! allowed or leadership is lost.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Leadership;
use crate::domain::Timestamp;
use crate::store::{LeaseClaim, Store, WriteClaim, WriteGrant};
use crate::talkdesk::Op;
use crate::talkdesk::actuator::{Verdict, WriteFence};
use crate::telemetry::{AuditKind, AuditRecord, AuditSink};

pub struct Fence {
    store: Arc<dyn Store>,
    leadership: watch::Receiver<Leadership>,
    claim: LeaseClaim,
    /// `talkdesk.request_timeout`: the lease must outlive the request.
    margin: Duration,
    audit: Arc<dyn AuditSink>,
}

impl Fence {
    pub fn new(
        store: Arc<dyn Store>,
        leadership: watch::Receiver<Leadership>,
        claim: LeaseClaim,
        margin: Duration,
        audit: Arc<dyn AuditSink>,
    ) -> Fence {
        Fence {
            store,
            leadership,
            claim,
            margin,
            audit,
        }
    }

    /// Allowed, or why not: `NotLeader` when this replica does not lead by
    /// its own view, else `Unconfirmed` (see [`Fence::refusal`]).
    async fn check(&self, op: Op) -> Result<(), (Verdict, String)> {
        let lead = self.leadership.borrow().clone();
        if !lead.may_act() {
            return Err((
                Verdict::NotLeader,
                format!(
                    "not the leader (leader {}, epoch {})",
                    lead.leader_id.as_deref().unwrap_or("unknown"),
                    lead.epoch
                ),
            ));
        }
        let asked = Instant::now();
        let write = WriteClaim {
            instance_id: self.claim.instance_id.clone(),
            token: self.claim.token.clone(),
            epoch: lead.epoch,
            margin: self.margin,
            op: op.as_str().to_string(),
        };
        // The answer is useless once it would arrive too late anyway.
        let answer = tokio::time::timeout(self.margin, self.store.claim_write(&write)).await;
        let remaining = match answer {
            Ok(Ok(WriteGrant::Granted { remaining })) => remaining,
            Ok(Ok(WriteGrant::Refused)) => {
                return Err(self.refusal(format!(
                    "the store says epoch {} is no longer held by this process, or its lease ends within {:?}",
                    lead.epoch, self.margin
                )));
            }
            Ok(Err(error)) => {
                return Err(self.refusal(format!("the lease could not be checked: {error}")));
            }
            Err(_) => return Err(self.refusal("the lease check timed out".into())),
        };
        let left = remaining.saturating_sub(asked.elapsed());
        if left <= self.margin || !self.leadership.borrow().may_act() {
            return Err(self.refusal(format!(
                "the lease check took too long ({:?}); {left:?} of lease left",
                asked.elapsed()
            )));
        }
        Ok(())
    }

    /// A store that refused, failed or answered too late does not say that
    /// another replica leads: the lease may only be short because a renewal
    /// was slow. While this replica's own view (renewed against the same
    /// store, stepping down by `renew_deadline`) says it leads, the write is
    /// only postponed; once that view says otherwise, it is not ours.
    fn refusal(&self, why: String) -> (Verdict, String) {
        if self.leadership.borrow().may_act() {
            (Verdict::Unconfirmed, why)
        } else {
            (Verdict::NotLeader, why)
        }
    }
}

impl WriteFence for Fence {
    fn may_write(&self, op: Op) -> BoxFuture<'_, Verdict> {
        Box::pin(async move {
            match self.check(op).await {
                Ok(()) => Verdict::Allowed,
                Err((verdict, why)) => {
                    tracing::warn!(message = "Talkdesk write refused by the fence.", op = %op, reason = %why, leader = verdict == Verdict::Unconfirmed);
                    self.audit.record(
                        AuditRecord::new(
                            Timestamp::now(),
                            AuditKind::Leadership,
                            format!("{op} refused: {why}"),
                        )
                        .with_data(serde_json::json!({
                            "instance_id": self.claim.instance_id,
                            "op": op.as_str(),
                            "reason": why,
                            "retry": verdict == Verdict::Unconfirmed,
                        })),
                    );
                    verdict
                }
            }
        })
    }
}
