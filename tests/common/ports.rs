//! Free loopback ports for the peers the tests start (SIPp's SIP and media ports, baresip's SIP
//! and control ports).
//!
//! The server itself binds port 0 and tells its port; peers need a number up front. A port is
//! free when both a UDP socket and a TCP listener can bind it on 127.0.0.1. Ports handed out are
//! remembered for the life of the test process, so two tests running in parallel threads never
//! get the same one. The kernel picks the candidates from the ephemeral range (32768-60999 on
//! Linux), which the server's RTP range in the tests (20000-30000) does not overlap.

use std::collections::HashSet;
use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// One free port (UDP and TCP).
pub fn free_port() -> u16 {
    free_port_block(1, false)
}

/// A base port `b` such that `b .. b+n` are all free (UDP and TCP) right now; `even` asks for an
/// even base (RTP convention; SIPp's `-mp` uses base for audio, base+2 for video).
pub fn free_port_block(n: u16, even: bool) -> u16 {
    assert!(n >= 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "no block of {n} free ports found in 10 s"
        );
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
        let base = probe.local_addr().expect("local addr").port();
        drop(probe);
        if (even && base % 2 != 0) || u32::from(base) + u32::from(n) > 65_535 {
            continue;
        }
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        let set = guard.get_or_insert_with(HashSet::new);
        if (base..base + n).any(|p| set.contains(&p) || !is_free(p)) {
            continue;
        }
        set.extend(base..base + n);
        return base;
    }
}

fn is_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}
