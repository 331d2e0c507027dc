//! RTP port allocation from `rtp.port_min..=rtp.port_max`: even ports (RFC 3550 §11), handed out
//! round-robin so a port just released is not reused at once (late packets of the previous call
//! would land in the next one). A port in use by anything else on the machine is skipped.

use std::net::UdpSocket;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct RtpPorts {
    ip: IpAddr,
    min: u16,
    max: u16,
    cursor: AtomicU32,
}

impl RtpPorts {
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Self {
        // Start at a random even offset so two servers started together do not collide.
        let span = u32::from(max - min) / 2 + 1;
        let start = rand::random::<u32>() % span;
        RtpPorts {
            ip,
            min,
            max,
            cursor: AtomicU32::new(start),
        }
    }

    /// Binds a non-blocking UDP socket on the next free even port (for the media engine, which
    /// polls it; it is not registered with the reactor). `None` when every port in the range is
    /// busy.
    pub fn allocate(&self) -> Option<UdpSocket> {
        let first = self.min + (self.min % 2);
        if first > self.max {
            return None;
        }
        let span = u32::from(self.max - first) / 2 + 1;
        for _ in 0..span {
            let k = self.cursor.fetch_add(1, Ordering::Relaxed) % span;
            let port = first + (k * 2) as u16;
            let Ok(sock) = UdpSocket::bind(SocketAddr::new(self.ip, port)) else {
                continue;
            };
            if sock.set_nonblocking(true).is_ok() {
                return Some(sock);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_even_ports_in_range_and_skips_busy_ones() {
        let ports = RtpPorts::new("127.0.0.1".parse().unwrap(), 41000, 41007);
        let mut held = Vec::new();
        for _ in 0..4 {
            let s = ports.allocate().expect("a free port");
            let p = s.local_addr().unwrap().port();
            assert!(p % 2 == 0 && (41000..=41007).contains(&p), "{p}");
            held.push(s);
        }
        // All four even ports are held now: the range is exhausted.
        assert!(ports.allocate().is_none());
        held.pop();
        assert!(ports.allocate().is_some());
    }
}
