//! `type: route_geoip`: picks the next escaper by where the target's address is, a name
//! resolved first as Happy Eyeballs resolves (the preferred family within
//! `resolution_delay`), as g3proxy picks: the longest `networks` rule holding the first
//! address; else, when rules need it, the address's location from the ip-locate service
//! (its AS number, then its country, then its continent); else `default_next`.
//!
//! The ip-locate protocol (g3's): a MessagePack map per UDP datagram, `{ip}` asked,
//! `{ip, ttl, network, country, continent, as_number, ...}` answered, keys as names or as
//! their ids (1 ip, 2 ttl, 3 network, 4 country, 5 continent, 6 as_number). Answers are
//! cached per address for their ttl (`agent.rs`), and per the network they name, as g3
//! caches them: another address of a network already located is not asked about. Answers
//! the service pushes without being asked are ignored.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use g3proxy_proto::msgpack::Value;
use g3proxy_shared::config::escapers::{RouteGeoipConfig, country_alpha2};
use g3proxy_shared::types::IpNetwork;
use tokio::time::Instant;

use super::agent::{self, Agent, Answered, Timings};
use super::route_resolved::TargetAddress;
use super::rules::{IpRoutes, by_value};
use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;

pub struct RouteGeoipEscaper {
    resolution: TargetAddress,
    by_network: IpRoutes,
    by_as_number: HashMap<u32, Arc<Escaper>>,
    by_country: HashMap<String, Arc<Escaper>>,
    by_continent: HashMap<String, Arc<Escaper>>,
    default_next: Arc<Escaper>,
    /// Only when a rule needs a location.
    locate: Option<Arc<Agent<IpLocate>>>,
    timings: Timings,
    networks: Mutex<NetworkCache>,
}

/// Where an address is, as the ip-locate service says.
#[derive(Clone, Debug, Default)]
struct Location {
    as_number: Option<u32>,
    /// ISO 3166 alpha-2.
    country: Option<String>,
    continent: Option<String>,
    /// The network the answer holds for, and its ttl as given.
    network: Option<IpNetwork>,
    ttl: Option<u64>,
}

/// Networks most kept; a full cache drops its expired ones, then takes no more until some
/// expire.
const MAX_NETWORKS: usize = 1 << 16;

/// Locations by the network they hold for: by prefix length, longest first, then by the
/// network's address.
#[derive(Default)]
struct NetworkCache {
    by_prefix: BTreeMap<std::cmp::Reverse<u8>, HashMap<IpAddr, (Location, Instant)>>,
    len: usize,
}

/// `ip` with the bits past `prefix` cleared; `None` past its family's length.
fn masked(ip: IpAddr, prefix: u8) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) if prefix <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            Some(IpAddr::V4((u32::from(v4) & mask).into()))
        }
        IpAddr::V6(v6) if prefix <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            Some(IpAddr::V6((u128::from(v6) & mask).into()))
        }
        _ => None,
    }
}

impl NetworkCache {
    /// The fresh location of the most specific network holding `ip`.
    fn get(&self, ip: IpAddr, now: Instant) -> Option<Location> {
        self.by_prefix.iter().find_map(|(prefix, networks)| {
            let (location, expire) = networks.get(&masked(ip, prefix.0)?)?;
            (now < *expire).then(|| location.clone())
        })
    }

    fn insert(&mut self, network: IpNetwork, location: Location, expire: Instant) {
        let Some(address) = masked(network.address, network.prefix) else {
            return;
        };
        if self.len >= MAX_NETWORKS {
            let now = Instant::now();
            for networks in self.by_prefix.values_mut() {
                networks.retain(|_, (_, expire)| now < *expire);
            }
            self.by_prefix.retain(|_, networks| !networks.is_empty());
            self.len = self.by_prefix.values().map(HashMap::len).sum();
            if self.len >= MAX_NETWORKS {
                return;
            }
        }
        let networks = self
            .by_prefix
            .entry(std::cmp::Reverse(network.prefix))
            .or_default();
        if networks.insert(address, (location, expire)).is_none() {
            self.len += 1;
        }
    }
}

struct IpLocate;

/// A field of a map under its name or its id.
fn field<'v>(value: &'v Value, name: &str, id: i128) -> Option<&'v Value> {
    let Value::Map(entries) = value else {
        return None;
    };
    entries
        .iter()
        .find(|(key, _)| match key {
            Value::Str(key) => key == name,
            Value::Int(key) => *key == id,
            _ => false,
        })
        .map(|(_, value)| value)
}

impl agent::Protocol for IpLocate {
    type Question = IpAddr;
    type Answer = Location;
    type Tag = IpAddr;

    fn query(&self, ip: &IpAddr) -> (Value, IpAddr) {
        let query = Value::Map(vec![(Value::Str("ip".into()), Value::Str(ip.to_string()))]);
        (query, *ip)
    }

