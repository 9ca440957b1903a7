//! Leadership: which replica may write to Talkdesk for an account.
//!
//! Several replicas share one PostgreSQL database; exactly one of them, the
//! holder of the account's **lease**, runs the actuator. The lease is a row
//! per account (`store::lease`, migration 2) with a monotonically increasing
//! **epoch**, renewed in single statements that judge expiry by the
//! database's `now()`.
//!
//! Why a lease row and not a session advisory lock: an advisory lock lives
//! as long as one connection. When that connection dies (a proxy, a
//! `pg_terminate_backend`, a server restart) the lock is gone at once, while
//! the old holder may still be mid-write and notices only on its next query;
//! there is no "expires at" both sides can reason about, and no epoch. A
//! lease row with a database-clock expiry gives a deadline that every replica
//! reads the same way, survives reconnects (the pool just takes a new
//! connection), and carries the epoch that fences writes. It also keys
//! naturally by account, so sharding accounts over replicas is more rows,
//! not another mechanism.
//!
//! - `leadership.rs`: the task that claims and renews one account's lease
//!   every `lease_ttl / 3`, and steps down when no renewal succeeded within
//!   `renew_deadline` (local monotonic clock, measured from the *start* of
//!   the last successful claim: the database set the expiry after that
//!   instant, so stepping down at `start + renew_deadline` is always before
//!   the lease can expire anywhere else). Publishes [`Leadership`].
//!   [`spawn`] runs it for one account, taken by whichever replica finds it
//!   free.
//! - `shard.rs`: [`spawn_sharded`], several accounts spread over the live
//!   replicas: membership heartbeats (`replicas` table), the assignment,
//!   claims of the accounts assigned here, and handovers when a replica
//!   joins or leaves.
//! - `assign.rs`: [`assign`], the pure, balanced, deterministic assignment
//!   of accounts to live replicas (bounded-load rendezvous hashing).
//! - `fence.rs`: [`Fence`], the actuator's check right before every
//!   Talkdesk write: this process still holds the current epoch, the lease
//!   outlives the request, and the write is recorded under the epoch.
//!
//! A SQLite store serves one replica: its claim always succeeds, and its
//! membership lists only itself, through the same code paths (the epoch
//! counts its terms).

mod assign;
mod fence;
mod leadership;
mod shard;

pub use assign::assign;
pub use fence::Fence;
pub use leadership::{Leadership, LeadershipTask, spawn};
pub use shard::{ShardAccount, spawn_sharded, tick};
