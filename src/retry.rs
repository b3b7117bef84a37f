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
pub(crate) enum Class {
    /// Try again after a backoff delay.
    Transient,
    /// The token was rejected: get a new one and try again at once.
    Reauth,
    /// Retrying will not help.
    Fatal,
}

/// Classifies an HTTP status code.
pub(crate) fn classify_status(status: u16) -> Class {
    match status {
        401 => Class::Reauth,
        408 | 422 | 429 | 498 => Class::Transient,
        500..=599 => Class::Transient,
        _ => Class::Fatal,
    }
}

/// A failure the retry loop can reason about.
pub(crate) trait Retryable {
    /// Its class.
    fn class(&self) -> Class;
    /// The server's `Retry-After`, if it sent one.
    fn retry_after(&self) -> Option<Duration>;
    /// True for a failure of the link itself (reset, refused, timed out, stalled):
    /// no server said "later", so the next try comes as soon as the link may be back.
    fn link_down(&self) -> bool {
        false
    }
    /// True for a failure to reach the server that a wrong URL causes more often than
    /// an outage (a host that does not resolve, a refused connection): not retried
    /// under a policy with [`Policy::fail_unreachable`].
    fn unreachable(&self) -> bool {
        false
    }
}

/// When the work as a whole last made progress (a segment confirmed anywhere): the
/// retry budget counts time without progress, not time since one request first
/// failed, so a link that flaps for a day while bytes keep getting confirmed never
/// exhausts it.
#[derive(Clone)]
pub(crate) struct ProgressClock(std::sync::Arc<dyn Fn() -> Option<std::time::Instant> + Send + Sync>);

impl ProgressClock {
    /// A clock that reads the last progress with `f`.
    pub(crate) fn new(f: impl Fn() -> Option<std::time::Instant> + Send + Sync + 'static) -> Self {
        ProgressClock(std::sync::Arc::new(f))
    }
}

impl std::fmt::Debug for ProgressClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressClock")
    }
}

/// How long and how patiently to retry.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// Give up on one operation after failing for this long.
    pub retry_for: Duration,
    /// First backoff delay.
    pub initial: Duration,
    /// Largest backoff delay.
    pub max_interval: Duration,
    /// Log retries at debug level only (first contact, where the final error says it all).
    pub quiet: bool,
    /// After a failure of the link (not a server's answer), the next try comes after
    /// about this long (±50%), however many failed before: a link back after an
    /// outage is used within about a second, instead of after a doubled backoff.
    pub probe_interval: Duration,
    /// When the whole job last made progress; `None`: the budget runs from the first
    /// failure of each operation.
    pub progress: Option<ProgressClock>,
    /// Stop at once on an unreachable server (the first contact of a new job: a
    /// wrong URL, most likely), instead of retrying it as an outage.
    pub fail_unreachable: bool,
    /// The option that set `retry_for`, named in the retry messages (`--retry-for`),
    /// when the user can set it.
    pub budget_flag: Option<&'static str>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retry_for: Duration::from_secs(2 * 3600),
            initial: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
            quiet: false,
            probe_interval: Duration::from_secs(1),
            progress: None,
            fail_unreachable: false,
            budget_flag: None,
        }
    }
}

