//! How a segment whose MD5 is not yet known is read, chosen per segment from what
//! the run measures.
//!
//! Where the page cache can hold what is hashed ahead, the hashing stage hashes
//! segments before they are sent and this is not asked. Where it cannot
//! ([`super::hasher::hash_while_sending`]), a segment is hashed while it is sent:
//! read from storage once, its ETag checked after the PUT. But when the link is
//! much slower than the disk, a second read costs nothing next to the send, and
//! knowing the MD5 first pays (repeats are not sent at all): then segments are
//! hashed, then sent. The disk's rate is what reading the source costs while a read
//! is under way (busy time, however many readers); the link's is what this run sent
//! per second.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::transfer::progress::Progress;
use crate::units::format_size;

/// A link this many times slower than the disk: hash first, then send.
const SLOWER: f64 = 4.0;
/// Nothing is concluded before this much was read and sent, and this long.
const MIN_BYTES: u64 = 8 << 20;
const MIN_SECS: f64 = 2.0;

/// The rate the source is read at: bytes over the time any read was under way.
#[derive(Debug, Default)]
pub(crate) struct DiskMeter(Mutex<Busy>);

#[derive(Debug, Default)]
struct Busy {
    active: u32,
    since: Option<Instant>,
    secs: f64,
    bytes: u64,
}

impl DiskMeter {
    /// Runs `read` (of `n` bytes of the source), timing it.
    pub(crate) fn time<T>(&self, n: u64, read: impl FnOnce() -> T) -> T {
        self.edge(true, 0);
        let out = read();
        self.edge(false, n);
        out
    }

    fn edge(&self, start: bool, n: u64) {
        let mut b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if start {
            if b.active == 0 {
                b.since = Some(now);
            }
            b.active += 1;
        } else {
            b.active = b.active.saturating_sub(1);
            b.bytes += n;
            if b.active == 0
                && let Some(t) = b.since.take()
            {
                b.secs += now.duration_since(t).as_secs_f64();
            }
        }
    }

    /// (bytes read, busy seconds).
    fn get(&self) -> (u64, f64) {
        let b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let open = b.since.map_or(0.0, |t| t.elapsed().as_secs_f64());
        (b.bytes, b.secs + open)
    }
}

/// The choice, per segment.
#[derive(Debug)]
pub(crate) struct ReadMode {
    /// The page cache cannot hold a segment hashed ahead of its send.
    memory_short: bool,
    /// The reads of the source, timed.
    pub disk: std::sync::Arc<DiskMeter>,
    /// The last choice (to say when it changes).
    streaming: AtomicBool,
    job_id: String,
}

impl ReadMode {
    /// `memory_short`: see [`super::hasher::hash_while_sending`].
    pub(crate) fn new(memory_short: bool, job_id: &str) -> Self {
        ReadMode {
            memory_short,
            disk: Default::default(),
            streaming: AtomicBool::new(memory_short),
            job_id: job_id.into(),
        }
    }

    /// Whether the next segment is hashed while it is sent (else: hashed, then sent).
    pub(crate) fn stream(&self, progress: &Progress) -> bool {
        if !self.memory_short {
            return false;
        }
        let (read, busy) = self.disk.get();
        let (sent, secs) = (Progress::get(&progress.run_bytes_sent), progress.started.elapsed().as_secs_f64());
        let stream = !link_much_slower(read, busy, sent, secs);
        if self.streaming.swap(stream, Ordering::Relaxed) != stream {
            let (disk, link) = (rate(read, busy), rate(sent, secs));
            if stream {
                tracing::debug!(
                    "job {}: segments are hashed while they are sent again (read once): the link carries {}/s, the disk reads {}/s",
                    self.job_id,
                    format_size(link),
                    format_size(disk)
                );
            } else {
                tracing::debug!(
                    "job {}: segments are hashed, then sent (read twice; repeats are looked for): the link carries {}/s, under a {SLOWER}th of the {}/s the disk reads",
                    self.job_id,
                    format_size(link),
                    format_size(disk)
                );
            }
        }
        stream
    }
}

fn rate(bytes: u64, secs: f64) -> u64 {
    if secs > 0.0 { (bytes as f64 / secs) as u64 } else { 0 }
}

/// Whether a link that sent `sent` bytes in `secs` is [`SLOWER`] times slower than
/// a disk that read `read` bytes in `busy` seconds of reading (once enough is known).
fn link_much_slower(read: u64, busy: f64, sent: u64, secs: f64) -> bool {
    if read < MIN_BYTES || sent < MIN_BYTES || secs < MIN_SECS {
        return false;
    }
    let disk = read as f64 / busy.max(1e-6);
    let link = sent as f64 / secs;
    disk >= SLOWER * link
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;

    #[test]
    fn a_slow_link_hashes_first_once_measured() {
        // 100 MB/s disk, 10 MB/s link: hash first.
        assert!(link_much_slower(100 * M, 1.0, 100 * M, 10.0));
        // The disk is what limits (100 MB/s each): read once.
        assert!(!link_much_slower(100 * M, 1.0, 100 * M, 1.0));
        assert!(!link_much_slower(100 * M, 1.0, 50 * M, 1.8), "too early to say");
        assert!(!link_much_slower(4 * M, 0.01, 20 * M, 10.0), "too little read to say");
    }

    #[test]
    fn busy_time_counts_overlapping_reads_once() {
        let m = DiskMeter::default();
        m.edge(true, 0);
        m.edge(true, 0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.edge(false, M);
        m.edge(false, M);
        let (bytes, secs) = m.get();
        assert_eq!(bytes, 2 * M);
        assert!((0.015..0.2).contains(&secs), "{secs}");
        assert_eq!(m.time(5, || 7), 7);
        assert_eq!(m.get().0, 2 * M + 5);
    }

    #[test]
    fn enough_memory_never_streams() {
        let p = Progress::default();
        assert!(!ReadMode::new(false, "j").stream(&p));
        assert!(ReadMode::new(true, "j").stream(&p));
    }
}
