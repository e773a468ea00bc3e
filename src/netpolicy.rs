//! The network policy: which hosts and ports a tenant's sources and Postgres destinations may
//! point at. The control plane owns the policy (`api.network_policy`); it checks every address
//! a tenant gives on create, update and validate, again each time it connects for a tenant, and
//! hands the policy to each replicator it starts (a `network_policy` section of the replicator's
//! config), which checks again right before it connects. A replicator run by hand, without that
//! section, connects wherever its operator says.
//!
//! A check resolves the host first and judges every address it resolves to, so a name that
//! points at a protected address is refused like the address itself; the checked address is
//! then what gets connected to ([`Checked::pinned_host`]), so the name cannot be re-pointed
//! between the check and the connection (DNS rebinding). With `verify-full` TLS the name is
//! kept: the server must then prove it owns the name, which a rebound address cannot.
//!
//! This module knows nothing of HTTP or of how a refusal is shown: callers turn a [`Refusal`]
//! into a generic message for the tenant and log its details for the operator.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long resolving a host name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The policy as configured (`api.network_policy`, or the replicator's `network_policy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyConfig {
    /// Address classes no tenant may reach. Unset: none in `dev`, every class but `private`
    /// elsewhere ([`Protected::DEFAULT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protect: Option<Vec<Protected>>,
    /// When not empty, a target must match one of these rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<HostRule>,
    /// A target matching one of these rules is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<HostRule>,
}

/// A class of addresses the policy can protect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protected {
    /// 127.0.0.0/8, ::1, and the unspecified 0.0.0.0/8 and :: (which reach this machine).
    Loopback,
    /// 169.254.0.0/16 and fe80::/10.
    LinkLocal,
    /// Cloud metadata services: 169.254.169.254, fd00:ec2::254, 100.100.100.200.
    Metadata,
    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10 (shared), fc00::/7.
    Private,
    /// The control plane's own database server (its resolved addresses, on its port).
    ControlPlaneDatabase,
}

impl Protected {
    /// What is protected outside `dev` when `protect` is not set.
    pub const DEFAULT: [Protected; 4] = [
        Protected::Loopback,
        Protected::LinkLocal,
        Protected::Metadata,
        Protected::ControlPlaneDatabase,
    ];

    fn name(self) -> &'static str {
        match self {
            Protected::Loopback => "loopback",
            Protected::LinkLocal => "link_local",
            Protected::Metadata => "metadata",
            Protected::Private => "private",
            Protected::ControlPlaneDatabase => "control_plane_database",
        }
    }

    /// Whether `ip` (already unmapped) is in this class; the control plane's database is
    /// matched by deny rules instead.
    fn contains(self, ip: IpAddr) -> bool {
        let ranges: &[(&str, u8)] = match self {
            Protected::Loopback => &[("127.0.0.0", 8), ("0.0.0.0", 8), ("::1", 128), ("::", 128)],
            Protected::LinkLocal => &[("169.254.0.0", 16), ("fe80::", 10)],
            Protected::Metadata => &[
                ("169.254.169.254", 32),
                ("fd00:ec2::254", 128),
                ("100.100.100.200", 32),
            ],
            Protected::Private => &[
                ("10.0.0.0", 8),
                ("172.16.0.0", 12),
                ("192.168.0.0", 16),
                ("100.64.0.0", 10),
                ("fc00::", 7),
            ],
            Protected::ControlPlaneDatabase => &[],
        };
        ranges.iter().any(|(base, bits)| {
            base.parse()
                .is_ok_and(|base| Cidr { base, bits: *bits }.contains(ip))
        })
    }
}

/// One allow or deny rule: a host part and an optional port, written as text:
/// `10.0.0.0/8`, `192.0.2.7:5432`, `[fd00::/8]:5432`, `db.example.com`, `*.example.com:5432`,
/// `*:5433` (any host, that port). Address rules match the resolved addresses; name rules
/// match the host as the tenant wrote it (so deny by address, allow by either).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostRule {
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Network(Cidr),
    Name(String),
    /// `*.example.com`: stored as `.example.com`.
    Suffix(String),
}

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    base: IpAddr,
    bits: u8,
}

