//! Network ACLs such as `egress_network_filter`: rules on IP networks, longest prefix wins,
//! in g3's forms (`{default: forbid, permit: [127.0.0.1/8]}`, or a bare permit list).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum AclAction {
    #[serde(alias = "allow", alias = "accept")]
    #[serde(rename = "permit")]
    Permit,
    #[serde(rename = "permit_log")]
    PermitLog,
    #[serde(alias = "deny", alias = "reject")]
    #[serde(rename = "forbid")]
    Forbid,
    #[serde(rename = "forbid_log")]
    ForbidLog,
}

impl AclAction {
    pub fn is_permitted(self) -> bool {
        matches!(self, AclAction::Permit | AclAction::PermitLog)
    }

    fn from_key(key: &str) -> Option<AclAction> {
        Some(match key {
            "permit" | "allow" | "accept" => AclAction::Permit,
            "permit_log" => AclAction::PermitLog,
            "forbid" | "deny" | "reject" => AclAction::Forbid,
            "forbid_log" => AclAction::ForbidLog,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    pub address: IpAddr,
    pub prefix: u8,
}

impl IpNetwork {
    /// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it covers,
    /// for rules that compare addresses in their canonical form; others as they are.
    pub fn unmapped(self) -> IpNetwork {
        match self.address {
            IpAddr::V6(v6) if self.prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => IpNetwork {
                    address: IpAddr::V4(v4),
                    prefix: self.prefix - 96,
                },
                None => self,
            },
            _ => self,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid network: {text:?}");
        let (address, prefix) = match text.trim().split_once('/') {
            Some((ip, prefix)) => (
                ip.parse::<IpAddr>().map_err(|_| invalid())?,
                Some(prefix.parse::<u8>().map_err(|_| invalid())?),
            ),
            None => (text.trim().parse::<IpAddr>().map_err(|_| invalid())?, None),
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(invalid());
        }
        Ok(IpNetwork { address, prefix })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAcl {
    pub default: AclAction,
    pub rules: Vec<(IpNetwork, AclAction)>,
}

impl NetworkAcl {
    /// The action for `ip`: the rule with the longest matching prefix, else the default.
    pub fn check(&self, ip: IpAddr) -> AclAction {
        let ip = ip.to_canonical();
        self.rules
            .iter()
            .filter(|(net, _)| net.contains(ip))
            .max_by_key(|(net, _)| net.prefix)
            .map_or(self.default, |(_, action)| *action)
    }

    /// The action for a target address of a direct escaper: as [`Self::check`], and an IPv6
    /// address that carries an IPv4 one (IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`)
    /// is also checked as that IPv4 address, the stricter answer winning: a forbidden
    /// address stays forbidden in every spelling the network may route to it.
    pub fn check_target(&self, ip: IpAddr) -> AclAction {
        let action = self.check(ip);
        let IpAddr::V6(v6) = ip.to_canonical() else {
            return action;
        };
        let segments = v6.segments();
        let embedded = match segments {
            // `::` and `::1` are IPv6's own, not IPv4-compatible forms.
            [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
            [0, 0, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
                let [.., high, low] = segments;
                Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)))
            }
            _ => None,
        };
        match embedded.map(|v4| self.check(IpAddr::V4(v4))) {
            Some(refused) if action.is_permitted() && !refused.is_permitted() => refused,
            _ => action,
        }
    }

    /// What direct escapers apply to every connection: g3's built-in forbidden targets
    /// (unspecified, loopback, link-local, discard-only), then the operator's rules, which
    /// win where they name the same network.
    pub fn egress(configured: Option<&NetworkAcl>) -> NetworkAcl {
        let builtin = [
            ("0.0.0.0/8", AclAction::Forbid),
            ("127.0.0.0/8", AclAction::Forbid),
            ("169.254.0.0/16", AclAction::Forbid),
            ("::/128", AclAction::Forbid),
            ("::1/128", AclAction::Forbid),
            ("fe80::/10", AclAction::Forbid),
            ("100::/64", AclAction::Forbid),
        ];
        let mut acl = NetworkAcl {
            default: AclAction::Permit,
            rules: Vec::new(),
        };
        for (net, action) in builtin {
            // These literals are valid networks.
            acl.rules.push((
                net.parse().unwrap_or(IpNetwork {
                    address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    prefix: 32,
                }),
                action,
            ));
        }
        if let Some(configured) = configured {
            acl.default = configured.default;
            for (net, action) in &configured.rules {
                acl.rules.retain(|(existing, _)| existing != net);
                acl.rules.push((*net, *action));
            }
        }
        acl
    }

    /// g3's bare-list form: these networks are permitted, everything else forbidden.
    fn permit_only(networks: Vec<IpNetwork>) -> NetworkAcl {
        let rules = networks
            .into_iter()
            .map(|n| (n, AclAction::Permit))
            .collect();
        NetworkAcl {
            default: AclAction::Forbid,
            rules,
        }
    }
}

struct NetworksVisitor;

impl<'de> Visitor<'de> for NetworksVisitor {
    type Value = Vec<IpNetwork>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a network or a list of networks")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<IpNetwork>, E> {
        text.parse().map(|net| vec![net]).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<IpNetwork>, A::Error> {
        let mut networks = Vec::new();
        while let Some(text) = seq.next_element::<String>()? {
            networks.push(text.parse().map_err(de::Error::custom)?);
        }
        Ok(networks)
    }
}

struct Networks(Vec<IpNetwork>);

impl<'de> Deserialize<'de> for Networks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NetworksVisitor).map(Networks)
    }
}

