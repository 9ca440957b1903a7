//! Status page evaluation on the fixtures in tests/fixtures/statuspage/ (the
//! served, end-to-end variant is tests/probe_statuspage.rs).

use serde_json::Value;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/statuspage/",
            $name
        ))
    };
}

fn page(text: &str) -> Page {
    let v: Value = serde_json::from_str(text).unwrap();
    Page::from_json(v, None).unwrap()
}

fn eval(p: &Page, watch: &[&str], down_at: Level) -> (bool, String) {
    let watch: Vec<String> = watch.iter().map(|s| s.to_string()).collect();
    evaluate(p, &watch, down_at)
}

#[test]
fn formats_are_detected() {
    for (text, format) in [
        (fixture!("atlassian-summary-ok.json"), Format::Atlassian),
        (fixture!("atlassian-status.json"), Format::Atlassian),
        (fixture!("atlassian-components.json"), Format::Atlassian),
        (fixture!("incidentio-summary.json"), Format::IncidentIo),
        (fixture!("incidentio-proxy.json"), Format::IncidentIoProxy),
        (fixture!("instatus-summary.json"), Format::Instatus),
        (fixture!("instatus-up.json"), Format::Instatus),
    ] {
        assert_eq!(page(text).format, format, "{text}");
    }
    let err = Page::from_json(serde_json::json!({"hello": 1}), None).unwrap_err();
    assert!(err.contains("set `format`"), "{err}");
    // An explicit format that does not fit the body is explained.
    let err = Page::from_json(serde_json::json!({"page": {}}), Some(Format::Instatus)).unwrap_err();
    assert!(err.starts_with("not a valid Instatus document"), "{err}");
}

#[test]
fn atlassian_indicator_without_components() {
    let ok = page(fixture!("atlassian-summary-ok.json"));
    assert_eq!(
        eval(&ok, &[], Level::Major),
        (true, "indicator none (All Systems Operational)".into())
    );
    let outage = page(fixture!("atlassian-summary-outage.json"));
    // major ~ partial outage: below the default threshold, at partial_outage.
    assert!(eval(&outage, &[], Level::Major).0);
    assert_eq!(
        eval(&outage, &[], Level::Partial),
        (
            false,
            "indicator major (Partial System Outage): at or above partial_outage".into()
        )
    );
    let critical = page(fixture!("atlassian-status.json"));
    assert_eq!(
        eval(&critical, &[], Level::Major),
        (
            false,
            "indicator critical (Major Service Outage): at or above major_outage".into()
        )
    );
    let maint = page(fixture!("atlassian-status-maintenance.json"));
    assert!(
        eval(&maint, &[], Level::Degraded).0,
        "maintenance is not an outage"
    );
}

#[test]
fn atlassian_components_groups_and_unknown_values() {
    let ok = page(fixture!("atlassian-summary-ok.json"));
    assert_eq!(
        eval(&ok, &["voice", "SMS"], Level::Degraded),
        (true, "Voice: operational, SMS: under_maintenance".into())
    );

    let outage = page(fixture!("atlassian-summary-outage.json"));
    assert_eq!(
        eval(&outage, &["Voice"], Level::Major),
        (true, "Voice: partial_outage".into())
    );
    assert!(!eval(&outage, &["Voice"], Level::Partial).0);
    // The group is only degraded itself, but a child is in major outage.
    assert_eq!(
        eval(&outage, &["telephony"], Level::Major),
        (
            false,
            "Telephony: major_outage (Inbound Calls): at or above major_outage".into()
        )
    );
    // A child alone.
    assert!(eval(&outage, &["Outbound Calls"], Level::Degraded).0);
    // "high" is not a component status: degraded, not an error.
    assert_eq!(
        eval(&outage, &["SMS"], Level::Partial),
        (true, "SMS: unknown status (counted as degraded)".into())
    );
    assert!(!eval(&outage, &["SMS"], Level::Degraded).0);
    // The worst of several names decides.
    assert!(!eval(&outage, &["SMS", "Inbound Calls"], Level::Major).0);
}