impl Policy {
    /// Jittered probes at a steady interval, for failures of the link.
    fn probes(&self) -> backoff::ExponentialBackoff {
        backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(self.probe_interval)
            .with_max_interval(self.probe_interval * 2)
            .with_multiplier(1.0)
            .with_randomization_factor(0.5)
            .with_max_elapsed_time(None)
            .build()
    }

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

/// Runs `op` until it succeeds, fails fatally, or has failed for `policy.retry_for`
/// with no progress meanwhile (see [`ProgressClock`]). Failures of the link are
/// tried again at a steady, short interval; answers of the server (5xx, 429, 498)
/// back off exponentially, at least as long as their `Retry-After`. `op` gets the
/// attempt number (1-based). `what` names the operation in log lines.
pub(crate) async fn retry<T, E, F, Fut>(policy: &Policy, what: &str, mut op: F) -> Result<T, E>
where
    E: Retryable + std::fmt::Display,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut backoff = policy.backoff();
    let mut probes = policy.probes();
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
            Class::Transient if policy.fail_unreachable && err.unreachable() => return Err(err),
            Class::Transient => reauths = 0,
        }
        // Time without progress: since the first failure here, or since the job last
        // confirmed something, whichever is later.
        let since = match policy.progress.as_ref().and_then(|c| (c.0)()) {
            Some(p) => Instant::from_std(p).max(start),
            None => start,
        };
        let elapsed = since.elapsed();
        if elapsed >= policy.retry_for {
            if !policy.quiet {
                tracing::warn!(
                    "{what}: giving up after {attempt} attempts and {:.0?} without progress: {err}",
                    elapsed
                );
            }
            return Err(err);
        }
        let mut delay = if err.link_down() {
            probes.next_backoff().unwrap_or(policy.probe_interval)
        } else {
            backoff.next_backoff().unwrap_or(policy.max_interval)
        };
        if let Some(ra) = err.retry_after() {
            delay = delay.max(ra);
        }
        let left = policy.retry_for.saturating_sub(elapsed);
        delay = delay.min(left);
        if policy.quiet {
            tracing::debug!("{what}: attempt {attempt} failed ({err}); retrying in {:.1?}", delay);
        } else {
            // What failed, when the next try comes, and how long k5up keeps trying.
            let budget = match policy.budget_flag {
                Some(flag) => format!("{flag} {}", crate::units::format_duration(policy.retry_for)),
                None => format!("a budget of {}", crate::units::format_duration(policy.retry_for)),
            };
            tracing::warn!(
                "{what}: attempt {attempt} failed ({err}); next try in {:.1?}; trying for {} more without progress ({budget})",
                delay,
                crate::units::format_duration(Duration::from_secs(left.as_secs()))
            );
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
            ..Policy::default()
        }
    }

    /// A failure of the link: down (reset, refused, stalled), or, at first contact,
    /// unreachable (a host that does not resolve, a refused connection).
    #[derive(Debug)]
    struct Link {
        unreachable: bool,
    }
    const DOWN: Link = Link { unreachable: false };
    const UNREACHABLE: Link = Link { unreachable: true };
    impl std::fmt::Display for Link {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(if self.unreachable { "connection refused" } else { "link down" })
        }
    }
    impl Retryable for Link {
        fn class(&self) -> Class {
            Class::Transient
        }
        fn retry_after(&self) -> Option<Duration> {
            None
        }
        fn link_down(&self) -> bool {
            true
        }
        fn unreachable(&self) -> bool {
            self.unreachable
        }
    }

    /// Attempt start times (from the test's start) of a retry loop whose attempts
    /// fail with `fail` until `until` has passed.
    async fn starts<E: Retryable + std::fmt::Display>(
        p: &Policy,
        until: Duration,
        fail: impl Fn() -> E,
    ) -> Vec<Duration> {
        let t0 = tokio::time::Instant::now();
        let seen = std::cell::RefCell::new(vec![]);
        let _: Result<(), E> = retry(p, "op", |_| {
            seen.borrow_mut().push(t0.elapsed());
            let r = if t0.elapsed() < until { Err(fail()) } else { Ok(()) };
            async { r }
        })
        .await;
        seen.into_inner()
    }

    #[tokio::test(start_paused = true)]
    async fn a_link_that_fails_is_tried_again_about_every_second_and_used_soon_after_it_is_back() {
        let p = Policy { initial: Duration::from_secs(1), max_interval: Duration::from_secs(60), ..fast() };
        // A 30 s outage: the tries come every 0.5-1.5 s, never further apart.
        let t = starts(&p, Duration::from_secs(30), || DOWN).await;
        let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g <= Duration::from_millis(1500)), "{gaps:?}");
        assert!(*t.last().unwrap() <= Duration::from_millis(31_500), "used within 1.5 s of the link's return: {t:?}");
        // A server that answers 503 for 30 s backs off exponentially instead.
        let t = starts(&p, Duration::from_secs(30), || E(Class::Transient, None)).await;
        assert!(t.len() < 10, "exponential: few tries in 30 s: {t:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_counts_time_without_progress() {
        let now = std::sync::Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
        let clock = {
            let now = now.clone();
            ProgressClock::new(move || *now.lock().unwrap())
        };
        let p = Policy { retry_for: Duration::from_secs(10), progress: Some(clock), ..fast() };
        // Progress every 5 s elsewhere: one operation failing for 60 s is not given up.
        let t0 = tokio::time::Instant::now();
        let n = Cell::new(0u32);
        let r: Result<(), E> = retry(&p, "op", |_| {
            let el = t0.elapsed();
            if el.as_secs().is_multiple_of(5) {
                *now.lock().unwrap() = Some(tokio::time::Instant::now().into_std());
            }
            n.set(n.get() + 1);
            async move { if el < Duration::from_secs(60) { Err(E(Class::Transient, None)) } else { Ok(()) } }
        })
        .await;
        assert!(r.is_ok(), "gave up although the job kept making progress");
        // No progress at all: given up after the budget.
        *now.lock().unwrap() = None;
        let p2 = Policy { retry_for: Duration::from_secs(10), ..p.clone() };
        let t1 = tokio::time::Instant::now();
        let r: Result<(), E> = retry(&p2, "op", |_| async { Err(E(Class::Transient, None)) }).await;
        assert!(r.is_err());
        assert!(t1.elapsed() <= Duration::from_secs(12), "{:?}", t1.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_server_fails_at_once_only_at_a_first_contact() {
        let tries = |p: Policy| async move {
            let n = Cell::new(0u32);
            let r: Result<(), Link> = retry(&p, "op", |a| {
                n.set(a);
                async { Err(UNREACHABLE) }
            })
            .await;
            assert!(r.is_err());
            n.get()
        };
        let p = Policy { retry_for: Duration::from_secs(10), ..fast() };
        assert_eq!(tries(Policy { fail_unreachable: true, ..p.clone() }).await, 1, "first contact: at once");
        assert!(tries(p.clone()).await > 3, "a job that exists: an outage, retried");
        // Other link failures (a reset, a timeout) are retried at a first contact too.
        let first = Policy { fail_unreachable: true, ..p };
        let t = starts(&first, Duration::from_secs(5), || DOWN).await;
        assert!(t.len() > 3, "{t:?}");
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
