//! `resolver NAME query DOMAIN [-s STRATEGY] [--resolution-delay MS]`: a lookup through a
//! resolver of the serving generation, its cache included. Prints one address per line, or
//! the reason there is none (still a success, as g3proxy-ctl has it).

use clap::Subcommand;
use g3proxy_shared::config::escapers::QueryStrategy;
use g3proxy_shared::ipc::control::CtlRequest;

#[derive(Subcommand, Debug)]
pub enum ResolverAction {
    /// Look a domain up
    Query {
        domain: String,
        /// ipv4first (default), ipv6first, ipv4only or ipv6only
        #[arg(short = 's', long = "strategy", visible_alias = "query-strategy", value_parser = strategy)]
        strategy: Option<QueryStrategy>,
        /// Milliseconds to wait for the preferred family once the other one answered
        #[arg(long = "resolution-delay", value_name = "MS", default_value_t = 50)]
        resolution_delay: u16,
    },
}

pub fn request(name: &str, action: &ResolverAction) -> CtlRequest {
    match action {
        ResolverAction::Query {
            domain,
            strategy,
            resolution_delay,
        } => CtlRequest::QueryResolver {
            name: name.to_string(),
            domain: domain.clone(),
            strategy: strategy.unwrap_or_default(),
            resolution_delay_ms: u64::from(*resolution_delay),
        },
    }
}

/// As g3 writes strategies, in any case, with or without `_` or `-`.
fn strategy(text: &str) -> Result<QueryStrategy, String> {
    let key: String = text
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    match key.as_str() {
        "ipv4first" => Ok(QueryStrategy::Ipv4First),
        "ipv6first" => Ok(QueryStrategy::Ipv6First),
        "ipv4only" => Ok(QueryStrategy::Ipv4Only),
        "ipv6only" => Ok(QueryStrategy::Ipv6Only),
        _ => Err(format!(
            "invalid query strategy {text:?}: ipv4first, ipv6first, ipv4only or ipv6only"
        )),
    }
}
