//! `[[accounts]]`: several Talkdesk accounts in one file, each with its own
//! talkdesk, profiles, rules, maintenance windows and drills, sharing the
//! probes and webhook sources. A file without `[[accounts]]` is one account,
//! `default`, exactly as before. Errors name the account in their key path
//! and all of them come out in one run.

use std::path::Path;
use std::process::Command;

use continuity_agent::config::{self, ConfigIssue, DEFAULT_ACCOUNT};
use continuity_agent::domain::{Desired, ProbeOutcome, Timestamp};
use continuity_agent::engine::{Command as EngineCommand, Engine, Event};

/// Shared probes, an alert source and two accounts: acme falls back when
/// both trunks are down, globex as soon as trunk-b alone is.
const TWO: &str = r#"
[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:trunk-a.example.net"
rise = 1
fall = 1

[[probes]]
id = "trunk-b"
type = "sip"
target = "sip:trunk-b.example.net"
rise = 1
fall = 1

[webhooks.alertmanager]
bearer_token = "alertmanager-token-0123456789"

[[accounts]]
id = "acme"
[accounts.talkdesk]
account = "acme"
client_id = "acme-id"
client_secret = "acme-secret"
[accounts.profiles.backup]
default = "+14155558888"
[[accounts.rules]]
name = "trunks-down"
profile = "backup"
for = "10s"
when = { down = "trunk-*", at_least = 2 }
[[accounts.maintenance]]
name = "sunday"
cron = "0 0 8 * * Sun"
duration = "3h"

[[accounts]]
id = "globex"
[accounts.talkdesk]
region = "eu"
account = "globex"
client_id = "globex-id"
client_secret = "globex-secret"
on_drift = "correct"
[accounts.profiles.overflow]
message = { text = "Please hold.", language = "en-GB" }
[[accounts.rules]]
name = "trunk-b-down"
profile = "overflow"
for = "10s"
when = { any = [ { down = "trunk-b" }, { alert = ['alertname="GlobexDown"'] } ] }
[[accounts.drills]]
name = "quarterly"
cron = "0 0 3 1 */3 *"
profile = "overflow"
duration = "5m"
"#;

fn load(src: &str) -> Result<config::Config, config::ConfigErrors> {
    config::from_toml_str_strict(src, "test.toml", Path::new("."), false)
}

fn errors(src: &str) -> Vec<ConfigIssue> {
    match load(src) {
        Ok(_) => panic!("expected errors, config loaded"),
        Err(e) => e.errors,
    }
}

fn render(errs: &[ConfigIssue]) -> String {
    errs.iter().map(|e| format!("  {e}\n")).collect()
}

#[track_caller]
fn has_error(errs: &[ConfigIssue], key: &str, why: &str) {
    assert!(
        errs.iter().any(|e| e.key == key && e.reason.contains(why)),
        "no error at {key:?} containing {why:?}; got:\n{}",
        render(errs)
    );
}

#[test]
fn a_file_without_accounts_is_one_account_named_default() {
    let src = std::fs::read_to_string("config/example.toml").unwrap();
    let cfg = load(&src).unwrap();
    assert_eq!(cfg.account_ids(), [DEFAULT_ACCOUNT]);
    assert!(cfg.accounts.is_empty() && cfg.raw.accounts.is_empty());
    let view = cfg.for_account(DEFAULT_ACCOUNT).unwrap();
    // The view is the configuration as it always was.
    assert_eq!(view.engine_spec(), cfg.engine_spec());
    assert_eq!(
        serde_json::to_value(&view.raw).unwrap(),
        serde_json::to_value(&cfg.raw).unwrap()
    );
    assert_eq!(view.profiles.len(), 2);
    assert_eq!(view.rules.len(), 3);
    assert_eq!(view.raw.talkdesk.account.as_deref(), Some("acme"));
    assert_eq!(view.raw.maintenance.len(), 1);
    assert_eq!(view.raw.drills.len(), 1);
    assert_eq!(view.account_ids(), [DEFAULT_ACCOUNT]);
    assert!(cfg.for_account("acme").is_none());
}

#[test]
fn each_account_sees_its_own_sections_and_the_shared_ones() {
    let cfg = load(TWO).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.account_ids(), ["acme", "globex"]);
    // The root decides nothing by itself: its account sections are empty.
    assert!(cfg.rules.is_empty() && cfg.profiles.is_empty());
    assert!(cfg.raw.maintenance.is_empty() && cfg.raw.drills.is_empty());
    assert!(cfg.raw.talkdesk.client_id.is_none());
    assert!(cfg.for_account("initech").is_none());
    assert!(cfg.for_account(DEFAULT_ACCOUNT).is_none());

    let acme = cfg.for_account("acme").unwrap();
    let globex = cfg.for_account("globex").unwrap();
    assert_eq!(acme.account_ids(), ["acme"]);
    assert_eq!(globex.account_ids(), ["globex"]);
    assert_eq!(acme.raw.talkdesk.account.as_deref(), Some("acme"));
    assert_eq!(acme.raw.talkdesk.region, "us");
    assert_eq!(globex.raw.talkdesk.account.as_deref(), Some("globex"));
    assert_eq!(globex.raw.talkdesk.region, "eu");
    assert_eq!(globex.raw.talkdesk.on_drift.as_str(), "correct");
    assert_eq!(acme.raw.maintenance.len(), 1);
    assert!(acme.raw.drills.is_empty());
    assert!(globex.raw.maintenance.is_empty());
    assert_eq!(globex.raw.drills[0].name, "quarterly");

    let (a, g) = (acme.engine_spec(), globex.engine_spec());
    assert_eq!(a.profiles, ["backup"]);
    assert_eq!(g.profiles, ["overflow"]);
    let names = |s: &continuity_agent::engine::spec::EngineSpec| {
        s.rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&a), ["trunks-down"]);
    assert_eq!(names(&g), ["trunk-b-down"]);
    assert!(a.drills.is_empty());
    assert_eq!(g.drills["quarterly"].profile, "overflow");
    // One trunk serves both accounts: the same probes in both engines.
    assert_eq!(a.probes, g.probes);
    assert_eq!(a.probes.len(), 2);
    assert_eq!(a.rules[0].when.probe_ids(), ["trunk-a", "trunk-b"]);
    assert_eq!(g.rules[0].when.probe_ids(), ["trunk-b"]);
    // Shared sections as they are.
    assert_eq!(a.alert_ttls, g.alert_ttls);
    assert_eq!(acme.probe_settings.len(), 2);
    assert!(acme.raw.webhooks.alertmanager.is_some());
    // A view of a view is itself.
    let again = acme.for_account("acme").unwrap();
    assert_eq!(again.engine_spec(), a);
    assert!(acme.for_account("globex").is_none());
}

