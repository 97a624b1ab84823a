//! Where webhooks may go. A playbook author names the URL, so without a
//! guard Tenure could be made to POST account data to itself, to another
//! internal service or to a cloud metadata endpoint. Every address a
//! webhook's host resolves to is checked *as it is connected to* (the HTTP
//! client resolves through [`GuardedResolver`], so a name cannot resolve
//! to a public address for a check and a private one for the call); hosts
//! given as address literals are checked before the call. Loopback,
//! private, shared (CGNAT), link-local (and so the metadata address
//! 169.254.169.254), unique-local, multicast, reserved and unspecified
//! addresses are refused unless the operator allows their network
//! (`PLAYBOOKS_WEBHOOK_ALLOW`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// The networks an operator allows despite the rules (`PLAYBOOKS_WEBHOOK_ALLOW`).
#[derive(Clone, Debug, Default)]
pub struct Allowed(pub Vec<IpNet>);

impl Allowed {
    /// Parses `10.0.0.0/8,127.0.0.1/32` (a bare address is one host).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!("PLAYBOOKS_WEBHOOK_ALLOW: {item:?} is not a network")
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Self)
    }

    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !internal(ip) || self.0.iter().any(|net| net.contains(&ip))
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = ip.octets();
        return internal_v4(Ipv4Addr::new(a, b, c, d));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 is a metadata address)
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

/// Whether `ip` is inside some network rather than on the internet.
pub(crate) fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

/// Refuses a URL whose host is an address literal that webhooks may not
/// reach; named hosts are checked by [`GuardedResolver`] at connect time.
pub(crate) fn check_literal(url: &reqwest::Url, allowed: &Allowed) -> anyhow::Result<()> {
    let Some(host) = url.host_str() else {
        anyhow::bail!("the webhook URL has no host");
    };
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    anyhow::ensure!(
        allowed.permits(ip),
        "webhooks may not reach {ip}: a loopback, private, link-local or metadata address \
         (operators can allow a network with PLAYBOOKS_WEBHOOK_ALLOW)"
    );
    Ok(())
}

/// Resolves names for the webhook client and keeps only the addresses
/// webhooks may reach; a name with none left fails to resolve.
pub(crate) struct GuardedResolver {
    pub(crate) allowed: Arc<Allowed>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| allowed.permits(addr.ip()))
                .collect();
            if permitted.is_empty() {
                let refused: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "webhooks may not reach {host} ({}): a loopback, private, link-local or \
                     metadata address (operators can allow a network with PLAYBOOKS_WEBHOOK_ALLOW)",
                    refused.join(", ")
                )
                .into());
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        let none = Allowed::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!none.permits(ip(refused)), "{refused} should be refused");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(none.permits(ip(public)), "{public} should pass");
        }
    }

    #[test]
    fn operators_can_allow_networks() {
        let allowed = Allowed::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        assert!(allowed.permits(ip("127.0.0.1")));
        assert!(allowed.permits(ip("10.9.9.9")));
        assert!(!allowed.permits(ip("127.0.0.2")));
        assert!(!allowed.permits(ip("169.254.169.254")));
        assert!(Allowed::parse("intranet").is_err());
    }

    #[test]
    fn literal_hosts_are_checked_before_the_call() {
        let none = Allowed::default();
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(check_literal(&url("http://169.254.169.254/latest/meta-data"), &none).is_err());
        assert!(check_literal(&url("http://[::1]:8080/"), &none).is_err());
        assert!(check_literal(&url("https://hooks.example.com/x"), &none).is_ok());
        assert!(check_literal(&url("https://1.1.1.1/x"), &none).is_ok());
    }
}
