//! What the store keeps for leadership (`crate::cluster`): one lease row per
//! account, with a monotonically increasing epoch, and a record of every
//! Talkdesk write made under an epoch.
//!
//! A SQLite file serves one replica, so there every claim succeeds (a new
//! process takes the lease over at once, with the next epoch).
//!
//! The rules in PostgreSQL (one statement or one transaction
//! each, so concurrent replicas serialize on the row):
//! - a claim renews the lease when the claimant's `token` holds it, or takes
//!   it when it has expired (or never existed), or when an earlier process of
//!   the same `instance_id` holds it (a restart: instance ids are unique per
//!   replica, so that process is gone); taking bumps the epoch, so an epoch
//!   names exactly one term of one process;
//! - expiry is judged by the *store's* clock (PostgreSQL's `now()`), so clock
//!   skew between replicas does not matter;
//! - a write is allowed (and recorded) only when the token still holds the
//!   lease under the same epoch and the lease outlives the request by
//!   `margin`;
//! - a claim that fails records who asked and when (`wanted_by`,
//!   `wanted_at`); taking the lease clears it, renewing keeps it. With
//!   sharded leadership a replica claims only the accounts assigned to it,
//!   so a failed claim is a request to hand the account over, which the
//!   holder grants once its own view of the assignment agrees
//!   (`cluster::shard`).
//!
//! Membership (migration 4; SQLite step 5): a `replicas` row per live
//! replica (`instance_id`, `token`, `expires_at` by the store's clock),
//! heartbeated by sharded leadership; live means not expired. A SQLite
//! file serves one replica, so a heartbeat there also removes every other
//! row: the one replica leads every account.

use std::time::Duration;

/// One process's claim on its account's lease.
#[derive(Clone, Debug)]
pub struct LeaseClaim {
    /// Who claims, as status and the audit log show it (`cluster.instance_id`).
    pub instance_id: String,
    /// Unique per process start: two processes with the same `instance_id`
    /// (a restart, a misconfiguration) are still different claimants.
    pub token: String,
    pub ttl: Duration,
}

/// The lease after a claim: who holds it, under which epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// `instance_id` of the holder (possibly expired).
    pub holder: String,
    pub epoch: i64,
    /// Whether the claimant holds it now.
    pub held: bool,
}

/// One account's lease as listed by `Store::leases`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    pub account: String,
    /// `instance_id` of the holder (possibly expired).
    pub holder: String,
    pub epoch: i64,
    /// Not expired by the store's clock.
    pub live: bool,
    /// The last replica whose claim failed since the lease last changed
    /// hands, and how long ago (store's clock).
    pub wanted: Option<(String, Duration)>,
}

/// A Talkdesk write about to be sent under `epoch`.
#[derive(Clone, Debug)]
pub struct WriteClaim {
    pub instance_id: String,
    pub token: String,
    pub epoch: i64,
    /// The lease must outlive the write by this much (the request timeout).
    pub margin: Duration,
    /// `put_settings`, `put_activation`.
    pub op: String,
}

/// The store's answer to a [`WriteClaim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteGrant {
    /// Recorded; the lease has `remaining` left by the store's clock.
    Granted { remaining: Duration },
    /// Another holder, another epoch, or too little lease left.
    Refused,
}
