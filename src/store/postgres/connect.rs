//! `store.url` for PostgreSQL, parsed once into what the pool needs. The
//! config validation calls the same parser, so `check-config` reports exactly
//! what `run` would refuse.
//!
//! The URL is libpq's (`postgres://` or `postgresql://`, user, password,
//! host, port, database, query parameters), with these rules:
//! - `sslmode`: `disable`, `require` (the default), `verify-ca`,
//!   `verify-full`; `prefer` and `allow` are refused (they fall back to plain
//!   text silently). See `tls.rs` for what each checks.
//! - `sslrootcert`: a PEM file of trusted roots (relative to the working
//!   directory, like libpq), or `system` for the OS trust store (the default).
//! - the password comes from the URL or from `store.password_file`, not both.
//!
//! Errors never contain the URL: it may hold the password.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::tls::{self, Check, MakeRustls};

/// How long one connection attempt may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Unacknowledged data older than this drops the connection, so a
/// black-holed server fails calls instead of hanging them.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// What the connection does about TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    Off,
    On {
        check: Check,
        roots: Option<PathBuf>,
    },
}

/// A parsed, validated `store.url` (plus the password file's content).
#[derive(Clone)]
pub struct ConnectOptions {
    pub(super) pg: tokio_postgres::Config,
    pub(super) tls: Tls,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug already redacts the password.
        f.debug_struct("ConnectOptions")
            .field("pg", &self.pg)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ConnectOptions {
    /// Parses `url`; `password` is `store.password_file`'s content, if set.
    pub fn parse(url: &str, password: Option<&SecretString>) -> Result<ConnectOptions, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err("a PostgreSQL URL starts with postgres:// or postgresql://".into());
        }
        let mut sslmode = None;
        let mut sslrootcert = None;
        let mut rest = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "sslmode" => sslmode = Some(value.into_owned()),
                "sslrootcert" => sslrootcert = Some(value.into_owned()),
                _ => {
                    rest.append_pair(&key, &value);
                }
            }
        }
        let tls = tls_mode(sslmode.as_deref(), sslrootcert)?;
        let mut without_tls = parsed.clone();
        let rest = rest.finish();
        without_tls.set_query((!rest.is_empty()).then_some(rest.as_str()));
        let mut pg: tokio_postgres::Config = without_tls
            .as_str()
            .parse()
            .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        pg.ssl_mode(match tls {
            Tls::Off => tokio_postgres::config::SslMode::Disable,
            Tls::On { .. } => tokio_postgres::config::SslMode::Require,
        });
        if pg.get_hosts().is_empty() {
            return Err(
                "the URL names no host, e.g. postgres://agent@db.example.com/continuity".into(),
            );
        }
        if pg.get_user().is_none_or(str::is_empty) {
            return Err(
                "the URL names no user, e.g. postgres://agent@db.example.com/continuity".into(),
            );
        }
        match (pg.get_password().is_some(), password) {
            (true, Some(_)) => {
                return Err(
                    "the password is both in the URL and in store.password_file; keep one".into(),
                );
            }
            (false, Some(p)) => {
                pg.password(p.expose_secret());
            }
            _ => {}
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        if pg.get_tcp_user_timeout().is_none() {
            pg.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("continuity-agent");
        }
        Ok(ConnectOptions { pg, tls })
    }

    /// Builds the connection pool (no connection is made yet). Reads
    /// `sslrootcert` and the OS trust store, so a bad file fails here.
    pub(super) fn pool(&self, size: usize) -> Result<deadpool_postgres::Pool, String> {
        use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
        // Verified: a pooled connection is checked with a round trip before
        // it is handed out, so a connection the server dropped (restart,
        // pg_terminate_backend) is replaced instead of failing the call.
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        };
        let manager = match &self.tls {
            Tls::Off => {
                Manager::from_config(self.pg.clone(), tokio_postgres::NoTls, manager_config)
            }
            Tls::On { check, roots } => Manager::from_config(
                self.pg.clone(),
                MakeRustls(tls::client_config(*check, roots.as_deref())?),
                manager_config,
            ),
        };
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT * 2))
            .create_timeout(Some(CONNECT_TIMEOUT * 2))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| e.to_string())
    }

    /// `user@host:port/database`, for logs and `Debug` (never the password).
    pub fn target(&self) -> String {
        let host = match self.pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => String::new(),
        };
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        let user = self.pg.get_user().unwrap_or_default();
        let db = self.pg.get_dbname().unwrap_or(user);
        format!("{user}@{host}:{port}/{db}")
    }
}

