//! Loading a configuration never panics, whatever the TOML: every problem is
//! an error naming its key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        if let Err(e) = continuity_agent::config::from_toml_str(src, "fuzz.toml") {
            assert!(!e.errors.is_empty());
        }
    }
});
