//! Where a request we originate goes when a proxy sits between us and the phone: applying a
//! route set to a request (RFC 3261 §12.2.1.1 and §8.1.2: loose routing, or a strict-routing
//! first hop without `lr`), and choosing the transport address of the next hop (the first
//! route, else the remote target) for the server layer. The same rules serve a dialog's route
//! set (Record-Route, §12.1.1) and a registration's `Path` (RFC 3327 §5.3).
//!
//! Host names are never resolved here (the core does no I/O): a hop named by host name falls
//! back to the peer the dialog or registration came from, which is the proxy in practice.

use std::net::{IpAddr, SocketAddr};

use super::endpoint::{Peer, Transport};
use super::message::{Headers, Host, NameAddr, Uri};

/// The port of a `sip:` URI without one (RFC 3261 §19.1.2, UDP and TCP).
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// Whether a route entry is a loose router (its URI has `lr`).
pub fn is_loose(r: &NameAddr) -> bool {
    match &r.uri {
        Uri::Sip(u) => u.params.get("lr").is_some(),
        _ => false,
    }
}

/// Adds the Route headers of `route_set` to `headers` and returns the Request-URI (§12.2.1.1):
/// with a loose first hop (or none) the Request-URI is `target` and every entry becomes a Route;
/// with a strict first hop the Request-URI is that hop, the other entries follow as Route and
/// `target` goes last.
pub fn apply(route_set: &[NameAddr], target: &Uri, headers: &mut Headers) -> Uri {
    match route_set.split_first() {
        None => target.clone(),
        Some((first, _)) if is_loose(first) => {
            for r in route_set {
                headers.push("Route", r.to_string());
            }
            target.clone()
        }
        Some((first, rest)) => {
            for r in rest {
                headers.push("Route", r.to_string());
            }
            headers.push("Route", format!("<{target}>"));
            first.uri.clone()
        }
    }
}

/// The transport and address a `sip:` URI names when its host is an IP address: its `transport`
/// parameter (`udp`, `tcp`; None when absent), the port or 5060. None for host names, `sips:`,
/// other schemes and transports we do not speak.
pub fn uri_address(uri: &Uri) -> Option<(Option<Transport>, SocketAddr)> {
    let Uri::Sip(u) = uri else {
        return None;
    };
    if u.secure {
        return None;
    }
    let ip = match &u.host {
        Host::V4(a) => IpAddr::V4(*a),
        Host::V6(a) => IpAddr::V6(*a),
        Host::Name(_) => return None,
    };
    let transport = match u.params.get("transport") {
        None => None,
        Some(Some(t)) if t.eq_ignore_ascii_case("udp") => Some(Transport::Udp),
        Some(Some(t)) if t.eq_ignore_ascii_case("tcp") => Some(Transport::Tcp),
        Some(_) => return None,
    };
    Some((
        transport,
        SocketAddr::new(ip, u.port.unwrap_or(DEFAULT_SIP_PORT)),
    ))
}