/// `test-rules` style: the same probe results and alert reach both
/// accounts' engines, and each decides by its own rules.
#[test]
fn each_accounts_engine_decides_by_its_own_rules() {
    let cfg = config::from_toml_str(TWO, "two.toml").unwrap();
    let mut engines: Vec<(String, Engine, Desired)> = cfg
        .account_ids()
        .into_iter()
        .map(|id| {
            let spec = cfg.for_account(&id).unwrap().engine_spec();
            (id, Engine::new(spec), Desired::Inactive)
        })
        .collect();
    let mut feed = |event: Event, at_s: i64| {
        for (_, engine, desired) in engines.iter_mut() {
            for cmd in engine.step(event.clone(), Timestamp(at_s * 1000)) {
                if let EngineCommand::SetDesired { desired: d, .. } = cmd {
                    *desired = d;
                }
            }
        }
        engines
            .iter()
            .map(|(id, _, d)| (id.clone(), d.profile().map(str::to_string)))
            .collect::<Vec<_>>()
    };
    let result = |probe: &str, ok: bool| Event::ProbeResult {
        probe: probe.into(),
        outcome: if ok {
            ProbeOutcome::success("200 OK", None)
        } else {
            ProbeOutcome::failure("timeout after 2s", None)
        },
    };
    let active = |acme: Option<&str>, globex: Option<&str>| {
        vec![
            ("acme".to_string(), acme.map(str::to_string)),
            ("globex".to_string(), globex.map(str::to_string)),
        ]
    };
    feed(result("trunk-a", true), 0);
    feed(result("trunk-b", false), 1);
    // trunk-b down for 10s: globex's rule fires, acme needs both trunks down.
    assert_eq!(
        feed(Event::Tick, 12),
        active(None, Some("overflow")),
        "one trunk down"
    );
    feed(result("trunk-a", false), 13);
    assert_eq!(
        feed(Event::Tick, 24),
        active(Some("backup"), Some("overflow")),
        "both trunks down"
    );
}

