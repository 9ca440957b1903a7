//! How the binary's allocator (mimalloc, `main.rs`) gives memory back.
//!
//! mimalloc keeps a page that became free for `purge_delay` before it
//! returns it to the system (1 s in the mimalloc 3 this crate builds; 10 ms
//! in mimalloc 2). The agent's transient allocations are large and
//! periodic: every 10 s the persister encodes a snapshot of every probe
//! (megabytes at 10,000 probes), and the SIP fleet's and the engine's
//! small allocations interleave with it, so pages freed by one snapshot
//! were still held when the next was built, and resident memory at
//! 10,000 probes settled at 74-79 MiB. Returning them at once settled it at
//! 57 MiB with no more CPU per ping (BENCHMARKS.md, "SIP OPTIONS").
//! `MIMALLOC_PURGE_DELAY` in the environment still wins, for an operator
//! who wants the other trade.

/// `mi_option_purge_delay` in `mimalloc.h` (the same index in mimalloc 2
/// and 3); `libmimalloc-sys` names no constant for it. The test below
/// checks the index against the option's environment variable.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The environment variable mimalloc reads the option from.
const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// Makes mimalloc return freed pages to the system at once, unless the
/// environment sets the delay. Call first thing in `main`.
pub fn return_freed_pages_at_once() {
    if std::env::var_os(PURGE_DELAY_ENV).is_none() {
        // SAFETY: sets a process-wide option; mimalloc reads it on every
        // purge decision and allows changing it at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

/// The purge delay mimalloc uses now (milliseconds).
pub fn purge_delay() -> i64 {
    // SAFETY: reads a process-wide option.
    i64::from(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a child process of this test binary (options are read from the
    /// environment once, at their first use): with the variable set, the
    /// option at our index has its value, so the index is the purge delay's,
    /// and setting it at start leaves the operator's value alone.
    #[test]
    fn the_index_is_the_purge_delay_and_the_environment_wins() {
        const CHILD: &str = "CONTINUITY_AGENT_ALLOCATOR_CHILD";
        if std::env::var_os(CHILD).is_some() {
            return_freed_pages_at_once();
            assert_eq!(purge_delay(), 1234);
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "allocator::tests::the_index_is_the_purge_delay_and_the_environment_wins",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env(PURGE_DELAY_ENV, "1234")
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // And here, without the variable: set to 0 at once.
        return_freed_pages_at_once();
        assert_eq!(purge_delay(), 0);
    }
}
