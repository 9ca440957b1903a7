//! Opening the SQLite file. Two conditions found at start must not become a
//! crash loop (exit 1, restart, exit 1...), since the agent would then not
//! even show its status:
//!
//! - **Damaged**: the file is not a SQLite database, `PRAGMA quick_check`
//!   finds it broken, or its tables are not what its recorded schema version
//!   promises, so the migrations' fixed SQL fails on them. The file (and its
//!   `-wal`, `-shm`) is renamed to `<name>.damaged-<UTC time>` next to it,
//!   logged at ERROR with both paths, and a fresh file is created. The daemon
//!   audits and counts it (`daemon/run.rs`); the engine starts fresh, and the
//!   `StartGate` keeps the actuator from switching anything off blindly.
//!   What was in the file (the decision, audit records, queued inputs) is in
//!   the moved file, for `sqlite3`.
//! - **Read-only**: the file, its directory or the filesystem refuses writes.
//!   The file is opened read-only: the engine is restored for display, and
//!   status, events and metrics are served. Every write fails, the lease
//!   claim included, so this replica never leads, never starts its actuator
//!   and never writes to Talkdesk (the fence is a store write too): nothing
//!   can be persisted, so nothing may be actuated (persist before actuate).
//!   `/readyz` answers 503 "store is read-only: ...".
//!
//! Not damage, and still a failed start: a file written by a newer build
//! (that refusal protects its data), a busy or locked file (another process
//! has it), a full disk or an I/O error (they say nothing about the data).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{SCHEMA_VERSION, migrate, schema_version};
use crate::store::{OpenOutcome, StoreError};

/// How long a statement waits for another connection's lock.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the file could not be opened for writing, by what is done about it.
enum Refusal {
    /// Moved aside, and a fresh file made (the reason).
    Damaged(String),
    /// Opened read-only instead (if the file exists and can be read).
    ReadOnly(StoreError),
    /// The start fails.
    Other(StoreError),
}

impl Refusal {
    fn into_error(self) -> StoreError {
        match self {
            Refusal::Damaged(reason) => StoreError::Damaged(reason),
            Refusal::ReadOnly(e) | Refusal::Other(e) => e,
        }
    }
}

/// Opens `path` for the store (see the module docs).
pub(super) fn open(path: &Path) -> Result<(Connection, OpenOutcome), StoreError> {
    match open_writable(path) {
        Ok(conn) => Ok((conn, OpenOutcome::Writable)),
        Err(Refusal::Damaged(reason)) => recover(path, reason),
        Err(Refusal::ReadOnly(refused)) if path.is_file() => match open_read_only(path) {
            Ok((conn, opened)) => {
                let reason = match &refused {
                    StoreError::Sqlite(e) => e.to_string(),
                    other => other.to_string(),
                };
                tracing::error!(
                    message = "The store refuses writes (the file, its directory or the filesystem is read-only): serving read-only. The stored state is shown, nothing is applied to Talkdesk, /readyz answers 503.",
                    path = %path.display(),
                    %reason,
                    opened
                );
                Ok((conn, OpenOutcome::ReadOnly { reason }))
            }
            Err(Refusal::Damaged(reason)) => recover(path, reason),
            Err(Refusal::Other(e)) => Err(e),
            // Unreadable too: the first refusal says why it could not be written.
            Err(Refusal::ReadOnly(_)) => Err(refused),
        },
        Err(refusal) => Err(refusal.into_error()),
    }
}

/// The usual open: created if missing, WAL, `synchronous = FULL`, checked,
/// migrated.
fn open_writable(path: &Path) -> Result<Connection, Refusal> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Refusal::Other(e.into()))?;
    }
    check_header(path)?;
    let opened = Connection::open(path).and_then(|conn| {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    });
    let mut conn = opened.map_err(|e| classify(e.into(), false))?;
    // Checked before anything is written: a damaged file is moved aside as
    // it was found.
    check(&conn)?;
    let setup = |conn: &Connection| -> rusqlite::Result<()> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")
    };
    setup(&conn).map_err(|e| classify(e.into(), false))?;
    migrate(&mut conn).map_err(|e| classify(e, true))?;
    Ok(conn)
}

