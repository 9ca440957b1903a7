//! A private, throw-away PostgreSQL server for tests: `initdb` into a
//! temporary directory, `pg_ctl start` on a free port on 127.0.0.1 only
//! (Unix socket in the same directory), password authentication (SCRAM), and
//! fsync off. It never touches a system server, so the tests run the same
//! where none is installed or running.
//!
//! - **Required:** if the server binaries are missing the test FAILS and says
//!   to run `scripts/test` (which installs the Debian package `postgresql`).
//!   Set `PG_BIN=/path/to/bin` to use other binaries.
//! - **Unprivileged:** PostgreSQL refuses to run as root, and CI runs as root;
//!   then the server runs as the `postgres` system user (created by the
//!   Debian package), which owns the temporary directory.
//! - **Never outlives the test:** `Drop` stops it (`-m immediate`) and removes
//!   the directory, also when the test panics. A panic=abort, a `kill -9` of
//!   the test process or a nextest timeout skip `Drop`, so each server also
//!   has a watchdog: a small shell loop, started with the server, that stops
//!   it and removes the directory once the test process is gone (checked
//!   every second).
//! - Each test gets its own server (nextest runs each test in its own
//!   process anyway) and a fresh database from `database()`; `restart`,
//!   `stop`, `start_again` and `terminate_backends` are the failures replicas
//!   must survive.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

pub struct PgServer {
    bin: PathBuf,
    dir: TempDir,
    /// `Some((uid, gid))` of `postgres` when this process is root.
    run_as: Option<(u32, u32)>,
    pub port: u16,
    /// The superuser (`postgres`)'s password.
    pub password: String,
    watchdog: Option<Child>,
}

impl PgServer {
    /// initdb + start; panics with a clear message when it cannot.
    pub fn start() -> PgServer {
        PgServer::start_with(false)
    }

    /// Like `start`, and the server also accepts TLS with a certificate for
    /// `IP:127.0.0.1` only, issued by a test CA (`ca_cert()`).
    pub fn start_with_tls() -> PgServer {
        PgServer::start_with(true)
    }

