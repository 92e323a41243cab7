//! Config of `type: route_geoip`: the next escaper chosen by where the target's address is,
//! a name resolved first (`resolver`, `resolve_strategy`, `resolution_delay`): `geo_rules`
//! (`{next, networks, as_numbers, countries, continents}`: the longest network first, then,
//! from the ip-locate service, the AS number, the country, the continent), else
//! `default_next`. `ip_locate_service` is the UDP peer that locates addresses (a map, or
//! its address alone).

use std::net::SocketAddr;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::EscaperKind;
use super::route_resolved::TargetResolution;
use crate::config::de::Parts;
use crate::config::error::ConfigError;
use crate::types::acl::{AclItem, Items};
use crate::types::{HumanDuration, IpNetwork};

impl EscaperKind for RouteGeoipConfig {
    fn resolver(&self) -> Option<&str> {
        Some(&self.resolution.resolver)
    }

    fn next_escapers(&self) -> Vec<&str> {
        let rules = &self.geo_rules;
        let mut names = vec![self.default_next.as_str()];
        names.extend(rules.networks.iter().map(|(next, _)| next.as_str()));
        names.extend(rules.as_numbers.iter().map(|(next, _)| next.as_str()));
        names.extend(rules.countries.iter().map(|(next, _)| next.as_str()));
        names.extend(rules.continents.iter().map(|(next, _)| next.as_str()));
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteGeoipConfig {
    /// Its own keys (see [`TargetResolution::decode_with`]).
    #[serde(skip)]
    pub resolution: TargetResolution,
    pub default_next: String,
    #[serde(default)]
    pub geo_rules: GeoRules,
    #[serde(default)]
    pub ip_locate_service: IpLocateService,
}

impl RouteGeoipConfig {
    pub(super) fn decode(parts: &mut Parts) -> Result<Self, ConfigError> {
        TargetResolution::decode_with(parts, |config: &mut Self| &mut config.resolution)
    }
}

/// `geo_rules`, by kind: each value leads to one escaper at most.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GeoRules {
    pub networks: Vec<(String, Vec<IpNetwork>)>,
    pub as_numbers: Vec<(String, Vec<u32>)>,
    /// ISO 3166 alpha-2 codes (alpha-3 in the config is read as its alpha-2 code).
    pub countries: Vec<(String, Vec<String>)>,
    /// `AF`, `AN`, `AS`, `EU`, `NA`, `OC`, `SA`.
    pub continents: Vec<(String, Vec<String>)>,
}

impl GeoRules {
    /// Whether a rule needs the ip-locate service (any but networks).
    pub fn needs_location(&self) -> bool {
        !(self.as_numbers.is_empty() && self.countries.is_empty() && self.continents.is_empty())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GeoRule {
    #[serde(alias = "escaper")]
    next: String,
    #[serde(default, alias = "network")]
    networks: Option<Items<IpNetwork>>,
    #[serde(default, alias = "as_number", alias = "asn")]
    as_numbers: Option<Items<AsNumber>>,
    #[serde(default, alias = "country")]
    countries: Option<Items<Country>>,
    #[serde(default, alias = "continent")]
    continents: Option<Items<Continent>>,
}

struct AsNumber(u32);

impl AclItem for AsNumber {
    const WHAT: &'static str = "AS numbers";
    fn parse(text: &str) -> Result<Vec<Self>, String> {
        let text = text.trim();
        let digits = text
            .strip_prefix("AS")
            .or_else(|| text.strip_prefix("as"))
            .unwrap_or(text);
        digits
            .parse()
            .map(|n| vec![AsNumber(n)])
            .map_err(|_| format!("invalid AS number {text:?}"))
    }
}

struct Country(String);

impl AclItem for Country {
    const WHAT: &'static str = "ISO country codes";
    fn parse(text: &str) -> Result<Vec<Self>, String> {
        country_alpha2(text)
            .map(|code| vec![Country(code)])
            .ok_or_else(|| format!("invalid ISO 3166 country code {text:?}"))
    }
}

struct Continent(String);

impl AclItem for Continent {
    const WHAT: &'static str = "continent codes";
    fn parse(text: &str) -> Result<Vec<Self>, String> {
        let code = text.trim().to_ascii_uppercase();
        match code.as_str() {
            "AF" | "AN" | "AS" | "EU" | "NA" | "OC" | "SA" => Ok(vec![Continent(code)]),
            _ => Err(format!(
                "invalid continent code {text:?}: AF, AN, AS, EU, NA, OC or SA"
            )),
        }
    }
}

/// ISO 3166-1 codes, alpha-2 then alpha-3, five letters a country (from Debian's
/// iso-codes).
const COUNTRIES: [&str; 14] = [
    "ADANDAEAREAFAFGAGATGAIAIAALALBAMARMAOAGOAQATAARARGASASMATAUTAUAUSAWABWAXALAAZAZEBABIHBBBRBBDBGD",
    "BEBELBFBFABGBGRBHBHRBIBDIBJBENBLBLMBMBMUBNBRNBOBOLBQBESBRBRABSBHSBTBTNBVBVTBWBWABYBLRBZBLZCACAN",
    "CCCCKCDCODCFCAFCGCOGCHCHECICIVCKCOKCLCHLCMCMRCNCHNCOCOLCRCRICUCUBCVCPVCWCUWCXCXRCYCYPCZCZEDEDEU",
    "DJDJIDKDNKDMDMADODOMDZDZAECECUEEESTEGEGYEHESHERERIESESPETETHFIFINFJFJIFKFLKFMFSMFOFROFRFRAGAGAB",
    "GBGBRGDGRDGEGEOGFGUFGGGGYGHGHAGIGIBGLGRLGMGMBGNGINGPGLPGQGNQGRGRCGSSGSGTGTMGUGUMGWGNBGYGUYHKHKG",
    "HMHMDHNHNDHRHRVHTHTIHUHUNIDIDNIEIRLILISRIMIMNININDIOIOTIQIRQIRIRNISISLITITAJEJEYJMJAMJOJORJPJPN",
    "KEKENKGKGZKHKHMKIKIRKMCOMKNKNAKPPRKKRKORKWKWTKYCYMKZKAZLALAOLBLBNLCLCALILIELKLKALRLBRLSLSOLTLTU",
    "LULUXLVLVALYLBYMAMARMCMCOMDMDAMEMNEMFMAFMGMDGMHMHLMKMKDMLMLIMMMMRMNMNGMOMACMPMNPMQMTQMRMRTMSMSR",
    "MTMLTMUMUSMVMDVMWMWIMXMEXMYMYSMZMOZNANAMNCNCLNENERNFNFKNGNGANINICNLNLDNONORNPNPLNRNRUNUNIUNZNZL",
    "OMOMNPAPANPEPERPFPYFPGPNGPHPHLPKPAKPLPOLPMSPMPNPCNPRPRIPSPSEPTPRTPWPLWPYPRYQAQATREREUROROURSSRB",
    "RURUSRWRWASASAUSBSLBSCSYCSDSDNSESWESGSGPSHSHNSISVNSJSJMSKSVKSLSLESMSMRSNSENSOSOMSRSURSSSSDSTSTP",
    "SVSLVSXSXMSYSYRSZSWZTCTCATDTCDTFATFTGTGOTHTHATJTJKTKTKLTLTLSTMTKMTNTUNTOTONTRTURTTTTOTVTUVTWTWN",
    "TZTZAUAUKRUGUGAUMUMIUSUSAUYURYUZUZBVAVATVCVCTVEVENVGVGBVIVIRVNVNMVUVUTWFWLFWSWSMYEYEMYTMYTZAZAF",
    "ZMZMBZWZWE",
];

/// A country code as the alpha-2 code, from alpha-2 or alpha-3, any case.
pub fn country_alpha2(text: &str) -> Option<String> {
    let code = text.trim().to_ascii_uppercase();
    let entries = COUNTRIES.iter().flat_map(|line| {
        (0..line.len() / 5).map(move |i| (&line[i * 5..i * 5 + 2], &line[i * 5 + 2..i * 5 + 5]))
    });
    for (alpha2, alpha3) in entries {
        if code == alpha2 || code == alpha3 {
            return Some(alpha2.to_string());
        }
    }
    None
}

/// Adds `values` for `next`, refusing a value another escaper has (g3's rule).
fn add<T: PartialEq + std::fmt::Debug, E: de::Error>(
    rules: &mut Vec<(String, Vec<T>)>,
    next: &str,
    values: Vec<T>,
    what: &str,
) -> Result<(), E> {
    for value in values {
        if let Some((other, _)) = rules
            .iter()
            .find(|(other, items)| other != next && items.contains(&value))
        {
            return Err(E::custom(format!(
                "{what} {value:?} is listed for both {other} and {next}"
            )));
        }
        match rules.iter_mut().find(|(other, _)| other == next) {
            Some((_, items)) => items.push(value),
            None => rules.push((next.to_string(), vec![value])),
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for GeoRules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut rules = GeoRules::default();
        for rule in Vec::<GeoRule>::deserialize(deserializer)? {
            let next = rule.next.as_str();
            if let Some(Items(networks)) = rule.networks {
                let networks = networks.into_iter().map(IpNetwork::unmapped).collect();
                add(&mut rules.networks, next, networks, "network")?;
            }
            if let Some(Items(numbers)) = rule.as_numbers {
                let numbers = numbers.into_iter().map(|n| n.0).collect();
                add(&mut rules.as_numbers, next, numbers, "AS number")?;
            }
            if let Some(Items(countries)) = rule.countries {
                let countries = countries.into_iter().map(|c| c.0).collect();
                add(&mut rules.countries, next, countries, "country")?;
            }
            if let Some(Items(continents)) = rule.continents {
                let continents = continents.into_iter().map(|c| c.0).collect();
                add(&mut rules.continents, next, continents, "continent")?;
            }
        }
        Ok(rules)
    }
}

/// `ip_locate_service`: the locating peer and the cache of its answers.
#[derive(Debug, Clone, PartialEq)]
pub struct IpLocateService {
    pub query_peer_addr: SocketAddr,
    /// How long a query waits for the peer before the address is cached as unknown.
    pub query_wait_timeout: HumanDuration,
    /// Seconds an answer without a ttl (or an unknown address) is cached, and at most.
    pub default_expire_ttl: u32,
    pub maximum_expire_ttl: u32,
    /// How long a task waits for an answer before it goes to `default_next`.
    pub cache_request_timeout: HumanDuration,
}

impl Default for IpLocateService {
    fn default() -> Self {
        IpLocateService {
            query_peer_addr: SocketAddr::from(([127, 0, 0, 1], 2888)),
            query_wait_timeout: HumanDuration::secs(1),
            default_expire_ttl: 10,
            maximum_expire_ttl: 300,
            cache_request_timeout: HumanDuration::secs(2),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpLocateKeys {
    #[serde(default, alias = "query_peer_address")]
    query_peer_addr: Option<SocketAddr>,
    #[serde(default)]
    query_wait_timeout: Option<HumanDuration>,
    #[serde(default)]
    default_expire_ttl: Option<u32>,
    #[serde(default)]
    maximum_expire_ttl: Option<u32>,
    #[serde(default)]
    cache_request_timeout: Option<HumanDuration>,
    /// g3's tuning that this build does not need; accepted.
    #[serde(default)]
    cache_request_batch_count: Option<usize>,
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    query_socket_buffer: (),
}

impl<'de> Deserialize<'de> for IpLocateService {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ServiceVisitor;
        impl<'de> de::Visitor<'de> for ServiceVisitor {
            type Value = IpLocateService;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a peer address, or a map")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<IpLocateService, E> {
                let peer = text
                    .parse()
                    .map_err(|_| E::custom(format!("invalid peer address {text:?}")))?;
                Ok(IpLocateService {
                    query_peer_addr: peer,
                    ..Default::default()
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<IpLocateService, A::Error> {
                let keys = IpLocateKeys::deserialize(de::value::MapAccessDeserializer::new(map))?;
                for (key, value) in [
                    ("query_wait_timeout", keys.query_wait_timeout),
                    ("cache_request_timeout", keys.cache_request_timeout),
                ] {
                    if value.is_some_and(|d| d.0.is_zero()) {
                        return Err(de::Error::custom(format!("{key} must be more than 0")));
                    }
                }
                let defaults = IpLocateService::default();
                let _ = (keys.cache_request_batch_count, keys.query_socket_buffer);
                Ok(IpLocateService {
                    query_peer_addr: keys.query_peer_addr.unwrap_or(defaults.query_peer_addr),
                    query_wait_timeout: keys
                        .query_wait_timeout
                        .unwrap_or(defaults.query_wait_timeout),
                    default_expire_ttl: keys
                        .default_expire_ttl
                        .unwrap_or(defaults.default_expire_ttl),
                    maximum_expire_ttl: keys
                        .maximum_expire_ttl
                        .unwrap_or(defaults.maximum_expire_ttl),
                    cache_request_timeout: keys
                        .cache_request_timeout
                        .unwrap_or(defaults.cache_request_timeout),
                })
            }
        }
        deserializer.deserialize_any(ServiceVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_in_both_forms() {
        assert_eq!(country_alpha2("us").as_deref(), Some("US"));
        assert_eq!(country_alpha2("USA").as_deref(), Some("US"));
        assert_eq!(country_alpha2("CHN").as_deref(), Some("CN"));
        assert_eq!(country_alpha2("ZW").as_deref(), Some("ZW"));
        assert_eq!(country_alpha2("XX"), None);
    }
}