fn tls_mode(sslmode: Option<&str>, sslrootcert: Option<String>) -> Result<Tls, String> {
    let roots = sslrootcert.filter(|r| r != "system").map(PathBuf::from);
    let check = match sslmode.unwrap_or("require") {
        "disable" => return Ok(Tls::Off),
        // As libpq: `require` with a root certificate checks the chain.
        "require" if roots.is_some() => Check::Chain,
        "require" => Check::Nothing,
        "verify-ca" => Check::Chain,
        "verify-full" => Check::ChainAndName,
        mode @ ("prefer" | "allow") => {
            return Err(format!(
                "sslmode={mode} silently falls back to an unencrypted connection; \
                 choose sslmode=disable, require, verify-ca or verify-full"
            ));
        }
        other => {
            return Err(format!(
                "unknown sslmode {other:?}; use disable, require, verify-ca or verify-full"
            ));
        }
    };
    Ok(Tls::On { check, roots })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_of(url: &str) -> Result<Tls, String> {
        ConnectOptions::parse(url, None).map(|o| o.tls)
    }

    #[test]
    fn sslmode_maps_to_a_check_and_never_to_a_silent_fallback() {
        let base = "postgres://agent@db.example.com/continuity";
        assert_eq!(tls_of(&format!("{base}?sslmode=disable")), Ok(Tls::Off));
        let on = |check| Ok(Tls::On { check, roots: None });
        assert_eq!(tls_of(base), on(Check::Nothing), "default is require");
        assert_eq!(
            tls_of(&format!("{base}?sslmode=require")),
            on(Check::Nothing)
        );
        assert_eq!(
            tls_of(&format!("{base}?sslmode=verify-ca")),
            on(Check::Chain)
        );
        assert_eq!(
            tls_of(&format!("{base}?sslmode=verify-full&sslrootcert=system")),
            on(Check::ChainAndName)
        );
        assert_eq!(
            tls_of(&format!("{base}?sslmode=require&sslrootcert=/etc/ca.pem")),
            Ok(Tls::On {
                check: Check::Chain,
                roots: Some(PathBuf::from("/etc/ca.pem"))
            })
        );
        for refused in ["prefer", "allow", "verify_full", ""] {
            let err = tls_of(&format!("{base}?sslmode={refused}")).unwrap_err();
            assert!(err.contains("sslmode"), "{refused}: {err}");
        }
    }

    #[test]
    fn the_tls_mode_reaches_the_driver() {
        use tokio_postgres::config::SslMode;
        let o = ConnectOptions::parse("postgres://a@h/d?sslmode=disable", None).unwrap();
        assert_eq!(o.pg.get_ssl_mode(), SslMode::Disable);
        let o = ConnectOptions::parse("postgresql://a@h/d?sslmode=verify-full", None).unwrap();
        assert_eq!(o.pg.get_ssl_mode(), SslMode::Require);
    }

    #[test]
    fn password_from_url_or_file_never_both_and_never_shown() {
        let file = SecretString::from("from-file-s3cret");
        let o = ConnectOptions::parse("postgres://agent@h:6543/db?sslmode=disable", Some(&file))
            .unwrap();
        assert_eq!(o.pg.get_password(), Some(&b"from-file-s3cret"[..]));
        assert_eq!(o.target(), "agent@h:6543/db");
        assert!(!format!("{o:?}").contains("s3cret"));

        let o = ConnectOptions::parse("postgres://agent:url-s3cret@h/db", None).unwrap();
        assert_eq!(o.pg.get_password(), Some(&b"url-s3cret"[..]));
        assert!(!format!("{o:?}").contains("s3cret"));

        let err =
            ConnectOptions::parse("postgres://agent:url-s3cret@h/db", Some(&file)).unwrap_err();
        assert!(err.contains("password_file"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn errors_name_the_problem_not_the_url() {
        for (url, want) in [
            ("postgres://:s3cret@/db", "host"),
            ("postgres://:s3cret@h/db", "user"),
            ("postgres://a:s3cret@h:notaport/db", "URL"),
            ("postgres://a:s3cret@h/db?bogus_option=1", "URL"),
            ("mysql://a:s3cret@h/db", "postgres://"),
        ] {
            let err = ConnectOptions::parse(url, None).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
            assert!(!err.contains("s3cret"), "{url}: {err}");
        }
    }
}
