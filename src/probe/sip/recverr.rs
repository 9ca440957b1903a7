//! ICMP errors on the shared, unconnected SIP/UDP socket (Linux).
//!
//! An unconnected UDP socket normally never hears that a datagram hit a closed
//! port: the kernel drops the ICMP "port unreachable" because it cannot tell
//! which peer it belongs to. With `IP_RECVERR`/`IPV6_RECVERR` the kernel queues
//! each ICMP error on the socket's error queue together with the original
//! destination address and the start of the datagram we sent, so the
//! demultiplexer can fail exactly the transaction that caused it (by the
//! branch in the quoted bytes, checked against the destination and, for
//! port unreachable, the offender: see `transport::icmp_victim`) within a
//! round trip instead of at the timeout. An error that proves less fails
//! nothing.
//!
//! It also reads how many datagrams the kernel dropped for the socket
//! (`SO_MEMINFO`, see [`drops`]).
//!
//! This is the only `unsafe` in the probes: three libc calls with locally
//! owned, correctly sized buffers. Other platforms compile the no-op fallback, where
//! a closed UDP port shows up as a timeout.

use std::io;
use std::net::SocketAddr;

/// One ICMP error read from the error queue.
#[derive(Debug)]
pub struct IcmpError {
    /// Destination of the datagram that caused the error.
    pub dest: Option<SocketAddr>,
    /// `ECONNREFUSED` for port unreachable, `EHOSTUNREACH`, ...
    pub error: io::Error,
    /// The host that sent the ICMP message (`SO_EE_OFFENDER`), when known.
    pub offender: Option<std::net::IpAddr>,
    /// The leading bytes of our datagram (the kernel quotes them back).
    pub payload: Vec<u8>,
}

#[cfg(target_os = "linux")]
mod imp {
    use super::IcmpError;
    use std::io;
    use std::mem::{size_of, size_of_val, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::RawFd;

    pub fn enable(fd: RawFd, v6: bool) -> io::Result<()> {
        let one: libc::c_int = 1;
        let (level, name) = if v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
        } else {
            (libc::IPPROTO_IP, libc::IP_RECVERR)
        };
        // SAFETY: `one` outlives the call and the length matches its type.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// `SO_MEMINFO` (asm-generic/socket.h; libc does not name it).
    const SO_MEMINFO: libc::c_int = 55;

    pub fn drops(fd: RawFd) -> Option<u32> {
        let mut info = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
        let mut len = size_of_val(&info) as libc::socklen_t;
        // SAFETY: `info` and `len` outlive the call; `len` is `info`'s size,
        // and the kernel writes at most that many bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let wanted = (libc::SK_MEMINFO_DROPS as usize + 1) * size_of::<u32>();
        (rc == 0 && len as usize >= wanted).then(|| info[libc::SK_MEMINFO_DROPS as usize])
    }

    /// Read one entry of the error queue; `WouldBlock` when it is empty.
    pub fn recv(fd: RawFd) -> io::Result<IcmpError> {
        let mut payload = [0u8; 1024];
        // u64 array: cmsg buffers must be aligned like `cmsghdr`.
        let mut control = [0u64; 64];
        // SAFETY: all-zero is a valid bit pattern for these plain C structs.
        let mut name: libc::sockaddr_storage = unsafe { zeroed() };
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: every pointer in `msg` refers to a live local buffer whose
        // length is given next to it; the kernel writes within those bounds.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = (n as usize).min(payload.len());

        let mut errno = libc::EHOSTUNREACH;
        let mut offender = None;
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled,
        // bounded by `msg_controllen`; the payload is read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let h = &*cmsg;
                let ours = (h.cmsg_level == libc::IPPROTO_IP && h.cmsg_type == libc::IP_RECVERR)
                    || (h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_RECVERR);
                if ours {
                    let data = libc::CMSG_DATA(cmsg);
                    let ee: libc::sock_extended_err = std::ptr::read_unaligned(data.cast());
                    errno = ee.ee_errno as i32;
                    // The offender's sockaddr follows the struct inside this
                    // cmsg; copy only the bytes the cmsg really holds.
                    let start = data.offset_from(cmsg.cast::<u8>()) as usize
                        + size_of::<libc::sock_extended_err>();
                    let avail = (h.cmsg_len as usize).saturating_sub(start);
                    let mut ss: libc::sockaddr_storage = zeroed();
                    let n = avail.min(size_of::<libc::sockaddr_storage>());
                    std::ptr::copy_nonoverlapping(
                        libc::SO_EE_OFFENDER(data.cast()).cast::<u8>(),
                        (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                        n,
                    );
                    offender = sockaddr_to_std(&ss).map(|a| a.ip());
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok(IcmpError {
            dest: sockaddr_to_std(&name),
            error: io::Error::from_raw_os_error(errno),
            offender,
            payload: payload[..len].to_vec(),
        })
    }

    fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match ss.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says this storage holds a sockaddr_in.
                let a: libc::sockaddr_in = unsafe {
                    std::ptr::read_unaligned((ss as *const libc::sockaddr_storage).cast())
                };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says this storage holds a sockaddr_in6.
                let a: libc::sockaddr_in6 = unsafe {
                    std::ptr::read_unaligned((ss as *const libc::sockaddr_storage).cast())
                };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::IcmpError;
    use std::io;

    pub fn enable(_fd: i32, _v6: bool) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "IP_RECVERR is Linux-only; closed UDP ports will show as timeouts",
        ))
    }

    pub fn recv(_fd: i32) -> io::Result<IcmpError> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    pub fn drops(_fd: i32) -> Option<u32> {
        None
    }
}

/// Ask the kernel to queue ICMP errors on this socket.
pub fn enable(socket: &std::net::UdpSocket, v6: bool) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        imp::enable(socket.as_raw_fd(), v6)
    }
    #[cfg(not(unix))]
    {
        let _ = (socket, v6);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// How many datagrams the kernel dropped for this socket since it was
/// opened because its receive buffer was full (`SK_MEMINFO_DROPS`); `None`
/// where the kernel does not say. A check that timed out while this grew may
/// have lost its answer here, on this host: that says nothing about the
/// trunk (a flood at the probe's port would otherwise fail healthy trunks).
pub fn drops(socket: &impl std::os::fd::AsRawFd) -> Option<u32> {
    imp::drops(socket.as_raw_fd())
}

/// Read one queued ICMP error; `WouldBlock` when none is queued.
pub fn recv(socket: &tokio::net::UdpSocket) -> io::Result<IcmpError> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        imp::recv(socket.as_raw_fd())
    }
    #[cfg(not(unix))]
    {
        let _ = socket;
        Err(io::ErrorKind::WouldBlock.into())
    }
}
