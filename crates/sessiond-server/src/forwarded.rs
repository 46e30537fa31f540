//! Who the client is behind trusted proxies: `X-Forwarded-For` / `X-Forwarded-Proto`, or the
//! RFC 7239 `Forwarded` header, read only when the socket peer is a trusted proxy.
//!
//! Every line of a header is read, in order, as one comma-separated list; the list is walked
//! from the right, skipping trusted proxies, and the first untrusted address is the client
//! (nginx's `real_ip_recursive`); when every hop is trusted, the left-most is. A malformed
//! entry (not an IP address, e.g. `unknown` or an obfuscated `_node`) ends the walk: the
//! client is then the last trusted hop seen (the peer itself when the right-most entry is
//! malformed), since nothing left of it can be believed.
//!
//! When any `X-Forwarded-For` or `X-Forwarded-Proto` line is present, those headers are used
//! and `Forwarded` is ignored; otherwise `Forwarded` is. A proxy that sends only `Forwarded`
//! must therefore drop `X-Forwarded-*` headers sent by clients.

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A trusted proxy: one address (`10.0.0.2`, `::1`) or a CIDR range (`10.0.0.0/8`,
/// `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrustedProxy(IpNet);

impl TrustedProxy {
    /// Whether `ip` (or, for an IPv4-mapped IPv6 address, its IPv4 form) is in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip) || self.0.contains(&ip.to_canonical())
    }
}

impl From<IpAddr> for TrustedProxy {
    fn from(ip: IpAddr) -> Self {
        Self(IpNet::from(ip))
    }
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if !s.contains('/') {
            return s.parse::<IpAddr>().map(Self::from).map_err(|_| {
                format!(
                    "trusted proxy `{s}` is not an IP address or CIDR range (e.g. `10.0.0.2`, `10.0.0.0/8`, `::1/128`)"
                )
            });
        }
        let net: IpNet = s.parse().map_err(|_| {
            format!(
                "trusted proxy `{s}` is not a valid CIDR range (e.g. `10.0.0.0/8`, `fd00::/8`; prefix at most 32 for IPv4, 128 for IPv6)"
            )
        })?;
        if net.addr() != net.network() {
            return Err(format!(
                "trusted proxy `{s}` has bits set past its prefix length: did you mean `{}`?",
                net.trunc()
            ));
        }
        Ok(Self(net))
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpNet::V4(n) if n.prefix_len() == 32 => n.addr().fmt(f),
            IpNet::V6(n) if n.prefix_len() == 128 => n.addr().fmt(f),
            n => n.fmt(f),
        }
    }
}

impl Serialize for TrustedProxy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TrustedProxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

fn is_trusted(trusted: &[TrustedProxy], ip: IpAddr) -> bool {
    trusted.iter().any(|t| t.contains(ip))
}

/// The client of a request and whether it reached the first trusted proxy over HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub https: bool,
}

/// The entries of every line of `name`, in order, as one list (empty entries dropped).
fn list<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
        .collect()
}

/// A node of `X-Forwarded-For` or of `Forwarded`'s `for=`: `1.2.3.4`, `1.2.3.4:80`, `::1`,
/// `[::1]`, `[::1]:80`, possibly quoted. Anything else (`unknown`, `_hidden`) is `None`.
fn node(raw: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(raw).ok()?.trim();
    let s = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let ip = if let Some(rest) = s.strip_prefix('[') {
        let (v6, port) = rest.split_once(']')?;
        if !(port.is_empty() || port.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)?
    } else {
        let (v4, port) = s.split_once(':')?;
        if !valid_port(port) {
            return None;
        }
        v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)?
    };
    Some(ip.to_canonical())
}

/// A port, or RFC 7239's obfuscated port (`_abc`).
fn valid_port(p: &str) -> bool {
    p.parse::<u16>().is_ok()
        || p.strip_prefix('_').is_some_and(|o| {
            !o.is_empty()
                && o.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        })
}

/// Walks `hops` from the right, skipping trusted proxies: the client and its index in `hops`
/// (`None` when the client is the peer itself).
fn walk(
    peer: IpAddr,
    hops: &[Option<IpAddr>],
    trusted: &[TrustedProxy],
) -> (IpAddr, Option<usize>) {
    let mut client = (peer, None);
    for (i, hop) in hops.iter().enumerate().rev() {
        match hop {
            // Malformed: nothing left of here can be believed; keep the last trusted hop.
            None => break,
            Some(ip) => {
                client = (*ip, Some(i));
                if !is_trusted(trusted, *ip) {
                    break;
                }
            }
        }
    }
    client
}

