//! The client's address: the socket peer, or what a trusted proxy says it is.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client address for throttling and audit. When the peer is one of the
/// `trusted` proxies, `X-Forwarded-For` is read from the right, skipping
/// further trusted hops; the first untrusted address is the client. A client
/// can write anything at the left of that header, so only what trusted hops
/// appended is believed.
#[must_use]
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // An unparseable hop ends what can be believed.
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`
/// or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    None
}

/// The unit that failed logins are counted against: the address itself for
/// IPv4, its /64 for IPv6 (one subscriber usually holds a whole /64, so
/// counting single addresses would let them rotate freely).
#[must_use]
pub fn throttle_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The unit that connections are counted against, as [`throttle_key`]
/// counts failures: the address itself for IPv4, its /64 for IPv6.
#[cfg(feature = "server")]
pub(crate) fn network_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static(v));
        h
    }

    #[test]
    fn untrusted_peers_cannot_claim_another_address() {
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(client_ip(peer, &xff("1.2.3.4"), &[]), peer);
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        assert_eq!(client_ip(peer, &xff("1.2.3.4"), &trusted), peer);
    }

    #[test]
    fn trusted_proxies_report_the_first_untrusted_hop_from_the_right() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        let peer: IpAddr = "10.0.0.2".parse().expect("ip");
        let got = client_ip(peer, &xff("6.6.6.6, 198.51.100.7, 10.0.0.5"), &trusted);
        assert_eq!(got, "198.51.100.7".parse::<IpAddr>().expect("ip"));
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
    }

    #[test]
    fn mapped_peers_and_ports_in_forwarded_for_are_understood() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().expect("ip");
        let got = client_ip(mapped, &xff("198.51.100.7:4711"), &trusted);
        assert_eq!(got, "198.51.100.7".parse::<IpAddr>().expect("ip"));
        let got = client_ip(mapped, &xff("[2001:db8::7]:4711"), &trusted);
        assert_eq!(got, "2001:db8::7".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn ipv6_clients_are_throttled_per_64() {
        let a = throttle_key("2001:db8:1:2:aaaa::1".parse().expect("ip"));
        let b = throttle_key("2001:db8:1:2:bbbb::9".parse().expect("ip"));
        assert_eq!(a, b);
        assert_ne!(a, throttle_key("2001:db8:1:3::1".parse().expect("ip")));
        assert_eq!(
            throttle_key("::ffff:192.0.2.1".parse().expect("ip")),
            "192.0.2.1"
        );
    }

    #[cfg(feature = "server")]
    #[test]
    fn ipv6_connections_are_counted_per_64() {
        let net = |ip: &str| network_of(ip.parse().expect("ip"));
        assert_eq!(net("2001:db8:1:2:aaaa::1"), net("2001:db8:1:2:bbbb::9"));
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_eq!(net("::ffff:192.0.2.1"), net("192.0.2.1"));
    }
}
