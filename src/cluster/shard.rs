//! Sharded leadership: several accounts spread over the live replicas, one
//! lease per account (`leadership.rs`, the same lease loop as one account).
//!
//! - **Membership:** a task heartbeats this replica's row in the store every
//!   [`tick`] (the row lives 2/3 of `lease_ttl`) and reads every live
//!   replica and every account's lease. From that it computes the
//!   assignment (`assign.rs`) and publishes a [`View`] to the accounts'
//!   lease loops; `continuity_cluster_replicas` counts the live replicas.
//! - **Claims:** a lease loop claims its account only while the view
//!   assigns it here and it is not held, at every view (so within one tick
//!   of its lease expiring), and renews a held lease every `lease_ttl / 3`
//!   with the usual step-down rule (`renew_deadline`).
//! - **Handover:** a failed claim records who asked (`store::lease`). The
//!   holder hands the account over when its own view assigns it to the
//!   asker, the asker is live and asked recently: it stops acting at once
//!   (audited), and releases the lease once a write it already fenced can
//!   no longer be on its way (2/3 of `lease_ttl`, which bounds
//!   `talkdesk.request_timeout`). A holder never lets go of an account
//!   nobody asked for, so replicas whose views differ for a moment (one saw
//!   a heartbeat the other did not yet) leave no account unled.
//!
//! Takeover time after a replica dies: its leases expire `lease_ttl` after
//! its last renewal; its membership row, heartbeated every tick and living
//! 2/3 of `lease_ttl`, expires no later (renewals come every `lease_ttl /
//! 3`). The next view (at most one tick later) assigns its accounts to the
//! survivors, which claim them at once: `lease_ttl` + one tick (at most
//! 250 ms) + a statement.
//!
//! A replica alone (or on SQLite, where a heartbeat leaves only its own row)
//! is assigned every account and claims them all before `spawn_sharded`
//! returns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::assign::assign;
use super::leadership::{LeadershipTask, Lease, Policy, RELEASE_TIMEOUT, process_token};
use crate::config::schema::ClusterConfig;
use crate::store::{LeaseClaim, LeaseRow, Store, StoreError};
use crate::telemetry::{AuditSink, Metrics};

/// One account led by `spawn_sharded`.
pub struct ShardAccount {
    pub id: String,
    /// The account's store handle (`Store::for_account`).
    pub store: Arc<dyn Store>,
    /// Where the account's leadership changes are audited.
    pub audit: Arc<dyn AuditSink>,
}

/// What the membership task last read: who is live, who should lead what,
/// and who does.
pub(super) struct View {
    me: String,
    live: Vec<String>,
    assignment: BTreeMap<String, String>,
    leases: HashMap<String, LeaseRow>,
    /// A request to hand over counts while younger than this.
    fresh: Duration,
}

impl View {
    pub(super) fn assigned_here(&self, account: &str) -> bool {
        self.assignment.get(account) == Some(&self.me)
    }

    pub(super) fn lease(&self, account: &str) -> Option<&LeaseRow> {
        self.leases.get(account)
    }

    /// The live replica this account is assigned to, if that is not this
    /// one and it asked for the account recently.
    pub(super) fn handover_to(&self, account: &str) -> Option<&str> {
        let to = self.assignment.get(account)?;
        if *to == self.me || !self.live.contains(to) {
            return None;
        }
        let (asker, age) = self.lease(account)?.wanted.as_ref()?;
        (asker == to && *age <= self.fresh).then_some(to.as_str())
    }
}

/// Keeps the membership task alive while any account's lease loop handle
/// exists: dropping every `LeadershipTask` (a process killed, in tests)
/// stops the heartbeat without leaving.
pub(super) struct Membership(AbortHandle);