/// A second, read-only connection to a file `open` opened writable: WAL
/// lets it read while the writing connection waits for a lock (another
/// process's transaction), so the loop's reads of the input queue never
/// queue behind a slow write. Nothing is checked: the writer's open did.
pub(super) fn reader(path: &Path) -> Result<Connection, StoreError> {
    let uri = format!("{}?mode=ro", file_uri(path));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Read-only, without creating anything SQLite can do without. `mode=ro`
/// first: it also reads what a crash left in the `-wal`. Where that cannot
/// work (a read-only directory without a `-shm` to share), `immutable=1`:
/// the main file as it is, without locks; whatever a crash left in the
/// `-wal` is then not seen. Returns the connection and which way it was
/// opened.
fn open_read_only(path: &Path) -> Result<(Connection, &'static str), Refusal> {
    const SHARED: &str = "mode=ro";
    const IMMUTABLE: &str = "immutable=1";
    match open_with(path, SHARED) {
        Ok(conn) => Ok((conn, SHARED)),
        Err(Refusal::ReadOnly(_)) => Ok((open_with(path, IMMUTABLE)?, IMMUTABLE)),
        Err(refusal) => Err(refusal),
    }
}

fn open_with(path: &Path, param: &str) -> Result<Connection, Refusal> {
    let uri = format!("{}?{param}", file_uri(path));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags).map_err(|e| classify(e.into(), false))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(e.into(), false))?;
    check(&conn)?;
    // Garbage where the version should be is damage, as when migrating.
    let found = schema_version(&conn).map_err(|e| classify(e.into(), true))?;
    if found > SCHEMA_VERSION {
        return Err(Refusal::Other(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        }));
    }
    if found < SCHEMA_VERSION {
        return Err(Refusal::Other(StoreError::ReadOnly(format!(
            "its schema (version {found}) must be migrated to version {SCHEMA_VERSION}, which needs writes"
        ))));
    }
    Ok(conn)
}

/// `PRAGMA quick_check`: every page, record and b-tree well formed (the
/// full `integrity_check` also matches indexes to tables, which costs more
/// and finds nothing the agent would do differently).
fn check(conn: &Connection) -> Result<(), Refusal> {
    let problems = quick_check(conn).map_err(|e| match classify(e.into(), false) {
        Refusal::Damaged(reason) => Refusal::Damaged(format!("quick_check: {reason}")),
        other => other,
    })?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    // It lists up to 100 problems: the first few say enough.
    let shown: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
    Err(Refusal::Damaged(format!(
        "quick_check: {}",
        shown.join("; ")
    )))
}

/// What SQLite writes first in every database file.
const HEADER: &[u8; 16] = b"SQLite format 3\0";

/// A file that does not start with SQLite's header is no database, said
/// before SQLite opens it: SQLite would take a `-wal` next to it for its own
/// and delete it on closing, and it is evidence. An empty file is a new
/// database to SQLite; a file that cannot be read is left to SQLite's error.
fn check_header(path: &Path) -> Result<(), Refusal> {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut head = Vec::with_capacity(HEADER.len());
    if file
        .take(HEADER.len() as u64)
        .read_to_end(&mut head)
        .is_err()
    {
        return Ok(());
    }
    if head.is_empty() || head == HEADER {
        Ok(())
    } else {
        Err(Refusal::Damaged(
            "not a SQLite database (no SQLite header)".into(),
        ))
    }
}