impl Cidr {
    fn contains(self, ip: IpAddr) -> bool {
        match (self.base, unmap(ip)) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(base) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.bits)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (text, None),
        };
        let base: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        let base = unmap(base);
        let max = if base.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`/{bits}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { base, bits })
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`, or NAT64 `64:ff9b::7f00:1`) is
/// judged as the IPv4 address it reaches.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let [a, b, ..] = v6.segments();
            let octets = v6.octets();
            if a == 0x64 && b == 0xff9b && octets[4..12].iter().all(|o| *o == 0) {
                return IpAddr::V4(Ipv4Addr::new(
                    octets[12], octets[13], octets[14], octets[15],
                ));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

impl TryFrom<String> for HostRule {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<HostRule> for String {
    fn from(rule: HostRule) -> String {
        rule.to_string()
    }
}

impl FromStr for HostRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("`{text}`: expected `:port` after `]`")),
                },
            }
        } else if text.matches(':').count() >= 2 {
            // A bare IPv6 address or block: no port (write `[…]:port` for one).
            (text, None)
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("`{text}`: `{p}` is not a port (1 to 65535)"))
            })
            .transpose()?;
        let host = host.to_ascii_lowercase();
        let pattern = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            check_name(text, suffix)?;
            HostPattern::Suffix(format!(".{suffix}"))
        } else if host.contains('/') || host.parse::<IpAddr>().is_ok() {
            HostPattern::Network(host.parse().map_err(|e| format!("`{text}`: {e}"))?)
        } else {
            check_name(text, &host)?;
            HostPattern::Name(host.trim_end_matches('.').to_owned())
        };
        Ok(HostRule {
            host: pattern,
            port,
        })
    }
}

fn check_name(rule: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{rule}` is not an address, an address block (CIDR), a host name, `*.domain` or `*`, \
             with an optional `:port`"
        ))
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostPattern::Any => "*".to_owned(),
            HostPattern::Network(cidr) => match (cidr.base, self.port) {
                (IpAddr::V6(_), Some(_)) => format!("[{cidr}]"),
                _ => cidr.to_string(),
            },
            HostPattern::Name(name) => name.clone(),
            HostPattern::Suffix(suffix) => format!("*{suffix}"),
        };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

impl HostRule {
    /// Exactly one address and port.
    pub fn exact(addr: SocketAddr) -> Self {
        let ip = unmap(addr.ip());
        HostRule {
            host: HostPattern::Network(Cidr {
                base: ip,
                bits: if ip.is_ipv4() { 32 } else { 128 },
            }),
            port: Some(addr.port()),
        }
    }

    /// Whether the target `name` (as written, lowercase), reached at `ip`:`port`, matches.
    fn matches(&self, name: &str, ip: IpAddr, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Network(cidr) => cidr.contains(ip),
            HostPattern::Name(rule) => rule == name,
            HostPattern::Suffix(suffix) => name.ends_with(suffix.as_str()),
        }
    }
}

/// The policy in force: the configured classes with environment defaults applied and the
/// control plane's database turned into deny rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    protect: Vec<Protected>,
    allow: Vec<HostRule>,
    deny: Vec<HostRule>,
}

/// Why a target is refused. `Display` has the details, for the operator's log only; a tenant
/// gets [`Refusal::TENANT_MESSAGE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("`{host}` does not resolve: {reason}")]
    Unresolved { host: String, reason: String },
    #[error("{host}:{port} resolves to {ip}, which is in the protected class `{class}`")]
    Protected {
        host: String,
        port: u16,
        ip: IpAddr,
        class: &'static str,
    },
    #[error("{host}:{port} ({ip}) matches the deny rule `{rule}`")]
    Denied {
        host: String,
        port: u16,
        ip: IpAddr,
        rule: String,
    },
    #[error("{host}:{port} ({ip}) matches no allow rule")]
    NotAllowed { host: String, port: u16, ip: IpAddr },
    #[error("`{path}` is a Unix-domain socket directory on this machine")]
    LocalSocket { path: String },
}

impl Refusal {
    /// The one answer a tenant gets for a refused, unresolvable or unreachable address, so
    /// probing tells nothing about which hosts and ports exist or answer.
    pub const TENANT_MESSAGE: &'static str =
        "cannot be reached: the address is not allowed by the network policy or does not answer";
}

/// A target that passed: the addresses it resolved to (empty when the policy checks nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub addresses: Vec<IpAddr>,
}

