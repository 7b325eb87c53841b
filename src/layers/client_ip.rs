//! The client's IP address: the TCP peer (tonic's `TcpConnectInfo` or axum's
//! `ConnectInfo<SocketAddr>`), or — only when that peer is a configured trusted proxy — the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Client-sent headers
//! from untrusted peers are ignored, so nobody can mint rate-limit buckets by rotating them.

use std::net::{IpAddr, SocketAddr};

use http::Request;

use crate::net::IpNet;

/// The resolved client address, set as a request extension by the access log layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The configured trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// The peers of `TRUSTED_PROXIES` (IPs or CIDR blocks; unreadable entries are skipped).
    pub fn new(proxies: &[String]) -> TrustedProxies {
        TrustedProxies(proxies.iter().filter_map(|p| IpNet::parse(p)).collect())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client address of a request, `None` when the connection info is missing.
    pub fn client_ip<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let peer = peer_addr(req)?.ip();
        if !self.trusts(peer) {
            return Some(peer);
        }
        // Walk X-Forwarded-For from the right: the first hop that is not a trusted proxy is the
        // client as far as our proxies know.
        let hops: Vec<IpAddr> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .collect();
        Some(
            hops.iter()
                .rev()
                .copied()
                .find(|ip| !self.trusts(*ip))
                .unwrap_or(peer),
        )
    }
}

/// The TCP peer from tonic's or axum's connection info.
pub fn peer_addr<B>(req: &Request<B>) -> Option<SocketAddr> {
    if let Some(info) = req
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
    {
        return info.remote_addr();
    }
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, xff: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        req.extensions_mut().insert(axum::extract::ConnectInfo(
            peer.parse::<SocketAddr>().unwrap(),
        ));
        if let Some(xff) = xff {
            req.headers_mut()
                .insert("x-forwarded-for", xff.parse().unwrap());
        }
        req
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let trusted = TrustedProxies(vec![IpNet::parse("10.0.0.0/8").unwrap()]);
        let spoofed = request("203.0.113.9:5000", Some("1.2.3.4"));
        assert_eq!(
            trusted.client_ip(&spoofed),
            Some("203.0.113.9".parse().unwrap())
        );
    }

    #[test]
    fn forwarded_for_is_walked_right_to_left_from_trusted_proxies() {
        let trusted = TrustedProxies(vec![IpNet::parse("10.0.0.0/8").unwrap()]);
        let req = request("10.0.0.2:5000", Some("6.6.6.6, 198.51.100.7, 10.0.0.9"));
        assert_eq!(
            trusted.client_ip(&req),
            Some("198.51.100.7".parse().unwrap())
        );
    }
}
