//! `type: facts`: a user group whose users are found by what a connection is, not by a
//! password: its client or server address, or the server name it asks for (`match_by_facts`:
//! an address, a network, a domain, a domain and its subdomains). The stream servers'
//! `auth_by_*` ask it. Static users win over dynamic ones that claim the same fact; the most
//! specific fact wins (an address over a network, the longest network, an exact name over a
//! parent domain, the nearest parent).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use g3proxy_proto::Host;
use g3proxy_shared::config::user_groups::Fact as Claim;
use g3proxy_shared::types::IpNetwork;

use super::{Fact, User};

#[derive(Default)]
pub struct FactsTable {
    addresses: HashMap<IpAddr, Arc<User>>,
    networks: Vec<(IpNetwork, Arc<User>)>,
    names: HashMap<String, Arc<User>>,
    parents: HashMap<String, Arc<User>>,
}

impl FactsTable {
    /// The table of `dynamic` users, then `static_users` over them.
    pub fn build<'u>(
        dynamic: impl Iterator<Item = &'u Arc<User>>,
        static_users: impl Iterator<Item = &'u Arc<User>>,
    ) -> FactsTable {
        let mut table = FactsTable::default();
        for user in dynamic.chain(static_users) {
            for claim in &user.config().match_by_facts {
                match claim {
                    Claim::Ip(ip) => {
                        table.addresses.insert(ip.to_canonical(), user.clone());
                    }
                    Claim::Network(network) => {
                        table.networks.retain(|(existing, _)| existing != network);
                        table.networks.push((*network, user.clone()));
                    }
                    Claim::ExactDomain(name) => {
                        table.names.insert(name.clone(), user.clone());
                    }
                    Claim::ChildDomain(domain) => {
                        table.parents.insert(domain.clone(), user.clone());
                    }
                }
            }
        }
        table
    }

    pub fn user(&self, fact: &Fact<'_>) -> Option<Arc<User>> {
        match fact {
            Fact::Ip(ip) | Fact::Host(Host::Ip(ip)) => self.by_address(ip.to_canonical()),
            Fact::Host(Host::Domain(name)) => {
                let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
                self.by_name(&name)
            }
        }
    }

    fn by_address(&self, ip: IpAddr) -> Option<Arc<User>> {
        if let Some(user) = self.addresses.get(&ip) {
            return Some(user.clone());
        }
        self.networks
            .iter()
            .filter(|(network, _)| network.contains(ip))
            .max_by_key(|(network, _)| network.prefix)
            .map(|(_, user)| user.clone())
    }

    fn by_name(&self, name: &str) -> Option<Arc<User>> {
        if let Some(user) = self.names.get(name) {
            return Some(user.clone());
        }
        // The name itself, then each parent: the nearest wins.
        let mut rest = name;
        loop {
            if let Some(user) = self.parents.get(rest) {
                return Some(user.clone());
            }
            rest = rest.split_once('.')?.1;
        }
    }
}
