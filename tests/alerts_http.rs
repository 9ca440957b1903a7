//! The alert webhook routes over real HTTP: every source with real-shaped
//! payloads, every credential kind, and a bad-input matrix. Each test reads the
//! engine channel to assert exactly which events were emitted (and that refused
//! deliveries emitted none).

mod alerts_support;

use std::time::Duration;

use alerts_support::*;
use continuity_agent::alerts::auth::sign_hex;
use continuity_agent::alerts::ratelimit::RateLimit;
use continuity_agent::engine::event::Event;
use reqwest::StatusCode;

#[tokio::test]
async fn alertmanager_firing_resolved_and_redelivery() {
    let mut a = start(Opts::default()).await;
    let firing = fixture("alertmanager-firing.json");
    let resp = a
        .post("/v1/alerts/alertmanager", firing.clone())
        .bearer_auth("am-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    let (s, v) = json(resp).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(v, serde_json::json!({"accepted": 1, "ignored": 0}));
    let ev = a.drain();
    assert_eq!(ev.len(), 1);
    match &ev[0] {
        Event::AlertFiring {
            key: k,
            labels,
            summary,
        } => {
            assert_eq!(k, &key("alertmanager", "1a30ba71cca2921f"));
            assert_eq!(labels["alertname"], "ProbeFailure");
            assert_eq!(summary.as_deref(), Some("BlackBox Probe Failure"));
        }
        other => panic!("{other:?}"),
    }

    // Alertmanager re-sends every repeat_interval: same key, refreshed.
    let resp = a
        .post("/v1/alerts/alertmanager", firing)
        .basic_auth("am", Some("am-pass-0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let again = a.drain();
    assert_eq!(again, ev);

    let resp = a
        .post(
            "/v1/alerts/alertmanager",
            fixture("alertmanager-resolved.json"),
        )
        .bearer_auth("am-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        a.drain(),
        vec![Event::AlertResolved {
            key: key("alertmanager", "1a30ba71cca2921f")
        }]
    );
    assert_eq!(a.count("alertmanager", "accepted"), 3);
}

#[tokio::test]
async fn credentials_matrix() {
    let mut a = start(Opts::default()).await;
    let body = fixture("alertmanager-firing.json");

    // Missing: 401 with both challenges the route accepts.
    let resp = a
        .post("/v1/alerts/alertmanager", body.clone())
        .send()
        .await
        .unwrap();
    let challenges: Vec<String> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic")),
        "{challenges:?}"
    );
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;

    for req in [
        a.post("/v1/alerts/alertmanager", body.clone())
            .bearer_auth("am-tokeN"),
        a.post("/v1/alerts/alertmanager", body.clone())
            .bearer_auth("gen-token-0123456789abcdef"),
        a.post("/v1/alerts/alertmanager", body.clone())
            .basic_auth("am", Some("nope")),
        a.post("/v1/alerts/alertmanager", body.clone())
            .basic_auth("xx", Some("am-pass-0123456789abcdef")),
        a.post("/v1/alerts/alertmanager", body.clone())
            .header("authorization", "Digest x"),
        a.post("/v1/alerts/alertmanager", body.clone())
            .header("authorization", "Basic !!!"),
    ] {
        let resp = req.send().await.unwrap();
        let v = expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
        // The detail never echoes a credential.
        let d = v["detail"].as_str().unwrap();
        for secret in [
            "am-token-0123456789abcdef",
            "am-pass-0123456789abcdef",
            "gen-token-0123456789abcdef",
            "nope",
        ] {
            assert!(!d.contains(secret), "{d}");
        }
    }

    // An API token with the alerts scope works on any route but statuspage...
    for path in ["/v1/alerts/alertmanager", "/v1/alerts/generic"] {
        let b = if path.ends_with("generic") {
            fixture("generic-firing.json")
        } else {
            body.clone()
        };
        let resp = a
            .post(path, b)
            .bearer_auth("api-alerts-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{path}");
    }
    // ...including PagerDuty, without a signature.
    let resp = a
        .post("/v1/alerts/pagerduty", fixture("pagerduty-triggered.json"))
        .bearer_auth("api-alerts-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(a.drain().len(), 3);

    // A valid token without the scope: 403, also where HMAC is the credential.
    for path in ["/v1/alerts/alertmanager", "/v1/alerts/pagerduty"] {
        let b = if path.ends_with("pagerduty") {
            fixture("pagerduty-triggered.json")
        } else {
            body.clone()
        };
        let resp = a
            .post(path, b)
            .bearer_auth("api-read-0123456789")
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::FORBIDDEN, "forbidden").await;
    }
    assert!(a.drain().is_empty());
    assert_eq!(a.count("alertmanager", "unauthorized"), 7);
    assert_eq!(a.count("alertmanager", "forbidden"), 1);
}

fn grafana_signed(a: &Agent, body: &str, ts: &str, secret: &str) -> reqwest::RequestBuilder {
    let sig = sign_hex(secret, &[ts.as_bytes(), b":", body.as_bytes()]);
    a.post("/v1/alerts/grafana", body.to_string())
        .basic_auth("gf", Some("gf-pass-0123456789abcdef"))
        .header("X-Grafana-Alerting-Signature", sig)
        .header("X-Grafana-Alerting-Signature-Timestamp", ts)
}

#[tokio::test]
async fn grafana_signature_and_replay_protection() {
    let mut a = start(Opts::default()).await;
    let firing = fixture("grafana-firing.json");
    let now_s = (NOW_MS / 1000).to_string();

    let resp = grafana_signed(&a, &firing, &now_s, "gf-hmac-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let ev = a.drain();
    assert_eq!(
        ev.iter().filter_map(firing_key).collect::<Vec<_>>(),
        vec![&key("grafana", "57c6d9296de2ad39")]
    );
    let resp = grafana_signed(
        &a,
        &fixture("grafana-resolved.json"),
        &now_s,
        "gf-hmac-0123456789abcdef",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        a.drain(),
        vec![Event::AlertResolved {
            key: key("grafana", "57c6d9296de2ad39")
        }]
    );

    // Replayed: a correctly signed delivery from an hour ago.
    let old = ((NOW_MS - 3_600_000) / 1000).to_string();
    let resp = grafana_signed(&a, &firing, &old, "gf-hmac-0123456789abcdef")
        .send()
        .await
        .unwrap();
    let v = expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(v["detail"].as_str().unwrap().contains("replayed"), "{v}");
    // From the future, likewise; milliseconds are understood.
    let future = ((NOW_MS + 3_600_000) / 1000).to_string();
    let resp = grafana_signed(&a, &firing, &future, "gf-hmac-0123456789abcdef")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let resp = grafana_signed(&a, &firing, &NOW_MS.to_string(), "gf-hmac-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    a.drain();

    // Wrong secret, tampered body, missing signature, missing timestamp.
    let resp = grafana_signed(&a, &firing, &now_s, "other")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let sig = sign_hex(
        "gf-hmac-0123456789abcdef",
        &[now_s.as_bytes(), b":", firing.as_bytes()],
    );
    let tampered = firing.replace("critical", "warning");
    let resp = a
        .post("/v1/alerts/grafana", tampered)
        .basic_auth("gf", Some("gf-pass-0123456789abcdef"))
        .header("X-Grafana-Alerting-Signature", &sig)
        .header("X-Grafana-Alerting-Signature-Timestamp", &now_s)
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let resp = a
        .post("/v1/alerts/grafana", firing.clone())
        .basic_auth("gf", Some("gf-pass-0123456789abcdef"))
        .header("X-Grafana-Alerting-Signature-Timestamp", &now_s)
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let resp = a
        .post("/v1/alerts/grafana", firing.clone())
        .basic_auth("gf", Some("gf-pass-0123456789abcdef"))
        .header(
            "X-Grafana-Alerting-Signature",
            sign_hex("gf-hmac-0123456789abcdef", &[firing.as_bytes()]),
        )
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // A good signature does not replace the Basic credential (all factors count).
    let resp = a
        .post("/v1/alerts/grafana", firing.clone())
        .header("X-Grafana-Alerting-Signature", &sig)
        .header("X-Grafana-Alerting-Signature-Timestamp", &now_s)
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(a.drain().is_empty());
}

fn pagerduty(a: &Agent, body: &str, signature: &str, webhook_id: &str) -> reqwest::RequestBuilder {
    a.post("/v1/alerts/pagerduty", body.to_string())
        .header("X-PagerDuty-Signature", signature)
        .header("X-Webhook-Id", webhook_id)
}

#[tokio::test]
async fn pagerduty_signatures_events_and_dedupe() {
    let mut a = start(Opts::default()).await;
    let trig = fixture("pagerduty-triggered.json");
    let sig = format!(
        "v1={}",
        sign_hex("pd-hmac-0123456789abcdef", &[trig.as_bytes()])
    );

    let resp = pagerduty(&a, &trig, &sig, "wh-1").send().await.unwrap();
    let (s, v) = json(resp).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(v, serde_json::json!({"accepted": 1, "ignored": 0}));
    let ev = a.drain();
    assert_eq!(ev.len(), 1);
    match &ev[0] {
        Event::AlertFiring { key: k, labels, .. } => {
            assert_eq!(k, &key("pagerduty", "PGR0VU2"));
            assert_eq!(labels["urgency"], "high");
            assert_eq!(labels["priority"], "P1");
            assert_eq!(labels["service"], "API Service");
        }
        other => panic!("{other:?}"),
    }

    // PagerDuty retries the same delivery: a duplicate, nothing emitted.
    let resp = pagerduty(&a, &trig, &sig, "wh-1").send().await.unwrap();
    let (s, v) = json(resp).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(v["duplicate"], true);
    assert!(a.drain().is_empty());
    assert_eq!(a.count("pagerduty", "duplicate"), 1);

    // Secret rotation: several signatures, one matches.
    let res = fixture("pagerduty-resolved.json");
    let rotated = format!(
        "v1={},v1={}",
        sign_hex("old-secret", &[res.as_bytes()]),
        sign_hex("pd-hmac-0123456789abcdef", &[res.as_bytes()])
    );
    let resp = pagerduty(&a, &res, &rotated, "wh-2").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        a.drain(),
        vec![Event::AlertResolved {
            key: key("pagerduty", "PGR0VU2")
        }]
    );

    // Other event types: accepted, ignored, no change.
    let pri = fixture("pagerduty-priority-updated.json");
    let sig_pri = format!(
        "v1={}",
        sign_hex("pd-hmac-0123456789abcdef", &[pri.as_bytes()])
    );
    let resp = pagerduty(&a, &pri, &sig_pri, "wh-3").send().await.unwrap();
    let (s, v) = json(resp).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(v, serde_json::json!({"accepted": 0, "ignored": 1}));
    assert!(a.drain().is_empty());
    assert_eq!(a.count("pagerduty", "ignored"), 1);

    // Out of order: PagerDuty retries the 18:45 "triggered" after the 19:05
    // "resolved". The route accepts it (a new delivery id); whoever applies
    // inputs ignores it, by its event time (tests/inputs_durable.rs).
    let resp = pagerduty(&a, &trig, &sig, "wh-retry").send().await.unwrap();
    let (s, v) = json(resp).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(v, serde_json::json!({"accepted": 1, "ignored": 0}));
    assert_eq!(a.drain().len(), 1);

    // Bad signatures: wrong secret, body tampered, none, not hex.
    for (body, sig) in [
        (
            trig.clone(),
            format!("v1={}", sign_hex("wrong", &[trig.as_bytes()])),
        ),
        (trig.replace("high", "low"), sig.clone()),
        (trig.clone(), "v1=nothex".to_string()),
        (trig.clone(), String::new()),
    ] {
        let resp = pagerduty(&a, &body, &sig, "wh-9").send().await.unwrap();
        expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    // A refused delivery id is not remembered: the genuine one still goes
    // through (a re-trigger after the resolution, so it is newer).
    let later = trig.replace("2020-10-02T18:45:22.169Z", "2020-10-02T19:10:00.000Z");
    let later_sig = format!(
        "v1={}",
        sign_hex("pd-hmac-0123456789abcdef", &[later.as_bytes()])
    );
    let resp = pagerduty(&a, &later, &later_sig, "wh-9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(a.drain().len(), 1);
}

/// An event time beyond `max_skew` (default 5m) in the future is refused:
/// remembered, it would make the real "resolved" look older and be ignored.
#[tokio::test]
async fn an_event_dated_in_the_future_is_refused() {
    let mut a = start(Opts::default()).await;
    let trig = fixture("pagerduty-triggered.json");
    let at = |ms: i64| {
        let t = continuity_agent::domain::Timestamp::from_millis(ms).to_rfc3339();
        trig.replace("2020-10-02T18:45:22.169Z", &t)
    };
    let signed = |body: String| {
        let sig = format!(
            "v1={}",
            sign_hex("pd-hmac-0123456789abcdef", &[body.as_bytes()])
        );
        (body, sig)
    };

    let (body, sig) = signed(at(NOW_MS + 3_600_000));
    let resp = pagerduty(&a, &body, &sig, "wh-future")
        .send()
        .await
        .unwrap();
    let v = expect_error(resp, StatusCode::UNPROCESSABLE_ENTITY, "invalid").await;
    assert!(v["detail"].as_str().unwrap().contains("future"), "{v}");
    assert!(a.drain().is_empty(), "nothing accepted");

    // Within the skew: a sender's clock a little ahead is fine.
    let (body, sig) = signed(at(NOW_MS + 240_000));
    let resp = pagerduty(&a, &body, &sig, "wh-skewed")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(a.drain().len(), 1);
}

#[tokio::test]
async fn datadog_opsgenie_statuspage_generic() {
    let mut a = start(Opts::default()).await;

    // Datadog: custom header.
    let resp = a
        .post("/v1/alerts/datadog", fixture("datadog-triggered.json"))
        .header("X-Continuity-Key", "dd-secret-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = a
        .post("/v1/alerts/datadog", fixture("datadog-recovered.json"))
        .header("X-Continuity-Key", "dd-secret-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let dd = key("datadog", "1234567/host:pbx-1");
    let ev = a.drain();
    assert_eq!(firing_key(&ev[0]), Some(&dd));
    assert_eq!(ev[1], Event::AlertResolved { key: dd });
    let resp = a
        .post("/v1/alerts/datadog", fixture("datadog-triggered.json"))
        .header("X-Continuity-Key", "dd-secreT")
        .send()
        .await
        .unwrap();
    let v = expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Neither the value nor the custom header's name is echoed.
    let d = v["detail"].as_str().unwrap().to_ascii_lowercase();
    assert!(
        !d.contains("x-continuity-key") && !d.contains("dd-secre"),
        "{d}"
    );

    // Opsgenie: Create fires, Acknowledge is ignored, Close resolves.
    for (f, want) in [
        ("opsgenie-create.json", Some(true)),
        ("opsgenie-acknowledge.json", None),
        ("opsgenie-close.json", Some(false)),
    ] {
        let resp = a
            .post("/v1/alerts/opsgenie", fixture(f))
            .bearer_auth("og-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let ev = a.drain();
        let og = key("opsgenie", "052652ac-5d1c-464a-812a-7dd18bbfba8c");
        match want {
            Some(true) => assert_eq!(firing_key(&ev[0]), Some(&og)),
            Some(false) => assert_eq!(ev, vec![Event::AlertResolved { key: og }]),
            None => assert!(ev.is_empty()),
        }
    }

    // Statuspage: the secret path is the credential.
    let path = "/v1/alerts/statuspage/sp-0123456789abcdef";
    for (f, comp_firing) in [
        ("statuspage-component.json", true),
        ("statuspage-component-operational.json", false),
    ] {
        let resp = a.post(path, fixture(f)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let ev = a.drain();
        assert_eq!(ev.len(), 1);
        assert_eq!(matches!(ev[0], Event::AlertFiring { .. }), comp_firing);
    }
    let resp = a
        .post(path, fixture("statuspage-incident.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        a.drain().iter().filter_map(firing_key).collect::<Vec<_>>(),
        vec![&key("statuspage", "lbkhbwn21v5q")]
    );
    for req in [
        a.post(
            "/v1/alerts/statuspage/sp-0123456789abcdeX",
            fixture("statuspage-incident.json"),
        ),
        a.post("/v1/alerts/statuspage", fixture("statuspage-incident.json")),
        // API tokens do not open the Statuspage route.
        a.post("/v1/alerts/statuspage", fixture("statuspage-incident.json"))
            .bearer_auth("api-alerts-0123456789"),
    ] {
        let resp = req.send().await.unwrap();
        expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }

    // Generic: one alert, an array, a CloudEvent (deduplicated on source+id).
    let resp = a
        .post(
            "/v1/alerts/generic",
            r#"[{"id":"a","status":"firing","labels":{"x":"1"}},{"id":"b","status":"resolved"}]"#,
        )
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    let (s, v) = json(resp).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(v["accepted"], 2);
    let ev = a.drain();
    assert_eq!(firing_key(&ev[0]), Some(&key("generic", "a")));
    assert_eq!(
        ev[1],
        Event::AlertResolved {
            key: key("generic", "b")
        }
    );
    for expect_dup in [false, true] {
        let resp = a
            .post_as(
                "/v1/alerts/generic",
                fixture("cloudevent.json"),
                "application/cloudevents+json; charset=utf-8",
            )
            .bearer_auth("gen-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        let (s, v) = json(resp).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert_eq!(v["duplicate"].as_bool().unwrap_or(false), expect_dup, "{v}");
        assert_eq!(a.drain().len(), usize::from(!expect_dup));
    }
    // Binary mode: generic body, identity in ce-* headers.
    for expect_dup in [false, true] {
        let resp = a
            .post("/v1/alerts/generic", fixture("generic-firing.json"))
            .header("ce-specversion", "1.0")
            .header("ce-source", "/monitors/voice")
            .header("ce-id", "B-1")
            .header("ce-type", "com.example.alert")
            .bearer_auth("gen-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        let (s, v) = json(resp).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert_eq!(v["duplicate"].as_bool().unwrap_or(false), expect_dup, "{v}");
        assert_eq!(a.drain().len(), usize::from(!expect_dup));
    }
    assert!(a.drain().is_empty());
}

#[tokio::test]
async fn cloudevents_webhook_handshake() {
    let a = start(Opts {
        rate: Some(RateLimit {
            burst: 10,
            per_second: 2,
        }),
        ..Opts::default()
    })
    .await;
    let resp = a
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/alerts/generic", a.base),
        )
        .header("WebHook-Request-Origin", "eventemitter.example.com")
        .header("WebHook-Request-Rate", "120")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["webhook-allowed-origin"],
        "eventemitter.example.com"
    );
    assert_eq!(resp.headers()["webhook-allowed-rate"], "120");
    // Only the generic route speaks CloudEvents.
    let resp = a
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/alerts/datadog", a.base),
        )
        .header("WebHook-Request-Origin", "eventemitter.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_matrix_emits_nothing() {
    let mut a = start(Opts::default()).await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_inside = format!(
        "{{\"id\":\"a\",\"status\":\"firing\",\"labels\":{{}},\"summary\":null,\"x\":{deep}}}"
    );
    let huge = format!(
        "{{\"id\":\"a\",\"status\":\"firing\",\"summary\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let cases: Vec<(&str, String, Option<&str>, StatusCode, &str)> = vec![
        (
            "malformed",
            "{\"id\":".into(),
            None,
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "trailing",
            "{\"id\":\"a\",\"status\":\"firing\"} x".into(),
            None,
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "not utf-8",
            "{\"id\":\"\u{FFFD}\"".into(),
            None,
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "empty",
            String::new(),
            None,
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        ("deep", deep, None, StatusCode::BAD_REQUEST, "malformed"),
        (
            "deep inside",
            deep_inside,
            None,
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "wrong type",
            r#"{"id":1,"status":"firing"}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "unknown status",
            r#"{"id":"a","status":"pending"}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "missing status",
            r#"{"id":"a"}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "label not string",
            r#"{"id":"a","status":"firing","labels":{"n":1}}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        // One bad alert in an array rejects the whole delivery.
        (
            "half bad array",
            r#"[{"id":"a","status":"firing"},{"id":"b","status":"maybe"}]"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "empty id",
            r#"{"id":" ","status":"firing"}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "huge",
            huge,
            None,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "text/plain",
            r#"{"id":"a","status":"firing"}"#.into(),
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "form",
            "id=a".into(),
            Some("application/x-www-form-urlencoded"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "latin1",
            r#"{"id":"a","status":"firing"}"#.into(),
            Some("application/json; charset=iso-8859-1"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (name, body, ct, status, code) in cases {
        let resp = a
            .post_as("/v1/alerts/generic", body, ct.unwrap_or("application/json"))
            .bearer_auth("gen-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        let (s, v) = json(resp).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (status, Some(code)),
            "{name}: {v}"
        );
        assert!(a.drain().is_empty(), "{name} emitted events");
    }
    // Invalid UTF-8 bytes proper.
    let resp = a
        .post(
            "/v1/alerts/generic",
            vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
        )
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "malformed").await;
    // Compressed: refused, not misread as bad JSON.
    let resp = a
        .post("/v1/alerts/generic", r#"{"id":"a","status":"firing"}"#)
        .header("content-encoding", "gzip")
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    expect_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // Two Content-Type headers: ambiguous, refused.
    let resp = a
        .post("/v1/alerts/generic", r#"{"id":"a","status":"firing"}"#)
        .header("content-type", "application/json")
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    expect_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // No Content-Type at all.
    let resp = a
        .client
        .post(format!("{}/v1/alerts/generic", a.base))
        .bearer_auth("gen-token-0123456789abcdef")
        .body(r#"{"id":"a","status":"firing"}"#)
        .send()
        .await
        .unwrap();
    expect_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // Over the limit without Content-Length (chunked): stopped while reading.
    let resp = raw_request(
        &a.base,
        "POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer gen-token-0123456789abcdef\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        &{
            let mut b = Vec::new();
            for _ in 0..80 {
                b.extend_from_slice(b"400\r\n");
                b.extend_from_slice(&[b' '; 1024]);
                b.extend_from_slice(b"\r\n");
            }
            b.extend_from_slice(b"0\r\n\r\n");
            b
        },
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("\"error\":\"too_large\""), "{resp}");
    // Every source's parser refuses a 10,000-deep body with 400.
    let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    for (path, auth) in [
        ("/v1/alerts/alertmanager", "am-token-0123456789abcdef"),
        ("/v1/alerts/opsgenie", "og-token-0123456789abcdef"),
        ("/v1/alerts/datadog", "api-alerts-0123456789"),
        ("/v1/alerts/pagerduty", "api-alerts-0123456789"),
        ("/v1/alerts/grafana", "api-alerts-0123456789"),
    ] {
        let resp = a
            .post(path, deep.clone())
            .bearer_auth(auth)
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, "malformed").await;
    }
    let resp = a
        .post("/v1/alerts/statuspage/sp-0123456789abcdef", deep.clone())
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "malformed").await;
    assert!(a.drain().is_empty());
    assert!(a.count("generic", "malformed") >= 7);
    assert_eq!(a.count("generic", "too_large"), 2);
    assert_eq!(a.count("generic", "unsupported_media_type"), 6);
}

#[tokio::test]
async fn unauthenticated_requests_learn_nothing() {
    let mut a = start(Opts::default()).await;
    // Wrong media type and a huge body, but no credentials: 401 first.
    let resp = a
        .post_as("/v1/alerts/generic", "x".repeat(100 * 1024), "text/plain")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(a.drain().is_empty());
}

#[tokio::test]
async fn unknown_and_unconfigured_sources_are_the_same_404() {
    const ONLY_GENERIC: &str = r#"
[webhooks.generic]
bearer_token = "gen-token-0123456789abcdef"
"#;
    let a = start(Opts {
        config: ONLY_GENERIC,
        ..Opts::default()
    })
    .await;
    let mut bodies = Vec::new();
    for path in [
        "/v1/alerts/nagios",
        "/v1/alerts/datadog",
        "/v1/alerts/statuspage/sp-0123456789abcdef",
    ] {
        let resp = a
            .post(path, fixture("datadog-triggered.json"))
            .bearer_auth("gen-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        let (s, v) = json(resp).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        bodies.push(v["error"].clone());
    }
    assert!(bodies.iter().all(|b| b == "not_found"));
    // Not counted: probing must not grow the metric's label set. Configured
    // sources start with every result at 0.
    let families = a.metrics.registry.gather();
    let received = families
        .iter()
        .find(|f| f.name() == "continuity_alerts_received_total")
        .unwrap();
    let sources: std::collections::BTreeSet<String> = received
        .get_metric()
        .iter()
        .flat_map(|m| m.get_label())
        .filter(|l| l.name() == "source")
        .map(|l| l.value().to_string())
        .collect();
    assert_eq!(sources.into_iter().collect::<Vec<_>>(), vec!["generic"]);
    assert_eq!(received.get_metric().len(), 13);
}

#[tokio::test]
async fn full_queue_is_503_and_nothing_is_half_applied() {
    let mut a = start(Opts {
        capacity: 2,
        ..Opts::default()
    })
    .await;
    let one = r#"{"id":"a","status":"firing"}"#;
    let two = r#"[{"id":"b","status":"firing"},{"id":"c","status":"firing"}]"#;
    let resp = a
        .post("/v1/alerts/generic", one)
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // One slot left, two events: refused whole.
    let resp = a
        .post("/v1/alerts/generic", two)
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["retry-after"], "1");
    expect_error(resp, StatusCode::SERVICE_UNAVAILABLE, "overloaded").await;
    let ev = a.drain();
    assert_eq!(ev.len(), 1, "only the first delivery: {ev:?}");
    // After the engine drained the queue, the retry goes through.
    let resp = a
        .post("/v1/alerts/generic", two)
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(a.drain().len(), 2);
    // More alerts than the queue can ever hold: 422 with advice, not an endless 503.
    let three = r#"[{"id":"b","status":"firing"},{"id":"c","status":"firing"},{"id":"d","status":"firing"}]"#;
    let resp = a
        .post("/v1/alerts/generic", three)
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::UNPROCESSABLE_ENTITY, "invalid").await;
    assert!(a.drain().is_empty());
    assert_eq!(a.count("generic", "overloaded"), 1);
}

#[tokio::test]
async fn rate_limited_per_credential_with_retry_after() {
    let mut a = start(Opts {
        rate: Some(RateLimit {
            burst: 2,
            per_second: 1,
        }),
        ..Opts::default()
    })
    .await;
    let one = r#"{"id":"a","status":"firing"}"#;
    for _ in 0..2 {
        let resp = a
            .post("/v1/alerts/generic", one)
            .bearer_auth("gen-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let resp = a
        .post("/v1/alerts/generic", one)
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry));
    expect_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(a.drain().len(), 2);
    assert_eq!(a.count("generic", "rate_limited"), 1);
}

#[tokio::test]
async fn slow_body_times_out() {
    let mut a = start(Opts {
        body_timeout: Duration::from_millis(200),
        ..Opts::default()
    })
    .await;
    // Promises 100 bytes, sends 6, then stalls.
    let text = raw_request(
        &a.base,
        "POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer gen-token-0123456789abcdef\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        b"{\"id\":",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\":\"timeout\""), "{text}");
    assert!(a.drain().is_empty());
}

/// Rate limits come after authentication, per credential, with a separate
/// small budget for failed authentications: 63 guesses from an address do
/// not lock out the real sender at the same address, and one credential
/// spending its budget does not throttle another.
#[tokio::test]
async fn failed_authentications_never_lock_out_a_legitimate_sender() {
    let mut a = start(Opts {
        rate: Some(RateLimit {
            burst: 2,
            per_second: 1,
        }),
        ..Opts::default()
    })
    .await;
    let one = r#"{"id":"a","status":"firing"}"#;
    let mut statuses = Vec::new();
    for _ in 0..63 {
        let resp = a
            .post("/v1/alerts/generic", one)
            .bearer_auth("not-the-token-0123456789")
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    // The real sender, same address: accepted.
    let resp = a
        .post("/v1/alerts/generic", one)
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = a
        .post("/v1/alerts/generic", r#"{"id":"b","status":"firing"}"#)
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // generic's budget (2) is spent; alertmanager's is its own.
    let resp = a
        .post("/v1/alerts/generic", r#"{"id":"c","status":"firing"}"#)
        .bearer_auth("gen-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let am = r#"{"version":"4","status":"firing","receiver":"r","groupKey":"g","alerts":[{"status":"firing","labels":{"alertname":"X"},"fingerprint":"f1"}]}"#;
    let resp = a
        .post("/v1/alerts/alertmanager", am)
        .bearer_auth("am-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(a.drain().len(), 3);
}
