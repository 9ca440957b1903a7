//! Local resource errors: the attempt failed on this host, not at the target.
//!
//! A probe that cannot open a socket (`EMFILE`: this process is out of file
//! descriptors; `ENFILE`: the whole system is), cannot queue a datagram
//! (`ENOBUFS`, `ENOMEM`) or has no local address to send from
//! (`EADDRNOTAVAIL`) has learned nothing about its trunk. Counting that as a
//! trunk failure would let an attacker who exhausts the agent's descriptors
//! (idle connections to the API) switch the fallback on while every trunk
//! answers. Such an attempt is *inconclusive*: it moves neither the rise nor
//! the fall count (`engine/probe.rs`) and is counted as
//! `continuity_probe_results_total{result="inconclusive"}`.

use std::error::Error;
use std::io;

/// The OS errors that mean "this host is short of something".
const LOCAL: [i32; 5] = [
    libc::EMFILE,
    libc::ENFILE,
    libc::ENOBUFS,
    libc::ENOMEM,
    libc::EADDRNOTAVAIL,
];

/// Whether `e` is a local resource error.
pub fn is_local_io(e: &io::Error) -> bool {
    e.raw_os_error().is_some_and(|code| LOCAL.contains(&code))
}

/// Whether any error in `e`'s source chain (itself included) is a local
/// resource error: HTTP clients wrap the `io::Error` of a failed connect
/// several layers deep.
pub fn is_local(e: &(dyn Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && is_local_io(io)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connect failed")]
    struct Wrapper(#[source] io::Error);

    #[test]
    fn descriptor_buffer_and_address_exhaustion_are_local() {
        for code in LOCAL {
            assert!(is_local_io(&io::Error::from_raw_os_error(code)), "{code}");
        }
        let wrapped = Wrapper(io::Error::from_raw_os_error(libc::EMFILE));
        assert!(is_local(&wrapped));
    }

    #[test]
    fn what_the_target_or_the_network_did_is_not_local() {
        for code in [
            libc::ECONNREFUSED,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::ETIMEDOUT,
            libc::ECONNRESET,
        ] {
            assert!(!is_local_io(&io::Error::from_raw_os_error(code)), "{code}");
            assert!(!is_local(&Wrapper(io::Error::from_raw_os_error(code))));
        }
        assert!(!is_local(&io::Error::other("no code")));
    }
}
