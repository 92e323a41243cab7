//! `type: route_geoip`: picks the next escaper by where the target's address is, a name
//! resolved first as Happy Eyeballs resolves (the preferred family within
//! `resolution_delay`), as g3proxy picks: the longest `networks` rule holding the first
//! address; else, when rules need it, the address's location from the ip-locate service
//! (its AS number, then its country, then its continent); else `default_next`.
//!
//! The ip-locate protocol (g3's): a MessagePack map per UDP datagram, `{ip}` asked,
//! `{ip, ttl, network, country, continent, as_number, ...}` answered, keys as names or as
//! their ids (1 ip, 2 ttl, 3 network, 4 country, 5 continent, 6 as_number). Answers are
//! cached per address for their ttl (`agent.rs`); answers the service pushes without being
//! asked are ignored.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use g3proxy_proto::msgpack::Value;
use g3proxy_shared::config::escapers::{ResolveStrategy, RouteGeoipConfig, country_alpha2};

use super::agent::{self, Agent, Answered, Timings};
use super::route_resolved::target_address;
use super::rules::{IpRoutes, by_value};
use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;
use crate::resolvers::Resolver;

pub struct RouteGeoipEscaper {
    resolver: Arc<Resolver>,
    strategy: ResolveStrategy,
    resolution_delay: Duration,
    by_network: IpRoutes,
    by_as_number: HashMap<u32, Arc<Escaper>>,
    by_country: HashMap<String, Arc<Escaper>>,
    by_continent: HashMap<String, Arc<Escaper>>,
    default_next: Arc<Escaper>,
    /// Only when a rule needs a location.
    locate: Option<Arc<Agent<IpLocate>>>,
}

/// Where an address is, as the ip-locate service says.
#[derive(Clone, Debug, Default)]
struct Location {
    as_number: Option<u32>,
    /// ISO 3166 alpha-2.
    country: Option<String>,
    continent: Option<String>,
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
        if field(value, "network", 3).is_none() {
            return Some(Answered {
                tag: ip.to_canonical(),
                answer: None,
                ttl,
            });
        }
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
        let locate = match rules.needs_location() {
            false => None,
            true => Some(Agent::new(
                IpLocate,
                service.query_peer_addr,
                Timings {
                    request_timeout: service.cache_request_timeout.0,
                    wait_timeout: service.query_wait_timeout.0,
                    default_ttl: service.default_expire_ttl,
                    maximum_ttl: service.maximum_expire_ttl,
                    vanish_wait: Duration::ZERO,
                },
            )?),
        };
        Ok(RouteGeoipEscaper {
            resolver: deps.resolver(&config.resolver),
            strategy: config.resolve_strategy,
            resolution_delay: config.resolution_delay.0,
            by_network: IpRoutes::new(Vec::new(), by_value(&rules.networks, deps)),
            by_as_number: by_value(&rules.as_numbers, deps).into_iter().collect(),
            by_country: by_value(&rules.countries, deps).into_iter().collect(),
            by_continent: by_value(&rules.continents, deps).into_iter().collect(),
            default_next: deps.escaper(&config.default_next),
            locate,
        })
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
        let ip = target_address(
            &leg.target.host,
            &self.resolver,
            self.strategy,
            self.resolution_delay,
        )
        .await?;
        let Some(ip) = ip else {
            return Ok(Some(&self.default_next));
        };
        if let Some(next) = self.by_network.lookup(ip) {
            return Ok(Some(next));
        }
        if let Some(locate) = &self.locate
            && let Some(location) = locate.ask(&ip).await
            && let Some(next) = self.by_location(&location)
        {
            return Ok(Some(next));
        }
        Ok(Some(&self.default_next))
    }
}
