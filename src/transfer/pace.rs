//! `--bwlimit`: one pacer shared by every segment body, so the whole upload stays
//! under the rate whatever the concurrency.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::meter::Meter;

/// A virtual clock: each block books `len / rate` seconds of the link.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: f64,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer for `bytes_per_sec`.
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        Pacer { rate: bytes_per_sec.max(1) as f64, next: Mutex::new(None) }
    }

    /// Waits until `len` more bytes may be sent. Waiting is not stalling: `meter`
    /// is touched at least once a second meanwhile.
    pub(crate) async fn admit(&self, len: usize, meter: &Meter) {
        let start = {
            let mut next = self.next.lock().expect("pacer lock");
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + Duration::from_secs_f64(len as f64 / self.rate));
            start
        };
        while Instant::now() < start {
            meter.touch();
            let left = start - Instant::now();
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
        meter.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate() {
        let p = Pacer::new(1 << 20);
        let m = Meter::new();
        let t0 = Instant::now();
        for _ in 0..8 {
            p.admit(1 << 20, &m).await;
        }
        // the first block goes at once, the next seven each wait a second
        let e = t0.elapsed();
        assert!(e >= Duration::from_secs(7) && e < Duration::from_secs(8), "{e:?}");
    }
}