/// The rows of `PRAGMA quick_check`: `ok`, or what is wrong.
fn quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// Sorts an error from opening, checking (`migrating` false) or migrating.
fn classify(error: StoreError, migrating: bool) -> Refusal {
    let StoreError::Sqlite(e) = &error else {
        return Refusal::Other(error);
    };
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            Refusal::Damaged(e.to_string())
        }
        // SQLite falls back to a read-only descriptor when the file cannot
        // be opened for writing (EACCES, EROFS); writes then fail with
        // READONLY, and a `-wal` or `-shm` it cannot create with CANTOPEN.
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            Refusal::ReadOnly(error)
        }
        // The migrations' fixed SQL failed ("no such table", "duplicate
        // column", a constraint): the tables are not those of the version
        // the file records.
        Some(ErrorCode::Unknown | ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch)
            if migrating =>
        {
            Refusal::Damaged(format!("the schema cannot be migrated: {e}"))
        }
        // A value of the wrong type where the schema version should be.
        None if migrating
            && matches!(
                e,
                rusqlite::Error::InvalidColumnType(..)
                    | rusqlite::Error::FromSqlConversionFailure(..)
            ) =>
        {
            Refusal::Damaged(format!("the schema version cannot be read: {e}"))
        }
        _ => Refusal::Other(error),
    }
}

/// Moves the damaged file aside and opens a fresh one in its place.
fn recover(path: &Path, reason: String) -> Result<(Connection, OpenOutcome), StoreError> {
    let moved_to = move_aside(path).map_err(|e| {
        StoreError::Damaged(format!(
            "{} ({reason}); moving it aside failed: {e}",
            path.display()
        ))
    })?;
    tracing::error!(
        message = "The store file is damaged: moved it aside and starting with a fresh store. The engine starts fresh; the decision, audit records and queued inputs it held are in the moved file.",
        path = %path.display(),
        moved_to = %moved_to.display(),
        %reason
    );
    let conn = open_writable(path).map_err(Refusal::into_error)?;
    Ok((
        conn,
        OpenOutcome::Recovered {
            path: path.to_path_buf(),
            moved_to,
            reason,
        },
    ))
}

/// Renames `path` to `<name>.damaged-<UTC time>` in its directory, and its
/// `-wal` and `-shm` alike (`<name>.damaged-<UTC time>-wal`), so `sqlite3`
/// opens the moved file with its WAL. Never replaces an existing file.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let target = with_suffix(path, &format!(".damaged-{stamp}"));
    // The main file first: if it cannot move, nothing did.
    for suffix in ["", "-wal", "-shm"] {
        let (from, to) = (with_suffix(path, suffix), with_suffix(&target, suffix));
        if !suffix.is_empty() && !from.exists() {
            continue;
        }
        if to.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists", to.display()),
            ));
        }
        std::fs::rename(&from, &to)?;
    }
    Ok(target)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// `file:` URI of `path` (RFC 3986: bytes other than unreserved ones and
