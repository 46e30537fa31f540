//! Where sessiond may send requests of its own (a JWKS fetch, a webhook delivery) for a
//! tenant. Production tenants may reach only public addresses: not loopback, private,
//! link-local (cloud metadata at 169.254.169.254), CGNAT, documentation, benchmarking,
//! multicast, broadcast or reserved ranges, nor those hidden in IPv4-mapped, -compatible,
//! NAT64 or 6to4 IPv6 forms, nor local and metadata host names. Playground and integration
//! tenants may reach anything (local development).
//!
//! This module is the one place that decides; it is pure. The server checks a URL before
//! each request and filters the addresses a host name resolves to at connect time.

use sessiond_store::Profile;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which destinations a tenant's outbound requests may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outbound {
    /// Any address: playground and integration tenants.
    Any,
    /// Public addresses only: production tenants.
    PublicOnly,
}

impl Outbound {
    pub fn for_profile(profile: Profile) -> Self {
        match profile {
            Profile::Production => Outbound::PublicOnly,
            Profile::Playground | Profile::Integration => Outbound::Any,
        }
    }

    /// May a request connect to `ip`?
    pub fn allows_ip(self, ip: IpAddr) -> bool {
        self == Outbound::Any || is_public(ip)
    }

    /// Why `url` may not be used, if it may not: its scheme is not http(s), or (for
    /// [`Outbound::PublicOnly`]) its host is a non-public IP literal or a local name. Host
    /// names are checked again, on the addresses they resolve to, when connecting.
    /// As [`Outbound::check_url`], for a URL that is sent a secret or a user's token (an SSO
    /// verification endpoint, a back-channel logout or CAEP receiver): a production tenant's
    /// must also be `https`.
    pub fn check_confidential_url(self, url: &str) -> Result<(), String> {
        self.check_url(url)?;
        if self == Outbound::PublicOnly && !url.to_ascii_lowercase().starts_with("https://") {
            return Err("production tenants send secrets and tokens over https only".into());
        }
        Ok(())
    }

