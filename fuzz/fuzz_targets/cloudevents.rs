//! CloudEvents structured mode (single and batch) on the generic route never
//! panics, whatever the bytes.
#![no_main]

use continuity_agent::alerts::Source;
use continuity_agent::server::body::MediaType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for media in [MediaType::CloudEvent, MediaType::CloudEventBatch] {
        if let Ok(parsed) = Source::Generic.parse(data, media) {
            for u in &parsed.updates {
                assert!(u.validate().is_ok());
            }
        }
    }
});