#[test]
fn every_error_of_every_account_comes_out_at_once_with_the_account_in_its_key() {
    let src = format!(
        r#"{TWO}
[talkdesk]
account = "top"
[[rules]]
name = "top-rule"
profile = "backup"
when = {{ down = "trunk-a" }}

[[accounts]]
id = "acme"
[accounts.talkdesk]
account = "acme2"
client_id = "x"
client_secret = "y"

[[accounts]]
id = "Bad.Id"

[[accounts]]
id = "initech"
colour = "blue"
[accounts.talkdesk]
account = "initech"
client_secret = "z"
[accounts.profiles.backup]
default = "+14155558888"
[[accounts.rules]]
name = "ghost-rule"
profile = "ghost"
for = "ten seconds"
when = {{ down = "trunk-a" }}
[[accounts.rules]]
name = "nowhere"
profile = "backup"
when = {{ down = "trunk-z" }}
[[accounts.drills]]
name = "d"
cron = "0 0 3 1 * *"
profile = "ghost"
duration = "5m"

[api]
tokens = [
  {{ name = "scoped", token = "scoped-token-0123456789", scopes = ["read"], accounts = ["acme", "umbrella"] }},
  {{ name = "none", token = "none-token-0123456789", scopes = ["read"], accounts = [] }},
]
"#
    );
    let errs = errors(&src);
    // Mixing top-level account sections with [[accounts]].
    has_error(&errs, "talkdesk", "cannot be combined with [[accounts]]");
    has_error(&errs, "rules", "write [[accounts.rules]]");
    // Ids: a duplicate and a bad one are named by their position.
    has_error(&errs, "accounts[2].id", "duplicate account id \"acme\"");
    has_error(
        &errs,
        "accounts[3].id",
        "\"Bad.Id\" must be 1-63 lowercase letters",
    );
    has_error(&errs, "accounts[3].talkdesk.client_id", "missing");
    // Inside an account: its own key path, from loading and from validation.
    has_error(&errs, "accounts.initech.colour", "unknown key `colour`");
    has_error(&errs, "accounts.initech.talkdesk.client_id", "missing");
    has_error(
        &errs,
        "accounts.initech.rules[0] (ghost-rule).profile",
        "unknown profile \"ghost\" (profiles: backup)",
    );
    has_error(&errs, "accounts.initech.rules[0] (ghost-rule).for", "");
    has_error(
        &errs,
        "accounts.initech.rules[1] (nowhere).when.down",
        "trunk-z",
    );
    has_error(
        &errs,
        "accounts.initech.drills[0] (d).profile",
        "unknown profile \"ghost\"",
    );
    // Tokens name existing accounts.
    has_error(
        &errs,
        "api.tokens[0] (scoped).accounts[1]",
        "unknown account \"umbrella\" (accounts: acme, globex, Bad.Id, initech)",
    );
    has_error(&errs, "api.tokens[1] (none).accounts", "lists no account");
    // The valid accounts raise nothing.
    assert!(
        !errs
            .iter()
            .any(|e| e.key.starts_with("accounts.acme") || e.key.starts_with("accounts.globex")),
        "{}",
        render(&errs)
    );
}

#[test]
fn a_profile_of_another_account_is_unknown() {
    let src = TWO.replace(
        r#"profile = "overflow"
for = "10s""#,
        r#"profile = "backup"
for = "10s""#,
    );
    let errs = errors(&src);
    has_error(
        &errs,
        "accounts.globex.rules[0] (trunk-b-down).profile",
        "unknown profile \"backup\" (profiles: overflow)",
    );
    assert_eq!(errs.len(), 1, "{}", render(&errs));
}