    fn start_with(tls: bool) -> PgServer {
        let bin = pg_bin();
        let run_as = unprivileged_user();
        let dir = tempfile::Builder::new()
            .prefix("continuity-pg-")
            .tempdir()
            .expect("temporary directory");
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), Some(uid), Some(gid)).expect("chown the server directory");
        }
        let password = format!("pw-{:016x}", rand::random::<u64>());
        let mut server = PgServer {
            bin,
            dir,
            run_as,
            port: 0,
            password,
            watchdog: None,
        };
        server.start_watchdog();
        server.initdb();
        if tls {
            server.enable_tls();
        }
        // A port free now can be taken before the server binds it: retry.
        for attempt in 1..=5 {
            server.port = super::free_port();
            std::fs::write(
                server.data().join("harness.conf"),
                format!("port = {}\n", server.port),
            )
            .expect("write harness.conf");
            match server.pg_ctl(&["start", "-w", "-t", "60"]) {
                Ok(_) => return server,
                Err(e) if attempt == 5 => panic!("cannot start PostgreSQL: {e}"),
                Err(_) => continue,
            }
        }
        unreachable!()
    }

    /// The test CA's certificate (PEM), for `sslrootcert`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A CA and a server certificate made with the `openssl` CLI (installed
    /// with the `postgresql` package, through `ssl-cert`), and `ssl = on`.
    fn enable_tls(&self) {
        let d = self.dir.path();
        let ext = d.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n",
        )
        .expect("write server.ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let steps: [Vec<&str>; 3] = [
            [
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=continuity test CA",
                ],
            ]
            .concat(),
            [
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=test server",
                ],
            ]
            .concat(),
            vec![
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(&args)
                .current_dir(d)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("the TLS tests need the openssl CLI: {e}"));
            check("openssl", &out).unwrap_or_else(|e| panic!("{e}"));
        }
        for file in ["server.key", "server.crt", "ca.crt"] {
            if let Some((uid, gid)) = self.run_as {
                chown(d.join(file), Some(uid), Some(gid)).expect("chown");
            }
        }
        std::fs::set_permissions(
            d.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod server.key");
        let conf = format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            d.join("server.crt").display(),
            d.join("server.key").display()
        );
        let path = self.data().join("postgresql.conf");
        let text = std::fs::read_to_string(&path).expect("read conf") + &conf;
        std::fs::write(path, text).expect("write conf");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn initdb(&self) {
        let pwfile = self.dir.path().join("pwfile");
        std::fs::write(&pwfile, &self.password).expect("write pwfile");
        if let Some((uid, gid)) = self.run_as {
            chown(&pwfile, Some(uid), Some(gid)).expect("chown pwfile");
        }
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", "postgres", "--auth=scram-sha-256", "--pwfile"])
            .arg(&pwfile)
            .args(["-E", "UTF8", "--no-locale", "--no-sync"])
            .output()
            .expect("run initdb");
        check("initdb", &out).unwrap_or_else(|e| panic!("{e}"));
        // max_connections: three replicas with many accounts each grow their
        // pool to 16 connections plus one LISTEN connection (tests/sharding.rs).
        let conf = format!(
            "\n# test harness\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nfull_page_writes = off\nshared_buffers = 16MB\nmax_connections = 80\n\
             include_if_exists = 'harness.conf'\n",
            self.dir.path().display()
        );
        let mut text =
            std::fs::read_to_string(self.data().join("postgresql.conf")).expect("read conf");
        text.push_str(&conf);
        std::fs::write(self.data().join("postgresql.conf"), text).expect("write conf");
    }

    /// Stops the server and removes its directory once this process is gone,
    /// whatever way it went. Started before `initdb`, and it stops the server
    /// several times over a few seconds: a test killed while `initdb` or
    /// `pg_ctl start` ran leaves those children running for a moment.
    fn start_watchdog(&mut self) {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \
             for round in 1 2 3; do \
               '{pg_ctl}' -D '{data}' stop -m immediate >/dev/null 2>&1; sleep 1; \
             done; rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data().display(),
            dir = self.dir.path().display(),
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: nextest's timeout kills the test's
            // group, and a Ctrl-C reaches the whole foreground group; the
            // watchdog must outlive both to clean up.
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        self.watchdog = Some(cmd.spawn().expect("start the watchdog"));
    }

    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).env("HOME", self.dir.path());
        }
        cmd
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(args)
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        check("pg_ctl", &out).map_err(|e| format!("{e}\nserver log:\n{}", self.log()))
    }

    /// The temporary directory holding the data, socket and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A URL for `db` as the superuser, TLS off (the test server has none).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}?sslmode=disable",
            self.password, self.port
        )
    }

    /// The same URL without the password (for `store.password_file` tests).
    pub fn url_without_password(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A superuser connection to `db`.
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
        tokio::spawn(conn);
        client
    }

    /// Creates a fresh database `t_<random>` and returns its name.
    pub async fn database(&self) -> String {
        let name = format!("t_{:016x}", rand::random::<u64>());
        self.connect("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        name
    }

    /// `pg_terminate_backend` on every other connection to `db`, waiting until
    /// each is gone; returns how many there were.
    pub async fn terminate_backends(&self, db: &str) -> i64 {
        let admin = self.connect("postgres").await;
        let row = admin
            .query_one(
                "SELECT count(*) FROM (
                     SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()) t",
                &[&db],
            )
            .await
            .expect("terminate backends");
        row.get(0)
    }

    /// `pg_ctl restart -m fast`: every connection is dropped.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-w", "-t", "60", "-m", "fast"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-w", "-t", "60", "-m", "fast"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the stopped server again, on the same port.
    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-w", "-t", "60"])
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        // TempDir removes the directory.
    }
}

fn check(what: &str, out: &Output) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The directory holding `initdb` and `pg_ctl`: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian), else wherever `initdb` is on PATH.
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: the store tests need a real \
             PostgreSQL. Run scripts/test (it installs the Debian package `postgresql`), or set \
             PG_BIN=/path/to/postgresql/bin."
        )
    })
}

/// The `postgres` user's ids when this process is root (PostgreSQL will not
/// run as root), `None` otherwise.
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let ids = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    });
    Some(ids.unwrap_or_else(|| {
        panic!(
            "running as root, and there is no `postgres` user to run the test server as \
             (PostgreSQL refuses root). Run scripts/test: it installs the Debian package \
             `postgresql`, which creates that user."
        )
    }))
}
