//! Configuration loading and validation: every validation class names the key
//! path and the reason; all errors come out in one run; environment variables
//! win over the file; secrets never leak.

use std::path::Path;
use std::process::Command;

use continuity_agent::config::{self, ConfigIssue};

/// A minimal valid configuration; tests append or replace pieces of it.
const BASE: &str = r#"
[talkdesk]
account = "acme"
client_id = "id-123"
client_secret = "s3cr3t-value-do-not-print"

[profiles.backup]
forward = { "+14155550100" = "+14155559999" }
default = "+14155558888"
message = { text = "We are experiencing technical difficulties.", language = "en-US" }

[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:trunk-a.example.net:5060;transport=udp"

[[probes]]
id = "trunk-b"
type = "sip"
target = "sip:trunk-b.example.net;transport=tcp"

[[rules]]
name = "trunks-down"
profile = "backup"
for = "10s"
when = { down = "trunk-*", at_least = 2 }
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

/// Asserts exactly one error mentions `key` and its reason contains `why`.
#[track_caller]
fn assert_error(src: &str, key: &str, why: &str) {
    let errs = errors(src);
    let found = errs.iter().any(|e| e.key == key && e.reason.contains(why));
    assert!(
        found,
        "no error at {key:?} containing {why:?}; got:\n{}",
        render(&errs)
    );
}

fn render(errs: &[ConfigIssue]) -> String {
    errs.iter().map(|e| format!("  {e}\n")).collect()
}

fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

#[test]
fn shipped_configs_validate() {
    for path in [
        "config/example.toml",
        "config/demo.toml",
        "config/accounts.example.toml",
        "config/demo-accounts.toml",
    ] {
        let cfg = config::load(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            cfg.warnings.is_empty(),
            "{path} has warnings: {:?}",
            cfg.warnings
        );
        for id in cfg.account_ids() {
            let view = cfg.for_account(&id).unwrap();
            assert!(
                !view.rules.is_empty() && !view.probes.is_empty(),
                "{path}: account {id}"
            );
        }
    }
}

#[test]
fn base_config_is_valid_and_compiles_rules() {
    let cfg = load(BASE).unwrap();
    assert_eq!(cfg.rules.len(), 1);
    assert_eq!(cfg.rules[0].when.probe_ids(), vec!["trunk-a", "trunk-b"]);
    let spec = cfg.engine_spec();
    assert_eq!(spec.probes.len(), 2);
    assert_eq!(
        (spec.probes[0].rise, spec.probes[0].fall),
        (2, 10),
        "rise: HAProxy's default; fall: docs/tuning.md"
    );
    assert_eq!(spec.profiles, vec!["backup".to_string()]);
}

#[test]
fn e164_numbers_are_checked_in_forward_keys_values_and_default() {
    let src = BASE.replace(
        r#""+14155550100" = "+14155559999""#,
        r#""4155550100" = "+1415555999x""#,
    );
    assert_error(
        &src,
        r#"profiles.backup.forward."4155550100""#,
        "is not an E.164 number",
    );
    assert_error(
        &src,
        r#"profiles.backup.forward."4155550100""#,
        "target \"+1415555999x\" is not an E.164",
    );
    let src = BASE.replace(r#"default = "+14155558888""#, r#"default = "+04155558888""#);
    assert_error(&src, "profiles.backup.default", "is not an E.164 number");
}

#[test]
fn language_tags_must_be_bcp47() {
    let src = BASE.replace(r#"language = "en-US""#, r#"language = "english_US""#);
    assert_error(&src, "profiles.backup.message.language", "BCP 47");
    let ok = BASE.replace(r#"language = "en-US""#, r#"language = "pt-BR""#);
    load(&ok).unwrap();
}

#[test]
fn message_text_must_be_non_empty_and_of_sane_length() {
    let src = BASE.replace("We are experiencing technical difficulties.", "   ");
    assert_error(&src, "profiles.backup.message.text", "must not be empty");
    let long = "x".repeat(1001);
    let src = BASE.replace("We are experiencing technical difficulties.", &long);
    assert_error(&src, "profiles.backup.message.text", "at most 1000");
}

#[test]
fn profile_that_does_nothing_is_an_error() {
    let src = with("[profiles.empty]\n");
    assert_error(&src, "profiles.empty", "does nothing");
}

#[test]
fn durations_are_parsed_with_units_and_range_checked() {
    let src = BASE.replace(r#"for = "10s""#, r#"for = "10""#);
    assert_error(&src, "rules[0] (trunks-down).for", "no unit");
    let src = BASE.replace(r#"for = "10s""#, r#"for = "ten seconds""#);
    assert_error(&src, "rules[0] (trunks-down).for", "invalid duration");
    let src = BASE.replace(r#"for = "10s""#, "for = \"10s\"\nclear_for = \"30d\"");
    assert_error(&src, "rules[0] (trunks-down).clear_for", "out of range");
    let src = BASE.replace(r#"for = "10s""#, "for = \"2h\"\nmin_active = \"48h\"");
    assert_error(&src, "rules[0] (trunks-down).for", "out of range");
    assert_error(&src, "rules[0] (trunks-down).min_active", "out of range");
}

#[test]
fn probe_ids_must_be_unique() {
    let src =
        with("[[probes]]\nid = \"trunk-a\"\ntype = \"http\"\nurl = \"https://x.example/health\"\n");
    assert_error(&src, "probes[2] (trunk-a).id", "duplicate probe id");
}

#[test]
fn sip_targets_need_sip_scheme_host_and_known_transport() {
    for (target, why) in [
        ("http://trunk", "is not a SIP URI"),
        (
            "sip:trunk;transport=sctp",
            "unsupported transport \"sctp\"; use udp, tcp or tls",
        ),
        (
            "sip:trunk:99999",
            "port \"99999\" must be a number from 1 to 65535",
        ),
        ("sips:trunk;transport=udp", "a sips: URI must use TLS"),
        ("sip:", "missing host"),
    ] {
        let src = BASE.replace("sip:trunk-a.example.net:5060;transport=udp", target);
        assert_error(&src, "probes[0] (trunk-a).target", why);
    }
    for ok in [
        "sip:[2001:db8::1]:5062;transport=tcp",
        "sips:carrier.example.com",
        "sip:ping@10.0.0.1;transport=tls",
    ] {
        load(&BASE.replace("sip:trunk-a.example.net:5060;transport=udp", ok)).unwrap();
    }
}

#[test]
fn sip_accept_codes_are_classes_or_final_codes() {
    let src = BASE.replace(
        "target = \"sip:trunk-a.example.net:5060;transport=udp\"",
        "target = \"sip:trunk-a.example.net:5060;transport=udp\"\naccept = [\"2xx\", \"404\", \"180\", \"abc\"]",
    );
    assert_error(&src, "probes[0] (trunk-a).accept[2]", "provisional");
    assert_error(
        &src,
        "probes[0] (trunk-a).accept[3]",
        "not a SIP response code",
    );
    assert_eq!(errors(&src).len(), 2, "2xx and 404 are fine");
}

#[test]
fn http_probe_urls_must_be_http_or_https() {
    let src =
        with("[[probes]]\nid = \"crm\"\ntype = \"http\"\nurl = \"ftp://crm.example/health\"\n");
    assert_error(
        &src,
        "probes[2] (crm).url",
        "scheme \"ftp\" is not http or https",
    );
    let src = with("[[probes]]\nid = \"crm\"\ntype = \"http\"\n");
    assert_error(&src, "probes[2] (crm).url", "missing");
    let src = with(
        "[[probes]]\nid = \"crm\"\ntype = \"http\"\nurl = \"https://crm.example/\"\nexpect_status = [200, 700]\nexpect_json = \"$[\"\n",
    );
    assert_error(
        &src,
        "probes[2] (crm).expect_status[1]",
        "not an HTTP status code",
    );
    assert_error(&src, "probes[2] (crm).expect_json", "JSONPath");
}

#[test]
fn keys_of_another_probe_type_are_named() {
    let src = with(
        "[[probes]]\nid = \"crm\"\ntype = \"http\"\nurl = \"https://crm.example/\"\naccept = [\"2xx\"]\n",
    );
    assert_error(
        &src,
        "probes[2] (crm).accept",
        "does not apply to probes of type http",
    );
}

#[test]
fn statuspage_and_agents_fields_are_checked() {
    let src = with(
        "[[probes]]\nid = \"st\"\ntype = \"statuspage\"\nurl = \"https://status.example/api/v2/summary.json\"\ndown_at = \"meltdown\"\n\
         [[probes]]\nid = \"agents\"\ntype = \"agents\"\nurl = \"https://wb.example/agents\"\n",
    );
    assert_error(
        &src,
        "probes[2] (st).down_at",
        "use one of degraded_performance",
    );
    assert_error(&src, "probes[3] (agents).value", "missing");
}

#[test]
fn rise_and_fall_must_be_at_least_one() {
    let src = BASE.replace("transport=udp\"", "transport=udp\"\nrise = 0\nfall = 0");
    assert_error(&src, "probes[0] (trunk-a).rise", "must be 1 to 100");
    assert_error(&src, "probes[0] (trunk-a).fall", "must be 1 to 100");
}

#[test]
fn rule_globs_must_match_a_probe() {
    let src = BASE.replace(r#"down = "trunk-*", at_least = 2"#, r#"down = "carrier-*""#);
    assert_error(&src, "rules[0] (trunks-down).when.down", "matches no probe");
    let src = BASE.replace("at_least = 2", "at_least = 3");
    assert_error(
        &src,
        "rules[0] (trunks-down).when.at_least",
        "matches only 2 probe(s)",
    );
}

#[test]
fn unknown_profiles_are_errors_in_rules_and_drills() {
    let src = BASE.replace(r#"profile = "backup""#, r#"profile = "backupp""#);
    assert_error(
        &src,
        "rules[0] (trunks-down).profile",
        "unknown profile \"backupp\" (profiles: backup)",
    );
    let src = with(
        "[[drills]]\nname = \"d\"\ncron = \"0 0 3 1 * *\"\nprofile = \"nope\"\nduration = \"5m\"\n",
    );
    assert_error(&src, "drills[0] (d).profile", "unknown profile");
}

#[test]
fn alert_matchers_use_alertmanager_syntax() {
    let src = BASE.replace(
        r#"when = { down = "trunk-*", at_least = 2 }"#,
        r#"when = { alert = ['alertname="X"', 'severity=~"(crit"', 'team', '9x="y"'] }"#,
    );
    assert_error(
        &src,
        "rules[0] (trunks-down).when.alert[1]",
        "invalid regex",
    );
    assert_error(&src, "rules[0] (trunks-down).when.alert[2]", "no operator");
    assert_error(&src, "rules[0] (trunks-down).when.alert[3]", "label name");
}

#[test]
fn cron_expressions_need_six_valid_fields() {
    let src = with("[[maintenance]]\nname = \"w\"\ncron = \"0 8 * * Sun\"\nduration = \"3h\"\n");
    assert_error(&src, "maintenance[0] (w).cron", "has 5 fields");
    let src = with("[[maintenance]]\nname = \"w\"\ncron = \"0 0 25 * * Sun\"\nduration = \"3h\"\n");
    assert_error(
        &src,
        "maintenance[0] (w).cron",
        "not a valid cron expression",
    );
    load(&with(
        "[[maintenance]]\nname = \"w\"\ncron = \"0 0 8 * * Sun\"\nduration = \"3h\"\n",
    ))
    .unwrap();
}

#[test]
fn region_must_be_known_unless_urls_are_explicit() {
    let src = BASE.replace("account = \"acme\"", "account = \"acme\"\nregion = \"au\"");
    assert_error(&src, "talkdesk.region", "unknown region \"au\"");
    let explicit = BASE.replace(
        "account = \"acme\"",
        "region = \"au\"\napi_base = \"https://api.mytalkdesk.au\"\ntoken_url = \"https://acme.talkdeskid.au/oauth/token\"",
    );
    load(&explicit).unwrap();
    let insecure = BASE.replace(
        "account = \"acme\"",
        "account = \"acme\"\napi_base = \"http://api.example.com\"",
    );
    assert_error(&insecure, "talkdesk.api_base", "must use https");
    let no_account = BASE.replace("account = \"acme\"\n", "");
    assert_error(&no_account, "talkdesk.account", "missing");
}

#[test]
fn token_scopes_must_be_well_formed_and_sufficient() {
    let src = BASE.replace(
        "account = \"acme\"",
        "account = \"acme\"\nscopes = [\"continuity-settings:write\", \"Bad Scope\"]",
    );
    assert_error(&src, "talkdesk.scopes[1]", "is not a scope");
    assert_error(
        &src,
        "talkdesk.scopes",
        "must include \"continuity-settings-activation:write\"",
    );
}

#[test]
fn suspicious_but_legal_settings_are_warnings() {
    let src = BASE
        .replace(r#"for = "10s""#, r#"for = "0s""#)
        .replace(r#"down = "trunk-*", at_least = 2"#, r#"down = "trunk-a""#)
        .replace("transport=udp\"", "transport=udp\"\nfall = 1");
    let cfg = load(&src).expect("legal");
    let w = cfg
        .warnings
        .iter()
        .find(|w| w.key == "rules[0] (trunks-down).for")
        .expect("warning");
    assert!(w.reason.contains("one failed check"), "{w}");
    assert!(
        cfg.summary()
            .contains("warning: test.toml: rules[0] (trunks-down).for")
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    assert_error(
        &with("[engine]\nflap_maximum = 3\n"),
        "engine.flap_maximum",
        "unknown key `flap_maximum`",
    );
    assert_error(
        &with("[telemetry]\nx = 1\n"),
        "telemetry",
        "unknown section `telemetry`",
    );
    let src = BASE.replace("transport=udp\"", "transport=udp\"\nretries = 3");
    assert_error(&src, "probes[0] (trunk-a).retries", "unknown key `retries`");
}

#[test]
fn secret_files_are_read_relative_to_the_config_and_both_forms_conflict() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("td-secret"), "from-file-secret\n").unwrap();
    let src = BASE.replace(
        r#"client_secret = "s3cr3t-value-do-not-print""#,
        r#"client_secret_file = "td-secret""#,
    );
    let cfg = config::from_toml_str_strict(&src, "test.toml", dir.path(), false).unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(
        cfg.raw
            .talkdesk
            .client_secret
            .as_ref()
            .unwrap()
            .expose_secret(),
        "from-file-secret"
    );

    let missing = BASE.replace(
        r#"client_secret = "s3cr3t-value-do-not-print""#,
        r#"client_secret_file = "nope""#,
    );
    let errs = config::from_toml_str_strict(&missing, "test.toml", dir.path(), false)
        .unwrap_err()
        .errors;
    assert!(
        errs.iter()
            .any(|e| e.key == "talkdesk.client_secret_file" && e.reason.contains("cannot read")),
        "{errs:?}"
    );

    let both = BASE.replace(
        r#"client_secret = "s3cr3t-value-do-not-print""#,
        "client_secret = \"a\"\nclient_secret_file = \"td-secret\"",
    );
    assert_error(&both, "talkdesk.client_secret", "not both");
}

#[test]
fn webhooks_need_a_credential_their_source_can_send() {
    assert_error(
        &with("[webhooks.alertmanager]\n"),
        "webhooks.alertmanager",
        "no credential",
    );
    assert_error(
        &with("[webhooks.pagerduty]\nbearer_token = \"abcdefabcdefabcdef\"\n"),
        "webhooks.pagerduty.bearer_token",
        "cannot send",
    );
    assert_error(
        &with("[webhooks.statuspage]\npath_token = \"short\"\n"),
        "webhooks.statuspage.path_token",
        "at least 16",
    );
}

#[test]
fn webhook_alert_ttls_are_range_checked_and_default_by_sender_kind() {
    assert_error(
        &with("[webhooks.generic]\nbearer_token = \"abcdefabcdefabcdef\"\nttl = \"1s\"\n"),
        "webhooks.generic.ttl",
        "out of range",
    );
    let cfg = load(&with(
        "[webhooks.generic]\nbearer_token = \"abcdefabcdefabcdef\"\n[webhooks.datadog]\nbearer_token = \"abcdefabcdefabcdef\"\n",
    ))
    .unwrap();
    let spec = cfg.engine_spec();
    assert_eq!(
        spec.alert_ttl("generic"),
        std::time::Duration::from_secs(15 * 60)
    );
    assert_eq!(
        spec.alert_ttl("datadog"),
        std::time::Duration::from_secs(24 * 3600)
    );
}

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let secret = "s3cr3t-value-do-not-print";
    let cfg = load(BASE).unwrap();
    assert!(
        !format!("{cfg:?}").contains(secret),
        "Debug of Config leaks the secret"
    );
    assert!(!format!("{:?}", cfg.raw.talkdesk).contains(secret));
    // An invalid config that contains secrets: the error report must not echo them.
    let src = BASE.replace("account = \"acme\"", "account = \"ACME!\"")
        + "\n[webhooks.statuspage]\npath_token = \"tiny-secret\"\n[[notify]]\ntype = \"slack\"\nurl = \"http://hooks.example.com/T0/B0/secret-path-xyz\"\n";
    let e = load(&src).unwrap_err();
    let text = e.to_string();
    for s in [secret, "tiny-secret", "secret-path-xyz"] {
        assert!(!text.contains(s), "error report leaks {s}:\n{text}");
    }
    assert!(text.contains("notify[0].url"), "{text}");
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_continuity-agent"))
}

#[test]
fn check_config_reports_at_least_five_mistakes_in_one_run_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    let src = BASE
        .replace(r#""+14155550100" = "+14155559999""#, r#""555" = "+14155559999""#) // 1 E.164
        .replace(r#"language = "en-US""#, r#"language = "not a tag""#) // 2 BCP 47
        .replace("transport=udp\"", "transport=sctp\"\nfall = 0") // 3 transport, 4 fall
        .replace(r#"profile = "backup""#, r#"profile = "ghost""#) // 5 unknown profile
        + "\n[[maintenance]]\nname = \"w\"\ncron = \"0 8 * * *\"\nduration = \"1h\"\n"; // 6 cron
    std::fs::write(&path, src).unwrap();
    let out = bin()
        .args(["check-config", "-c"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("6 configuration errors"), "{stderr}");
    for needle in [
        "profiles.backup.forward.\"555\"",
        "profiles.backup.message.language",
        "probes[0] (trunk-a).target",
        "probes[0] (trunk-a).fall",
        "rules[0] (trunks-down).profile",
        "maintenance[0] (w).cron",
    ] {
        assert!(
            stderr.contains(&format!("{}: {needle}", path.display())),
            "missing {needle} in:\n{stderr}"
        );
    }
}

#[test]
fn check_config_prints_a_summary_and_exits_0() {
    let out = bin()
        .args(["check-config", "-c", "config/example.toml"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("probes (6)")
            && stdout.contains("test-call-us (call)")
            && stdout.contains("rules (3)")
            && stdout.contains("webhook sources (7)")
            && stdout.contains("notify (4): ops-slack (slack), teams-1 (teams), pagerduty-1 (pagerduty), webhook-1 (webhook)"),
        "{stdout}"
    );
}

#[test]
fn environment_overrides_win_over_the_file_and_are_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, BASE).unwrap();
    // A valid override changes the value.
    let out = bin()
        .args(["check-config", "-c"])
        .arg(&path)
        .env("CONTINUITY_AGENT_TALKDESK__REGION", "eu")
        .env("CONTINUITY_AGENT_AGENT__DRY_RUN", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("region eu") && stdout.contains("dry_run true"),
        "{stdout}"
    );
    // An invalid override is reported against the variable, not the file.
    let out = bin()
        .args(["check-config", "-c"])
        .arg(&path)
        .env("CONTINUITY_AGENT_TALKDESK__REGION", "mars")
        .env("CONTINUITY_AGENT_ENGINE__FLAP_MAXIMUM", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("environment variable CONTINUITY_AGENT_TALKDESK__REGION: talkdesk.region: unknown region \"mars\""), "{stderr}");
    assert!(
        stderr.contains("engine.flap_maximum: unknown key `flap_maximum`"),
        "{stderr}"
    );
}

#[test]
fn missing_file_is_a_config_error() {
    let out = bin()
        .args(["check-config", "-c", "/nonexistent/agent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agent.toml: cannot read"));
}

#[test]
fn usage_errors_exit_2() {
    let out = bin().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 256, .. Default::default() })]

    /// Whatever operators put in the values, loading answers with a Config or
    /// a list of errors; it never panics.
    #[test]
    fn loading_never_panics_on_arbitrary_values(
        target in ".{0,40}",
        dur in ".{0,12}",
        glob in ".{0,12}",
        matcher in ".{0,30}",
        number in proptest::num::i64::ANY,
        cron in ".{0,30}",
    ) {
        let src = BASE
            .replace("sip:trunk-a.example.net:5060;transport=udp", &target.replace(['"', '\\', '\n'], ""))
            .replace(r#"for = "10s""#, &format!("for = {:?}\nclear_for = {:?}", dur, dur))
            .replace(r#"down = "trunk-*", at_least = 2"#, &format!("any = [{{ down = {glob:?}, at_least = {number} }}, {{ alert = [{matcher:?}] }}]"))
            + &format!("\n[[maintenance]]\nname = \"m\"\ncron = {cron:?}\nduration = {dur:?}\n");
        match load(&src) {
            Ok(_) => {}
            Err(e) => proptest::prop_assert!(!e.errors.is_empty()),
        }
    }
}

#[test]
fn a_postgres_store_is_checked_by_the_stores_own_parser() {
    let pg = |url: &str| format!("{BASE}\n[store]\nurl = {url:?}\n");
    load(&pg("postgres://agent@db/continuity")).expect("one replica on PostgreSQL is legal");
    load(&pg("postgresql://agent@db/continuity?sslmode=verify-full")).expect("legal");
    assert_error(
        &pg("postgres://agent:s3cret@db/continuity?sslmode=prefer"),
        "store.url",
        "falls back to an unencrypted connection",
    );
    let errs = errors(&pg("postgres://agent:s3cret@db:port/continuity"));
    assert!(
        errs.iter().any(|e| e.key == "store.url") && !render(&errs).contains("s3cret"),
        "{}",
        render(&errs)
    );
    assert!(!render(&errors(&pg("mysql://agent:s3cret@db/x"))).contains("s3cret"));
}

#[test]
fn the_postgres_password_file_is_read_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pg-password"), "file-s3cret\n").unwrap();
    let src = format!(
        "{BASE}\n[store]\nurl = \"postgres://agent@db/continuity\"\npassword_file = \"pg-password\"\n"
    );
    let load_in_dir =
        |src: &str| config::from_toml_str_strict(src, "agent.toml", dir.path(), false);
    let cfg = load_in_dir(&src).expect("legal");
    let password = cfg.raw.store.password.as_ref().expect("read");
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(password),
        "file-s3cret"
    );
    assert!(!format!("{:?}", cfg.raw.store).contains("file-s3cret"));

    std::fs::remove_file(dir.path().join("pg-password")).unwrap();
    let errs = load_in_dir(&src).unwrap_err().errors;
    assert!(
        errs.iter().any(|e| e.key == "store.password_file"),
        "{}",
        render(&errs)
    );
    let both = src.replace("agent@db", "agent:url-s3cret@db");
    std::fs::write(dir.path().join("pg-password"), "file-s3cret\n").unwrap();
    let errs = load_in_dir(&both).unwrap_err().errors;
    assert!(
        errs.iter()
            .any(|e| e.key == "store.url" && e.reason.contains("keep one")),
        "{}",
        render(&errs)
    );
    assert!(!render(&errs).contains("s3cret"));
}

#[test]
fn cluster_needs_postgres_and_timings_that_fit_the_lease() {
    let pg = "\n[store]\nurl = \"postgres://agent@db/continuity\"\n";
    let ok = with(&format!("{pg}[cluster]\ninstance_id = \"replica-a\"\n"));
    let cfg = load(&ok).expect("a postgres store with [cluster] is accepted");
    let cluster = cfg.cluster();
    assert_eq!(cluster.instance_id, "replica-a");
    assert_eq!(cluster.lease_ttl.get(), std::time::Duration::from_secs(10));
    assert_eq!(
        cluster.renew_deadline.get(),
        std::time::Duration::from_secs(6)
    );
    assert_eq!(cfg.instance_id(), "replica-a");
    // The defaults fit: the request timeout stays inside the steady-state lease.
    assert!(cfg.raw.talkdesk.request_timeout.get() < cluster.lease_ttl.get() * 2 / 3);

    let defaulted = load(&with(&format!("{pg}[cluster]\n"))).expect("instance_id defaults");
    assert!(!defaulted.instance_id().is_empty(), "the host name");

    assert_error(
        &with("[cluster]\ninstance_id = \"a\"\n"),
        "cluster",
        "needs a postgres store",
    );
    assert_error(
        &with(&format!(
            "{pg}[cluster]\ninstance_id = \"a\"\nlease_ttl = \"5s\"\nrenew_deadline = \"5s\"\n"
        )),
        "cluster.renew_deadline",
        "shorter than lease_ttl",
    );
    let slow = BASE.replace("[talkdesk]\n", "[talkdesk]\nrequest_timeout = \"8s\"\n");
    assert_error(
        &format!("{slow}{pg}[cluster]\ninstance_id = \"a\"\n"),
        "talkdesk.request_timeout",
        "2/3 of cluster.lease_ttl",
    );
}

#[test]
fn notify_targets_get_names_and_every_event_their_type_can_send() {
    let cfg = load(&with(
        "[[notify]]\ntype = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/x\"\n\
         [[notify]]\ntype = \"pagerduty\"\nrouting_key = \"R0UT1NGKEY\"\n\
         [[notify]]\ntype = \"slack\"\nname = \"ops\"\nurl = \"https://hooks.slack.com/services/T0/B0/y\"\non = [\"stuck\", \"activate\", \"stuck\"]\nstuck_after = \"30s\"\n",
    ))
    .expect("legal");
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let n = &cfg.raw.notify;
    let names: Vec<&str> = n.iter().map(|t| t.name()).collect();
    assert_eq!(names, ["slack-1", "pagerduty-1", "ops"]);
    assert_eq!(n[0].events().len(), 7, "every event by default");
    assert!(!n[1].events().contains(&config::schema::NoticeKind::Drift));
    use config::schema::NoticeKind::{Activate, Stuck};
    assert_eq!(n[2].events(), [Activate, Stuck], "sorted, once each");
    assert_eq!(n[2].stuck_after(), std::time::Duration::from_secs(30));
    assert_eq!(n[0].stuck_after(), std::time::Duration::from_secs(120));
}

#[test]
fn notify_targets_are_checked_key_by_key() {
    let slack =
        "[[notify]]\ntype = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/x\"\n";
    assert_error(
        &with("[[notify]]\ntype = \"slack\"\n"),
        "notify[0].url",
        "missing",
    );
    assert_error(
        &with("[[notify]]\ntype = \"pagerduty\"\n"),
        "notify[0].routing_key",
        "missing",
    );
    assert_error(
        &with(&format!("{slack}routing_key = \"abc\"\n")),
        "notify[0].routing_key",
        "does not apply to type slack (only pagerduty)",
    );
    assert_error(
        &with(&format!("{slack}hmac_secret_file = \"/x\"\n")),
        "notify[0].hmac_secret_file",
        "does not apply to type slack (only webhook)",
    );
    assert_error(
        &with(&format!("{slack}on = []\n")),
        "notify[0].on",
        "is empty",
    );
    assert_error(
        &with(&format!("{slack}on = [\"activate\", \"paged\"]\n")),
        "notify[0].on[1]",
        "unknown value `paged`; expected one of: activate, deactivate, profile, stuck, flap, blind, drift",
    );
    assert_error(
        &with("[[notify]]\ntype = \"pagerduty\"\nrouting_key = \"k\"\non = [\"drift\"]\n"),
        "notify[0].on",
        "pagerduty cannot send drift",
    );
    assert_error(
        &with(&format!("{slack}stuck_after = \"0s\"\n")),
        "notify[0].stuck_after",
        "out of range",
    );
    assert_error(
        &with(&format!("{slack}{slack}name = \"slack-1\"\n")),
        "notify[1].name",
        "also the name of notify[0]",
    );
    assert_error(
        &with(&format!("{slack}name = \"a b\"\n")),
        "notify[0].name",
        "letters, digits",
    );
    let pd_no_resolve = load(&with(
        "[[notify]]\ntype = \"pagerduty\"\nrouting_key = \"k\"\non = [\"activate\"]\n",
    ))
    .expect("legal");
    assert!(
        pd_no_resolve
            .warnings
            .iter()
            .any(|w| w.key == "notify[0].on" && w.reason.contains("never resolved")),
        "{:?}",
        pd_no_resolve.warnings
    );
}

#[test]
fn public_url_is_an_http_url_without_credentials() {
    let ok = load(&with(
        "[agent]\npublic_url = \"https://continuity.example.net/\"\n",
    ))
    .unwrap();
    assert_eq!(
        ok.raw.agent.public_url.as_deref(),
        Some("https://continuity.example.net/")
    );
    assert_error(
        &with("[agent]\npublic_url = \"ftp://continuity.example.net/\"\n"),
        "agent.public_url",
        "not http or https",
    );
    assert_error(
        &with("[agent]\npublic_url = \"https://ops:pw@continuity.example.net/\"\n"),
        "agent.public_url",
        "must not contain a user name or password",
    );
}

/// `check-config` and `run` agree on a probe's cadence: a non-SIP probe
/// without `timeout` runs with the documented 5s (config/example.toml), not
/// the SIP default of 2s, and fast_interval/timeout never exceed interval.
#[test]
fn probes_run_with_the_documented_default_timeouts() {
    use continuity_agent::probe;
    use std::time::Duration;
    let src = with(
        "[[probes]]\nid = \"crm\"\ntype = \"http\"\nurl = \"https://crm.example/\"\n\
         [[probes]]\nid = \"st\"\ntype = \"statuspage\"\nurl = \"https://status.example/api/v2/summary.json\"\n\
         [[probes]]\nid = \"ag\"\ntype = \"agents\"\nurl = \"https://wb.example/agents\"\nvalue = \"$.n\"\n\
         [[probes]]\nid = \"quick\"\ntype = \"http\"\nurl = \"https://q.example/\"\ninterval = \"1s\"\n",
    );
    let cfg = load(&src).unwrap();
    // `run` schedules exactly `probe_settings` (daemon::run).
    let ran: Vec<(String, Duration, Duration, Duration)> = cfg
        .probe_settings
        .iter()
        .map(|p| {
            let s = probe::build_scheduled(
                p,
                &continuity_agent::telemetry::Metrics::new(),
                &probe::scheduler::CallSlots::new(2),
            )
            .unwrap();
            (
                s.probe.probe().id().to_string(),
                s.interval,
                s.fast_interval,
                s.timeout,
            )
        })
        .collect();
    let secs = Duration::from_secs;
    assert_eq!(
        ran,
        vec![
            ("trunk-a".into(), secs(10), secs(2), secs(2)),
            ("trunk-b".into(), secs(10), secs(2), secs(2)),
            ("crm".into(), secs(10), secs(2), secs(5)),
            ("st".into(), secs(60), secs(2), secs(5)),
            ("ag".into(), secs(10), secs(2), secs(5)),
            ("quick".into(), secs(1), secs(1), secs(1)),
        ]
    );
}

/// Every probe key error names its path, whichever part of the entry (common
/// or the type's own keys) it is in, and all of them come out in one run.
#[test]
fn probe_key_errors_keep_their_path() {
    let src = BASE.replace(
        "transport=udp\"",
        "transport=udp\"\ntimeout = 5\naccept = \"2xx\"\nmin = 2\nretries = 1",
    );
    let errs = errors(&src);
    for (key, why) in [
        ("probes[0] (trunk-a).timeout", "invalid type"),
        ("probes[0] (trunk-a).accept", "invalid type"),
        (
            "probes[0] (trunk-a).min",
            "`min` does not apply to probes of type sip",
        ),
        ("probes[0] (trunk-a).retries", "unknown key `retries`"),
    ] {
        assert!(
            errs.iter().any(|e| e.key == key && e.reason.contains(why)),
            "no {key}: {why} in:\n{}",
            render(&errs)
        );
    }
    assert_eq!(errs.len(), 4, "{}", render(&errs));
    // A required key of the wrong type is reported once, not again as missing.
    let src = BASE.replace(
        "target = \"sip:trunk-a.example.net:5060;transport=udp\"",
        "target = 5",
    );
    let errs = errors(&src);
    assert_eq!(errs.len(), 1, "{}", render(&errs));
    assert_eq!(errs[0].key, "probes[0] (trunk-a).target");
}

#[test]
fn probe_types_must_be_known() {
    assert_error(
        &with("[[probes]]\nid = \"x\"\ntype = \"icmp\"\n"),
        "probes[2] (x).type",
        "unknown value `icmp`; expected one of: sip, http, statuspage, agents",
    );
    assert_error(
        &with("[[probes]]\nid = \"x\"\nurl = \"https://x.example/\"\n"),
        "probes[2] (x)",
        "missing required key `type`",
    );
}

/// Request headers are checked by check-config, not first at `run`.
#[test]
fn probe_headers_are_validated() {
    assert_error(
        &with(
            "[[probes]]\nid = \"crm\"\ntype = \"http\"\nurl = \"https://crm.example/\"\nheaders = { \"bad header\" = \"v\" }\n",
        ),
        "probes[2] (crm).headers",
        "not a valid header name",
    );
}

/// Self-check canaries are judged by the self-check's own parser: a canary
/// check-config accepts is one `run` can start.
#[test]
fn self_check_canaries_are_parsed_as_run_parses_them() {
    for (canary, why) in [
        ("tcp://a:b:53", "not a canary URL"),
        ("udp://9.9.9.9:0", "need a port"),
        ("udp://9.9.9.9", "need a port"),
        ("icmp://1.1.1.1", "unsupported scheme"),
    ] {
        assert_error(
            &with(&format!(
                "[engine]\nself_check = [{canary:?}, \"https://www.example.com/\"]\n"
            )),
            "engine.self_check[0]",
            why,
        );
    }
    load(&with(
        "[engine]\nself_check = [\"udp://9.9.9.9:53\", \"tcp://[2620:fe::fe]:853\", \"https://www.example.com/\"]\n",
    ))
    .unwrap();
}

/// Test calls cost money: check-config refuses a call probe faster than
/// 30s (fast re-checks included) and a zero bound on calls in flight, and
/// call keys on another type are named as such.
#[test]
fn call_probes_are_rate_limited_and_keys_stay_with_their_type() {
    let src = with(
        "[[probes]]\nid = \"test-call\"\ntype = \"call\"\ntarget = \"sip:+14155550100@sbc.example\"\n\
         interval = \"10s\"\nfast_interval = \"2s\"\n\
         [[probes]]\nid = \"crm\"\ntype = \"http\"\nurl = \"https://crm.example/\"\nmin_media = \"1s\"\n",
    ) + "\n[engine]\nmax_concurrent_calls = 0\n";
    assert_error(
        &src,
        "probes[2] (test-call).interval",
        "out of range (30s to 1h)",
    );
    assert_error(
        &src,
        "probes[2] (test-call).fast_interval",
        "out of range (30s to 1h)",
    );
    assert_error(
        &src,
        "probes[3] (crm).min_media",
        "`min_media` does not apply to probes of type http",
    );
    assert_error(&src, "engine.max_concurrent_calls", "out of range");

    let ok = with(
        "[[probes]]\nid = \"test-call\"\ntype = \"call\"\ntarget = \"sip:+14155550100@sbc.example\"\n",
    );
    let cfg = load(&ok).unwrap();
    assert_eq!(cfg.raw.engine.max_concurrent_calls, 2);
    let call = cfg
        .probe_settings
        .iter()
        .find(|p| p.id == "test-call")
        .unwrap();
    assert_eq!(
        call.cadence.fast_interval,
        std::time::Duration::from_secs(30)
    );
}

#[test]
fn a_relative_sqlite_store_path_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = with("[store]\nurl = \"sqlite://state/x.db\"");
    let cfg = config::from_toml_str_strict(&src, "test.toml", dir.path(), false).unwrap();
    let expected = format!("sqlite://{}", dir.path().join("state/x.db").display());
    assert_eq!(cfg.raw.store.url, expected);

    // The default is a relative path too, so it follows the file as well.
    let cfg = config::from_toml_str_strict(BASE, "test.toml", dir.path(), false).unwrap();
    let expected = format!(
        "sqlite://{}",
        dir.path().join("state/continuity-agent.db").display()
    );
    assert_eq!(cfg.raw.store.url, expected);

    // An absolute path is kept as written.
    let abs = dir.path().join("abs.db");
    let src = with(&format!("[store]\nurl = \"sqlite://{}\"", abs.display()));
    let cfg =
        config::from_toml_str_strict(&src, "test.toml", Path::new("/elsewhere"), false).unwrap();
    assert_eq!(cfg.raw.store.url, format!("sqlite://{}", abs.display()));
}

/// `[agent]` limits and TLS: both TLS files or neither, a pair that loads,
/// ranges, and a warning when the API is reachable beyond this host in clear.
#[test]
fn agent_limits_and_tls_are_checked() {
    assert_error(
        &with("[agent]\nmax_connections = 0"),
        "agent.max_connections",
        "out of range",
    );
    assert_error(
        &with("[agent]\nheader_read_timeout = \"0s\""),
        "agent.header_read_timeout",
        "out of range",
    );
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let cert = tls.join("server.pem").display().to_string();
    let key = tls.join("server.key").display().to_string();
    assert_error(
        &with(&format!("[agent]\ntls_cert_file = \"{cert}\"")),
        "agent.tls_key_file",
        "missing",
    );
    // A certificate where the key should be: named, with the file.
    assert_error(
        &with(&format!(
            "[agent]\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{cert}\""
        )),
        "agent.tls_cert_file",
        "server.pem",
    );
    let open = load(&with("[agent]\nlisten = \"0.0.0.0:8080\"")).unwrap();
    assert!(
        open.warnings
            .iter()
            .any(|w| w.key == "agent.listen" && w.reason.contains("no TLS")),
        "{:?}",
        open.warnings
    );
    let secured = load(&with(&format!(
        "[agent]\nlisten = \"0.0.0.0:8080\"\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\""
    )))
    .unwrap();
    assert!(
        !secured.warnings.iter().any(|w| w.key == "agent.listen"),
        "{:?}",
        secured.warnings
    );
}

/// A secret written as a number or a boolean is a type error that names the
/// key and the type, never the value.
#[test]
fn numeric_secrets_are_not_echoed_in_errors() {
    let src = BASE.replace(
        "client_secret = \"s3cr3t-value-do-not-print\"",
        "client_secret = 987654321987",
    );
    let errs = errors(&src);
    let text = render(&errs);
    assert!(
        errs.iter()
            .any(|e| e.key == "talkdesk.client_secret" && e.reason.contains("found an integer")),
        "{text}"
    );
    assert!(!text.contains("987654321987"), "{text}");
}

/// A secret that breaks the TOML itself (digits beyond a 64-bit integer, an
/// unterminated string) is a parse error; the parser quotes the offending
/// line, and that line must not reach the error: line, column and reason do.
#[test]
fn toml_syntax_errors_do_not_quote_the_secret_line() {
    for (line, secret) in [
        (
            "client_secret = 31415926535897932384",
            "31415926535897932384",
        ),
        (
            "client_secret = \"unterminated-s3cr3t",
            "unterminated-s3cr3t",
        ),
        ("client_secret = 0x5EC2E7_5EC2E7_G00D", "5EC2E7_5EC2E7"),
    ] {
        let src = BASE.replace("client_secret = \"s3cr3t-value-do-not-print\"", line);
        let errs = errors(&src);
        let text = render(&errs);
        assert!(text.contains("not valid TOML"), "{text}");
        assert!(text.contains("line 5"), "where it is: {text}");
        assert!(!text.contains(secret), "{text}");
    }
}

/// Webhook secrets are at least 16 characters; a Grafana HMAC without a
/// signed timestamp is a warning (a captured delivery replays forever).
#[test]
fn webhook_secrets_have_a_minimum_length_and_unsigned_times_are_warned() {
    assert_error(
        &with("[webhooks.alertmanager]\nbearer_token = \"short\""),
        "webhooks.alertmanager.bearer_token",
        "at least 16",
    );
    assert_error(
        &with("[webhooks.pagerduty]\nhmac_secret = \"pd-hmac\""),
        "webhooks.pagerduty.hmac_secret",
        "at least 16",
    );
    let unsigned = load(&with(
        "[webhooks.grafana]\nhmac_secret = \"gf-hmac-0123456789abcdef\"",
    ))
    .unwrap();
    assert!(
        unsigned
            .warnings
            .iter()
            .any(|w| w.key == "webhooks.grafana.timestamp_header" && w.reason.contains("replayed")),
        "{:?}",
        unsigned.warnings
    );
    let signed = load(&with(
        "[webhooks.grafana]\nhmac_secret = \"gf-hmac-0123456789abcdef\"\ntimestamp_header = \"X-Grafana-Alerting-Signature-Timestamp\"",
    ))
    .unwrap();
    assert!(signed.warnings.is_empty(), "{:?}", signed.warnings);
}