/// One element of `Forwarded`: its `for=` and `proto=` values, unquoted.
type Element = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The elements of every `Forwarded` line, in order.
fn forwarded_elements(headers: &HeaderMap) -> Vec<Element> {
    let mut out = Vec::new();
    for line in headers.get_all("forwarded") {
        for element in split_unquoted(line.as_bytes(), b',') {
            if element.trim_ascii().is_empty() {
                continue;
            }
            let (mut for_, mut proto) = (None, None);
            for pair in split_unquoted(element, b';') {
                let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                    continue;
                };
                let (k, v) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
                let v = unquote(v);
                if k.eq_ignore_ascii_case(b"for") {
                    for_.get_or_insert(v);
                } else if k.eq_ignore_ascii_case(b"proto") {
                    proto.get_or_insert(v);
                }
            }
            out.push((for_, proto));
        }
    }
    out
}

/// `s` split at `sep`, except inside a quoted string.
fn split_unquoted(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unquote(v: &[u8]) -> Vec<u8> {
    match v {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                if !escaped && b == b'\\' {
                    escaped = true;
                } else {
                    out.push(b);
                    escaped = false;
                }
            }
            out
        }
        _ => v.to_vec(),
    }
}

fn is_https_value(v: &[u8]) -> bool {
    v.trim_ascii().eq_ignore_ascii_case(b"https")
}

/// The client behind `peer`: `peer` itself unless it is a trusted proxy.
///
/// HTTPS: from `X-Forwarded-Proto`, its right-most entry (the value the trusted peer sends;
/// a chain of proxies must pass the edge proxy's value on rather than append its own);
/// from `Forwarded`, the `proto=` of the element that named the client.
pub fn client(headers: &HeaderMap, peer: IpAddr, trusted: &[TrustedProxy]) -> Client {
    let peer = peer.to_canonical();
    if !is_trusted(trusted, peer) {
        return Client {
            ip: peer,
            https: false,
        };
    }
    let (xff, xfp) = (
        list(headers, "x-forwarded-for"),
        list(headers, "x-forwarded-proto"),
    );
    if !xff.is_empty() || !xfp.is_empty() {
        let hops: Vec<Option<IpAddr>> = xff.iter().map(|h| node(h)).collect();
        return Client {
            ip: walk(peer, &hops, trusted).0,
            https: xfp.last().is_some_and(|p| is_https_value(p)),
        };
    }
    let elements = forwarded_elements(headers);
    let hops: Vec<Option<IpAddr>> = elements
        .iter()
        .map(|(f, _)| f.as_deref().and_then(node))
        .collect();
    let (ip, at) = walk(peer, &hops, trusted);
    // The element naming the client, or the malformed one the walk stopped at: either was
    // written by a trusted proxy.
    let at = at.or_else(|| hops.len().checked_sub(1));
    Client {
        ip,
        https: at
            .and_then(|i| elements.get(i))
            .and_then(|e| e.1.as_deref())
            .is_some_and(is_https_value),
    }
}