/// `/` percent-encoded, so `?`, `#` and `%` in a name stay part of it).
fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Store, StoreError};

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Opens `path`, expects a recovery, checks the fresh store works, and
    /// returns the reason and where the file went.
    async fn recovered(path: &Path) -> (String, PathBuf) {
        let store = SqliteStore::open(path).await.unwrap();
        let OpenOutcome::Recovered {
            path: was,
            moved_to,
            reason,
        } = store.open_outcome()
        else {
            panic!("not recovered: {:?}", store.open_outcome());
        };
        assert_eq!(was, path);
        assert_eq!(store.load_snapshot().await.unwrap(), None, "fresh");
        store
            .save_snapshot(serde_json::json!({"n": 1}).into())
            .await
            .unwrap();
        (reason, moved_to)
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_moved_aside_with_its_wal_and_shm() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, b"not a database".repeat(100)).unwrap();
        std::fs::write(dir.path().join("state.db-wal"), b"wal").unwrap();
        std::fs::write(dir.path().join("state.db-shm"), b"shm").unwrap();
        let (reason, moved_to) = recovered(&path).await;
        assert!(reason.contains("not a SQLite database"), "{reason}");
        let name = moved_to.file_name().unwrap().to_string_lossy().into_owned();
        let stamp = name.strip_prefix("state.db.damaged-").expect(&name);
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").expect(stamp);
        assert_eq!(moved_to.parent(), Some(dir.path()));
        assert_eq!(
            std::fs::read(&moved_to).unwrap(),
            b"not a database".repeat(100)
        );
        assert_eq!(
            std::fs::read(with_suffix(&moved_to, "-wal")).unwrap(),
            b"wal"
        );
        assert_eq!(
            std::fs::read(with_suffix(&moved_to, "-shm")).unwrap(),
            b"shm"
        );
        // A healthy file opens as usual.
        let again = SqliteStore::open(&path).await.unwrap();
        assert_eq!(again.open_outcome(), OpenOutcome::Writable);
        assert_eq!(
            again.load_snapshot().await.unwrap(),
            Some(serde_json::json!({"n": 1}))
        );
    }

    #[tokio::test]
    async fn a_database_with_broken_pages_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE filler (x TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                 INSERT INTO filler SELECT printf('%0100d', i) FROM n;",
            )
            .unwrap();
        }
        // Overwrite pages past the schema (page 1) with noise.
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 16 * 4096, "{}", bytes.len());
        for (i, b) in bytes[4096 * 3..4096 * 12].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        let (reason, moved_to) = recovered(&path).await;
        assert!(reason.starts_with("quick_check: "), "{reason}");
        assert_eq!(std::fs::read(&moved_to).unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_schema_the_migrations_cannot_apply_to_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // Says version 1, has none of version 1's tables.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '1');
                 CREATE TABLE something_else (x);",
            )
            .unwrap();
        }
        let (reason, moved_to) = recovered(&path).await;
        assert!(reason.contains("cannot be migrated"), "{reason}");
        let moved = Connection::open(&moved_to).unwrap();
        let tables: i64 = moved
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'something_else'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "the moved file is the old one");
    }

    #[tokio::test]
    async fn a_newer_builds_file_is_refused_not_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(SqliteStore::open(&path).await.unwrap());
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
                [],
            )
            .unwrap();
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
        assert_eq!(names(dir.path()), ["state.db"]);
    }

    /// Another process writing to the file is no damage: the open fails
    /// (after the busy timeout) and the file stays.
    #[tokio::test]
    async fn a_file_locked_by_another_writer_is_not_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(SqliteStore::open(&path).await.unwrap());
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Sqlite(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)),
            "{err}"
        );
        other.execute_batch("ROLLBACK").unwrap();
        assert!(
            names(dir.path()).iter().all(|n| !n.contains("damaged")),
            "{:?}",
            names(dir.path())
        );
        assert_eq!(
            SqliteStore::open(&path).await.unwrap().open_outcome(),
            OpenOutcome::Writable
        );
    }

    #[test]
    fn file_uris_keep_every_byte_of_the_path() {
        assert_eq!(
            file_uri(Path::new("/var/lib/agent/state.db")),
            "file:/var/lib/agent/state.db"
        );
        assert_eq!(
            file_uri(Path::new("rel/a b?c#d%e.db")),
            "file:rel/a%20b%3Fc%23d%25e.db"
        );
    }

    /// A read-only open reads a file whose name needs escaping in a URI.
    #[tokio::test]
    async fn a_read_only_open_reads_the_current_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd ?#% name.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .save_snapshot(serde_json::json!({"n": 2}).into())
            .await
            .unwrap();
        drop(store);
        for param in ["mode=ro", "immutable=1"] {
            let conn = open_with(&path, param).unwrap_or_else(|_| panic!("{param}: not opened"));
            let snapshot: String = conn
                .query_row("SELECT snapshot FROM engine_state", [], |r| r.get(0))
                .unwrap();
            assert_eq!(snapshot, r#"{"n":2}"#, "{param}");
            let err = conn
                .execute("DELETE FROM engine_state", [])
                .expect_err("read-only");
            assert_eq!(
                err.sqlite_error_code(),
                Some(ErrorCode::ReadOnly),
                "{param}"
            );
        }
    }
}
