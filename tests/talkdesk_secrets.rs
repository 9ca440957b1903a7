//! Secrets (the client secret, its Basic-auth encoding, access tokens) never
//! appear in logs, errors, Debug output, audit records or the status.

mod talkdesk_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use continuity_agent::domain::{Desired, FallbackSettings, Profile};
use continuity_agent::talkdesk::simulator::{Fault, FaultOp};
use continuity_agent::talkdesk::{Actuator, Client};
use continuity_agent::telemetry::Metrics;
use continuity_agent::telemetry::audit::NoAudit;
use talkdesk_support::*;

/// Log lines land here; a `MakeWriter` for the test subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// current_thread (the default): every task, including the simulator and
// reqwest's connection tasks, logs into the thread-local subscriber below.
#[tokio::test]
async fn talkdesk_secrets_never_reach_logs_errors_or_audit() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = Env::new().await;
    let mut seen = Vec::<String>::new();

    // A full cycle with failures on the way: 503, an expired token (401 and
    // refresh), a validation error with field details.
    env.sim()
        .inject(Fault::status(FaultOp::PutSettings, 503, 1));
    let mut profiles = profiles();
    profiles.insert(
        "broken".into(),
        Profile {
            name: "broken".into(),
            settings: FallbackSettings {
                default: Some("not-a-number".into()),
                ..backup()
            },
        },
    );
    let actuator = Actuator::new(
        env.client.clone(),
        fast_options(),
        profiles,
        env.metrics.clone(),
        Arc::new(env.audit.clone()),
    );
    let run = spawn_with(actuator, active("backup"));
    run.converged(&active("backup")).await;
    env.sim().expire_tokens();
    run.set(Desired::Inactive);
    run.converged(&Desired::Inactive).await;
    run.set(active("broken"));
    let status = run.wait("blocked", |s| s.blocked).await;
    seen.push(serde_json::to_string(&status).unwrap());
    seen.push(format!("{status:?}"));
    run.stop().await;

    // Errors from the client, both renderings.
    env.sim()
        .inject(Fault::status(FaultOp::GetSettings, 500, 1));
    let err = env.client.get_settings().await.unwrap_err();
    seen.push(err.to_string());
    seen.push(format!("{err:?}"));
    let mut wrong = client_config(&env.server);
    wrong.client_secret = format!("{SECRET}-wrong").into();
    let bad = Client::new(wrong, Metrics::new().account("default"), Arc::new(NoAudit)).unwrap();
    let err = bad.get_activation().await.unwrap_err();
    seen.push(err.to_string());
    seen.push(format!("{err:?}"));

    // Debug of the config and the client.
    seen.push(format!("{:?}", client_config(&env.server)));
    seen.push(format!("{:?}", env.client));
    seen.push(format!("{:?}", env.sim().options()));

    // Audit records and the simulator's journal.
    for r in env.audit.records() {
        seen.push(serde_json::to_string(&r).unwrap());
    }
    seen.push(serde_json::to_string(&env.sim().journal()).unwrap());
    seen.push(env.registry.render());

    tokio::time::sleep(Duration::from_millis(50)).await;
    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("Talkdesk call"), "log capture works: {log}");
    assert!(log.contains("forward"), "field errors are logged");
    seen.push(log);

    let tokens = env.sim().issued_tokens();
    assert!(tokens.len() >= 2, "a refresh happened");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("demo:{SECRET}"));
    let mut secrets = vec![SECRET.to_string(), basic];
    secrets.extend(tokens);
    for text in &seen {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "secret {secret:?} leaked into: {text}"
            );
        }
    }
}

#[test]
fn talkdesk_config_debug_is_redacted() {
    let cfg = continuity_agent::talkdesk::ClientConfig::for_simulator(
        "http://127.0.0.1:1",
        "demo",
        SECRET,
    );
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains(SECRET), "{dbg}");
    assert!(dbg.contains("REDACTED"), "{dbg}");
}
