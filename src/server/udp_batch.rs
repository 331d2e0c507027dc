//! Draining a non-blocking UDP socket in one system call.
//!
//! The media engine visits each call's RTP socket once per packet interval and takes whatever
//! arrived since (usually one packet, sometimes none or two). A loop of `recv_from` costs a second
//! system call per visit just to hear `EAGAIN`; `recvmmsg(2)` returns every queued datagram, or
//! nothing, in one. No crate we use exposes `recvmmsg` (socket2 and tokio do not; quinn-udp does,
//! but for one connected QUIC socket with its own state), so this is the small `libc` call, with
//! a portable fallback elsewhere.
//!
//! With [`enable_timestamps`] on a socket, each datagram also carries the time the kernel received
//! it (`SO_TIMESTAMPNS`): the load generator measures inter-arrival jitter with it, so its figures
//! do not depend on when it got round to reading the socket.

use std::net::{SocketAddr, UdpSocket};
use std::time::SystemTime;

/// Datagrams taken per call; more stay queued for the next visit.
pub const BATCH: usize = 8;
/// Larger than any RTP packet a phone sends (G.711 at 60 ms is 492 bytes).
const BUF: usize = 1500;

/// Buffers for [`RecvBatch::recv`], reused for every socket (nothing is zeroed per call).
pub struct RecvBatch {
    bufs: Box<[[u8; BUF]; BATCH]>,
    #[cfg(target_os = "linux")]
    sys: Box<Sys>,
    lens: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
    stamps: [Option<SystemTime>; BATCH],
    n: usize,
}

/// Control-message space per datagram: one `SCM_TIMESTAMPNS` (a 16-byte header and a 16-byte
/// timespec on 64-bit Linux), with room to spare.
#[cfg(target_os = "linux")]
const CONTROL: usize = 64;

/// recvmmsg's arrays; their pointers are set again on every call.
#[cfg(target_os = "linux")]
struct Sys {
    addrs: [libc::sockaddr_storage; BATCH],
    iovs: [libc::iovec; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
    /// u64 for the alignment cmsghdr needs.
    control: [[u64; CONTROL / 8]; BATCH],
}

// SAFETY: the raw pointers in `Sys` only ever point into the same `RecvBatch`'s own boxed
// buffers, are written again before every use, and are not dereferenced outside `recv`
// (which takes `&mut self`): moving the batch to another thread shares nothing.
#[cfg(target_os = "linux")]
unsafe impl Send for Sys {}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: Box::new([[0; BUF]; BATCH]),
            // SAFETY: all-zero is a valid value of these plain C structs (null pointers, zero
            // lengths).
            #[cfg(target_os = "linux")]
            sys: Box::new(unsafe { std::mem::zeroed() }),
            lens: [0; BATCH],
            from: [None; BATCH],
            stamps: [None; BATCH],
            n: 0,
        }
    }
}

impl RecvBatch {
    /// Datagram `i` of the last [`RecvBatch::recv`]: bytes and source. Truncated datagrams and
    /// ones from an address family we cannot name are left out (`None`).
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let from = (*self.from.get(i)?)?;
        (i < self.n).then(|| (&self.bufs[i][..self.lens[i]], from))
    }

    /// When the kernel received datagram `i`, on a socket given [`enable_timestamps`].
    pub fn stamp(&self, i: usize) -> Option<SystemTime> {
        if i < self.n {
            self.stamps[i]
        } else {
            None
        }
    }

    /// Takes up to [`BATCH`] queued datagrams without blocking; returns how many (0 when none
    /// was queued or the socket reported an error, which the next visit will see again if it
    /// lasts).
    #[cfg(target_os = "linux")]
    pub fn recv(&mut self, socket: &UdpSocket) -> usize {
        use std::os::fd::AsRawFd;
        let sys = &mut *self.sys;
        for i in 0..BATCH {
            sys.iovs[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            sys.iovs[i].iov_len = BUF;
            let h = &mut sys.hdrs[i].msg_hdr;
            h.msg_name = std::ptr::from_mut(&mut sys.addrs[i]).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut sys.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = sys.control[i].as_mut_ptr().cast();
            h.msg_controllen = CONTROL as _;
            h.msg_flags = 0;
        }
        // SAFETY: every pointer handed to recvmmsg points into `self.bufs` or `self.sys`, which
        // live until it returns; lengths are their real sizes; the kernel writes at most
        // `iov_len` bytes per buffer and `msg_namelen` bytes per address.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                sys.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.n = usize::try_from(n).unwrap_or(0);
        for i in 0..self.n {
            let h = &sys.hdrs[i];
            self.lens[i] = h.msg_len as usize;
            self.from[i] = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                None
            } else {
                let mut storage = socket2::SockAddrStorage::zeroed();
                // SAFETY: the kernel wrote a sockaddr of `msg_namelen` bytes into `addrs[i]`;
                // `sockaddr_storage` is one of the types `view_as` accepts.
                unsafe {
                    *storage.view_as::<libc::sockaddr_storage>() = sys.addrs[i];
                    socket2::SockAddr::new(storage, h.msg_hdr.msg_namelen).as_socket()
                }
            };
            self.stamps[i] = None;
            // SAFETY: the kernel filled `msg_controllen` bytes of this message's control buffer
            // with well-formed cmsghdrs; CMSG_FIRSTHDR/NXTHDR stay within that length, and a
            // SCM_TIMESTAMPNS payload is one timespec (read unaligned all the same).
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET
                        && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                    {
                        let ts =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                        self.stamps[i] = u64::try_from(ts.tv_sec).ok().map(|secs| {
                            SystemTime::UNIX_EPOCH
                                + std::time::Duration::new(secs, ts.tv_nsec as u32)
                        });
                    }
                    c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
                }
            }
        }
        self.n
    }

    /// Portable fallback: `recv_from` until the socket is empty (no kernel timestamps).
    #[cfg(not(target_os = "linux"))]
    pub fn recv(&mut self, socket: &UdpSocket) -> usize {
        self.n = 0;
        while self.n < BATCH {
            match socket.recv_from(&mut self.bufs[self.n]) {
                Ok((len, from)) => {
                    self.lens[self.n] = len;
                    self.from[self.n] = Some(from);
                    self.stamps[self.n] = None;
                    self.n += 1;
                }
                Err(_) => break,
            }
        }
        self.n
    }
}

