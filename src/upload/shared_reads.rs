//! One read of the source for two readers: the segment bodies (in parallel, each
//! in its own range) and the whole-image digests (in file order).
//!
//! When segments are hashed while they are sent, a body reads its range from
//! storage, and the digests read the same bytes after it, from the page cache. A
//! byte a body has read and the digests have not is held in the page cache for them;
//! at most `budget` such bytes may be pending (half the page cache this process can
//! count on), or the cache drops them and the digests read them from storage again.
//! So:
//! - the digests read a byte of a range still to be sent only once its body has read
//!   it (bytes no body will read, confirmed or zeros, they read at once);
//! - a body that would push the pending bytes over the budget waits for the digests,
//!   unless it is the reader furthest behind (that one always reads: it is what
//!   the others wait for, and the file is read at the disk's pace).
//!
//! Waits wake on every change, and every 200 ms to see whether the run stopped.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The ledger of bytes read once and pending the other reader.
#[derive(Debug)]
pub(crate) struct SharedReads {
    state: Mutex<State>,
    cv: Condvar,
    budget: u64,
}

#[derive(Debug, Default)]
struct State {
    /// The next byte the digests read.
    digest_at: u64,
    /// The digests are done (or stopped): nothing waits any more.
    closed: bool,
    /// Ranges bodies will read, by start: (end, high-water mark of what bodies read
    /// of it, from the start).
    ranges: BTreeMap<u64, (u64, u64)>,
    /// Bytes read by bodies, not yet by the digests.
    pending: u64,
    /// Where each body being read is (by reader id).
    readers: BTreeMap<u64, u64>,
    next_reader: u64,
}

impl State {
    /// The range holding `off`: (start, end, high-water mark).
    fn range_at(&self, off: u64) -> Option<(u64, u64, u64)> {
        let (&s, &(e, hw)) = self.ranges.range(..=off).next_back()?;
        (off < e).then_some((s, e, hw))
    }

    /// Bytes of range (s, hw) pending the digests.
    fn pending_of(&self, s: u64, hw: u64) -> u64 {
        hw.saturating_sub(self.digest_at.max(s))
    }
}

/// A body being read (its place counts until it is dropped).
pub(crate) struct Reader {
    shared: Arc<SharedReads>,
    id: u64,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.readers.remove(&self.id);
        drop(st);
        self.shared.cv.notify_all();
    }
}

const TICK: Duration = Duration::from_millis(200);

