//! Break-glass commands against the simulator: they print before -> after,
//! write only what differs, and still act when the current state is unreadable.

mod talkdesk_support;

use continuity_agent::talkdesk::TalkdeskError;
use continuity_agent::talkdesk::breakglass::{self, BreakGlass};
use continuity_agent::talkdesk::simulator::{Fault, FaultOp, SimState};
use talkdesk_support::*;

async fn run(env: &Env, cmd: BreakGlass) -> Result<String, TalkdeskError> {
    let mut out = Vec::new();
    breakglass::run(cmd, &env.client, &profiles(), &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn talkdesk_breakglass_apply_activate_deactivate() {
    let env = Env::new().await;

    let out = run(&env, BreakGlass::Get).await.unwrap();
    assert!(out.contains("fallback: disabled"), "{out}");

    let out = run(
        &env,
        BreakGlass::Apply {
            profile: "backup".into(),
        },
    )
    .await
    .unwrap();
    assert!(out.contains("settings changed to profile backup"), "{out}");
    assert!(
        out.contains("forward +14155550100 -> +14155559999"),
        "{out}"
    );
    assert_eq!(env.sim().state().settings, backup());
    let out = run(
        &env,
        BreakGlass::Apply {
            profile: "backup".into(),
        },
    )
    .await
    .unwrap();
    assert!(out.contains("nothing written"), "{out}");
    assert_eq!(env.count("put_settings"), 1);

    let out = run(&env, BreakGlass::Activate).await.unwrap();
    assert_eq!(out, "fallback: disabled -> enabled\n");
    let out = run(&env, BreakGlass::Activate).await.unwrap();
    assert_eq!(out, "fallback already enabled; nothing written\n");
    let out = run(&env, BreakGlass::Get).await.unwrap();
    assert!(out.contains("fallback: enabled"), "{out}");
    assert!(out.contains("settings match profile: backup"), "{out}");

    let out = run(&env, BreakGlass::Deactivate).await.unwrap();
    assert_eq!(out, "fallback: enabled -> disabled\n");
    assert_eq!(
        env.sim().state(),
        SimState {
            enabled: false,
            settings: backup()
        }
    );
    assert_eq!(env.count("put_activation"), 2);
}

#[tokio::test]
async fn talkdesk_breakglass_retries_transient_errors_and_writes_when_unreadable() {
    let env = Env::new().await;
    env.sim()
        .inject(Fault::status(FaultOp::PutActivation, 503, 1));
    env.sim()
        .inject(Fault::status(FaultOp::GetActivation, 404, 0));
    let out = run(&env, BreakGlass::Activate).await.unwrap();
    assert!(out.contains("cannot read activation"), "{out}");
    assert!(out.contains("fallback: unknown -> enabled"), "{out}");
    assert!(env.sim().state().enabled);
}

#[tokio::test]
async fn talkdesk_breakglass_reports_unknown_profiles_and_rejections() {
    let env = Env::new().await;
    let err = run(
        &env,
        BreakGlass::Apply {
            profile: "nope".into(),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TalkdeskError::UnknownProfile(_)));
    env.sim()
        .inject(Fault::status(FaultOp::PutActivation, 403, 1));
    let err = run(&env, BreakGlass::Activate).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(env.count("put_activation"), 1, "a 403 is not retried");
}
