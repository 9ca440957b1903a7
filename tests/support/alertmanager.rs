//! A real Prometheus Alertmanager (Debian `prometheus-alertmanager`) as a
//! child process, killed on drop. If it is missing, tests FAIL with
//! instructions rather than skip (scripts/test installs it). Set
//! `ALERTMANAGER=/path/to/alertmanager` to use another binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn alertmanager_bin() -> String {
    let candidates = match std::env::var("ALERTMANAGER") {
        Ok(b) => vec![b],
        Err(_) => vec!["prometheus-alertmanager".into(), "alertmanager".into()],
    };
    for bin in &candidates {
        if Command::new(bin).arg("--version").output().is_ok() {
            return bin.clone();
        }
    }
    panic!(
        "Alertmanager is required for this test but none of {candidates:?} can run. \
         Install it (Debian/Ubuntu: `apt-get install prometheus-alertmanager`, or run scripts/test) \
         or set ALERTMANAGER=/path/to/alertmanager."
    );
}

pub struct Alertmanager {
    child: Child,
    pub api: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Alertmanager delivering to `webhook` with `Authorization: Bearer
/// token`. Alerts labelled `team="intruder"` go out with a wrong token
/// instead. Grouping is by alertname with no waiting, so deliveries are quick.
pub async fn start(webhook: &str, token: &str) -> Alertmanager {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
route:
  receiver: continuity
  group_by: ['alertname']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - receiver: intruder
      matchers: ['team="intruder"']
receivers:
  - name: continuity
    webhook_configs:
      - url: "{webhook}"
        send_resolved: true
        http_config:
          authorization:
            credentials: {token}
  - name: intruder
    webhook_configs:
      - url: "{webhook}"
        http_config:
          authorization:
            credentials: not-the-token
"#
    );
    let cfg_path = dir.path().join("alertmanager.yml");
    std::fs::write(&cfg_path, config).unwrap();
    let port = super::free_port();
    // Its log goes to a file (it logs refused deliveries as errors, which some
    // tests expect).
    let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
    let child = Command::new(alertmanager_bin())
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn alertmanager");
    let am = Alertmanager {
        child,
        api: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{}/-/ready", am.api)).send().await
            && r.status().is_success()
        {
            return am;
        }
        assert!(
            Instant::now() < deadline,
            "alertmanager did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Alertmanager {
    /// `POST /api/v2/alerts`.
    pub async fn post_alerts(&self, alerts: serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.api))
            .json(&alerts)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
}