impl Checked {
    /// The host to connect to instead of the name that was checked, so the connection goes to
    /// a checked address; `None` keeps the name (no policy, or TLS that verifies the host name
    /// (`verify-full`), whose certificate check needs the name and defeats a re-pointed name on
    /// its own).
    pub fn pinned_host(&self, tls_verifies_name: bool) -> Option<String> {
        match self.addresses.first() {
            Some(ip) if !tls_verifies_name => Some(ip.to_string()),
            _ => None,
        }
    }
}

impl NetworkPolicy {
    /// A policy that allows everything (a replicator run by hand; tests).
    pub fn open() -> Self {
        Self::default()
    }

    /// The policy of `config`: `dev` decides the default classes; `control_plane` are the
    /// addresses of the control plane's database (empty in a replicator, whose policy already
    /// carries them as deny rules).
    pub fn new(config: &NetworkPolicyConfig, dev: bool, control_plane: &[SocketAddr]) -> Self {
        let protect = match &config.protect {
            Some(classes) => classes.clone(),
            None if dev => Vec::new(),
            None => Protected::DEFAULT.to_vec(),
        };
        let mut deny = config.deny.clone();
        if protect.contains(&Protected::ControlPlaneDatabase) {
            deny.extend(control_plane.iter().copied().map(HostRule::exact));
        }
        Self {
            protect: protect
                .into_iter()
                .filter(|c| *c != Protected::ControlPlaneDatabase)
                .collect(),
            allow: config.allow.clone(),
            deny,
        }
    }

    /// The policy as a replicator's `network_policy` section (the same rules, explicit).
    pub fn to_config(&self) -> NetworkPolicyConfig {
        NetworkPolicyConfig {
            protect: Some(self.protect.clone()),
            allow: self.allow.clone(),
            deny: self.deny.clone(),
        }
    }

    /// Whether the policy checks nothing.
    pub fn is_open(&self) -> bool {
        self.protect.is_empty() && self.allow.is_empty() && self.deny.is_empty()
    }

    /// Resolves `host` and checks every address it resolves to, on `port`.
    pub async fn check(&self, host: &str, port: u16) -> Result<Checked, Refusal> {
        if self.is_open() {
            return Ok(Checked {
                addresses: Vec::new(),
            });
        }
        // A directory is a Unix-domain socket on this very machine (libpq's convention): the
        // loopback of sockets, never a tenant's to reach.
        if host.starts_with('/') {
            return Err(Refusal::LocalSocket {
                path: host.to_owned(),
            });
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let addresses = resolve(host, port).await?;
        for ip in &addresses {
            self.judge(&name, *ip, port)?;
        }
        Ok(Checked { addresses })
    }

    /// The verdict on one resolved address.
    fn judge(&self, name: &str, ip: IpAddr, port: u16) -> Result<(), Refusal> {
        let ip = unmap(ip);
        if let Some(class) = self.protect.iter().find(|c| c.contains(ip)) {
            return Err(Refusal::Protected {
                host: name.to_owned(),
                port,
                ip,
                class: class.name(),
            });
        }
        if let Some(rule) = self.deny.iter().find(|r| r.matches(name, ip, port)) {
            return Err(Refusal::Denied {
                host: name.to_owned(),
                port,
                ip,
                rule: rule.to_string(),
            });
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.matches(name, ip, port)) {
            return Err(Refusal::NotAllowed {
                host: name.to_owned(),
                port,
                ip,
            });
        }
        Ok(())
    }
}

/// Every address `host` resolves to (an address literal is itself).
async fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, Refusal> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let unresolved = |reason: String| Refusal::Unresolved {
        host: host.to_owned(),
        reason,
    };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unresolved(format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs())))?
        .map_err(|e| unresolved(e.to_string()))?;
    let mut addresses: Vec<IpAddr> = Vec::new();
    for addr in found {
        if !addresses.contains(&addr.ip()) {
            addresses.push(addr.ip());
        }
    }
    if addresses.is_empty() {
        return Err(unresolved("no address".into()));
    }
    Ok(addresses)
}

