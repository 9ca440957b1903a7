//! `[store]` and `[cluster]`: where state lives and who may write it.
//! `[cluster]` needs a postgres store; its timings must let a leader step
//! down before its lease can pass on, and let a write fit in the lease.

use std::path::Path;

use super::secrets::secret;
use super::shared::IDENT;
use crate::config::Dur;
use crate::config::load::Cx;
use crate::config::schema::*;

pub(super) fn store(
    cx: &mut Cx,
    s: &mut StoreConfig,
    cluster: Option<&ClusterConfig>,
    base: &Path,
) {
    super::shared::duration_range(
        cx,
        "store.audit_retention",
        s.audit_retention.get(),
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_secs(10 * 366 * 24 * 3600),
    );
    let postgres = s.url.starts_with("postgres://") || s.url.starts_with("postgresql://");
    if let Some(path) = s.url.strip_prefix("sqlite://") {
        if path.is_empty() {
            cx.err(
                "store.url",
                "sqlite:// needs a file path, e.g. sqlite://state/continuity-agent.db",
            );
        } else if Path::new(path).is_relative() {
            // Like `*_file` secrets: relative to the configuration file, so
            // the state does not move with the directory `run` starts in.
            s.url = format!("sqlite://{}", base.join(path).display());
        }
        if s.password_file.is_some() {
            cx.err(
                "store.password_file",
                "only a postgres:// store has a password",
            );
        }
    } else if !postgres {
        cx.err(
            "store.url",
            "use sqlite://PATH or postgres://USER@HOST/DB (the value is not shown: it may hold a password)",
        );
    } else {
        secret(
            cx,
            "store.password",
            &mut s.password,
            &s.password_file,
            base,
            false,
        );
        // The store's own parser: check-config refuses exactly what `run` would.
        if let Err(why) = crate::store::postgres::ConnectOptions::parse(&s.url, s.password.as_ref())
        {
            cx.err("store.url", why);
        }
    }
    if let Some(c) = cluster {
        if !postgres {
            cx.err("cluster", "[cluster] needs a postgres store: replicas share state and elect a leader through PostgreSQL");
        }
        if !IDENT.is_match(&c.instance_id) {
            cx.err(
                "cluster.instance_id",
                format!(
                    "{:?} must be 1-64 letters, digits, '.', '_' or '-'",
                    c.instance_id
                ),
            );
        }
        if c.renew_deadline >= c.lease_ttl {
            cx.err(
                "cluster.renew_deadline",
                format!("must be shorter than lease_ttl ({} >= {}): a leader must step down before its lease can pass to another", c.renew_deadline, c.lease_ttl),
            );
        }
    }
}

/// An account's `talkdesk.request_timeout` must fit in the lease (checked
/// for each account: every account's writes are fenced by a lease with
/// `[cluster]`'s timings).
pub(super) fn request_fits_lease(
    cx: &mut Cx,
    cluster: Option<&ClusterConfig>,
    request_timeout: Dur,
) {
    let Some(c) = cluster else { return };
    // Renewed every lease_ttl / 3, a leader has at least 2/3 of the lease
    // left at steady state; a write is sent only while the lease outlives
    // it (cluster::Fence), so a longer request could never be sent.
    let steady = c.lease_ttl.get() - c.lease_ttl.get() / 3;
    if request_timeout.get() >= steady {
        cx.err(
            "talkdesk.request_timeout",
            format!("must be shorter than 2/3 of cluster.lease_ttl ({request_timeout} with lease_ttl {}): a write is sent only while the lease outlives it", c.lease_ttl),
        );
    }
}
