//! The fuzz smoke of CI (issue 15): every cargo-fuzz target's committed
//! corpus (`fuzz/corpus/<target>`, from the 10-minute runs of
//! RELIABILITY.md) replayed through the target's own checks
//! (`fuzz/checks.rs`, the code the targets run under libFuzzer). A crash the
//! fuzzer once found and a fix removed stays fixed; a new target without a
//! corpus, or without a row here, fails.
//!
//! New inputs come from the fuzzer itself: `tests/long/fuzz.sh`, or
//! `scripts/fuzz-smoke` for a short instrumented run.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn every_fuzz_target_has_checks_and_a_corpus() {
    let mut targets: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    targets.sort();
    let listed: Vec<String> = checks::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        targets, listed,
        "fuzz/fuzz_targets and checks::TARGETS differ"
    );
    for name in &targets {
        let corpus = fuzz_dir().join("corpus").join(name);
        let n = std::fs::read_dir(&corpus)
            .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
            .count();
        assert!(n > 0, "{} is empty", corpus.display());
    }
}

#[test]
fn every_corpus_input_replays_without_a_crash() {
    let mut total = 0;
    for (name, check) in checks::TARGETS {
        let corpus = fuzz_dir().join("corpus").join(name);
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&corpus)
            .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        for input in &inputs {
            let data = std::fs::read(input).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{name}: {} crashes (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run {name} {})",
                input.display(),
                input.display()
            );
        }
        total += inputs.len();
    }
    println!("replayed {total} corpus inputs");
    assert!(total > 0);
}