/// The addresses of the control plane's database server, to protect (a name that does not
/// resolve protects nothing; its connection would fail anyway).
pub async fn control_plane_addresses(host: &str, port: u16) -> Vec<SocketAddr> {
    resolve(host, port)
        .await
        .map(|ips| {
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn assert_refused(policy: &NetworkPolicy, host: &str, port: u16, description: &str) {
        assert!(
            policy.check(host, port).await.is_err(),
            "{description}: {host}:{port} was allowed"
        );
    }

    fn strict() -> NetworkPolicy {
        NetworkPolicy::new(
            &NetworkPolicyConfig::default(),
            false,
            &["192.0.2.10:5432".parse().unwrap()],
        )
    }

    #[tokio::test]
    async fn protected_classes_are_refused_outside_dev_and_allowed_in_dev() {
        let policy = strict();
        for (host, port, description) in [
            ("127.0.0.1", 5432, "loopback"),
            ("127.9.9.9", 5432, "anything in 127/8"),
            ("::1", 5432, "IPv6 loopback"),
            ("0.0.0.0", 5432, "unspecified, reaches this machine"),
            ("::ffff:127.0.0.1", 5432, "IPv4-mapped loopback"),
            ("64:ff9b::7f00:1", 5432, "NAT64 loopback"),
            ("169.254.169.254", 80, "metadata"),
            ("169.254.3.4", 5432, "link-local"),
            ("fe80::1", 5432, "IPv6 link-local"),
            ("fd00:ec2::254", 80, "AWS IPv6 metadata"),
            ("192.0.2.10", 5432, "the control plane's database"),
            ("localhost", 5432, "a name resolving to loopback"),
            ("/var/run/postgresql", 5432, "a Unix-socket directory"),
        ] {
            assert_refused(&policy, host, port, description).await;
        }
        for (host, port) in [
            ("192.0.2.10", 5433),
            ("10.1.2.3", 5432),
            ("203.0.113.5", 5432),
        ] {
            assert!(policy.check(host, port).await.is_ok(), "{host}:{port}");
        }
        let dev = NetworkPolicy::new(&NetworkPolicyConfig::default(), true, &[]);
        assert!(dev.is_open());
        assert!(dev.check("127.0.0.1", 5432).await.is_ok());
    }

    #[tokio::test]
    async fn allow_and_deny_rules_match_addresses_names_and_ports() {
        let config: NetworkPolicyConfig = serde_yaml::from_str(
            "protect: [private]\n\
             allow: ['203.0.113.0/24', '*.example.com:5432', '[2001:db8::/32]:5432']\n\
             deny: ['203.0.113.66', '*:6432']",
        )
        .unwrap();
        let policy = NetworkPolicy::new(&config, false, &[]);
        assert!(policy.check("203.0.113.5", 5432).await.is_ok());
        assert!(policy.check("2001:db8::5", 5432).await.is_ok());
        for (host, port, description) in [
            ("203.0.113.66", 5432, "denied address"),
            ("203.0.113.5", 6432, "denied port"),
            ("198.51.100.1", 5432, "not in the allow list"),
            ("2001:db8::5", 5433, "allowed block, other port"),
            ("10.0.0.1", 5432, "private, protected"),
            (
                "127.0.0.1",
                5432,
                "loopback is no longer protected, but not allowed",
            ),
        ] {
            assert_refused(&policy, host, port, description).await;
        }
        assert_eq!(
            policy.judge("db.example.com", "198.51.100.1".parse().unwrap(), 5432),
            Ok(())
        );
        assert!(
            policy
                .judge("db.example.com", "10.0.0.1".parse().unwrap(), 5432)
                .is_err(),
            "a protected class wins over a name allow rule"
        );
    }

    #[test]
    fn rules_round_trip_and_bad_rules_are_refused() {
        for text in [
            "10.0.0.0/8",
            "10.0.0.0/8:5432",
            "[fd00::/8]:5432",
            "fd00::/8",
            "db.example.com",
            "*.example.com:5432",
            "*:5433",
            "*",
        ] {
            let rule: HostRule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text);
        }
        for bad in [
            "10.0.0.0/33",
            "db:0",
            "db:x",
            "[::1",
            "bad host",
            "*.",
            "a_b",
        ] {
            assert!(bad.parse::<HostRule>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_checked_name_is_pinned_to_its_address_unless_tls_verifies_the_name() {
        let checked = Checked {
            addresses: vec!["203.0.113.5".parse().unwrap()],
        };
        assert_eq!(checked.pinned_host(false).as_deref(), Some("203.0.113.5"));
        assert_eq!(checked.pinned_host(true), None);
    }

    #[test]
    fn the_replicator_gets_the_same_verdicts() {
        let policy = strict();
        let config = serde_yaml::to_string(&policy.to_config()).unwrap();
        let parsed: NetworkPolicyConfig = serde_yaml::from_str(&config).unwrap();
        assert_eq!(NetworkPolicy::new(&parsed, true, &[]), policy);
    }
}
