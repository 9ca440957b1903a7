//! Alert to Talkdesk (issue 13): an Alertmanager delivery POSTed for a rule
//! with `for = "0s"` until the Talkdesk simulator receives the first write.
//!
//! The agent binary runs as a child process (SQLite store on disk, logs at
//! `info`); the simulator runs in this process over real HTTP, and its
//! journal watch says when a call arrived (no polling). Each trial: POST the
//! firing delivery (the clock starts before the request is sent), wait for
//! the first write, wait for the activation, POST the resolved delivery and
//! wait for the deactivation (`clear_for` and `min_active` are 0), so every
//! trial starts from the fallback off. The 202's own latency is reported
//! beside it.
//!
//!   cargo bench --bench latency -- [--quick] [--markdown FILE] [--trials N]
//!
//! `--quick`: 20 trials, no timing assertions. `TMPDIR=/dev/shm` puts the
//! store on tmpfs, to see what the disk's fsync costs.

#[path = "common/harness.rs"]
mod harness;
#[path = "common/world.rs"]
mod world;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use harness::{Options, Section, percentile};
use world::{Agent, TOKEN, Talkdesk, activation, alertmanager_payload, config_head};

fn main() -> ExitCode {
    let opts = Options::parse();
    let mut trials = opts.pick(1000, 20);
    let mut it = opts.rest.iter();
    while let Some(a) = it.next() {
        if a == "--trials" {
            trials = it.next().and_then(|v| v.parse().ok()).unwrap_or(trials);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(trials)) {
        Ok(m) => {
            report(&opts, trials, &m);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench latency: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Measured {
    /// POST sent -> first Talkdesk write seen, per trial (ms).
    first_write: Vec<f64>,
    /// POST sent -> 202 received (ms).
    answered: Vec<f64>,
}

async fn run(trials: usize) -> Result<Measured, String> {
    let bin = harness::agent_bin();
    let mut talkdesk = Talkdesk::start().await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = harness::free_port();
    let toml = format!(
        r#"{head}
[[rules]]
name = "voice-down"
profile = "backup"
for = "0s"
clear_for = "0s"
min_active = "0s"
when = {{ alert = ['alertname="TalkdeskVoiceDown"'] }}
"#,
        head = config_head(port, dir.path(), &talkdesk.base_url()),
    );
    let mut agent = Agent::spawn(&bin, dir.path(), port, &toml);
    let http = reqwest::Client::new();
    agent.wait_ready(&http).await;
    let url = format!("{}/v1/alerts/alertmanager", agent.base());
    let post = |body: String| {
        http.post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let limit = Duration::from_secs(10);
    let mut m = Measured {
        first_write: Vec::with_capacity(trials),
        answered: Vec::with_capacity(trials),
    };
    for serial in 0..trials as u64 {
        talkdesk.sim.clear_journal();
        let body = alertmanager_payload("TalkdeskVoiceDown", 10, true, serial);
        let sent = Instant::now();
        let r = post(body).await.map_err(|e| e.to_string())?;
        let answered = sent.elapsed();
        if r.status().as_u16() != 202 {
            return Err(format!("firing delivery answered {}", r.status()));
        }
        let Some(first) = talkdesk.wait_call(limit, |e| e.is_write()).await else {
            return Err(format!("trial {serial}: no write:\n{}", agent.logs()));
        };
        m.first_write.push(ms(first.duration_since(sent)));
        m.answered.push(ms(answered));
        if talkdesk
            .wait_call(limit, |e| activation(e, true))
            .await
            .is_none()
        {
            return Err(format!("trial {serial}: never on:\n{}", agent.logs()));
        }
        talkdesk.sim.clear_journal();
        let body = alertmanager_payload("TalkdeskVoiceDown", 10, false, serial);
        let r = post(body).await.map_err(|e| e.to_string())?;
        if r.status().as_u16() != 202 {
            return Err(format!("resolved delivery answered {}", r.status()));
        }
        if talkdesk
            .wait_call(limit, |e| activation(e, false))
            .await
            .is_none()
        {
            return Err(format!(
                "trial {serial}: never off:\n{}\njournal: {:?}",
                agent.logs(),
                talkdesk.sim.journal()
            ));
        }
    }
    Ok(m)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(opts: &Options, trials: usize, m: &Measured) {
    let spread = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        [50.0, 99.0, 100.0].map(|p| format!("{:.2} ms", percentile(&s, p)))
    };
    let store = std::env::temp_dir().display().to_string();
    let mut sec = Section::new(
        "Alert to Talkdesk: webhook -> first Talkdesk write",
        &format!(
            "cargo bench --bench latency --{}",
            if opts.quick { " --quick" } else { "" }
        ),
        &[],
    );
    sec.para(&format!(
        "{trials} trials on loopback, one at a time: a 10-alert Alertmanager delivery for a rule with \
         `for = \"0s\"`, from the moment the request is sent until the Talkdesk simulator has the \
         first write. Release agent binary, SQLite store in `{store}` (`synchronous = FULL`), logs at \
         `info`. Target: p99 <= 5 ms."
    ));
    let w = spread(&m.first_write);
    let a = spread(&m.answered);
    sec.table(
        &["", "p50", "p99", "max"],
        &[
            vec![
                "POST -> first Talkdesk write".into(),
                w[0].clone(),
                w[1].clone(),
                w[2].clone(),
            ],
            vec![
                "POST -> 202".into(),
                a[0].clone(),
                a[1].clone(),
                a[2].clone(),
            ],
        ],
    );
    sec.finish(opts);
}
