//! The pagerduty webhook parser never panics, whatever the bytes; when it accepts a
//! body, every update it returns is within the documented bounds.
#![no_main]

use continuity_agent::alerts::Source;
use continuity_agent::server::body::MediaType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = Source::PagerDuty.parse(data, MediaType::Json) {
        for u in &parsed.updates {
            assert!(u.validate().is_ok());
            assert_eq!(u.key.source, "pagerduty");
        }
    }
});