impl SharedReads {
    /// A ledger for digests continuing at `digest_at`, and bodies that will read
    /// `ranges` (offset, length), with at most `budget` bytes pending.
    pub(crate) fn new(budget: u64, digest_at: u64, ranges: impl IntoIterator<Item = (u64, u64)>) -> Arc<Self> {
        let ranges = ranges.into_iter().filter(|(_, l)| *l > 0).map(|(o, l)| (o, (o + l, o))).collect();
        Arc::new(SharedReads {
            state: Mutex::new(State { digest_at, ranges, ..State::default() }),
            cv: Condvar::new(),
            budget: budget.max(crate::source::CHUNK as u64),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A body starting to read at `off`.
    pub(crate) fn reader(self: &Arc<Self>, off: u64) -> Reader {
        let mut st = self.lock();
        let id = st.next_reader;
        st.next_reader += 1;
        st.readers.insert(id, off);
        Reader { shared: self.clone(), id }
    }

    /// Before a body reads `n` bytes at `off`: waits while they would push the
    /// pending bytes over the budget (and `r` is not the reader furthest behind).
    /// False if `stopped` says the run stopped meanwhile.
    pub(crate) fn body_read(&self, r: &Reader, off: u64, n: u64, stopped: &dyn Fn() -> bool) -> bool {
        let mut st = self.lock();
        st.readers.insert(r.id, off);
        loop {
            let Some((s, _, hw)) = st.range_at(off).filter(|_| !st.closed) else {
                return true;
            };
            let hw2 = hw.max(off + n);
            let more = st.pending_of(s, hw2) - st.pending_of(s, hw);
            let behind = st.readers.values().all(|&at| at >= off);
            if more == 0 || st.pending + more <= self.budget || behind {
                st.pending += more;
                if let Some(v) = st.ranges.get_mut(&s) {
                    v.1 = hw2;
                }
                drop(st);
                self.cv.notify_all();
                return true;
            }
            if stopped() {
                return false;
            }
            st = self.cv.wait_timeout(st, TICK).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// A piece `[off, off + len)` is confirmed (sent, adopted, zeros, made on the
    /// server): if it ends its range, no body reads the rest of it.
    pub(crate) fn confirmed(&self, off: u64, len: u64) {
        let mut st = self.lock();
        let Some((s, e, hw)) = st.range_at(off) else { return };
        if off + len == e {
            if hw == s {
                st.ranges.remove(&s);
            } else if let Some(v) = st.ranges.get_mut(&s) {
                v.0 = hw;
            }
            drop(st);
            self.cv.notify_all();
        }
    }

    /// Before the digests read at `at` (at most `n` bytes): waits until a body has
    /// read them, and returns how many may be read now (0: the run stopped).
    pub(crate) fn digest_read(&self, at: u64, n: u64, stopped: &dyn Fn() -> bool) -> u64 {
        let mut st = self.lock();
        st.digest_at = at;
        loop {
            if st.closed {
                return n;
            }
            let k = match st.range_at(at) {
                Some((_, _, hw)) => n.min(hw.saturating_sub(at)),
                None => {
                    let next = st.ranges.range(at..).next().map_or(u64::MAX, |(&s, _)| s);
                    n.min(next - at)
                }
            };
            if k > 0 {
                if st.range_at(at).is_some() {
                    st.pending = st.pending.saturating_sub(k);
                }
                st.digest_at = at + k;
                drop(st);
                self.cv.notify_all();
                return k;
            }
            if stopped() {
                return 0;
            }
            st = self.cv.wait_timeout(st, TICK).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// The digests are done or stopped: bodies read freely.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.cv.notify_all();
    }

    /// Bytes read by bodies and not yet by the digests.
    #[cfg(test)]
    fn pending(&self) -> u64 {
        self.lock().pending
    }
}

/// Closes the ledger when dropped (however the digests end).
pub(crate) struct CloseOnDrop(pub Option<Arc<SharedReads>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;
    fn never() -> bool {
        false
    }

    #[test]
    fn digests_follow_bodies_and_bodies_wait_for_the_budget() {
        // Two 8 MiB segments, a 4 MiB budget.
        let s = SharedReads::new(4 * M, 0, [(0, 8 * M), (8 * M, 8 * M)]);
        let (a, b) = (s.reader(0), s.reader(8 * M));
        // Nothing read yet: the digests may not read the first segment.
        let stopped = || true;
        assert_eq!(s.digest_read(0, M, &stopped), 0);
        assert!(s.body_read(&a, 0, M, &never));
        assert!(s.body_read(&b, 8 * M, M, &never));
        assert_eq!(s.pending(), 2 * M);
        assert!(s.body_read(&b, 9 * M, M, &never));
        assert!(s.body_read(&b, 10 * M, M, &never));
        assert_eq!(s.pending(), 4 * M);
        // The second body is ahead and the budget is full: it waits (here: stops).
        assert!(!s.body_read(&b, 11 * M, M, &stopped));
        // The first is furthest behind: it reads.
        assert!(s.body_read(&a, M, M, &never));
        assert_eq!(s.pending(), 5 * M);
        // The digests read what the first body read, and the budget frees up.
        assert_eq!(s.digest_read(0, 4 * M, &never), 2 * M);
        assert_eq!(s.pending(), 3 * M);
        assert!(s.body_read(&b, 11 * M, M, &never));
        // A retry re-reads from the start: nothing new is pending.
        assert!(s.body_read(&a, 0, M, &never));
        assert_eq!(s.pending(), 4 * M);
    }

    #[test]
    fn bytes_no_body_reads_are_read_at_once() {
        // A segment at 4 MiB to send; [0, 4 MiB) is confirmed.
        let s = SharedReads::new(4 * M, 0, [(4 * M, 4 * M)]);
        assert_eq!(s.digest_read(0, 8 * M, &never), 4 * M);
        assert_eq!(s.digest_read(4 * M, M, &|| true), 0, "the body has not read it");
        // Adopted without being read: the digests read it themselves.
        s.confirmed(4 * M, 4 * M);
        assert_eq!(s.digest_read(4 * M, 8 * M, &never), 8 * M);
        // Split: the head confirmed, the rest not yet read, then read and confirmed.
        let s = SharedReads::new(4 * M, 0, [(0, 8 * M)]);
        let r = s.reader(0);
        assert!(s.body_read(&r, 0, 2 * M, &never));
        s.confirmed(0, 2 * M);
        assert_eq!(s.digest_read(0, 8 * M, &never), 2 * M);
        assert_eq!(s.digest_read(2 * M, M, &|| true), 0, "the rest goes to another body");
        s.confirmed(2 * M, 6 * M);
        assert_eq!(s.digest_read(2 * M, 8 * M, &never), 8 * M);
    }

    #[test]
    fn closed_ledger_waits_for_nothing() {
        let s = SharedReads::new(M, 0, [(0, 8 * M), (8 * M, 8 * M)]);
        let (a, b) = (s.reader(0), s.reader(8 * M));
        assert!(s.body_read(&b, 8 * M, M, &never));
        assert!(!s.body_read(&b, 9 * M, M, &|| true));
        drop(CloseOnDrop(Some(s.clone())));
        assert!(s.body_read(&b, 9 * M, M, &|| true));
        drop(a);
        assert_eq!(s.digest_read(0, M, &|| true), M);
    }

    #[test]
    fn a_waiting_body_is_woken_by_the_digests() {
        let s = SharedReads::new(2 * M, 0, [(0, 8 * M), (8 * M, 8 * M)]);
        let (a, b) = (s.reader(0), s.reader(8 * M));
        assert!(s.body_read(&a, 0, 2 * M, &never));
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.body_read(&b, 8 * M, M, &never));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "over budget and not furthest behind");
        assert_eq!(s.digest_read(0, 2 * M, &never), 2 * M);
        assert!(t.join().unwrap());
        drop(a);
    }
}
