//! Which hosts berth may send requests to on a tenant's behalf: the registries it imports
//! and pulls through from (`import.allowedRegistries`) and the receivers of
//! subscriptions (`notifications.allowedHosts`), under one rule, enforced here and
//! nowhere else.
//!
//! A [`HostPolicy`] is a list of `host[:port]` globs (`*` and `?`). An empty list, or
//! `*`, allows any host on a public address. Private, loopback, link-local and other
//! non-public addresses are reached only when a pattern other than `*` names the host
//! (`127.0.0.1:*`, `registry.corp.lan`, `*.corp.example.com`): a tenant who can write a
//! URL must not make berth reach the cluster's internal services or a cloud's metadata
//! endpoint. The address rule holds for names too: berth resolves them itself
//! ([`PolicyResolver`]) and connects only to the addresses the policy allows, so a public
//! name that resolves to a private address is refused.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use wildmatch::WildMatch;

/// Where requests may go (see the module's documentation).
#[derive(Clone, Debug)]
pub struct HostPolicy {
    /// `(name, port)` patterns; a pattern without a port gets the scheme's default port.
    patterns: Vec<(String, Option<String>)>,
    /// The setting the patterns came from, for messages.
    setting: &'static str,
}

/// Why a host may not be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No pattern matches the host.
    NotListed,
    /// The host is (or resolves only to) an address that is not public, and no pattern
    /// names it explicitly.
    NotPublic(IpAddr),
}

impl HostPolicy {
    /// A policy from `host[:port]` globs, for the server setting `setting`.
    pub fn new(patterns: &[String], setting: &'static str) -> HostPolicy {
        let patterns = patterns
            .iter()
            .map(|pattern| {
                let pattern = pattern.trim().to_ascii_lowercase();
                match split_port(&pattern) {
                    (name, Some(port)) => (name.to_string(), Some(port.to_string())),
                    (name, None) => (name.to_string(), None),
                }
            })
            .collect();
        HostPolicy { patterns, setting }
    }

    /// The server setting this policy is, for messages.
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// Whether `host` (a name or an address, with an optional `:port`) may be reached,
    /// as far as can be told without resolving it. `default_port` stands for a host
    /// written without a port (443, or 80 for plain HTTP).
    pub fn check(&self, host: &str, default_port: u16) -> Result<(), Refusal> {
        let host = host.to_ascii_lowercase();
        let (name, port) = split_port(&host);
        let port = port.map_or_else(|| default_port.to_string(), str::to_string);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let listed = self.patterns.is_empty()
            || self.patterns.iter().any(|(pattern, pattern_port)| {
                let any_port = pattern == "*" && pattern_port.is_none();
                WildMatch::new(pattern).matches(name)
                    && (any_port || pattern_port.as_deref().map_or(port == default_port.to_string(), |p| WildMatch::new(p).matches(&port)))
            });
        if !listed {
            return Err(Refusal::NotListed);
        }
        match name.parse::<IpAddr>() {
            Ok(address) if !is_public(address) && !self.names(name) => Err(Refusal::NotPublic(address)),
            _ if name == "localhost" && !self.names(name) => Err(Refusal::NotPublic(IpAddr::from([127, 0, 0, 1]))),
            _ => Ok(()),
        }
    }

    /// Whether `host` (a name or an address, with an optional `:port`) may be reached as
    /// far as its address goes, whatever the patterns list: for hosts a registry sends
    /// berth to (a token service) rather than hosts a tenant names. Names are judged by
    /// what they resolve to ([`PolicyResolver`]).
    pub fn check_address(&self, host: &str) -> Result<(), Refusal> {
        let host = host.to_ascii_lowercase();
        let name = split_port(&host).0.trim_start_matches('[').trim_end_matches(']');
        match name.parse::<IpAddr>() {
            Ok(address) if !is_public(address) && !self.names(name) => Err(Refusal::NotPublic(address)),
            _ if name == "localhost" && !self.names(name) => Err(Refusal::NotPublic(IpAddr::from([127, 0, 0, 1]))),
            _ => Ok(()),
        }
    }