/// Where to send a request of a dialog or to a registered contact.
///
/// - `last`: the peer the INVITE or REGISTER came from (and the connection it came on).
/// - With a route set, the request goes to its first hop (§12.2.1.1 / RFC 3327): `last` when
///   that hop is `last`'s address (keeping the live TCP connection), else the hop's address
///   with no connection (the layer reuses or opens one). A hop we cannot place (a host name)
///   falls back to `last`.
/// - Without a route set, the request goes back to `last` (symmetric signalling, which works
///   behind NAT) while that is usable: always on UDP, on TCP while the connection lives. Once a
///   TCP connection is gone, `last` is the closed connection's ephemeral port, so the request
///   goes to the remote target's address (the Contact, port 5060 when it names none) instead.
///
/// The transport stays the one the dialog or registration used unless the hop's URI names
/// another one.
pub fn next_hop(last: Peer, route_set: &[NameAddr], target: &Uri) -> Peer {
    let hop_uri = route_set.first().map_or(target, |r| &r.uri);
    let hop = uri_address(hop_uri);
    if route_set.is_empty() && (last.transport == Transport::Udp || last.conn.is_some()) {
        return last;
    }
    let Some((transport, addr)) = hop else {
        return last;
    };
    let transport = transport.unwrap_or(last.transport);
    if transport == last.transport && addr == last.addr {
        return last;
    }
    Peer {
        transport,
        addr,
        conn: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &str) -> NameAddr {
        NameAddr::parse(s).unwrap()
    }
    fn uri(s: &str) -> Uri {
        Uri::parse(s).unwrap()
    }
    fn peer(t: Transport, a: &str, conn: Option<u64>) -> Peer {
        Peer {
            transport: t,
            addr: a.parse().unwrap(),
            conn,
        }
    }

    #[test]
    fn loose_route_keeps_target_and_lists_every_hop() {
        let mut h = Headers::default();
        let rs = [na("<sip:p1.example;lr>"), na("<sip:10.0.0.2:5070;lr>")];
        let ruri = apply(&rs, &uri("sip:phone@192.0.2.1:5062"), &mut h);
        assert_eq!(ruri.to_string(), "sip:phone@192.0.2.1:5062");
        let routes: Vec<&str> = h.get_all("Route").collect();
        assert_eq!(routes, ["<sip:p1.example;lr>", "<sip:10.0.0.2:5070;lr>"]);
    }

    #[test]
    fn strict_first_hop_becomes_request_uri() {
        let mut h = Headers::default();
        let rs = [na("<sip:strict.example>"), na("<sip:p2.example;lr>")];
        let ruri = apply(&rs, &uri("sip:phone@192.0.2.1"), &mut h);
        assert_eq!(ruri.to_string(), "sip:strict.example");
        let routes: Vec<&str> = h.get_all("Route").collect();
        assert_eq!(routes, ["<sip:p2.example;lr>", "<sip:phone@192.0.2.1>"]);
    }

    #[test]
    fn uri_addresses() {
        assert_eq!(
            uri_address(&uri("sip:10.0.0.1;lr")),
            Some((None, "10.0.0.1:5060".parse().unwrap()))
        );
        assert_eq!(
            uri_address(&uri("sip:a@10.0.0.1:5070;transport=TCP")),
            Some((Some(Transport::Tcp), "10.0.0.1:5070".parse().unwrap()))
        );
        assert_eq!(uri_address(&uri("sip:proxy.example;lr")), None);
        assert_eq!(uri_address(&uri("sips:10.0.0.1")), None);
        assert_eq!(uri_address(&uri("sip:10.0.0.1;transport=sctp")), None);
        assert_eq!(uri_address(&uri("tel:+15551234")), None);
    }

    #[test]
    fn next_hop_is_the_first_route() {
        let target = uri("sip:phone@192.0.2.1:5062");
        let last = peer(Transport::Udp, "10.0.0.2:5070", None);
        // The proxy that sent the INVITE is the first hop: same peer.
        let rs = [na("<sip:10.0.0.2:5070;lr>")];
        assert_eq!(next_hop(last, &rs, &target), last);
        // Another first hop: its address, not the phone's.
        let rs = [na("<sip:10.0.0.3;lr>")];
        assert_eq!(
            next_hop(last, &rs, &target),
            peer(Transport::Udp, "10.0.0.3:5060", None)
        );
        // Its transport parameter wins.
        let rs = [na("<sip:10.0.0.3:5070;transport=tcp;lr>")];
        assert_eq!(
            next_hop(last, &rs, &target),
            peer(Transport::Tcp, "10.0.0.3:5070", None)
        );
        // A host name we cannot resolve: the peer the request came from.
        let rs = [na("<sip:proxy.example;lr>")];
        assert_eq!(next_hop(last, &rs, &target), last);
    }

    #[test]
    fn next_hop_without_routes_is_symmetric_until_the_connection_closes() {
        let target = uri("sip:phone@192.0.2.1:5062;transport=tcp");
        let udp = peer(Transport::Udp, "198.51.100.7:40000", None);
        assert_eq!(next_hop(udp, &[], &target), udp);
        let live = peer(Transport::Tcp, "192.0.2.1:40001", Some(3));
        assert_eq!(next_hop(live, &[], &target), live);
        let closed = peer(Transport::Tcp, "192.0.2.1:40001", None);
        assert_eq!(
            next_hop(closed, &[], &target),
            peer(Transport::Tcp, "192.0.2.1:5062", None)
        );
        // A Contact without a port: 5060.
        let target = uri("sip:phone@192.0.2.1;transport=tcp");
        assert_eq!(
            next_hop(closed, &[], &target),
            peer(Transport::Tcp, "192.0.2.1:5060", None)
        );
    }
}