struct AclVisitor;

impl<'de> Visitor<'de> for AclVisitor {
    type Value = NetworkAcl;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a network ACL: a permit list, or a map of default/permit/forbid")
    }

    fn visit_unit<E: de::Error>(self) -> Result<NetworkAcl, E> {
        Ok(NetworkAcl {
            default: AclAction::Permit,
            rules: Vec::new(),
        })
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<NetworkAcl, E> {
        NetworksVisitor.visit_str(text).map(NetworkAcl::permit_only)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<NetworkAcl, A::Error> {
        NetworksVisitor.visit_seq(seq).map(NetworkAcl::permit_only)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NetworkAcl, A::Error> {
        let mut acl = NetworkAcl {
            default: AclAction::Permit,
            rules: Vec::new(),
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == "default" {
                acl.default = map.next_value()?;
                continue;
            }
            let action = AclAction::from_key(&key)
                .ok_or_else(|| de::Error::custom(format!("unknown acl action {key:?}")))?;
            let Networks(networks) = map.next_value()?;
            acl.rules.extend(networks.into_iter().map(|n| (n, action)));
        }
        Ok(acl)
    }
}

impl<'de> Deserialize<'de> for NetworkAcl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AclVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn egress_defaults_and_overrides() {
        let builtin = NetworkAcl::egress(None);
        assert_eq!(builtin.check(ip("127.0.0.1")), AclAction::Forbid);
        assert_eq!(builtin.check(ip("::ffff:127.0.0.1")), AclAction::Forbid);
        assert_eq!(builtin.check(ip("::1")), AclAction::Forbid);
        assert_eq!(builtin.check(ip("192.0.2.1")), AclAction::Permit);

        let operator = NetworkAcl {
            default: AclAction::Forbid,
            rules: vec![("127.0.0.0/8".parse().unwrap(), AclAction::Permit)],
        };
        let merged = NetworkAcl::egress(Some(&operator));
        assert_eq!(merged.check(ip("127.0.0.5")), AclAction::Permit);
        assert_eq!(merged.check(ip("192.0.2.1")), AclAction::Forbid);
        assert_eq!(merged.check(ip("::1")), AclAction::Forbid);
    }

    #[test]
    fn ipv4_in_ipv6_spellings_of_a_forbidden_target_are_forbidden() {
        let builtin = NetworkAcl::egress(None);
        for spelling in ["::127.0.0.1", "64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe"] {
            assert_eq!(
                builtin.check_target(ip(spelling)),
                AclAction::Forbid,
                "{spelling}"
            );
        }
        assert_eq!(
            builtin.check_target(ip("64:ff9b::192.0.2.1")),
            AclAction::Permit
        );
        assert_eq!(builtin.check_target(ip("2001:db8::1")), AclAction::Permit);
        // `::` and `::1` are checked as themselves (both forbidden by default).
        assert_eq!(builtin.check_target(ip("::1")), AclAction::Forbid);
        let operator = NetworkAcl {
            default: AclAction::Permit,
            rules: vec![("10.0.0.0/8".parse().unwrap(), AclAction::Forbid)],
        };
        let merged = NetworkAcl::egress(Some(&operator));
        assert_eq!(
            merged.check_target(ip("64:ff9b::10.1.2.3")),
            AclAction::Forbid
        );
        assert_eq!(merged.check_target(ip("::10.1.2.3")), AclAction::Forbid);
    }

    #[test]
    fn networks() {
        assert!(
            "10.0.0.0/8"
                .parse::<IpNetwork>()
                .unwrap()
                .contains(ip("10.9.8.7"))
        );
        assert!(
            !"10.0.0.0/8"
                .parse::<IpNetwork>()
                .unwrap()
                .contains(ip("11.0.0.1"))
        );
        assert!("::/0".parse::<IpNetwork>().unwrap().contains(ip("::1")));
        assert!("10.0.0.0/33".parse::<IpNetwork>().is_err());
    }
}
