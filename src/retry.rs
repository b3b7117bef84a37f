//! Retry policy and error classes: the only module that names `backoff`.
//!
//! Every failure is classified once: transient (retried with jittered exponential
//! backoff, honouring `Retry-After`), re-authenticate (401: a fresh token, then at
//! once again), or fatal.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use backoff::backoff::Backoff;

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Try again after a backoff delay.
    Transient,
    /// The token was rejected: get a new one and try again at once.
    Reauth,
    /// Retrying will not help.
    Fatal,
}

/// Classifies an HTTP status code.
pub fn classify_status(status: u16) -> Class {
    match status {
        401 => Class::Reauth,
        408 | 422 | 429 | 498 => Class::Transient,
        500..=599 => Class::Transient,
        _ => Class::Fatal,
    }
}

/// A failure the retry loop can reason about.
pub trait Retryable {
    /// Its class.
    fn class(&self) -> Class;
    /// The server's `Retry-After`, if it sent one.
    fn retry_after(&self) -> Option<Duration>;
}

/// How long and how patiently to retry.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Give up on one operation after failing for this long.
    pub retry_for: Duration,
    /// First backoff delay.
    pub initial: Duration,
    /// Largest backoff delay.
    pub max_interval: Duration,
    /// Log retries at debug level only (first contact, where the final error says it all).
    pub quiet: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retry_for: Duration::from_secs(2 * 3600),
            initial: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
            quiet: false,
        }
    }
}

impl Policy {
    fn backoff(&self) -> backoff::ExponentialBackoff {
        backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(self.initial)
            .with_max_interval(self.max_interval)
            .with_multiplier(2.0)
            .with_randomization_factor(0.5)
            .with_max_elapsed_time(None)
            .build()
    }
}

/// Runs `op` until it succeeds, fails fatally, or has failed for `policy.retry_for`.
/// `op` gets the attempt number (1-based). `what` names the operation in log lines.
pub async fn retry<T, E, F, Fut>(policy: &Policy, what: &str, mut op: F) -> Result<T, E>
where
    E: Retryable + std::fmt::Display,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut backoff = policy.backoff();
    let mut reauths = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        match err.class() {
            Class::Fatal => return Err(err),
            Class::Reauth => {
                reauths += 1;
                if reauths > 2 {
                    return Err(err);
                }
                tracing::info!("{what}: token rejected, retrying with a new one");
                continue;
            }
            Class::Transient => reauths = 0,
        }
        let elapsed = start.elapsed();
        if elapsed >= policy.retry_for {
            if !policy.quiet {
                tracing::warn!("{what}: giving up after {attempt} attempts in {:.0?}: {err}", elapsed);
            }
            return Err(err);
        }
        let mut delay = backoff.next_backoff().unwrap_or(policy.max_interval);
        if let Some(ra) = err.retry_after() {
            delay = delay.max(ra);
        }
        delay = delay.min(policy.retry_for.saturating_sub(elapsed));
        if policy.quiet {
            tracing::debug!("{what}: attempt {attempt} failed ({err}); retrying in {:.1?}", delay);
        } else {
            tracing::warn!("{what}: attempt {attempt} failed ({err}); retrying in {:.1?}", delay);
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug)]
    struct E(Class, Option<Duration>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl Retryable for E {
        fn class(&self) -> Class {
            self.0
        }
        fn retry_after(&self) -> Option<Duration> {
            self.1
        }
    }

    fn fast() -> Policy {
        Policy {
            retry_for: Duration::from_secs(3600),
            initial: Duration::from_millis(100),
            max_interval: Duration::from_secs(2),
            quiet: false,
        }
    }

    #[test]
    fn classes() {
        assert_eq!(classify_status(503), Class::Transient);
        assert_eq!(classify_status(498), Class::Transient);
        assert_eq!(classify_status(401), Class::Reauth);
        assert_eq!(classify_status(403), Class::Fatal);
        assert_eq!(classify_status(413), Class::Fatal);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_then_success_and_retry_after_is_honoured() {
        let n = Cell::new(0);
        let t0 = tokio::time::Instant::now();
        let r: Result<u32, E> = retry(&fast(), "op", |a| {
            n.set(a);
            async move { if a < 3 { Err(E(Class::Transient, Some(Duration::from_secs(30)))) } else { Ok(a) } }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        assert!(t0.elapsed() >= Duration::from_secs(60), "Retry-After of 30 s twice");
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_stops_and_budget_ends() {
        let r: Result<(), E> = retry(&fast(), "op", |_| async { Err(E(Class::Fatal, None)) }).await;
        assert_eq!(r.unwrap_err().0, Class::Fatal);
        let p = Policy { retry_for: Duration::from_secs(10), ..fast() };
        let n = Cell::new(0u32);
        let r: Result<(), E> = retry(&p, "op", |a| {
            n.set(a);
            async { Err(E(Class::Transient, None)) }
        })
        .await;
        assert!(r.is_err());
        assert!(n.get() > 3, "retried several times within the budget");
        let r: Result<(), E> = retry(&p, "op", |_| async { Err(E(Class::Reauth, None)) }).await;
        assert_eq!(r.unwrap_err().0, Class::Reauth, "gives up after repeated 401s");
    }
}