#[test]
fn unknown_component_names_fail_and_list_what_exists() {
    let ok = page(fixture!("atlassian-summary-ok.json"));
    let (success, detail) = eval(&ok, &["Vioce"], Level::Major);
    assert!(!success);
    assert_eq!(
        detail,
        "unknown component \"Vioce\"; available: Inbound Calls, Outbound Calls, SMS, Telephony, Voice"
    );
}

#[test]
fn atlassian_components_only_document_uses_worst_component() {
    let p = page(fixture!("atlassian-components.json"));
    assert_eq!(
        eval(&p, &[], Level::Partial),
        (
            false,
            "worst component Apps: partial_outage: at or above partial_outage".into()
        )
    );
    assert!(eval(&p, &["Voice"], Level::Degraded).0);
}

#[test]
fn incident_io_widget_summary() {
    let p = page(fixture!("incidentio-summary.json"));
    // Page level: worst ongoing impact (partial_outage).
    assert_eq!(
        eval(&p, &[], Level::Partial),
        (
            false,
            "ongoing: Login failing: at or above partial_outage".into()
        )
    );
    assert!(eval(&p, &[], Level::Major).0);
    // full_outage is incident.io's major outage; the group name selects it.
    assert_eq!(
        eval(&p, &["Voice"], Level::Major),
        (
            false,
            "Voice: major_outage (SIP Trunking): at or above major_outage".into()
        )
    );
    assert!(!eval(&p, &["sip trunking"], Level::Major).0);
    // Maintenance is fine; unlisted components are not affected.
    assert_eq!(
        eval(&p, &["Reporting", "Billing"], Level::Degraded),
        (
            true,
            "Reporting: under_maintenance, Billing: not affected".into()
        )
    );
    let calm = page(fixture!("incidentio-summary-ok.json"));
    assert_eq!(
        eval(&calm, &[], Level::Degraded),
        (true, "no ongoing incidents".into())
    );
}

#[test]
fn incident_io_proxy_shape() {
    let p = page(fixture!("incidentio-proxy.json"));
    assert_eq!(
        eval(&p, &["Core"], Level::Degraded),
        (
            false,
            "Core: degraded_performance (Web App): at or above degraded_performance".into()
        )
    );
    assert!(eval(&p, &["API"], Level::Degraded).0);
    // An unknown status value ("sideways") counts as degraded.
    assert_eq!(
        eval(&p, &["Voice Integration"], Level::Partial),
        (
            true,
            "Voice Integration: unknown status (counted as degraded)".into()
        )
    );
    assert!(!eval(&p, &["Nope"], Level::Major).0);
    assert!(eval(&p, &[], Level::Partial).0);
}

#[test]
fn instatus_summary() {
    let p = page(fixture!("instatus-summary.json"));
    assert_eq!(
        eval(&p, &[], Level::Major),
        (
            false,
            "page HASISSUES (Messages delayed): at or above major_outage".into()
        )
    );
    assert!(!eval(&p, &["messaging"], Level::Major).0);
    assert!(eval(&p, &["MMS", "Dashboard"], Level::Degraded).0);
    let up = page(fixture!("instatus-up.json"));
    assert_eq!(eval(&up, &[], Level::Degraded), (true, "page UP".into()));
    let (ok, detail) = eval(&up, &["SMS"], Level::Major);
    assert!(!ok);
    assert!(detail.contains("lists no components"), "{detail}");
}

#[test]
fn config_values_are_checked() {
    assert_eq!(Level::parse_down_at("partial_outage"), Ok(Level::Partial));
    assert!(
        Level::parse_down_at("major")
            .unwrap_err()
            .contains("use one of degraded_performance")
    );
    // Only the documented spellings: what check-config accepts is what runs.
    assert!(Level::parse_down_at(" major_outage").is_err());
    assert_eq!(Format::parse("incidentio"), Ok(Format::IncidentIo));
    assert_eq!(Format::parse("statuspage"), Ok(Format::Atlassian));
    for bad in ["pagerduty", "incident.io", "auto", ""] {
        assert!(Format::parse(bad).is_err(), "{bad}");
    }
    assert!(Level::Degraded < Level::Partial && Level::Partial < Level::Major);
}
