//! Delivery logs name the source, result and keys, and never a credential.
//! Its own test binary: the subscriber is installed globally, so spans from
//! every runtime thread are captured, with no other test running alongside.

mod alerts_support;

use std::sync::Arc;

use alerts_support::*;
use continuity_agent::alerts::auth::sign_hex;

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One line per delivery, accepted or refused, and no secret in any of them.
#[tokio::test]
async fn logs_name_deliveries_but_never_credentials() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

    let mut a = start(Opts::default()).await;
    let am = fixture("alertmanager-firing.json");
    let trig = fixture("pagerduty-triggered.json");
    let good_sig = format!(
        "v1={}",
        sign_hex("pd-hmac-0123456789abcdef", &[trig.as_bytes()])
    );
    let requests = [
        a.post("/v1/alerts/alertmanager", am.clone())
            .bearer_auth("am-token-0123456789abcdef"),
        a.post("/v1/alerts/alertmanager", am.clone())
            .basic_auth("am", Some("am-pass-wrong")),
        a.post("/v1/alerts/generic", am.clone())
            .bearer_auth("api-read-0123456789"),
        a.post("/v1/alerts/pagerduty", trig.clone())
            .header("X-PagerDuty-Signature", &good_sig),
        a.post("/v1/alerts/datadog", am.clone())
            .header("X-Continuity-Key", "dd-secret-wrong"),
        a.post("/v1/alerts/statuspage/sp-0123456789abcdeX", am.clone()),
    ];
    for r in requests {
        r.send().await.unwrap();
    }
    a.drain();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("Alert delivery accepted."), "{text}");
    assert!(text.contains("+1a30ba71cca2921f"), "{text}");
    assert!(text.contains("Alert delivery refused."), "{text}");
    for secret in [
        "am-token-0123456789abcdef",
        "am-pass-0123456789abcdef",
        "YW06YW0tcGFzcy13cm9uZw", // base64 of the wrong basic pair
        "api-read-0123456789",
        "pd-hmac-0123456789abcdef",
        &good_sig[3..],
        "dd-secret-0123456789abcdef",
        "sp-0123456789abcde",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into logs:\n{text}");
    }
}
