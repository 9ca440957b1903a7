//! What the footprint and HTTP harnesses share: finding (or building) the
//! agent binary, installing a Debian peer, reading another process's CPU
//! time and memory from `/proc/PID`, starting the Talkdesk simulator, and
//! writing a BENCHMARKS.md section.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use continuity_agent::talkdesk::simulator::{self, SimServer, Simulator};

/// The options every part takes (`--quick`, `--markdown FILE`), plus its own.
pub struct Args {
    pub quick: bool,
    pub markdown: Option<PathBuf>,
    /// Options this part knows, as `(name, value)`.
    pub rest: Vec<(String, String)>,
}

impl Args {
    /// `own` lists the part's options that take a value.
    pub fn parse(own: &[&str]) -> Result<Args, String> {
        let mut args = std::env::args().skip(1);
        let (mut quick, mut markdown, mut rest, mut bench) = (false, None, Vec::new(), false);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--markdown" => {
                    markdown = Some(PathBuf::from(args.next().ok_or("--markdown needs a file")?))
                }
                // `cargo bench` adds it; `cargo test --benches` does not.
                "--bench" => bench = true,
                name if own.contains(&name) => {
                    let v = args.next().ok_or(format!("{name} needs a value"))?;
                    rest.push((name.to_string(), v));
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        // Under `cargo test --benches` (no --bench) only the smoke run.
        Ok(Args {
            quick: quick || !bench,
            markdown,
            rest,
        })
    }

    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.rest.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => v.parse().map_err(|_| format!("{name} {v:?}")),
            None => Ok(default),
        }
    }
}

/// The agent binary: `CONTINUITY_AGENT_BIN` (bench/run.sh builds it), else
/// `target/release/continuity-agent`, built first when missing.
pub fn agent_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CONTINUITY_AGENT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/continuity-agent");
    if !bin.exists() {
        eprintln!("building {} (cargo build --release)", bin.display());
        let ok = Command::new(env!("CARGO"))
            .args(["build", "--release", "--bin", "continuity-agent"])
            .current_dir(root)
            .status()
            .map_err(|e| format!("cargo build: {e}"))?
            .success();
        if !ok {
            return Err("cargo build --release failed".into());
        }
    }
    Ok(bin)
}

/// `binary` on the PATH, installed from Debian's `package` when missing.
pub fn ensure_installed(binary: &str, package: &str) -> Result<PathBuf, String> {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(binary))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("installing {package} (apt-get)");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("apt-get: {e}"))?
        .success();
    match find() {
        Some(p) if ok => Ok(p),
        _ => Err(format!(
            "{binary} not found and apt-get install {package} failed"
        )),
    }
}

/// The first line of `binary --version` (peers print theirs on stderr).
pub fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}

/// A child process that is killed (and reaped) when dropped.
pub struct Proc {
    pub child: Child,
    pub started: Instant,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Result<Proc, String> {
        let started = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        Ok(Proc { child, started })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system, every thread) and memory so far.
    pub fn usage(&self) -> Usage {
        Usage::of(self.pid())
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(mut self) {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One reading of a process's counters in /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// utime + stime of every thread (`/proc/PID/stat`).
    pub cpu: Duration,
    /// `VmRSS`, bytes.
    pub rss: u64,
    pub threads: u64,
}

impl Usage {
    pub fn of(pid: u32) -> Usage {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may
        // hold spaces: utime and stime are fields 14 and 15 (1-based).
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let ticks = tick(11) + tick(12);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Usage {
            cpu: Duration::from_micros(ticks * 1_000_000 / hz),
            rss: kib("VmRSS:") * 1024,
            threads: kib("Threads:"),
        }
    }
}

/// The Talkdesk simulator on loopback (its demo credentials, `demo` /
/// `demo-secret`), on a runtime of its own so its CPU is not the agent's.
pub struct Talkdesk {
    pub base: String,
    _server: SimServer,
    _rt: tokio::runtime::Runtime,
}

impl Talkdesk {
    pub fn start() -> Result<Talkdesk, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sim")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let server = rt
            .block_on(simulator::spawn(
                Simulator::default(),
                "127.0.0.1:0".parse().expect("an address"),
            ))
            .map_err(|e| format!("simulator: {e}"))?;
        Ok(Talkdesk {
            base: server.base_url(),
            _server: server,
            _rt: rt,
        })
    }

    /// The environment that points an agent's `[talkdesk]` at it.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("TALKDESK__API_BASE", self.base.clone()),
            ("TALKDESK__TOKEN_URL", format!("{}/oauth/token", self.base)),
            ("TALKDESK__CLIENT_ID", "demo".into()),
            ("TALKDESK__CLIENT_SECRET", "demo-secret".into()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("CONTINUITY_AGENT_{k}"), v))
        .collect()
    }
}

/// Polls `url` until it answers 200; the time it took from `since`.
pub fn wait_ok(url: &str, since: Instant, limit: Duration) -> Result<Duration, String> {
    let deadline = since + limit;
    loop {
        if http_status(url) == Some(200) {
            return Ok(since.elapsed());
        }
        if Instant::now() > deadline {
            return Err(format!("{url} did not answer 200 within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A blocking HTTP/1.0 GET on loopback, without a client library (the
/// harness's own cost stays out of the way): the status code, if any.
pub fn http_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The median (the lower middle for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.get((v.len().max(1) - 1) / 2).copied()
}

/// `nproc` and the 1-minute load average, for the section's machine line.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!("{cores} cores (`nproc`), load average {load} at the start")
}

/// Writes a BENCHMARKS.md section to `path` (and always prints it).
pub fn write_section(path: Option<&Path>, section: &str) -> Result<(), String> {
    println!("{section}");
    if let Some(p) = path {
        std::fs::write(p, section).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
