//! References between modules, as g3proxy treats them: server → escaper, server → server
//! (ports, intelli_proxy), escaper → resolver, escaper → escaper (routes), resolver → resolver
//! (fail_over). A reference to a
//! missing module loads, with a warning (`g3proxy -t` prints it), and the worker stands in a
//! module that refuses everything: a deny-all escaper or resolver, or a `dummy_close` server.
//! A cycle is an error naming its modules. Modules come out in build order: every module after
//! the ones it refers to, so the worker builds each with its references already built.

use std::collections::{HashMap, HashSet};

use super::error::ConfigError;
use super::{Config, Origin};

/// One kind of module as a graph: names, their references, and where each was written.
struct Graph<'a> {
    kind: &'static str,
    names: Vec<&'a str>,
    edges: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Graph<'a> {
    /// Orders names so that referenced ones come first; a cycle is an error on its first
    /// module, naming every module of the loop.
    fn build_order(
        &self,
        origins: &HashMap<&str, Origin>,
        key: &str,
    ) -> Result<Vec<&'a str>, ConfigError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit<'a>(
            graph: &Graph<'a>,
            name: &'a str,
            marks: &mut HashMap<&'a str, Mark>,
            stack: &mut Vec<&'a str>,
            order: &mut Vec<&'a str>,
        ) -> Result<(), Vec<&'a str>> {
            match marks.get(name) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::Visiting) => {
                    let start = stack.iter().position(|n| *n == name).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(name);
                    return Err(cycle);
                }
                None => {}
            }
            marks.insert(name, Mark::Visiting);
            stack.push(name);
            for next in graph.edges.get(name).into_iter().flatten() {
                if graph.edges.contains_key(next) {
                    visit(graph, next, marks, stack, order)?;
                }
            }
            stack.pop();
            marks.insert(name, Mark::Done);
            order.push(name);
            Ok(())
        }
        let mut marks = HashMap::new();
        let mut order = Vec::new();
        for name in &self.names {
            let mut stack = Vec::new();
            if let Err(cycle) = visit(self, name, &mut marks, &mut stack, &mut order) {
                let message = format!(
                    "{} references form a cycle: {}",
                    self.kind,
                    cycle.join(" -> ")
                );
                return Err(match origins.get(cycle[0]) {
                    Some(origin) => origin.error(key, message),
                    None => ConfigError::file("", message),
                });
            }
        }
        Ok(order)
    }
}

/// Where each module was written, by kind and name.
pub(crate) struct Origins<'a> {
    pub resolvers: HashMap<&'a str, Origin<'a>>,
    pub escapers: HashMap<&'a str, Origin<'a>>,
    pub servers: HashMap<&'a str, Origin<'a>>,
}

