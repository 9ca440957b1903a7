/// Why a store call failed. Messages never contain a password: the store URL
/// is not echoed, and the drivers' errors do not include credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL statement failed, including a connection lost mid-call.
    #[error("postgres: {}", chain(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had (server down, timeout, auth, TLS).
    #[error("postgres connection: {}", chain(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// `store.url` (or the TLS files it names) cannot be used.
    #[error("store.url: {0}")]
    Config(String),
    #[error("stored data is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "store database was written by a newer version (schema {found}, this build knows {known})"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// The store was opened read-only (`OpenOutcome::ReadOnly`), and what
    /// was asked needs writes. The text `/readyz` answers with.
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    /// A damaged SQLite file that could not be moved aside.
    #[error("store file is damaged: {0}")]
    Damaged(String),
    /// An input append could not commit by its deadline: it was rolled
    /// back (or never begun), so nothing of it was kept.
    #[error("the store could not commit the inputs by their deadline; nothing was kept")]
    Deadline,
    #[error("{0}")]
    Unsupported(String),
    #[error("store task failed: {0}")]
    Join(String),
}

/// An error and its causes on one line. The PostgreSQL driver's `Display`
/// says only the kind ("db error", "error performing TLS handshake"); the
/// server's message or the certificate problem is in `source()`, and that is
/// what an operator needs. Causes already included in the text are skipped.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    text
}
