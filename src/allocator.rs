//! How the binary's allocators give memory back. Rust's allocations go to
//! mimalloc (`main.rs`); SQLite, built into the binary, allocates from
//! glibc's malloc. Both are tuned first thing in `main`
//! ([`return_freed_memory`]).
//!
//! mimalloc keeps a page that became free for `purge_delay` before it
//! returns it to the system (1 s in the mimalloc 3 this crate builds; 10 ms
//! in mimalloc 2). The agent's transient allocations are large and
//! periodic: every 10 s the persister encodes a snapshot of every probe
//! (megabytes at 10,000 probes), and the SIP fleet's and the engine's
//! small allocations interleave with it, so pages freed by one snapshot
//! were still held when the next was built. The delay is set to 0.
//!
//! SQLite then copies that snapshot (the bound text, the record it builds)
//! on a blocking-pool thread, in glibc's arena for that thread. glibc
//! serves a block above `M_MMAP_THRESHOLD` (128 KiB) with its own mapping,
//! unmapped on free, but raises the threshold to the size of each such
//! block freed (up to 32 MiB): after the first snapshot, the megabytes of
//! the next came from the arena's heap and stayed there, one heap per
//! thread that happened to write one. Setting the threshold fixes it (glibc
//! stops adjusting it).
//!
//! Measured at 10,000 SIP probes (BENCHMARKS.md, "SIP OPTIONS"): RSS
//! settled at 74-79 MiB before, 57-61 MiB with the purge delay alone
//! (still rising in 3.7 MiB steps, one per glibc arena), 52.8 MiB flat with
//! both, with no more CPU per ping. The environment still wins
//! (`MIMALLOC_PURGE_DELAY`, `GLIBC_TUNABLES=glibc.malloc.mmap_threshold`,
//! `MALLOC_MMAP_THRESHOLD_`), for an operator who wants the other trade.

/// Blocks from this size on get a mapping of their own from glibc, returned
/// to the system on free: SQLite's copies of a snapshot, never its pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// The environment variables glibc reads the threshold from (the first
/// holds it as `glibc.malloc.mmap_threshold=N` among other tunables).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_ENV: [&str; 2] = ["GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_"];

/// Tunes both allocators to return freed memory at once (see the module
/// docs), except where the environment sets the same knob. Call first thing
/// in `main`.
pub fn return_freed_memory() {
    return_freed_pages_at_once();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let [tunables, threshold] = MMAP_THRESHOLD_ENV;
        if !std::env::var(tunables).is_ok_and(|t| t.contains("mmap_threshold"))
            && std::env::var_os(threshold).is_none()
        {
            // SAFETY: a process-wide malloc parameter; glibc allows
            // setting it at any time.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        }
    }
}

/// `mi_option_purge_delay` in `mimalloc.h` (the same index in mimalloc 2
/// and 3); `libmimalloc-sys` names no constant for it. The test below
/// checks the index against the option's environment variable.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The environment variable mimalloc reads the option from.
const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// Makes mimalloc return freed pages to the system at once, unless the
/// environment sets the delay.
fn return_freed_pages_at_once() {
    if std::env::var_os(PURGE_DELAY_ENV).is_none() {
        // SAFETY: sets a process-wide option; mimalloc reads it on every
        // purge decision and allows changing it at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in a child process of this test binary: the test runs its
    /// child's half.
    const CHILD: &str = "CONTINUITY_AGENT_ALLOCATOR_CHILD";

    /// Runs the test `name` of this binary in a child process (allocator
    /// options are process-wide state, read from the environment once) with
    /// `env` set (`Some`) or removed (`None`), and asserts that it passed.
    fn passes_in_a_child(name: &str, env: &[(&str, Option<&str>)]) {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.args(["--exact", name, "--nocapture"]).env(CHILD, "1");
        for (key, value) in env {
            match value {
                Some(v) => child.env(key, v),
                None => child.env_remove(key),
            };
        }
        let out = child.output().unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The purge delay mimalloc uses now (milliseconds).
    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads a process-wide option.
        unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    /// In a child process of this test binary (options are read from the
    /// environment once, at their first use): with the variable set, the
    /// option at our index has its value, so the index is the purge delay's,
    /// and setting it at start leaves the operator's value alone.
    #[test]
    fn the_index_is_the_purge_delay_and_the_environment_wins() {
        if std::env::var_os(CHILD).is_some() {
            return_freed_pages_at_once();
            assert_eq!(purge_delay(), 1234);
            return;
        }
        passes_in_a_child(
            "allocator::tests::the_index_is_the_purge_delay_and_the_environment_wins",
            &[(PURGE_DELAY_ENV, Some("1234"))],
        );
        // And here, without the variable: set to 0 at once.
        return_freed_pages_at_once();
        assert_eq!(purge_delay(), 0);
    }

    /// In a child process (glibc's threshold is process-wide state, which
    /// other tests' allocations move): a block of 1 MiB, freed and asked for
    /// again, is a mapping of its own both times. Without the setting, glibc
    /// raises its threshold on the first free and serves the second from the
    /// heap, where freed memory stays.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_large_block_freed_and_taken_again_is_still_mapped_on_its_own() {
        if std::env::var_os(CHILD).is_some() {
            return_freed_memory();
            const MIB: usize = 1 << 20;
            // SAFETY: plain malloc/free of blocks this test owns.
            unsafe {
                let first = libc::malloc(MIB);
                assert!(!first.is_null());
                libc::free(first);
                let again = libc::malloc(MIB);
                assert!(!again.is_null());
                let mapped = libc::mallinfo2().hblkhd;
                libc::free(again);
                assert!(mapped >= MIB, "mapped: {mapped} bytes");
            }
            return;
        }
        passes_in_a_child(
            "allocator::tests::a_large_block_freed_and_taken_again_is_still_mapped_on_its_own",
            &MMAP_THRESHOLD_ENV.map(|key| (key, None)),
        );
    }
}