/// Asks the kernel to stamp every datagram received on `socket` with its arrival time
/// (`SO_TIMESTAMPNS`, read back with [`RecvBatch::stamp`]). Linux only; elsewhere an error.
pub fn enable_timestamps(socket: &UdpSocket) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a plain int option on a socket we own, with its exact size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                std::ptr::from_ref(&on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        Err(std::io::Error::other(
            "kernel receive timestamps need Linux",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_every_queued_datagram_with_its_source_in_one_call() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::default();
        assert_eq!(batch.recv(&rx), 0, "nothing queued: no wait");
        a.send_to(b"one", rx.local_addr().unwrap()).unwrap();
        b.send_to(&[7u8; 1400], rx.local_addr().unwrap()).unwrap();
        a.send_to(b"three", rx.local_addr().unwrap()).unwrap();
        // Loopback delivery is synchronous, but allow the kernel a moment all the same.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut got = Vec::new();
        while got.len() < 3 && std::time::Instant::now() < deadline {
            for i in 0..batch.recv(&rx) {
                let (d, from) = batch.get(i).unwrap();
                got.push((d.to_vec(), from));
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (b"one".to_vec(), a.local_addr().unwrap()));
        assert_eq!(got[1], (vec![7u8; 1400], b.local_addr().unwrap()));
        assert_eq!(got[2], (b"three".to_vec(), a.local_addr().unwrap()));
        assert!(batch.get(3).is_none());
        assert!(batch.stamp(0).is_none(), "no timestamps unless asked for");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn kernel_timestamps_give_each_datagrams_arrival() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        enable_timestamps(&rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::default();
        // The kernel switches receive timestamping on for the whole system a moment after the
        // first socket asks (a deferred static key); a datagram received before that is
        // stamped when it is read. One warm-up datagram lets that happen.
        tx.send_to(b"w", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.recv(&rx), 1);
        let before = SystemTime::now();
        tx.send_to(b"a", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        tx.send_to(b"b", rx.local_addr().unwrap()).unwrap();
        let after = SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(
            batch.recv(&rx),
            2,
            "both queued, read long after they arrived"
        );
        let (a, b) = (batch.stamp(0).unwrap(), batch.stamp(1).unwrap());
        assert!(
            before <= a && a <= b && b <= after,
            "{before:?} {a:?} {b:?} {after:?}"
        );
        let gap = b.duration_since(a).unwrap();
        assert!(gap >= std::time::Duration::from_millis(30), "{gap:?}");
        assert!(gap < std::time::Duration::from_secs(1), "{gap:?}");
    }

    #[test]
    fn more_than_a_batch_stays_queued_for_the_next_call() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..BATCH + 3 {
            tx.send_to(&[i as u8], rx.local_addr().unwrap()).unwrap();
        }
        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while seen.len() < BATCH + 3 && std::time::Instant::now() < deadline {
            let n = batch.recv(&rx);
            assert!(n <= BATCH);
            for i in 0..n {
                seen.push(batch.get(i).unwrap().0[0]);
            }
        }
        assert_eq!(seen, (0..(BATCH + 3) as u8).collect::<Vec<_>>());
    }
}