/// Checks every reference of `config`, puts its resolvers, escapers and servers in build
/// order, and returns the warnings for references to modules that do not exist.
pub(crate) fn resolve(
    config: &mut Config,
    origins: &Origins,
) -> Result<Vec<ConfigError>, ConfigError> {
    let (escaper_origins, server_origins) = (&origins.escapers, &origins.servers);
    let mut warnings = Vec::new();
    let resolvers: HashSet<&str> = config.resolvers.iter().map(|r| r.name()).collect();
    let escapers: HashSet<&str> = config.escapers.iter().map(|e| e.name()).collect();
    let servers: HashSet<&str> = config.servers.iter().map(|s| s.name()).collect();
    let origin_of =
        |origins: &HashMap<&str, Origin<'_>>, name: &str, key: &str, message: String| {
            origins
                .get(name)
                .map(|origin| origin.error(key, message.clone()))
                .unwrap_or_else(|| ConfigError::file("", message))
        };

    for resolver in &config.resolvers {
        for (key, next) in resolver.next_resolvers() {
            if !resolvers.contains(next) {
                warnings.push(origin_of(
                    &origins.resolvers,
                    resolver.name(),
                    key,
                    format!("resolver {next:?} does not exist: its lookups are denied"),
                ));
            }
        }
    }
    for escaper in &config.escapers {
        if let Some(resolver) = escaper.resolver()
            && !resolvers.contains(resolver)
        {
            warnings.push(origin_of(
                escaper_origins,
                escaper.name(),
                "resolver",
                format!("resolver {resolver:?} does not exist: its lookups are denied"),
            ));
        }
        for next in escaper.next_escapers() {
            if !escapers.contains(next) {
                warnings.push(origin_of(
                    escaper_origins,
                    escaper.name(),
                    "next",
                    format!("escaper {next:?} does not exist: tasks routed to it are denied"),
                ));
            }
        }
    }
    let mut listen_addresses = HashMap::new();
    for server in &config.servers {
        let error =
            |key: &str, message: String| origin_of(server_origins, server.name(), key, message);
        if let Some(escaper) = server.escaper()
            && !escapers.contains(escaper)
        {
            warnings.push(error(
                "escaper",
                format!("escaper {escaper:?} does not exist: every task of this server is denied"),
            ));
        }
        for next in server.next_servers() {
            if !servers.contains(next) {
                warnings.push(error(
                    "server",
                    format!("server {next:?} does not exist: its connections are closed"),
                ));
            }
            // A connection handed over keeps the port's own address as its destination: a
            // transparent proxy would connect back to the port, again and again.
            if config
                .server(next)
                .is_some_and(|s| s.server_type.kind().transparent())
            {
                return Err(error(
                    "server",
                    format!(
                        "server {next:?} is a transparent proxy: it takes connections only on its own IP_TRANSPARENT listener"
                    ),
                ));
            }
        }
        if server.server_type.kind().transparent() && server.listen().is_none() {
            return Err(error(
                "listen",
                "a transparent proxy needs its own listen address".into(),
            ));
        }
        if let Some(group) = server.user_group() {
            let kind = server.server_type.kind();
            let found = config.user_groups.iter().find(|g| g.name() == group);
            let wants = match (kind.checks_passwords(), kind.facts_auth()) {
                (true, _) => Some(false),
                (false, Some(_)) => Some(true),
                (false, None) => None,
            };
            match (found, wants) {
                (_, None) => warnings.push(error(
                    "user_group",
                    format!(
                        "a {} server finds users only with auth_by_*: user group {group:?} has no effect here",
                        server.type_name()
                    ),
                )),
                (None, Some(_)) => warnings.push(error(
                    "user_group",
                    format!("user group {group:?} does not exist: every user of this server is refused"),
                )),
                (Some(found), Some(facts)) if found.is_facts() != facts => {
                    let needed = if facts {
                        "finds its users by connection facts (auth_by_*): it needs a facts group"
                    } else {
                        "checks passwords: it needs a basic group"
                    };
                    return Err(error(
                        "user_group",
                        format!(
                            "user group {group:?} is of type {}, and a {} server {needed}",
                            found.type_name(),
                            server.type_name()
                        ),
                    ));
                }
                (Some(_), Some(_)) => {}
            }
        }
        if let Some(auditor) = server.auditor() {
            return Err(error(
                "auditor",
                format!(
                    "auditor {auditor:?}: this build cannot audit yet; refusing to serve without it"
                ),
            ));
        }
        if let Some(listen) = server.listen()
            && let Some(other) = listen_addresses.insert(listen.address, server.name())
        {
            return Err(error(
                "listen",
                format!(
                    "{} is already the listen address of server {other:?}",
                    listen.address
                ),
            ));
        }
    }

    let resolver_graph = Graph {
        kind: "resolver",
        names: config.resolvers.iter().map(|r| r.name()).collect(),
        edges: config
            .resolvers
            .iter()
            .map(|r| {
                (
                    r.name(),
                    r.next_resolvers().into_iter().map(|(_, n)| n).collect(),
                )
            })
            .collect(),
    };
    let resolver_order: Vec<String> = resolver_graph
        .build_order(&origins.resolvers, "name")?
        .into_iter()
        .map(str::to_string)
        .collect();
    let escaper_graph = Graph {
        kind: "escaper",
        names: config.escapers.iter().map(|e| e.name()).collect(),
        edges: config
            .escapers
            .iter()
            .map(|e| (e.name(), e.next_escapers()))
            .collect(),
    };
    let escaper_order: Vec<String> = escaper_graph
        .build_order(escaper_origins, "name")?
        .into_iter()
        .map(str::to_string)
        .collect();
    let server_graph = Graph {
        kind: "server",
        names: config.servers.iter().map(|s| s.name()).collect(),
        edges: config
            .servers
            .iter()
            .map(|s| (s.name(), s.next_servers()))
            .collect(),
    };
    let server_order: Vec<String> = server_graph
        .build_order(server_origins, "name")?
        .into_iter()
        .map(str::to_string)
        .collect();
    config
        .resolvers
        .sort_by_key(|r| resolver_order.iter().position(|n| n == r.name()));
    config
        .escapers
        .sort_by_key(|e| escaper_order.iter().position(|n| n == e.name()));
    config
        .servers
        .sort_by_key(|s| server_order.iter().position(|n| n == s.name()));
    Ok(warnings)
}
