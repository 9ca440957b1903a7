//! The agent binary as a child process (`continuity-agent run -c FILE`), for
//! tests that need a real process: restarts, `kill -9`, signals.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

pub struct AgentProcess {
    child: Option<Child>,
    pub api: String,
    pub log: PathBuf,
}

impl AgentProcess {
    /// Starts `run -c config`; the config's `agent.listen` must be `127.0.0.1:{port}`.
    /// stderr (the logs) goes to `log` for post-mortems.
    pub fn spawn(config: &Path, port: u16, log: &Path) -> AgentProcess {
        Self::spawn_with(config, port, log, |_| {})
    }

    /// Like [`spawn`](Self::spawn) with a file-descriptor limit (soft and
    /// hard) of `nofile`, as a distribution's default unit would give it.
    pub fn spawn_with_nofile(config: &Path, port: u16, log: &Path, nofile: u64) -> AgentProcess {
        use std::os::unix::process::CommandExt;
        Self::spawn_with(config, port, log, move |cmd| {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: nofile,
                        rlim_max: nofile,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    /// Like [`spawn`](Self::spawn), bound by file permissions even as root
    /// (see [`without_dac_override`]).
    pub fn spawn_without_dac_override(config: &Path, port: u16, log: &Path) -> AgentProcess {
        Self::spawn_with(config, port, log, without_dac_override)
    }

    /// Like [`spawn`](Self::spawn) with extra environment variables (a
    /// failpoint, `continuity_agent::failpoint::ENV`).
    pub fn spawn_with_env(
        config: &Path,
        port: u16,
        log: &Path,
        env: &[(&str, &str)],
    ) -> AgentProcess {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn_with(config, port, log, move |cmd| {
            cmd.envs(env);
        })
    }

    fn spawn_with(
        config: &Path,
        port: u16,
        log: &Path,
        customize: impl FnOnce(&mut Command),
    ) -> AgentProcess {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_continuity-agent"));
        customize(&mut cmd);
        let child = cmd
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "continuity_agent=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn the agent");
        AgentProcess {
            child: Some(child),
            api: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.api)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the agent exited early ({status}); log:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not become ready; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id (for signals such as SIGSTOP/SIGCONT).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
            let _ = c.wait();
        }
    }

    /// Waits up to `within` for the agent to exit by itself; panics (with
    /// the log) if it is still running then.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent is still running after {within:?}; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        c.wait().expect("wait")
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the running agent.
    pub fn signal(&self, signal: libc::c_int) {
        let c = self.child.as_ref().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as libc::pid_t, signal);
        }
    }

    /// `GET path` with `token` as the bearer, the answer's JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A metric's value from `/metrics` (first series whose line starts with `prefix`).
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.api))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metric_in(&text, prefix)
    }

    /// Right after a restart (call it as soon as `/readyz` answers): the
    /// fallback is desired on and `rule` fires *before* this process could
    /// have decided that itself. A fresh engine needs `fall` failed results
    /// of `probe` (then the rule's `for`); one scrape shows the decision
    /// together with fewer failures than that, so only the snapshot restored
    /// from the store can have said it. Without this, a restart that lost
    /// the snapshot would pass too: it re-decides the same from the dead
    /// trunk, and Talkdesk already being on, writes nothing.
    pub async fn assert_restored_before_probes_decide(&self, probe: &str, rule: &str, fall: u32) {
        let text = reqwest::get(format!("{}/metrics", self.api))
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics body");
        let failures = metric_in(
            &text,
            &format!("continuity_probe_results_total{{probe=\"{probe}\",result=\"failure\"}} "),
        )
        .unwrap_or(0.0);
        let desired = metric_in(&text, "continuity_fallback_desired{account=\"default\"} ");
        let state = metric_in(
            &text,
            &format!("continuity_rule_state{{account=\"default\",rule=\"{rule}\"}} "),
        );
        assert!(
            failures < f64::from(fall),
            "{failures} failed probes before the first scrape: this process could have decided \
             by itself, so the scrape cannot tell a restore from a fresh start; log:\n{}",
            self.logs()
        );
        assert_eq!(
            (desired, state),
            (Some(1.0), Some(2.0)),
            "the decision was not restored (desired on, rule {rule} firing) after {failures} \
             failed probes; log:\n{}",
            self.logs()
        );
    }
}

/// The value of the first series in `text` whose line starts with `prefix`.
fn metric_in(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Makes `cmd`'s process obey file permissions like any user, also when the
/// tests run as root (CI): a 0444 file or a 0555 directory then refuses its
/// writes. Root ignores permissions through `CAP_DAC_OVERRIDE` (and
/// `CAP_DAC_READ_SEARCH`, `CAP_FOWNER`); dropping them from the bounding set
/// before `exec` leaves the program root without them. Needs `CAP_SETPCAP`
/// (root has it in a default container); a failure fails the spawn loudly,
/// never silently runs with the capabilities. Not root: nothing to drop.
pub fn without_dac_override(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // linux/capability.h
    const DROP: [libc::c_ulong; 3] = [
        1, // CAP_DAC_OVERRIDE
        2, // CAP_DAC_READ_SEARCH
        3, // CAP_FOWNER
    ];
    // SAFETY: geteuid and prctl are async-signal-safe; nothing else runs here.
    unsafe {
        cmd.pre_exec(|| {
            if libc::geteuid() != 0 {
                return Ok(());
            }
            for cap in DROP {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
