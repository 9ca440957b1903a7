//! `[store]` and `[cluster]`: where state lives and who may write it.

use super::shared::IDENT;
use crate::config::load::Cx;
use crate::config::schema::*;

pub(super) fn store(cx: &mut Cx, s: &StoreConfig, cluster: Option<&ClusterConfig>) {
    let postgres = s.url.starts_with("postgres://") || s.url.starts_with("postgresql://");
    if let Some(path) = s.url.strip_prefix("sqlite://") {
        if path.is_empty() {
            cx.err(
                "store.url",
                "sqlite:// needs a file path, e.g. sqlite://state/continuity-agent.db",
            );
        }
    } else if !postgres {
        cx.err(
            "store.url",
            format!("{:?}: use sqlite://PATH or postgres://USER@HOST/DB", s.url),
        );
    } else {
        // Honest rather than a surprise at `run`: a config that validates must run.
        cx.err(
            "store.url",
            "the PostgreSQL store (several replicas with leader election) is not available in this build yet; use sqlite://PATH",
        );
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