/// Whether the client of a request reached sessiond directly over its native TLS, or the
/// first trusted proxy over HTTPS.
pub fn is_https(parts: &axum::http::request::Parts, trusted: &[TrustedProxy]) -> bool {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| {
            let peer = c.0.ip().to_canonical();
            let direct_tls = parts
                .extensions
                .get::<crate::listen::ServedOverTls>()
                .is_some()
                && !trusted.iter().any(|p| p.contains(peer));
            direct_tls || client(&parts.headers, peer, trusted).https
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in lines {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn proxies(list: &[&str]) -> Vec<TrustedProxy> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_ranges() {
        for ok in [
            "10.0.0.2",
            "10.0.0.0/8",
            "::1",
            "::1/128",
            "fd00::/8",
            " 0.0.0.0/0 ",
        ] {
            assert!(ok.parse::<TrustedProxy>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "proxy",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "::1/129",
            "10.0.0/8",
            "1.2.3.4/",
        ] {
            assert!(bad.parse::<TrustedProxy>().is_err(), "{bad}");
        }
        let r: TrustedProxy = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains(ip("10.255.0.1")) && !r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        let one: TrustedProxy = "10.0.0.2".parse().unwrap();
        assert!(one.contains(ip("10.0.0.2")) && !one.contains(ip("10.0.0.3")));
        assert_eq!(one.to_string(), "10.0.0.2");
        assert_eq!(r.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn every_line_is_read_and_walked_from_the_right() {
        let t = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        let c = |h: &[(&'static str, &'static str)]| client(&headers(h), peer, &t).ip;
        let xff = "x-forwarded-for";
        // A forged first line does not win over the proxy's own.
        assert_eq!(
            c(&[(xff, "1.1.1.1"), (xff, "203.0.113.7")]),
            ip("203.0.113.7")
        );
        assert_eq!(
            c(&[(xff, "1.1.1.1, 203.0.113.7, 10.0.0.5")]),
            ip("203.0.113.7")
        );
        assert_eq!(
            c(&[(xff, "1.1.1.1"), (xff, "203.0.113.7, 10.0.0.5")]),
            ip("203.0.113.7")
        );
        // All trusted: the left-most.
        assert_eq!(c(&[(xff, "10.0.0.9, 10.0.0.5")]), ip("10.0.0.9"));
        // Malformed: the last trusted hop.
        assert_eq!(c(&[(xff, "garbage, 10.0.0.5")]), ip("10.0.0.5"));
        assert_eq!(c(&[(xff, "1.1.1.1, unknown")]), peer);
        assert_eq!(
            c(&[(xff, "[2001:db8::1]:443, 198.51.100.1:80")]),
            ip("198.51.100.1")
        );
        assert_eq!(c(&[(xff, "::ffff:198.51.100.1")]), ip("198.51.100.1"));
        assert_eq!(c(&[]), peer);
        // An untrusted peer's headers are not read.
        let h = headers(&[(xff, "1.1.1.1"), ("x-forwarded-proto", "https")]);
        assert_eq!(
            client(&h, ip("192.0.2.1"), &t),
            Client {
                ip: ip("192.0.2.1"),
                https: false
            }
        );
    }

    #[test]
    fn forwarded_proto_is_the_trusted_peers() {
        let t = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        let https = |h: &[(&'static str, &'static str)]| client(&headers(h), peer, &t).https;
        let xfp = "x-forwarded-proto";
        assert!(https(&[(xfp, "https")]));
        assert!(
            !https(&[(xfp, "https"), (xfp, "http")]),
            "forged first line"
        );
        assert!(!https(&[(xfp, "https, http")]));
        assert!(https(&[(xfp, "HTTPS")]));
        assert!(!https(&[]));
    }

    #[test]
    fn rfc7239_forwarded() {
        let t = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        let c = |h: &[(&'static str, &'static str)]| client(&headers(h), peer, &t);
        let fwd = "forwarded";
        assert_eq!(
            c(&[
                (fwd, "for=1.1.1.1;proto=https"),
                (fwd, "for=203.0.113.7;proto=http")
            ]),
            Client {
                ip: ip("203.0.113.7"),
                https: false
            }
        );
        assert_eq!(
            c(&[(
                fwd,
                "for=1.1.1.1, for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.5;proto=http"
            )]),
            Client {
                ip: ip("2001:db8::7"),
                https: true
            }
        );
        assert_eq!(
            c(&[(
                fwd,
                "for=\"x,for=1.1.1.1\", For=203.0.113.7;Proto=HTTPS;by=10.0.0.1"
            )]),
            Client {
                ip: ip("203.0.113.7"),
                https: true
            }
        );
        // An obfuscated client: the trusted peer, with the proto its element gives.
        assert_eq!(
            c(&[(fwd, "for=1.1.1.1;proto=http, for=_hidden;proto=https")]),
            Client {
                ip: peer,
                https: true
            }
        );
        // X-Forwarded-* present: Forwarded is ignored.
        assert_eq!(
            c(&[
                (fwd, "for=1.1.1.1;proto=https"),
                ("x-forwarded-for", "203.0.113.7")
            ]),
            Client {
                ip: ip("203.0.113.7"),
                https: false
            }
        );
    }
}