impl Drop for Membership {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often membership is read and heartbeated: often enough that a dead
/// replica's accounts are claimed within 250 ms of its leases expiring
/// (half of the 1 s promised beyond `lease_ttl`, the rest for the claims
/// themselves on a loaded host), and at least six times per `lease_ttl`
/// (the row lives four ticks at least). Two statements a tick.
pub fn tick(lease_ttl: Duration) -> Duration {
    (lease_ttl / 6).min(Duration::from_millis(250))
}

/// Leads `accounts` together with the other live replicas: heartbeats
/// membership, claims once what is assigned here before returning (a lone
/// replica leads every account at once), then runs one lease loop per
/// account until `cancel`. One `LeadershipTask` per account, in order.
/// `root` is any handle of the store (membership is not one account's).
pub async fn spawn_sharded(
    root: Arc<dyn Store>,
    accounts: Vec<ShardAccount>,
    cluster: &ClusterConfig,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Vec<LeadershipTask> {
    let ttl = cluster.lease_ttl.get();
    let claim = LeaseClaim {
        instance_id: cluster.instance_id.clone(),
        token: process_token(),
        ttl,
    };
    let ids: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
    let mut members = Members {
        store: root,
        me: LeaseClaim {
            ttl: ttl * 2 / 3,
            ..claim.clone()
        },
        accounts: ids,
        fresh: ttl / 2,
        timeout: cluster.renew_deadline.get(),
        metrics: metrics.clone(),
        last: None,
        failing: false,
    };
    let first = Arc::new(members.first_view().await);

    let mut leases: Vec<Lease> = accounts
        .into_iter()
        .map(|a| {
            // Each account's leadership gauges (`account` label).
            let gauges = Some(metrics.account(&a.id));
            Lease::new(a.store, Some(a.id), claim.clone(), cluster, gauges, a.audit)
        })
        .collect();
    let mut claims = Vec::new();
    for (lease, id) in leases.iter_mut().zip(&members.accounts) {
        if first.assigned_here(id) {
            claims.push(lease.claim_once());
        } else {
            lease.follow(&first);
        }
    }
    futures::future::join_all(claims).await;

    let (views, _) = watch::channel(first);
    let rxs: Vec<_> = leases.iter().map(|_| views.subscribe()).collect();
    let task = tokio::spawn(members.run(views, tick(ttl), cancel.clone()));
    let membership = Arc::new(Membership(task.abort_handle()));
    leases
        .into_iter()
        .zip(rxs)
        .map(|(lease, rx)| {
            lease.start(
                Policy::Sharded(rx),
                cancel.clone(),
                Some(membership.clone()),
            )
        })
        .collect()
}

/// Why a membership round failed (logged; the last view stays).
#[derive(Debug, thiserror::Error)]
enum MembershipError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store did not answer within {0:?}")]
    TimedOut(Duration),
}

/// The membership task's state.
struct Members {
    store: Arc<dyn Store>,
    /// This replica's row: its instance id, process token, and how long
    /// the row lives (2/3 of `lease_ttl`).
    me: LeaseClaim,
    accounts: Vec<String>,
    fresh: Duration,
    /// Bound on one round of statements.
    timeout: Duration,
    metrics: Metrics,
    /// The live replicas and their assignment, recomputed when they change.
    last: Option<Vec<String>>,
    /// Whether the last round failed (logged once per failing streak).
    failing: bool,
}

impl Members {
    /// The view before the loops start; without a store answer, this
    /// replica assumes it is alone (its claims fail anyway until the store
    /// answers).
    async fn first_view(&mut self) -> View {
        match self.read().await {
            Ok(view) => view,
            Err(error) => {
                tracing::warn!(message = "Cluster membership could not be read; leading alone until it can.", %error);
                self.failing = true;
                self.view(vec![self.me.instance_id.clone()], Vec::new())
            }
        }
    }

    async fn run(
        mut self,
        views: watch::Sender<Arc<View>>,
        every: Duration,
        cancel: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            let read = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => tokio::select! {
                    _ = cancel.cancelled() => break,
                    read = self.read() => read,
                },
            };
            match read {
                Ok(view) => {
                    if self.failing {
                        tracing::info!(message = "Cluster membership read again.");
                    }
                    self.failing = false;
                    views.send_replace(Arc::new(view));
                }
                Err(error) if !self.failing => {
                    self.failing = true;
                    tracing::warn!(message = "Cluster membership could not be read; keeping the last view.", %error);
                }
                Err(_) => {}
            }
        }
        // Graceful stop: the others rebalance now rather than when the row
        // expires.
        match tokio::time::timeout(RELEASE_TIMEOUT, self.store.leave(&self.me)).await {
            Ok(Ok(())) => tracing::info!(message = "Left the cluster."),
            _ => tracing::warn!(
                message = "Could not leave the cluster; the membership row expires on its own."
            ),
        }
    }

    /// One round: heartbeat (which lists the live replicas) and leases.
    async fn read(&mut self) -> Result<View, MembershipError> {
        let round = async {
            let live = self.store.heartbeat(&self.me).await?;
            let leases = self.store.leases().await?;
            Ok::<_, StoreError>((live, leases))
        };
        let (live, leases) = tokio::time::timeout(self.timeout, round)
            .await
            .map_err(|_| MembershipError::TimedOut(self.timeout))??;
        Ok(self.view(live, leases))
    }

    fn view(&mut self, mut live: Vec<String>, leases: Vec<LeaseRow>) -> View {
        // This replica counts even if its row is not visible yet.
        if !live.contains(&self.me.instance_id) {
            live.push(self.me.instance_id.clone());
            live.sort();
        }
        self.metrics.cluster_replicas.set(live.len() as i64);
        // An account stays with its live holder while that holder is within
        // its share (`assign`): a replica that joins or comes back does not
        // take over accounts that are led already, beyond balancing.
        let holders: BTreeMap<String, String> = leases
            .iter()
            .filter(|row| row.live && live.contains(&row.holder))
            .map(|row| (row.account.clone(), row.holder.clone()))
            .collect();
        let assignment = assign(&self.accounts, &live, &holders);
        if self.last.as_ref() != Some(&live) {
            let here = assignment
                .values()
                .filter(|r| **r == self.me.instance_id)
                .count();
            tracing::info!(message = "Cluster membership changed.", live = %live.join(", "), accounts_here = here, accounts = self.accounts.len());
            self.last = Some(live.clone());
        }
        View {
            me: self.me.instance_id.clone(),
            live,
            assignment,
            leases: leases
                .into_iter()
                .map(|row| (row.account.clone(), row))
                .collect(),
            fresh: self.fresh,
        }
    }
}
