//! Versioned schema migrations, embedded in the binary and applied at start.
//!
//! Each migration is one SQL file under `migrations/`, applied once, in
//! order, and recorded in `schema_migrations`. Every version is tracked on
//! its own (not only the highest), so a version merged later than a higher
//! one (branches developed side by side) is still applied. All of it runs in one
//! transaction holding a transaction-level advisory lock, so replicas that
//! start together apply each migration exactly once (the others wait, then
//! find nothing left to do), and a failed migration leaves nothing behind.
//! A database migrated by a newer build is refused: this build cannot know
//! what the newer schema means.
//!
//! To change the schema, add `NNNN_name.sql` and a line to `MIGRATIONS`;
//! never edit a migration that has been released.

use tokio_postgres::Client;

use crate::store::StoreError;

/// `(version, name, sql)`, versions strictly increasing.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("migrations/0001_initial.sql")),
    (2, "leases", include_str!("migrations/0002_leases.sql")),
    (3, "inputs", include_str!("migrations/0003_inputs.sql")),
    (4, "cluster", include_str!("migrations/0004_cluster.sql")),
];

/// The advisory lock key serializing migrations ("contagnt" in ASCII).
/// Advisory locks are per database, so unrelated databases never contend.
const LOCK_KEY: i64 = 0x636f_6e74_6167_6e74;

/// The newest schema version this build knows.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Every schema version this build applies, in order.
pub fn versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|m| m.0).collect()
}

/// Brings the database to `LATEST`, or refuses a newer one.
pub async fn apply(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<i64> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let found = applied.iter().copied().max().unwrap_or(0);
    if found > LATEST {
        return Err(StoreError::SchemaTooNew {
            found,
            known: LATEST,
        });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| !applied.contains(&m.0)) {
        tracing::info!(message = "Applying store migration.", version, name);
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Versions start at 1 and increase strictly (a gap is allowed: every
    /// version is tracked on its own, see the module docs).
    #[test]
    fn versions_increase_strictly_from_one() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions[0], 1);
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    }
}