    /// Checks a URL a tenant wrote (a subscription's): http or https, to a host the
    /// policy allows as far as can be told without resolving it.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|err| format!("{url:?} is not a URL: {err}"))?;
        let default_port = match parsed.scheme() {
            "https" => 443,
            "http" => 80,
            other => return Err(format!("the scheme {other:?} is not supported: use http or https")),
        };
        let Some(host) = parsed.host_str() else {
            return Err(format!("{url:?} names no host"));
        };
        let host = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        self.check(&host, default_port).map_err(|refusal| self.explain(&host, &refusal))
    }

    /// Whether a pattern other than `*` matches `name`: only such a pattern opens a
    /// non-public address.
    pub fn names(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let name = name.trim_start_matches('[').trim_end_matches(']');
        self.patterns.iter().any(|(pattern, _)| pattern != "*" && WildMatch::new(pattern).matches(name))
    }

    /// The addresses of `name` that may be connected to.
    pub fn filter(&self, name: &str, addresses: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
        if self.names(name) {
            return Ok(addresses);
        }
        let first = addresses.first().map(|a| a.ip());
        let public: Vec<SocketAddr> = addresses.into_iter().filter(|a| is_public(a.ip())).collect();
        match (public.is_empty(), first) {
            (true, Some(address)) => Err(Refusal::NotPublic(address)),
            _ => Ok(public),
        }
    }

    /// A message for a refusal to reach `host`, with what to do.
    pub fn explain(&self, host: &str, refusal: &Refusal) -> String {
        match refusal {
            Refusal::NotListed => format!("{host} is not allowed by the server's {}: ask an admin to add it", self.setting),
            Refusal::NotPublic(address) => format!(
                "{host} is at {address}, which is not a public address: berth reaches private, loopback and link-local addresses only when the server's {} names the host",
                self.setting
            ),
        }
    }
}

/// `name` and `port` of `host[:port]` (IPv6 addresses in brackets).
fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') && (!name.contains(':') || name.ends_with(']')) => (name, Some(port)),
        _ => (host, None),
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast, broadcast or reserved for documentation, and
/// the same for the IPv4 address inside an IPv6 one.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Resolves names for reqwest and keeps only the addresses the policy allows, so that a
/// name cannot lead berth to an address its literal form would not be allowed at.
pub struct PolicyResolver {
    policy: Arc<HostPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<HostPolicy>) -> PolicyResolver {
        PolicyResolver { policy }
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let name = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed = policy.filter(&name, found).map_err(|refusal| policy.explain(&name, &refusal))?;
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> HostPolicy {
        HostPolicy::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>(), "test.setting")
    }

    #[test]
    fn an_empty_list_or_a_star_allows_public_hosts_only() {
        for open in [policy(&[]), policy(&["*"])] {
            assert_eq!(open.check("quay.io", 443), Ok(()));
            assert_eq!(open.check("93.184.216.34:8443", 443), Ok(()));
            for private in
                ["127.0.0.1:5000", "10.1.2.3", "192.168.0.1", "172.16.0.1", "169.254.169.254", "[::1]:80", "[fe80::1]", "100.64.0.1"]
            {
                assert!(matches!(open.check(private, 443), Err(Refusal::NotPublic(_))), "{private}");
            }
            assert!(matches!(open.check("localhost:8080", 443), Err(Refusal::NotPublic(_))));
        }
    }

    #[test]
    fn patterns_name_hosts_and_ports_and_open_private_addresses_they_name() {
        let listed = policy(&["127.0.0.1:*", "*.corp.example.com", "quay.io"]);
        assert_eq!(listed.check("127.0.0.1:5000", 443), Ok(()));
        assert_eq!(listed.check("registry.corp.example.com", 443), Ok(()));
        assert_eq!(listed.check("quay.io:443", 443), Ok(()));
        assert_eq!(listed.check("quay.io:5000", 443), Err(Refusal::NotListed));
        assert_eq!(listed.check("docker.io", 443), Err(Refusal::NotListed));
        assert!(listed.names("registry.corp.example.com") && !listed.names("docker.io"));
        assert!(!policy(&["*"]).names("anything"));
    }

    #[test]
    fn resolved_addresses_are_filtered_unless_the_name_is_listed() {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let public: SocketAddr = "93.184.216.34:0".parse().unwrap();
        assert_eq!(policy(&[]).filter("rebind.example", vec![loopback]), Err(Refusal::NotPublic(loopback.ip())));
        assert_eq!(policy(&[]).filter("mixed.example", vec![loopback, public]), Ok(vec![public]));
        assert_eq!(policy(&["localhost:*"]).filter("localhost", vec![loopback]), Ok(vec![loopback]));
    }

    proptest::proptest! {
        /// Any host or URL a tenant writes is allowed or refused with a reason, never a
        /// panic; an address the policy refuses is never made reachable by a port.
        #[test]
        fn hosts_and_urls_are_judged_without_panicking(text in "[ -~]{0,60}", port in 0u16..) {
            let open = policy(&[]);
            if let Err(refusal) = open.check(&text, 443) {
                proptest::prop_assert!(!open.explain(&text, &refusal).is_empty());
            }
            if let Err(message) = open.check_url(&text) {
                proptest::prop_assert!(!message.is_empty());
            }
            let _ = open.check_address(&text);
            let (loopback, metadata) = (format!("127.0.0.1:{port}"), format!("http://169.254.169.254:{port}/"));
            proptest::prop_assert!(open.check(&loopback, 443).is_err());
            proptest::prop_assert!(open.check_url(&metadata).is_err());
        }
    }

    #[test]
    fn addresses_inside_ipv6_are_judged_as_ipv4() {
        assert!(!is_public("::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_public("::ffff:93.184.216.34".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
    }
}
