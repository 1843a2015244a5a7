//! Who the client is when the gateway sits behind proxies: its IP address
//! (what the per-IP rate limits count) and the scheme it used (part of the
//! gateway's own origin). The socket peer is the client unless it is one of
//! the trusted proxies (`ANTEROOM_TRUSTED_PROXIES`); only then are the
//! `X-Forwarded-*` headers read, since anyone can send them.

use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::config::IpRange;

const FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED_PROTO: &str = "x-forwarded-proto";

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpRange>);

impl TrustedProxies {
    pub fn new(ranges: &[IpRange]) -> Self {
        Self(ranges.to_vec())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    /// The client's address: the socket peer, or, when the peer is a trusted
    /// proxy, the right-most `X-Forwarded-For` entry that is not a trusted
    /// proxy itself.
    ///
    /// Each proxy appends the address it was connected from, so the entries
    /// right of the client were written by our proxies and everything left
    /// of it by the client, who can write anything: reading from the right
    /// and stopping at the first untrusted hop is the only way a client
    /// cannot choose its own address. An entry that is no address stops the
    /// walk at the last hop known, which keeps the client at a proxy's
    /// address rather than at one it made up. Several `X-Forwarded-For`
    /// headers count as one list, in order.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        let entries: Vec<Option<IpAddr>> = headers
            .get_all(FORWARDED_FOR)
            .iter()
            .flat_map(|value| match value.to_str() {
                Ok(list) => list.split(',').map(forwarded_ip).collect::<Vec<_>>(),
                Err(_) => vec![None],
            })
            .collect();
        for entry in entries.into_iter().rev() {
            let Some(hop) = entry else {
                return client;
            };
            client = hop;
            if !self.contains(hop) {
                return hop;
            }
        }
        client
    }

    /// The scheme the client used: `https` when a trusted proxy says so in
    /// `X-Forwarded-Proto` (its first entry: what the client spoke to the
    /// outermost proxy), else `http`, the only scheme the gateway serves.
    pub fn scheme(&self, peer: IpAddr, headers: &HeaderMap) -> &'static str {
        if !self.contains(peer) {
            return "http";
        }
        let first = headers
            .get(FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim);
        match first {
            Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        }
    }
}

/// One `X-Forwarded-For` entry: an address, with a port or IPv6 brackets as
/// some proxies write it.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn trusted(ranges: &[&str]) -> TrustedProxies {
        let ranges: Vec<IpRange> = ranges.iter().map(|r| r.parse().expect("range")).collect();
        TrustedProxies::new(&ranges)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(v).expect("header"));
        }
        headers
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            proxies.client_ip(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.1"), &headers),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8", "192.0.2.7"]);
        let peer = ip("10.0.0.2");
        let cases: &[(&[&str], &str)] = &[
            (&["203.0.113.9"], "203.0.113.9"),
            // Spoofed entries the client wrote left of its own are ignored.
            (&["1.1.1.1, 2.2.2.2, 203.0.113.9"], "203.0.113.9"),
            // Trusted hops right of the client are skipped.
            (
                &["1.1.1.1, 203.0.113.9, 192.0.2.7, 10.1.1.1"],
                "203.0.113.9",
            ),
            // Several headers are one list, in order.
            (&["1.1.1.1", "203.0.113.9, 10.9.9.9"], "203.0.113.9"),
            // Ports and brackets as some proxies write them.
            (&["203.0.113.9:5123"], "203.0.113.9"),
            (&["[2001:db8::9]:443"], "2001:db8::9"),
            (&["[2001:db8::9]"], "2001:db8::9"),
            (&["::ffff:203.0.113.9"], "203.0.113.9"),
            // Garbage stops the walk at the last hop known.
            (&["203.0.113.9, nonsense, 10.3.3.3"], "10.3.3.3"),
            (&["203.0.113.9, nonsense"], "10.0.0.2"),
            // Only proxies: the farthest one known.
            (&["10.5.5.5, 192.0.2.7"], "10.5.5.5"),
            // No header: the proxy itself.
            (&[], "10.0.0.2"),
        ];
        for (values, client) in cases {
            assert_eq!(
                proxies.client_ip(peer, &forwarded(values)),
                ip(client),
                "{values:?}"
            );
        }
    }

    #[test]
    fn a_mapped_ipv4_peer_is_its_ipv4_address() {
        let proxies = trusted(&["127.0.0.1"]);
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            proxies.client_ip(ip("::ffff:127.0.0.1"), &headers),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_scheme_comes_from_a_trusted_proxy_only() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.insert(FORWARDED_PROTO, HeaderValue::from_static("HTTPS, http"));
        assert_eq!(proxies.scheme(ip("10.0.0.2"), &headers), "https");
        assert_eq!(proxies.scheme(ip("198.51.100.1"), &headers), "http");
        assert_eq!(proxies.scheme(ip("10.0.0.2"), &HeaderMap::new()), "http");
    }
}