    fn answer(&self, value: &Value) -> Option<Answered<Self>> {
        let ip: IpAddr = field(value, "ip", 1)?.as_str()?.parse().ok()?;
        let ttl = field(value, "ttl", 2).and_then(Value::as_u64);
        // g3 takes an answer without its network as no location.
        let Some(network) = field(value, "network", 3) else {
            return Some(Answered {
                tag: ip.to_canonical(),
                answer: None,
                ttl,
            });
        };
        let network = network
            .as_str()
            .and_then(|text| text.parse::<IpNetwork>().ok())
            .map(IpNetwork::unmapped)
            .filter(|network| network.contains(ip.to_canonical()));
        let location = Location {
            as_number: field(value, "as_number", 6)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            country: field(value, "country", 4)
                .and_then(Value::as_str)
                .and_then(country_alpha2),
            continent: field(value, "continent", 5)
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase),
            network,
            ttl,
        };
        Some(Answered {
            tag: ip.to_canonical(),
            answer: Some(location),
            ttl,
        })
    }
}

impl RouteGeoipEscaper {
    pub fn build(config: &RouteGeoipConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        let rules = &config.geo_rules;
        let service = &config.ip_locate_service;
        let timings = Timings {
            request_timeout: service.cache_request_timeout.0,
            wait_timeout: service.query_wait_timeout.0,
            default_ttl: service.default_expire_ttl,
            maximum_ttl: service.maximum_expire_ttl,
            vanish_wait: Duration::ZERO,
        };
        let locate = match rules.needs_location() {
            false => None,
            true => Some(Agent::new(IpLocate, service.query_peer_addr, timings)?),
        };
        Ok(RouteGeoipEscaper {
            resolution: TargetAddress::build(&config.resolution, deps),
            by_network: IpRoutes::new(Vec::new(), by_value(&rules.networks, deps)),
            by_as_number: by_value(&rules.as_numbers, deps).into_iter().collect(),
            by_country: by_value(&rules.countries, deps).into_iter().collect(),
            by_continent: by_value(&rules.continents, deps).into_iter().collect(),
            default_next: deps.escaper(&config.default_next),
            locate,
            timings,
            networks: Mutex::new(NetworkCache::default()),
        })
    }

    /// Where `ip` is: from a network located before, else from the service (whose answer
    /// then holds for its whole network).
    async fn locate(&self, locate: &Arc<Agent<IpLocate>>, ip: IpAddr) -> Option<Location> {
        let now = Instant::now();
        let cached = (self.networks.lock().unwrap_or_else(|e| e.into_inner())).get(ip, now);
        if cached.is_some() {
            return cached;
        }
        let location = locate.ask(&ip).await?;
        if let Some(network) = location.network {
            let expire = now + Duration::from_secs(u64::from(self.timings.ttl(location.ttl)));
            let mut networks = self.networks.lock().unwrap_or_else(|e| e.into_inner());
            networks.insert(network, location.clone(), expire);
        }
        Some(location)
    }

    fn by_location(&self, location: &Location) -> Option<&Arc<Escaper>> {
        let as_number = location.as_number.and_then(|n| self.by_as_number.get(&n));
        let country = || {
            location
                .country
                .as_ref()
                .and_then(|c| self.by_country.get(c))
        };
        let continent = || {
            location
                .continent
                .as_ref()
                .and_then(|c| self.by_continent.get(c))
        };
        as_number.or_else(country).or_else(continent)
    }
}

impl EscaperOps for RouteGeoipEscaper {
    async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        let Some(ip) = self.resolution.of(&leg.target.host).await? else {
            return Ok(Some(&self.default_next));
        };
        if let Some(next) = self.by_network.lookup(ip) {
            return Ok(Some(next));
        }
        if let Some(locate) = &self.locate
            && let Some(location) = self.locate(locate, ip).await
            && let Some(next) = self.by_location(&location)
        {
            return Ok(Some(next));
        }
        Ok(Some(&self.default_next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(country: &str) -> Location {
        Location {
            country: Some(country.into()),
            ..Location::default()
        }
    }

    #[test]
    fn the_most_specific_fresh_network_answers() {
        let mut cache = NetworkCache::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let net = |text: &str| text.parse::<IpNetwork>().unwrap();
        cache.insert(net("10.0.0.0/8"), at("US"), later);
        cache.insert(net("10.1.0.0/16"), at("FR"), later);
        cache.insert(net("10.2.0.0/16"), at("JP"), now);
        let country = |ip: &str| {
            cache
                .get(ip.parse().unwrap(), now)
                .and_then(|location| location.country)
        };
        assert_eq!(country("10.1.2.3").as_deref(), Some("FR"));
        assert_eq!(country("10.9.9.9").as_deref(), Some("US"));
        // Expired: the wider network answers.
        assert_eq!(country("10.2.0.1").as_deref(), Some("US"));
        assert_eq!(country("192.0.2.1"), None);
        assert_eq!(country("::1"), None);
    }
}
