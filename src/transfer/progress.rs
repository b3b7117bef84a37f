//! Live counters of a run, shared by the workers, the status snapshot writer and
//! the progress display.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::digest::DigestState;
use crate::journal::ImportState;
use std::time::Instant;

/// Counters of one job; cheap to update from any task.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Bytes in the file.
    pub bytes_total: AtomicU64,
    /// Bytes in confirmed segments.
    pub bytes_confirmed: AtomicU64,
    /// Bytes put on the wire, this job's earlier runs included.
    pub bytes_sent: AtomicU64,
    /// Bytes put on the wire that did not end in a confirmed segment (retries, cut PUTs).
    pub bytes_wasted: AtomicU64,
    /// Segments in the plan.
    pub segments_total: AtomicU64,
    /// Confirmed segments.
    pub segments_confirmed: AtomicU64,
    /// Bytes sent by this run only (for the rate).
    pub run_bytes_sent: AtomicU64,
    /// When this run last confirmed a segment: milliseconds after `started`, plus one
    /// (0: not yet). The retry budget counts time without such progress.
    pub last_progress_ms: AtomicU64,
    /// Since when the link has been down (a transport failure with no answer from the
    /// server since): milliseconds after `started`, plus one (0: up).
    pub link_down_since_ms: AtomicU64,
    /// Outages this run saw (the link going from up to down).
    pub outages: AtomicU64,
    /// Segments this run found whole on the server (hashed, not sent).
    pub segments_adopted: AtomicU64,
    /// Segments this run sent and confirmed.
    pub segments_sent: AtomicU64,
    /// Zero segments this run confirmed (not sent).
    pub segments_zero: AtomicU64,
    /// Bytes of zero segments (holes, zero runs): never sent.
    pub bytes_zero: AtomicU64,
    /// Repeated segments this run confirmed (not sent).
    pub segments_repeated: AtomicU64,
    /// Bytes of repeated segments (the bytes of another segment of the job): never sent.
    pub bytes_repeated: AtomicU64,
    /// Segments this run copied from the base (not sent).
    pub segments_copied: AtomicU64,
    /// Bytes of segments copied on the server from the base (`--base`): never sent.
    pub bytes_copied: AtomicU64,
    /// Transient failures seen by this run (drives adaptive concurrency).
    pub trouble: AtomicU64,
    /// Segments in flight right now.
    pub in_flight: AtomicU64,
    /// Segments split because the link carried less than them (earlier runs included).
    pub splits: AtomicU64,
    /// The largest segment the link lately carries whole (0: no limit seen).
    pub segment_target: AtomicU64,
    /// Segments allowed in flight right now (adaptive, at most `--concurrency`).
    pub concurrency: AtomicU64,
    /// When this run started.
    pub started: Instant,
    /// The import's last state and the digests known, for snapshots and the display.
    pub extras: Mutex<Extras>,
}

/// What the live status shows besides counters.
#[derive(Debug, Default, Clone)]
pub(crate) struct Extras {
    /// The import, once started.
    pub import: Option<ImportState>,
    /// Whole-image digests (final values).
    pub digests: DigestState,
    /// The tunables of the run.
    pub settings: Option<crate::journal::RunSettings>,
    /// The sharing step, once started.
    pub share: Option<crate::journal::ShareState>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            bytes_total: AtomicU64::new(0),
            bytes_confirmed: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_wasted: AtomicU64::new(0),
            segments_total: AtomicU64::new(0),
            segments_confirmed: AtomicU64::new(0),
            run_bytes_sent: AtomicU64::new(0),
            last_progress_ms: AtomicU64::new(0),
            link_down_since_ms: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            segments_adopted: AtomicU64::new(0),
            segments_sent: AtomicU64::new(0),
            segments_zero: AtomicU64::new(0),
            bytes_zero: AtomicU64::new(0),
            segments_repeated: AtomicU64::new(0),
            bytes_repeated: AtomicU64::new(0),
            segments_copied: AtomicU64::new(0),
            bytes_copied: AtomicU64::new(0),
            trouble: AtomicU64::new(0),
            concurrency: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            splits: AtomicU64::new(0),
            segment_target: AtomicU64::new(0),
            started: Instant::now(),
            extras: Mutex::new(Extras::default()),
        }
    }
}

impl Progress {
    /// Counts the pieces one segment was split into (zero runs cut out).
    pub(crate) fn pieces(&self, recs: &[crate::journal::SegmentRecord]) {
        self.segments_total.fetch_add(recs.len().saturating_sub(1) as u64, Relaxed);
        self.bytes_zero.fetch_add(recs.iter().filter(|r| r.is_zero()).map(|r| r.length).sum(), Relaxed);
    }

    /// Counts `n` bytes handed to the network.
    pub(crate) fn sent(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Relaxed);
        self.run_bytes_sent.fetch_add(n, Relaxed);
    }

    /// Counts a confirmed segment of `len` bytes.
    pub(crate) fn confirmed(&self, len: u64) {
        self.bytes_confirmed.fetch_add(len, Relaxed);
        self.segments_confirmed.fetch_add(1, Relaxed);
        self.last_progress_ms.store(self.started.elapsed().as_millis() as u64 + 1, Relaxed);
    }

    /// A request failed for the link's sake (reset, refused, timeout, stall).
    pub(crate) fn link_failed(&self) {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        if self.link_down_since_ms.compare_exchange(0, now, Relaxed, Relaxed).is_ok() {
            self.outages.fetch_add(1, Relaxed);
        }
    }

    /// The server answered (anything, even an error): the link is up.
    pub(crate) fn link_ok(&self) {
        self.link_down_since_ms.store(0, Relaxed);
    }

    /// How long the link has been down, if it is.
    pub(crate) fn link_down_for(&self) -> Option<std::time::Duration> {
        match self.link_down_since_ms.load(Relaxed) {
            0 => None,
            ms => Some(self.started.elapsed().saturating_sub(std::time::Duration::from_millis(ms - 1))),
        }
    }

    /// When this run last confirmed a segment, if it has.
    pub(crate) fn last_progress(&self) -> Option<Instant> {
        match self.last_progress_ms.load(Relaxed) {
            0 => None,
            ms => Some(self.started + std::time::Duration::from_millis(ms - 1)),
        }
    }

    /// Reads a counter.
    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}
