//! The process's file-descriptor budget.
//!
//! Every probe attempt over TCP or TLS, every API connection, the store and
//! the Talkdesk client take descriptors. Distributions start services with a
//! soft limit of 1,024 even where the hard limit is far higher; the agent
//! raises its soft limit to the hard one at start (what nginx's
//! `worker_rlimit_nofile` and HAProxy do), and the API's connection cap is
//! held to a share of it (`server::listen::Limits::capped`), so clients can
//! never take the descriptors the probes need.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit now in force (`None` if it cannot be read).
pub(super) fn raise_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(message = "Cannot read the file-descriptor limit.", error = %std::io::Error::last_os_error());
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(
                message = "Raised the file-descriptor limit.",
                from = lim.rlim_cur,
                to = lim.rlim_max
            );
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::warn!(message = "Cannot raise the file-descriptor limit.", soft = lim.rlim_cur, hard = lim.rlim_max, error = %std::io::Error::last_os_error());
        }
    }
    Some(lim.rlim_cur)
}
