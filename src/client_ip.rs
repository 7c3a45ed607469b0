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
        let Ok(ip) = hop.parse::<IpAddr>() else {
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
}
