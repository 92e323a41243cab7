//! `type: route_failover`: a connection through the primary escaper, or through the standby
//! when the primary fails or has not connected within `fallback_delay` (then both race and
//! the first to connect wins; the other attempt is dropped). UDP is not supported through it
//! yet (refused as such, naming the escaper).
//!
//! The task's notes name this escaper with the winner's addresses. HTTP forwarding goes in
//! origin form over the winning connection: through a next-hop proxy that is a tunnel, not
//! its absolute-form forwarding.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use g3proxy_shared::config::escapers::RouteFailoverConfig;

use super::{Connected, Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;

pub struct RouteFailoverEscaper {
    primary: Arc<Escaper>,
    standby: Arc<Escaper>,
    delay: Duration,
}

impl RouteFailoverEscaper {
    pub fn build(config: &RouteFailoverConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        Ok(RouteFailoverEscaper {
            primary: deps.escaper(&config.primary_next),
            standby: deps.escaper(&config.standby_next),
            delay: config.fallback_delay.0,
        })
    }
}

/// The primary's answer if it succeeds in time; else whichever of the two succeeds first; else
/// the error of the one that failed last.
async fn race<T>(
    primary: impl Future<Output = Result<T, TaskError>>,
    standby: impl Future<Output = Result<T, TaskError>>,
    delay: Duration,
) -> Result<T, TaskError> {
    tokio::pin!(primary, standby);
    tokio::select! {
        first = &mut primary => return match first {
            Ok(won) => Ok(won),
            Err(_) => standby.await,
        },
        _ = tokio::time::sleep(delay) => {}
    }
    tokio::select! {
        first = &mut primary => match first {
            Ok(won) => Ok(won),
            Err(_) => standby.await,
        },
        second = &mut standby => match second {
            Ok(won) => Ok(won),
            Err(error) => primary.await.map_err(|_| error),
        },
    }
}

/// The future of an escaper operation, boxed: the operations of every type are one enum's,
/// and a failover's contains another escaper's, so unboxed it would contain itself.
type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, TaskError>> + Send + 'a>>;

/// `escaper`'s own connection for `leg`, after its routes (toward the user's redirected
/// target where the escaper it comes to resolves names itself, as without a failover).
fn connect_through<'a>(escaper: &'a Escaper, leg: &'a Leg<'a>) -> Boxed<'a, Connected> {
    Box::pin(async move {
        let escaper = escaper.route(leg).await?;
        let resolves_names = escaper.runtime.resolves_names();
        escaper
            .runtime
            .tcp_connect(&leg.for_escaper(&escaper.name).for_connect(resolves_names))
            .await
            .map_err(|e| escaper.explain(e))
    })
}

impl EscaperOps for RouteFailoverEscaper {
    async fn tcp_connect(&self, leg: &Leg<'_>) -> Result<Connected, TaskError> {
        race(
            connect_through(&self.primary, leg),
            connect_through(&self.standby, leg),
            self.delay,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> TaskError {
        TaskError::UpstreamRefused(std::io::ErrorKind::ConnectionRefused.into())
    }

    #[tokio::test(start_paused = true)]
    async fn the_standby_runs_after_a_failure_or_the_delay() {
        let delay = Duration::from_millis(100);
        let after = |ms, value: Result<&'static str, TaskError>| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            value
        };
        // A primary in time wins; one that fails hands over at once.
        assert_eq!(
            race(after(50, Ok("primary")), after(0, Ok("standby")), delay)
                .await
                .unwrap(),
            "primary"
        );
        let started = tokio::time::Instant::now();
        assert_eq!(
            race(after(10, Err(refused())), after(0, Ok("standby")), delay)
                .await
                .unwrap(),
            "standby"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(10));
        // A slow primary races the standby from the delay on: the first success wins.
        assert_eq!(
            race(after(500, Ok("primary")), after(50, Ok("standby")), delay)
                .await
                .unwrap(),
            "standby"
        );
        assert_eq!(
            race(after(120, Ok("primary")), after(50, Ok("standby")), delay)
                .await
                .unwrap(),
            "primary"
        );
        // A primary that fails after the delay leaves the standby to finish.
        let started = tokio::time::Instant::now();
        let won = race(after(150, Err(refused())), after(100, Ok("standby")), delay).await;
        assert_eq!(won.unwrap(), "standby");
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        // A standby that fails leaves the primary to finish.
        assert_eq!(
            race(after(500, Ok("primary")), after(0, Err(refused())), delay)
                .await
                .unwrap(),
            "primary"
        );
        assert!(
            race(after(500, Err(refused())), after(0, Err(refused())), delay)
                .await
                .is_err()
        );
    }
}