    pub fn check_url(self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|_| "it is not a valid URL".to_owned())?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("it must be an http(s) URL".into());
        }
        if self == Outbound::Any {
            return Ok(());
        }
        let refused = "production tenants may not send requests to it";
        match parsed.host() {
            None => Err("it has no host".into()),
            Some(url::Host::Ipv4(ip)) if !is_public(IpAddr::V4(ip)) => Err(format!(
                "its host {ip} is a loopback, private, link-local or reserved address: {refused}"
            )),
            Some(url::Host::Ipv6(ip)) if !is_public(IpAddr::V6(ip)) => Err(format!(
                "its host {ip} is a loopback, private, link-local or reserved address: {refused}"
            )),
            Some(url::Host::Domain(name)) if is_local_name(name) => Err(format!(
                "its host {name} is a local or cloud-metadata name: {refused}"
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Host names that name this machine, the local network or a cloud metadata service:
/// `localhost` and `*.localhost`, `*.local` (mDNS), `*.internal` (private use, e.g.
/// `metadata.google.internal`), `*.home.arpa`, the metadata names `metadata.goog` and
/// `instance-data`, and any single-label name (`metadata`, a machine's own name), which can
/// only resolve through local search domains or /etc/hosts.
pub fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let under = |suffix: &str| name == suffix || name.ends_with(&format!(".{suffix}"));
    !name.contains('.')
        || ["localhost", "local", "internal", "home.arpa"]
            .iter()
            .any(|s| under(s))
        || name == "metadata.goog"
}

/// Is `ip` a public unicast address?
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// IPv4 ranges that are not public unicast (IANA special-purpose registry).
const NOT_PUBLIC_V4: [([u8; 4], u32); 15] = [
    ([0, 0, 0, 0], 8),       // "this network", unspecified
    ([10, 0, 0, 0], 8),      // private (RFC 1918)
    ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, cloud metadata
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, and broadcast 255.255.255.255
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !NOT_PUBLIC_V4.iter().any(|(net, len)| {
        let mask = u32::MAX << (32 - len);
        bits & mask == u32::from_be_bytes(*net)
    })
}

/// IPv6 ranges that are not public unicast and embed no IPv4 address.
const NOT_PUBLIC_V6: [(u128, u32); 9] = [
    (0x0064_ff9b_0001 << 80, 48), // local-use NAT64 (RFC 8215)
    (0x0100 << 112, 64),          // discard-only
    (0x2001 << 112, 23),          // IETF protocol assignments: Teredo, benchmarking, ORCHID
    (0x2001_0db8 << 96, 32),      // documentation
    (0x3fff << 112, 20),          // documentation (RFC 9637)
    (0xfc00 << 112, 7),           // unique local (ULA)
    (0xfe80 << 112, 10),          // link-local
    (0xfec0 << 112, 10),          // site-local (deprecated)
    (0xff00 << 112, 8),           // multicast
];

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let within = |net: u128, len: u32| bits & (u128::MAX << (128 - len)) == net;
    let v4 = |shift: u32| Ipv4Addr::from((bits >> shift) as u32);
    // Forms that carry an IPv4 address are judged by it: IPv4-compatible (::a.b.c.d, which
    // also covers :: and ::1), IPv4-mapped (::ffff:a.b.c.d), IPv4-translated
    // (::ffff:0:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and
    // 6to4 (2002:aabb:ccdd::/48).
    if within(0, 96)
        || within(0xffff << 32, 96)
        || within(0xffff << 48, 96)
        || within(0x0064_ff9b << 96, 96)
    {
        return is_public_v4(v4(0));
    }
    if within(0x2002 << 112, 16) {
        return is_public_v4(v4(80));
    }
    !NOT_PUBLIC_V6.iter().any(|(net, len)| within(*net, *len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    #[test]
    fn ipv4_special_ranges_are_not_public() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.10",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
    }

    #[test]
    fn ipv4_public_addresses_and_range_edges_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(public(ip), "{ip} must be public");
        }
    }

    #[test]
    fn ipv6_special_ranges_are_not_public() {
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "2001:db8::1",
            "3fff::1",
            "2001:2::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:1::1",
            "2001:1ff::1",
            "100::1",
            "64:ff9b:1::1",
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
        assert!(public("2606:4700:4700::1111"));
        assert!(public("2a00:1450:4001::1"));
        assert!(public("2001:4860:4860::8888"));
        assert!(public("2001:200::1"), "just past 2001::/23");
        assert!(public("fbff::1") && public("fe00::1"));
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::192.168.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "::ffff:0:127.0.0.1",
            "::ffff:0:a9fe:a9fe",
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
        for ip in [
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert!(public(ip), "{ip} must be public");
        }
    }

    #[test]
    fn local_and_metadata_names_are_local() {
        for name in [
            "localhost",
            "LOCALHOST.",
            "a.localhost",
            "metadata",
            "metadata.google.internal",
            "metadata.goog",
            "instance-data",
            "instance-data.ec2.internal",
            "printer.local",
            "router.home.arpa",
            "vm",
        ] {
            assert!(is_local_name(name), "{name}");
        }
        for name in [
            "example.com",
            "jwks.partner.example",
            "localhost.example.com",
        ] {
            assert!(!is_local_name(name), "{name}");
        }
    }

    #[test]
    fn urls_are_checked_only_for_production() {
        let p = Outbound::PublicOnly;
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://10.0.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0/",
            "https://localhost:8443/jwks.json",
            "https://LocalHost./",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://metadata/",
            "http://user@127.0.0.1/",
            "ftp://example.com/",
            "not a url",
        ] {
            assert!(p.check_url(url).is_err(), "{url} must be refused");
        }
        for url in [
            "https://partner.example.com/.well-known/jwks.json",
            "http://hooks.example.org:8080/x",
            "https://8.8.8.8/",
            "https://[2606:4700:4700::1111]/",
        ] {
            assert_eq!(p.check_url(url), Ok(()), "{url}");
        }
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/",
            "https://localhost/",
        ] {
            assert_eq!(Outbound::Any.check_url(url), Ok(()), "{url}");
        }
        assert!(Outbound::Any.check_url("ftp://example.com/").is_err());
        assert!(Outbound::Any.allows_ip("127.0.0.1".parse().unwrap_or(IpAddr::V4(0.into()))));
        assert!(!p.allows_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(
            Outbound::for_profile(Profile::Production),
            Outbound::PublicOnly
        );
        assert_eq!(Outbound::for_profile(Profile::Integration), Outbound::Any);
        assert_eq!(Outbound::for_profile(Profile::Playground), Outbound::Any);
    }
}
