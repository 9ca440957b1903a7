//! The actuator against the simulator over real HTTP: idempotent writes in
//! the right order, retries through every transient failure, no retries for
//! rejections, drift handling, dry run, fencing and shutdown.

mod talkdesk_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use continuity_agent::config::schema::OnDrift;
use continuity_agent::domain::{Actual, Desired, FallbackSettings, Profile};
use continuity_agent::engine::event::Event;
use continuity_agent::talkdesk::actuator::{Verdict, WriteFence};
use continuity_agent::talkdesk::drift::LastSeen;
use continuity_agent::talkdesk::simulator::{Fault, FaultOp, SimState, SimulatorOptions};
use continuity_agent::talkdesk::{Actuator, ActuatorOptions, Op};
use continuity_agent::telemetry::AuditKind;
use talkdesk_support::*;

#[tokio::test]
async fn talkdesk_activation_writes_settings_then_activates() {
    let env = Env::new().await;
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    let status = run.converged(&active("backup")).await;
    assert_eq!(
        env.calls(),
        [
            "get_activation 200",
            "get_settings 200",
            "put_settings 200",
            "put_activation 200"
        ]
    );
    assert_eq!(
        env.sim().state(),
        SimState {
            enabled: true,
            settings: backup()
        }
    );
    assert_eq!(status.actual.enabled, Some(true));
    assert_eq!(status.actual.settings, Some(backup()));
    assert_eq!(env.metrics.fallback_actual.get(), 1);
    assert!(status.last_success_at.is_some());
    // The engine heard what Talkdesk has, ending with the converged state.
    let observed: Vec<_> = run
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::ActualObserved(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(observed.last().unwrap().enabled, Some(true));
    run.stop().await;
}

/// Each gauge has one writer: the actuator sets what only it knows (what
/// Talkdesk has), never `continuity_fallback_desired`, which the daemon
/// mirrors from the engine's decision.
#[tokio::test]
async fn talkdesk_actuator_sets_the_actual_gauge_not_the_desired_one() {
    let env = Env::new().await;
    env.metrics.fallback_desired.set(7);
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    run.converged(&active("backup")).await;
    assert_eq!(env.metrics.fallback_actual.get(), 1);
    run.set(Desired::Inactive);
    run.converged(&Desired::Inactive).await;
    assert_eq!(env.metrics.fallback_actual.get(), 0);
    assert_eq!(
        env.metrics.fallback_desired.get(),
        7,
        "the actuator wrote continuity_fallback_desired"
    );
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_settings_are_written_only_when_they_differ() {
    let env = Env::new().await;
    env.sim().set_state(SimState {
        enabled: false,
        settings: backup(),
    });
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    run.converged(&active("backup")).await;
    let writes: Vec<String> = env.writes().iter().map(|e| e.op.clone()).collect();
    assert_eq!(writes, ["put_activation"]);

    // Already in the desired state: nothing at all is written.
    env.sim().clear_journal();
    run.set(Desired::Inactive);
    run.converged(&Desired::Inactive).await;
    run.set(active("backup"));
    run.converged(&active("backup")).await;
    env.sim().clear_journal();
    run.set(active("backup"));
    several_reconciles().await;
    assert!(env.writes().is_empty(), "{:#?}", env.sim().journal());
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_deactivation_leaves_settings_alone() {
    let env = Env::new().await;
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    run.converged(&active("backup")).await;
    env.sim().clear_journal();
    run.set(Desired::Inactive);
    run.converged(&Desired::Inactive).await;
    assert_eq!(env.calls(), ["get_activation 200", "put_activation 200"]);
    assert_eq!(
        env.sim().state(),
        SimState {
            enabled: false,
            settings: backup()
        }
    );
    assert_eq!(env.metrics.fallback_actual.get(), 0);
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_switching_profiles_rewrites_settings_only() {
    let env = Env::new().await;
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    run.converged(&active("backup")).await;
    env.sim().clear_journal();
    run.set(active("other"));
    run.converged(&active("other")).await;
    let writes: Vec<String> = env.writes().iter().map(|e| e.op.clone()).collect();
    assert_eq!(
        writes,
        ["put_settings"],
        "already enabled: no activation call"
    );
    assert_eq!(env.sim().state().settings, other());
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_5xx_are_retried_until_success() {
    let env = Env::new().await;
    env.sim()
        .inject(Fault::status(FaultOp::PutActivation, 503, 2));
    env.sim()
        .inject(Fault::status(FaultOp::PutSettings, 500, 1));
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    run.converged(&active("backup")).await;
    assert_eq!(env.count("put_settings"), 2);
    assert_eq!(env.count("put_activation"), 3);
    assert!(env.sim().state().enabled);
    assert_eq!(
        env.metrics
            .actuation_failures_total
            .with_label_values(&["server_error"])
            .get(),
        3
    );
    assert_eq!(env.requests("put_activation", "503"), 2);
    // Activation never went out before the settings were in place.
    let j = env.sim().journal();
    let first_activation = j.iter().position(|e| e.op == "put_activation").unwrap();
    let settings_ok = j
        .iter()
        .position(|e| e.op == "put_settings" && e.status == 200)
        .unwrap();
    assert!(settings_ok < first_activation, "{j:#?}");
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_429_retry_after_is_honoured() {
    let env = Env::new().await;
    env.sim()
        .inject(Fault::status(FaultOp::PutActivation, 429, 1).with_retry_after("1"));
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    run.converged(&active("backup")).await;
    let j = env.sim().journal();
    let at = |e: &continuity_agent::talkdesk::simulator::JournalEntry| {
        chrono::DateTime::parse_from_rfc3339(&e.at).unwrap()
    };
    let limited = j.iter().find(|e| e.status == 429).unwrap();
    let next = j
        .iter()
        .find(|e| e.seq > limited.seq && e.op != "token")
        .unwrap();
    let waited = at(next) - at(limited);
    // backoff_max is 100 ms: only Retry-After explains a wait of ~1 s.
    assert!(waited.num_milliseconds() >= 950, "waited {waited}");
    assert!(env.sim().state().enabled);
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_timeouts_and_dropped_connections_are_retried() {
    let env = Env::with(sim_options(), |c| {
        c.request_timeout = Duration::from_millis(300)
    })
    .await;
    env.sim()
        .inject(Fault::drop_connection(FaultOp::PutSettings, 1));
    env.sim()
        .inject(Fault::latency(FaultOp::PutActivation, 800, 1));
    env.sim()
        .inject(Fault::drop_connection(FaultOp::GetActivation, 1));
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    run.converged(&active("backup")).await;
    assert!(env.requests("put_activation", "timeout") >= 1);
    assert!(env.requests("put_settings", "error") >= 1);
    assert!(env.requests("get_activation", "error") >= 1);
    assert_eq!(
        env.sim().state(),
        SimState {
            enabled: true,
            settings: backup()
        }
    );
    let failures = |k: &str| {
        env.metrics
            .actuation_failures_total
            .with_label_values(&[k])
            .get()
    };
    assert!(failures("timeout") >= 1);
    assert!(failures("connection") >= 2);
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_persistent_failure_is_loud_and_never_gives_up() {
    let env = Env::new().await;
    env.sim()
        .inject(Fault::status(FaultOp::PutActivation, 503, 0));
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    let s = run.wait("six failed attempts", |s| s.attempts >= 6).await;
    assert!(!s.converged);
    let err = s.last_error.expect("last error");
    assert_eq!(
        (err.kind.as_str(), err.status, err.retryable),
        ("server_error", Some(503), true)
    );
    assert!(s.since.is_some());
    assert!(env.metrics.divergence_seconds.get() > 0.0);
    assert!(
        env.audit
            .records()
            .iter()
            .any(|r| r.kind == AuditKind::Actuation && r.message.contains("failed (attempt 6)"))
    );
    // Talkdesk recovers: the actuator gets there without any outside help.
    env.sim().clear_faults();
    let s = run.converged(&active("backup")).await;
    assert_eq!(s.attempts, 0);
    assert_eq!(env.metrics.divergence_seconds.get(), 0.0);
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_400_is_not_retried_and_reports_field_errors() {
    let env = Env::new().await;
    let mut profiles = profiles();
    profiles.insert(
        "broken".into(),
        Profile {
            name: "broken".into(),
            settings: FallbackSettings {
                forward: [("4155550100".to_string(), "+14155559999".to_string())].into(),
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
    let run = spawn_with(actuator, active("broken"));
    let s = run.wait("blocked", |s| s.blocked).await;
    let err = s.last_error.unwrap();
    assert_eq!(err.status, Some(400));
    assert!(!err.retryable);
    assert_eq!(err.fields[0].name, "forward.4155550100");
    // Several reconcile intervals later: still exactly one attempt, and the
    // fallback was not switched on with the old settings.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(env.count("put_settings"), 1);
    assert_eq!(env.count("put_activation"), 0);
    assert!(!env.sim().state().enabled);
    // A new desired state is a reason to try again.
    run.set(active("backup"));
    run.converged(&active("backup")).await;
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_403_is_not_retried() {
    let mut all = SimulatorOptions::default().allowed_scopes;
    all.retain(|s| s != "continuity-settings-activation:write");
    let env = Env::with(
        SimulatorOptions {
            allowed_scopes: all,
            ..sim_options()
        },
        |c| {
            c.scopes = vec![
                "continuity-settings:write".into(),
                "continuity-settings-activation:read".into(),
                "continuity-settings-activation:write".into(),
            ]
        },
    )
    .await;
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    let s = run.wait("blocked", |s| s.blocked).await;
    assert_eq!(s.last_error.as_ref().unwrap().status, Some(403));
    assert!(
        s.last_error
            .unwrap()
            .message
            .contains("continuity-settings-activation:write")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.count("put_activation"), 1);
    assert_eq!(
        env.metrics
            .actuation_failures_total
            .with_label_values(&["forbidden"])
            .get(),
        1
    );
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_unknown_profile_blocks_without_calls() {
    let env = Env::new().await;
    let run = spawn_actuator(&env, fast_options(), active("nope"));
    let s = run.wait("blocked", |s| s.blocked).await;
    assert_eq!(s.last_error.unwrap().kind, "unknown_profile");
    assert!(env.writes().is_empty());
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_drift_is_corrected() {
    let env = Env::new().await;
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    run.converged(&active("backup")).await;

    // Someone turns the fallback off in the UI.
    env.sim().set_enabled(false);
    run.wait("drift noticed", |s| !s.converged).await;
    run.converged(&active("backup")).await;
    assert!(env.sim().state().enabled);

    // Someone edits the settings in the UI.
    env.sim().set_settings(other());
    run.wait("drift noticed", |s| !s.converged).await;
    run.converged(&active("backup")).await;
    assert_eq!(env.sim().state().settings, backup());
    assert!(
        env.audit
            .records()
            .iter()
            .any(|r| r.kind == AuditKind::Drift)
    );
    assert!(
        !run.events()
            .iter()
            .any(|e| matches!(e, Event::OverrideSet(_)))
    );
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_drift_is_respected() {
    let env = Env::new().await;
    let opts = ActuatorOptions {
        on_drift: OnDrift::Respect,
        adopt_ttl: Duration::from_secs(1800),
        ..fast_options()
    };
    let run = spawn_actuator(&env, opts, active("backup"));
    run.converged(&active("backup")).await;
    env.sim().clear_journal();

    env.sim().set_enabled(false);
    let s = run.wait("drift adopted", |s| s.adopted).await;
    assert!(s.converged);
    let ov = run
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::OverrideSet(o) => Some(o),
            _ => None,
        })
        .expect("an override adopting the UI change");
    assert_eq!(ov.actor, "drift");
    assert_eq!(ov.desired, Desired::Inactive);
    assert!(ov.reason.contains("outside the agent"), "{}", ov.reason);
    let ttl = ov.until.as_millis() - ov.set_at.as_millis();
    assert_eq!(ttl, 1_800_000);

    // Several reconciles later the UI's choice still stands.
    several_reconciles().await;
    assert!(!env.sim().state().enabled);
    assert!(env.writes().is_empty(), "{:#?}", env.writes());

    // The engine takes the override up: still nothing to write.
    run.set(Desired::Inactive);
    several_reconciles().await;
    assert!(env.writes().is_empty());

    // A later decision is applied as usual.
    run.set(active("other"));
    run.converged(&active("other")).await;
    assert_eq!(
        env.sim().state(),
        SimState {
            enabled: true,
            settings: other()
        }
    );
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_respected_ui_activation_names_the_matching_profile() {
    let env = Env::new().await;
    let opts = ActuatorOptions {
        on_drift: OnDrift::Respect,
        ..fast_options()
    };
    let run = spawn_actuator(&env, opts, Desired::Inactive);
    run.converged(&Desired::Inactive).await;
    env.sim().set_state(SimState {
        enabled: true,
        settings: other(),
    });
    run.wait("drift adopted", |s| s.adopted).await;
    let ov = run
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::OverrideSet(o) => Some(o),
            _ => None,
        })
        .unwrap();
    assert_eq!(ov.desired, active("other"));
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_dry_run_makes_no_write_calls() {
    let env = Env::new().await;
    let opts = ActuatorOptions {
        dry_run: true,
        ..fast_options()
    };
    let run = spawn_actuator(&env, opts, active("backup"));
    // Let it go through a few reconcile intervals.
    several_reconciles().await;
    assert!(env.writes().is_empty(), "{:#?}", env.writes());
    assert!(env.count("get_activation") >= 1, "reads are allowed");
    assert_eq!(env.sim().state(), SimState::default());
    let would: Vec<_> = env
        .audit
        .records()
        .into_iter()
        .filter(|r| r.data.get("dry_run").is_some())
        .collect();
    assert!(
        would.iter().any(|r| r.data["op"] == "put_settings"),
        "{would:#?}"
    );
    assert!(would.iter().any(|r| r.data["op"] == "put_activation"));
    let s = run.handle.status();
    assert!(s.dry_run && !s.converged);
    run.set(Desired::Inactive);
    several_reconciles().await;
    assert!(env.writes().is_empty());
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_fenced_replica_does_not_write() {
    let env = Env::new().await;
    let leader = Arc::new(AtomicBool::new(false));
    let flag = leader.clone();
    let actuator = Actuator::new(
        env.client.clone(),
        fast_options(),
        profiles(),
        env.metrics.clone(),
        Arc::new(env.audit.clone()),
    )
    .with_may_write(Arc::new(move || flag.load(Ordering::SeqCst)));
    let run = spawn_with(actuator, active("backup"));
    run.wait("fenced", |s| s.fenced).await;
    several_reconciles().await;
    assert!(env.writes().is_empty());
    // Leadership acquired: the next reconcile applies the desired state.
    leader.store(true, Ordering::SeqCst);
    run.converged(&active("backup")).await;
    assert!(env.sim().state().enabled);
    run.stop().await;
}

/// A fence in front of a slow store: the first `unconfirmed` checks cannot
/// confirm the lease in time, later ones allow the write. This replica leads
/// throughout.
struct SlowStoreFence {
    unconfirmed: usize,
    checks: std::sync::atomic::AtomicUsize,
}

impl WriteFence for SlowStoreFence {
    fn may_write(&self, _op: Op) -> futures::future::BoxFuture<'_, Verdict> {
        let n = self.checks.fetch_add(1, Ordering::SeqCst);
        let verdict = if n < self.unconfirmed {
            Verdict::Unconfirmed
        } else {
            Verdict::Allowed
        };
        Box::pin(async move { verdict })
    }
}

/// Issue 15: a store too slow to confirm the lease is not "another leader".
/// The write is retried with backoff while this replica leads, instead of
/// waiting for the next reconcile (here ten minutes away).
#[tokio::test]
async fn talkdesk_a_write_the_store_could_not_confirm_is_retried_while_leading() {
    let env = Env::new().await;
    let fence = Arc::new(SlowStoreFence {
        unconfirmed: 3,
        checks: Default::default(),
    });
    let opts = ActuatorOptions {
        reconcile_interval: Duration::from_secs(600),
        ..fast_options()
    };
    let actuator = Actuator::new(
        env.client.clone(),
        opts,
        profiles(),
        env.metrics.clone(),
        Arc::new(env.audit.clone()),
    )
    .with_may_write(fence.clone());
    let run = spawn_with(actuator, active("backup"));
    let status = run.converged(&active("backup")).await;
    assert!(env.sim().state().enabled);
    assert!(!status.fenced, "a write went through: not fenced any more");
    let writes = env.writes().len();
    assert_eq!(writes, 2, "settings, then activation: {:#?}", env.writes());
    assert_eq!(
        fence.checks.load(Ordering::SeqCst),
        3 + writes,
        "three postponed checks, then one per write"
    );
    run.stop().await;
}

/// Issue 10: every write is fenced right before it is sent. A write answered
/// 401 (token revoked) is resent with a fresh token only after the fence
/// allowed it again: the client does not resend it behind the fence's back.
#[tokio::test]
async fn talkdesk_a_fenced_write_answered_401_goes_back_through_the_fence() {
    let env = Env::new().await;
    // Talkdesk's settings already match: the only write is the activation.
    env.sim()
        .inject(Fault::status(FaultOp::PutActivation, 401, 1));
    let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = checks.clone();
    let actuator = Actuator::new(
        env.client.clone(),
        fast_options(),
        profiles(),
        env.metrics.clone(),
        Arc::new(env.audit.clone()),
    )
    .with_may_write(Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        true
    }));
    let run = spawn_with(actuator, active("backup"));
    run.converged(&active("backup")).await;
    run.stop().await;
    let sent = env
        .sim()
        .journal()
        .iter()
        .filter(|e| e.op == "put_activation" || e.op == "put_settings")
        .count();
    assert!(env.sim().state().enabled);
    assert_eq!(
        checks.load(Ordering::SeqCst),
        sent,
        "one fence check per write sent: {:#?}",
        env.sim().journal()
    );
}

#[tokio::test]
async fn talkdesk_shutdown_finishes_the_call_in_flight() {
    let env = Env::new().await;
    env.sim()
        .inject(Fault::latency(FaultOp::PutActivation, 700, 1));
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    // The fault is consumed when the slow activation call arrives: from
    // then on it is in flight.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !env.sim().faults().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        env.sim().faults().is_empty(),
        "activation call never arrived"
    );
    let started = Instant::now();
    run.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), run.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "returned before the call finished"
    );
    assert!(
        env.sim().state().enabled,
        "the in-flight activation completed"
    );
    let calls = env.sim().journal().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.sim().journal().len(), calls, "no calls after shutdown");
}

#[tokio::test]
async fn talkdesk_unreadable_state_still_gets_written() {
    // Reads are forbidden for good (e.g. the GET needs a scope the account
    // lacks): the actuator writes the desired state anyway, since writes are sets.
    let env = Env::new().await;
    env.sim()
        .inject(Fault::status(FaultOp::GetActivation, 404, 0));
    env.sim()
        .inject(Fault::status(FaultOp::GetSettings, 404, 0));
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    run.converged(&active("backup")).await;
    assert_eq!(
        env.sim().state(),
        SimState {
            enabled: true,
            settings: backup()
        }
    );
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_normalized_settings_are_not_mistaken_for_drift() {
    use continuity_agent::talkdesk::simulator::Quirks;
    let env = Env::new().await;
    env.sim().set_quirks(Quirks {
        lowercase_language: true,
        ..Quirks::default()
    });
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    run.converged(&active("backup")).await;
    assert_eq!(
        env.sim().state().settings.message.unwrap().language,
        "en-us"
    );
    // Several reconciles read back "en-us": no drift, no rewrite.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(env.count("get_settings") >= 3);
    assert_eq!(env.count("put_settings"), 1, "{:#?}", env.sim().journal());
    assert!(run.handle.status().converged);
    assert!(
        !env.audit
            .records()
            .iter()
            .any(|r| r.kind == AuditKind::Drift)
    );
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_adopted_drift_ends_after_its_ttl() {
    // The engine never takes the override up (say it rejected it): the
    // actuator's hands-off period still ends, and the desired state returns.
    let env = Env::new().await;
    let opts = ActuatorOptions {
        on_drift: OnDrift::Respect,
        adopt_ttl: Duration::from_millis(500),
        ..fast_options()
    };
    let run = spawn_actuator(&env, opts, active("backup"));
    run.converged(&active("backup")).await;
    env.sim().set_enabled(false);
    run.wait("drift adopted", |s| s.adopted).await;
    run.wait("adoption expired", |s| !s.adopted).await;
    run.converged(&active("backup")).await;
    assert!(env.sim().state().enabled);
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_new_decision_interrupts_retries() {
    let env = Env::new().await;
    env.sim()
        .inject(Fault::status(FaultOp::PutActivation, 503, 0));
    let opts = ActuatorOptions {
        // Long enough that only the desired change can explain a quick end
        // (`converged` gives up after 5 s, far below it; a loaded machine
        // does not fail the test, and passing costs no wait).
        backoff_min: Duration::from_secs(30),
        backoff_max: Duration::from_secs(30),
        ..fast_options()
    };
    let run = spawn_actuator(&env, opts, active("backup"));
    run.wait("first failure", |s| s.attempts >= 1).await;
    let started = Instant::now();
    run.set(Desired::Inactive);
    let s = run.converged(&Desired::Inactive).await;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(s.attempts, 0);
    // The activation never went through, so turning off needs no write.
    assert_eq!(env.count("put_activation"), 1);
    assert!(!env.sim().state().enabled);
    run.stop().await;
}

#[tokio::test]
async fn talkdesk_each_ui_change_is_adopted_in_turn() {
    let env = Env::new().await;
    let opts = ActuatorOptions {
        on_drift: OnDrift::Respect,
        ..fast_options()
    };
    let run = spawn_actuator(&env, opts, active("backup"));
    run.converged(&active("backup")).await;
    let overrides = |run: &Running| -> Vec<Desired> {
        run.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::OverrideSet(o) => Some(o.desired),
                _ => None,
            })
            .collect()
    };
    env.sim().set_enabled(false);
    run.wait("first adoption", |s| s.adopted).await;
    // A settings edit while the fallback is off changes nothing that matters.
    env.sim().set_settings(other());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(overrides(&run), [Desired::Inactive]);
    // Turned back on in the UI, with the settings of profile "other".
    env.sim().set_enabled(true);
    let deadline = Instant::now() + Duration::from_secs(3);
    while overrides(&run).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(overrides(&run), [Desired::Inactive, active("other")]);
    // Only the initial activation was ever written.
    let writes: Vec<String> = env.writes().iter().map(|w| w.op.clone()).collect();
    assert_eq!(writes, ["put_settings", "put_activation"]);
    run.stop().await;
}

/// `respect` with only the settings edited in the UI while the fallback is on
/// as decided: the edit is kept, but no on/off override is sent to the engine,
/// so the fallback still goes off when the decision says so.
#[tokio::test]
async fn talkdesk_respected_settings_edit_does_not_pin_the_fallback_on() {
    let env = Env::new().await;
    let opts = ActuatorOptions {
        on_drift: OnDrift::Respect,
        adopt_ttl: Duration::from_secs(1800),
        ..fast_options()
    };
    let run = spawn_actuator(&env, opts, active("backup"));
    run.converged(&active("backup")).await;
    env.sim().clear_journal();

    env.sim().set_settings(other());
    run.wait("settings edit adopted", |s| s.adopted).await;
    several_reconciles().await;
    assert!(
        env.writes().is_empty(),
        "the UI's settings are kept: {:#?}",
        env.writes()
    );
    assert!(
        !run.events()
            .iter()
            .any(|e| matches!(e, Event::OverrideSet(_))),
        "a settings-only edit must not become an on/off override"
    );
    // The outage ends: the fallback goes off as decided.
    run.set(Desired::Inactive);
    run.converged(&Desired::Inactive).await;
    assert!(!env.sim().state().enabled);
    assert_eq!(
        env.sim().state().settings,
        other(),
        "deactivation leaves the settings alone"
    );
    run.stop().await;
}

/// A settings write answered 200 with other numbers is a failure, retried
/// until Talkdesk stores what was sent; the fallback is never reported
/// converged (nor activated) with callers going to the wrong number.
#[tokio::test]
async fn talkdesk_a_write_stored_differently_is_a_failure_not_a_success() {
    use continuity_agent::talkdesk::simulator::{MANGLED_NUMBER, Quirks};
    let env = Env::new().await;
    env.sim().set_quirks(Quirks {
        mangle_numbers: true,
        ..Quirks::default()
    });
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    let s = run.wait("a mismatch", |s| s.last_error.is_some()).await;
    let err = s.last_error.unwrap();
    assert_eq!(err.kind, "mismatch");
    assert!(err.retryable);
    assert!(err.message.contains(MANGLED_NUMBER), "{}", err.message);
    assert!(!s.converged);
    // Retried, never activated while the stored numbers are wrong.
    run.wait("a retry", |s| s.attempts >= 2).await;
    assert!(env.count("put_settings") >= 2);
    assert_eq!(env.count("put_activation"), 0, "{:#?}", env.sim().journal());
    assert_eq!(
        env.metrics
            .actuation_failures_total
            .with_label_values(&["mismatch"])
            .get() as usize,
        run.handle.status().attempts as usize
    );
    // Once Talkdesk stores what it is given, the actuation converges.
    env.sim().set_quirks(Quirks::default());
    run.converged(&active("backup")).await;
    assert_eq!(env.sim().state().settings, backup());
    assert!(env.sim().state().enabled);
    run.stop().await;
}

/// A rejection (here a gateway's passing 403) blocks the actuation only
/// until the slow retry: the fallback still goes on, without a new decision.
#[tokio::test]
async fn talkdesk_a_rejection_is_retried_on_a_slow_schedule() {
    let env = Env::new().await;
    env.sim()
        .inject(Fault::status(FaultOp::PutActivation, 403, 1));
    let opts = ActuatorOptions {
        rejected_retry: Duration::from_millis(400),
        ..fast_options()
    };
    let run = spawn_actuator(&env, opts, active("backup"));
    let s = run.wait("blocked", |s| s.blocked).await;
    assert_eq!(s.last_error.as_ref().unwrap().status, Some(403));
    assert!(!s.last_error.unwrap().retryable);
    // Not hammered: the backoff (10-100 ms) is not used for a rejection.
    assert_eq!(env.count("put_activation"), 1);
    run.converged(&active("backup")).await;
    assert_eq!(env.count("put_activation"), 2);
    assert!(env.sim().state().enabled);
    run.stop().await;
}

/// An override cleared while the settings write of its plan is in flight:
/// the plan stops there, and `enabled=true` is never sent.
#[tokio::test]
async fn talkdesk_a_plan_stops_between_writes_when_the_desired_state_changes() {
    let env = Env::new().await;
    env.sim()
        .inject(Fault::latency(FaultOp::PutSettings, 600, 1));
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    // The settings write is on its way (slowly); then the override goes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !env.calls().iter().any(|c| c.contains("get_activation")) {
        assert!(Instant::now() < deadline, "{:?}", env.calls());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.set(Desired::Inactive);
    run.converged(&Desired::Inactive).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let activations: Vec<_> = env
        .writes()
        .into_iter()
        .filter(|w| w.op == "put_activation")
        .collect();
    assert!(
        activations
            .iter()
            .all(|w| w.body.as_deref() != Some(r#"{"enabled":true}"#)),
        "enabled=true was sent after the desired state changed: {activations:#?}"
    );
    assert!(!env.sim().state().enabled);
    assert!(
        env.audit
            .records()
            .iter()
            .any(|r| r.message.contains("stopped between writes"))
    );
    run.stop().await;
}

/// A restart that finds Talkdesk on (with `backup`'s settings) although the
/// agent last saw it off, having `decided` since; the agent now wants it
/// off, under `on_drift = "respect"`.
fn restarted_to_find_the_fallback_on(env: &Env, decided: Vec<Desired>) -> Running {
    env.sim().set_state(SimState {
        enabled: true,
        settings: backup(),
    });
    let opts = ActuatorOptions {
        on_drift: OnDrift::Respect,
        ..fast_options()
    };
    let actuator = Actuator::new(
        env.client.clone(),
        opts,
        profiles(),
        env.metrics.clone(),
        Arc::new(env.audit.clone()),
    )
    .with_last_seen(Some(LastSeen {
        actual: Actual {
            enabled: Some(false),
            settings: None,
        },
        decided,
    }));
    spawn_with(actuator, Desired::Inactive)
}

/// A `kill -9` between a write and the snapshot that would have recorded it:
/// the last seen state says off, Talkdesk says on, and on is what the agent
/// itself had decided before it stopped (its activation landed after it last
/// looked). That is the agent's own write, not a change made in the UI: under
/// `on_drift = "respect"` it must not be adopted as an override (the fallback
/// would stay on for `drift_override_ttl` after the incident ended); the
/// current decision is applied. Found by tests/crash_cycles.rs.
#[tokio::test]
async fn talkdesk_own_write_that_landed_after_the_last_look_is_not_drift() {
    let env = Env::new().await;
    let run = restarted_to_find_the_fallback_on(&env, vec![active("backup")]);
    let s = run.converged(&Desired::Inactive).await;
    assert!(!s.adopted, "{s:#?}");
    assert!(!env.sim().state().enabled, "the fallback was switched off");
    let overrides: Vec<_> = run
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::OverrideSet(_)))
        .collect();
    assert!(overrides.is_empty(), "{overrides:#?}");
    run.stop().await;
}

/// The other side of the same rule: Talkdesk differs from both what the agent
/// last saw and what it had decided, so someone else changed it while no
/// agent was watching: that is drift, and `respect` adopts it.
#[tokio::test]
async fn talkdesk_a_change_the_agent_had_not_decided_is_drift_after_a_restart() {
    let env = Env::new().await;
    let run = restarted_to_find_the_fallback_on(&env, vec![Desired::Inactive]);
    run.wait("drift adopted", |s| s.adopted).await;
    assert!(env.sim().state().enabled, "the UI's choice stands");
    assert!(
        run.events()
            .iter()
            .any(|e| matches!(e, Event::OverrideSet(o) if o.actor == "drift")),
        "{:#?}",
        run.events()
    );
    run.stop().await;
}

/// Issue 15: an activation write answered 200 that Talkdesk did not apply
/// (a proxy's canned reply, a half-deployed backend) was taken as done: the
/// fallback was reported on while Talkdesk had it off. What the reply says
/// is stored decides: a mismatch is a failed attempt, retried.
#[tokio::test]
async fn talkdesk_an_activation_write_not_applied_is_a_failure_not_a_success() {
    let env = Env::new().await;
    env.sim().inject(Fault {
        op: FaultOp::PutActivation,
        wrong_body: true,
        count: 2,
        ..Fault::default()
    });
    let run = spawn_actuator(&env, fast_options(), active("backup"));
    let s = run.converged(&active("backup")).await;
    assert!(
        env.sim().state().enabled,
        "reported converged while Talkdesk has the fallback off: {s:#?}"
    );
    assert_eq!(env.count("put_activation"), 3, "{:#?}", env.calls());
    assert!(
        env.audit
            .records()
            .iter()
            .any(|r| r.message.contains("stored something else")),
        "the mismatch is audited"
    );
    run.stop().await;
}
