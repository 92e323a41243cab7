//! `type: fail_over`: the primary resolver's answer if it comes within `fallback_delay`;
//! after that, the standby is asked too and the first good answer of either wins; when both
//! fail, the last failure. A stale answer (served while it is asked again) counts only when
//! the other has nothing better.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use g3proxy_shared::config::resolvers::FailOverConfig;

use super::record::Record;
use super::{Family, Resolver, Source};

pub struct FailOverDriver {
    primary: Arc<Resolver>,
    standby: Arc<Resolver>,
    fallback_delay: Duration,
    /// An empty answer is not good enough: the other resolver is asked.
    retry_empty_record: bool,
}

type Answer = (Arc<Record>, Source);

impl FailOverDriver {
    pub fn build(config: &FailOverConfig, primary: Arc<Resolver>, standby: Arc<Resolver>) -> Self {
        FailOverDriver {
            primary,
            standby,
            fallback_delay: config.fallback_delay.0,
            retry_empty_record: config.retry_empty_record,
        }
    }

    pub async fn query(&self, domain: &str, family: Family) -> Record {
        let mut primary = pin!(self.primary.lookup(domain, family));
        let early = tokio::select! {
            answer = &mut primary => Some(answer),
            _ = tokio::time::sleep(self.fallback_delay) => None,
        };
        let standby = self.standby.lookup(domain, family);
        let answer = match early {
            Some(answer) => self.better(answer, standby).await,
            None => {
                let mut standby = pin!(standby);
                tokio::select! {
                    answer = &mut primary => self.better(answer, standby).await,
                    answer = &mut standby => self.better(answer, primary).await,
                }
            }
        };
        answer.0.as_ref().clone()
    }

    /// `first` if it is good; else the other answer, unless that is no better.
    async fn better(&self, first: Answer, other: impl Future<Output = Answer>) -> Answer {
        if self.is_good(&first) {
            return first;
        }
        let second = other.await;
        match first.1 {
            // A stale answer with addresses beats anything but fresh addresses.
            Source::Trash if !(second.1 != Source::Trash && second.0.has_addresses()) => first,
            _ => second,
        }
    }

    fn is_good(&self, (record, source): &Answer) -> bool {
        *source != Source::Trash
            && match self.retry_empty_record {
                true => record.has_addresses(),
                false => record.result.is_ok(),
            }
    }
}
