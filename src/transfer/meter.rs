//! One transfer attempt's meter: bytes handed to (or taken from) the network, and
//! the time of the last progress, which the stall watchdog reads. A deliberate wait
//! (`--bwlimit`) touches it, so waiting is never taken for a stall.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Shared between the body stream and the watchdog of one PUT attempt.
#[derive(Debug)]
pub(crate) struct Meter {
    start: Instant,
    /// Bytes of this attempt handed to the network.
    pub sent: AtomicU64,
    /// Milliseconds since `start` of the last progress.
    last_ms: AtomicU64,
    /// A failure to read the source while sending (not the network's fault).
    pub read_error: std::sync::Mutex<Option<std::io::Error>>,
}

impl Meter {
    /// A new meter; progress counts from now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Meter {
            start: Instant::now(),
            sent: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            read_error: std::sync::Mutex::new(None),
        })
    }
    /// Counts `n` bytes moved, and progress now.
    pub(crate) fn tick(&self, n: u64) {
        self.sent.fetch_add(n, Relaxed);
        self.touch();
    }
    /// Records progress without bytes (a deliberate wait is not a stall).
    pub(crate) fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Relaxed);
    }
    /// Time since the last progress.
    pub(crate) fn idle(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Relaxed)))
    }
}

/// Resolves when `meter` has seen no progress for `timeout` (a stalled body or a
/// server that never answers).
pub(crate) async fn stalled(meter: &Meter, timeout: Duration) {
    let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if meter.idle() >= timeout {
            return;
        }
    }
}