#[test]
fn a_token_may_name_the_default_account_of_a_single_account_file() {
    let base = std::fs::read_to_string("config/example.toml").unwrap();
    let with = |accounts: &str| {
        base.replace(
            r#"scopes = ["read"] },"#,
            &format!(r#"scopes = ["read"], accounts = {accounts} }},"#),
        )
    };
    let cfg = load(&with(r#"["default"]"#)).unwrap();
    assert_eq!(
        cfg.raw.api.tokens[1].accounts.as_deref(),
        Some(&["default".to_string()][..])
    );
    assert!(cfg.raw.api.tokens[0].accounts.is_none());
    let errs = errors(&with(r#"["acme"]"#));
    has_error(
        &errs,
        "api.tokens[1] (dashboards).accounts[0]",
        "unknown account \"acme\" (accounts: default)",
    );
}

#[test]
fn two_accounts_on_one_talkdesk_account_are_a_warning() {
    let src = TWO.replace(
        "region = \"eu\"\naccount = \"globex\"",
        "region = \"us\"\naccount = \"acme\"",
    );
    let cfg = load(&src).unwrap();
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    let w = &cfg.warnings[0];
    assert_eq!(w.key, "accounts.globex.talkdesk");
    assert!(
        w.reason.contains(
            "the same Talkdesk account as accounts.acme (https://acme.talkdeskid.com/oauth/token)"
        ),
        "{w}"
    );
}

#[test]
fn accounts_need_no_credentials_for_rule_scenarios() {
    let src = TWO
        .replace("client_secret = \"acme-secret\"", "")
        .replace("client_id = \"globex-id\"", "");
    assert!(load(&src).is_err());
    let cfg = config::from_toml_str(&src, "rules.toml").unwrap();
    assert_eq!(cfg.account_ids(), ["acme", "globex"]);
}

#[test]
fn an_account_section_of_the_wrong_shape_is_named_with_the_toml_to_write() {
    let src = r#"
[[accounts]]
id = "acme"
rules = "none"
profiles = 3

[[accounts]]
id = 7

accounts_extra = 1
"#;
    let errs = config::from_toml_str(src, "t.toml").unwrap_err().errors;
    has_error(&errs, "accounts.acme.rules", "write [[accounts.rules]]");
    has_error(
        &errs,
        "accounts.acme.profiles",
        "write [accounts.profiles.NAME]",
    );
    has_error(
        &errs,
        "accounts[1].id",
        "invalid type: expected a string, found an integer",
    );
    // A value of the wrong type is reported once, not again as missing.
    let errs = errors(&TWO.replace(r#"client_id = "acme-id""#, "client_id = 5"));
    has_error(
        &errs,
        "accounts.acme.talkdesk.client_id",
        "invalid type: expected a string, found an integer",
    );
    assert_eq!(errs.len(), 1, "{}", render(&errs));
    // A broken or empty `accounts` is still a file with accounts: the
    // top-level account sections are not validated as a `default` account.
    let errs = errors("accounts = 3\n");
    has_error(
        &errs,
        "accounts",
        "must be an array of tables: write [[accounts]]",
    );
    assert_eq!(errs.len(), 1, "{}", render(&errs));
    let errs = errors("accounts = []\n");
    has_error(&errs, "accounts", "lists no account");
    assert_eq!(errs.len(), 1, "{}", render(&errs));
    let errs = config::from_toml_str(
        "[[accounts]]\n[accounts.talkdesk]\nregion = \"us\"\n",
        "t.toml",
    )
    .unwrap_err()
    .errors;
    has_error(&errs, "accounts[0]", "missing required key `id`");
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_continuity-agent"))
}

#[test]
fn check_config_lists_each_account() {
    let out = bin()
        .args(["check-config", "-c", "config/accounts.example.toml"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "  probes (3): trunk-a (sip), trunk-b (sip), agents-acme (agents)\n",
        "  accounts (2): acme, globex\n",
        "  account acme: talkdesk account acme, region us, on_drift respect, drift_override_ttl 1h\n",
        "    rules (2): trunks-down -> backup-site (priority 10), no-agents -> announce-only (priority 5)\n",
        "    profiles (2): announce-only, backup-site\n",
        "    maintenance windows: sunday-window; drills: none\n",
        "  account globex: talkdesk account globex, region eu, on_drift correct, drift_override_ttl 1h\n",
        "    rules (1): trunk-b-down -> overflow (priority 0)\n",
        "    maintenance windows: none; drills: quarterly-drill\n",
        "  dry_run false; store: sqlite (embedded, one replica); api tokens: 2\n",
        "  warnings: 0\n",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

/// Accounts are not settable from the environment: a variable for a
/// top-level account section is refused, named, with what to do instead.
#[test]
fn environment_variables_cannot_reach_into_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, TWO).unwrap();
    let out = bin()
        .args(["check-config", "-c"])
        .arg(&path)
        .env("CONTINUITY_AGENT_TALKDESK__CLIENT_SECRET", "from-env")
        .env("CONTINUITY_AGENT_ENGINE__FLAP_MAX", "6")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 configuration error:")
            && stderr.contains("environment variable CONTINUITY_AGENT_TALKDESK: talkdesk: cannot be combined with [[accounts]]")
            && stderr.contains("use *_file keys for secrets")
            && !stderr.contains("from-env"),
        "{stderr}"
    );
}
