//! Reconciling the journal with the server's listing at the start of every run.
//!
//! The server is the truth: a segment is done when the listing holds it with the
//! journaled MD5 and length, whatever the journal says. This closes the crash
//! windows "PUT completed, process died before journaling" (adopted here) and
//! "journaled as confirmed, since deleted" (sent again).

use std::collections::HashMap;

use crate::journal::{SegState, SegmentRecord};
use crate::names::SegmentNaming;
use crate::swift::ListEntry;

/// The segments left to process, each with what the server holds under its name.
pub(super) type Todo = Vec<(SegmentRecord, Option<ListEntry>)>;

/// What reconciliation found.
#[derive(Debug, Default)]
pub(super) struct Reconciled {
    /// Records that changed and must be written back.
    pub changed: Vec<SegmentRecord>,
    /// Segments to hash/send.
    pub todo: Todo,
    /// Journaled as confirmed but missing or different on the server.
    pub lost: Vec<u64>,
    /// Pending in the journal with a known MD5, found whole on the server.
    pub adopted: Vec<u64>,
}

/// Compares `segs` (the journal) with `listing` (the segment container, our prefix).
/// A PUT cut off by a kill (`inflight`) is charged to `sent` here.
pub(super) fn reconcile(segs: Vec<SegmentRecord>, listing: Vec<ListEntry>, naming: &SegmentNaming) -> Reconciled {
    let mut by_index: HashMap<u64, ListEntry> =
        listing.into_iter().filter_map(|e| naming.index_of(&e.name).map(|i| (i, e))).collect();
    let mut out = Reconciled::default();
    for mut s in segs {
        let mut dirty = false;
        if s.inflight > 0 {
            s.sent += s.inflight;
            s.inflight = 0;
            dirty = true;
        }
        let found = by_index.remove(&s.index);
        let whole = |e: &ListEntry, s: &SegmentRecord| s.md5.as_deref() == Some(e.hash.as_str()) && e.bytes == s.length;
        match (s.state, &found) {
            (SegState::Confirmed, Some(e)) if whole(e, &s) => {}
            (SegState::Confirmed, _) => {
                s.state = SegState::Pending;
                dirty = true;
                out.lost.push(s.index);
            }
            (SegState::Pending, Some(e)) if whole(e, &s) => {
                s.state = SegState::Confirmed;
                dirty = true;
                out.adopted.push(s.index);
            }
            (SegState::Pending, _) => {}
        }
        if dirty {
            out.changed.push(s.clone());
        }
        if s.state == SegState::Pending {
            out.todo.push((s, found));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(i: u64, md5: Option<&str>, state: SegState) -> SegmentRecord {
        SegmentRecord {
            index: i,
            offset: i * 10,
            length: 10,
            md5: md5.map(Into::into),
            state,
            attempts: 1,
            sent: 0,
            inflight: 0,
        }
    }

    #[test]
    fn the_three_crash_windows() {
        let n = SegmentNaming::new("c", "o", true, 0, 40, 10).unwrap();
        let entry =
            |i: u64, h: &str| ListEntry { name: n.name(i), hash: h.into(), bytes: 10, last_modified: String::new() };
        let mut cut = seg(3, None, SegState::Pending);
        cut.inflight = 10;
        let r = reconcile(
            vec![
                seg(0, Some("a"), SegState::Confirmed), // confirmed and there: nothing to do
                seg(1, Some("b"), SegState::Confirmed), // confirmed but deleted since: send again
                seg(2, Some("c"), SegState::Pending),   // PUT done, died before journaling: adopt
                cut,                                    // never hashed: hash, then compare with the listing
            ],
            vec![entry(0, "a"), entry(2, "c"), entry(3, "zz"), entry(9, "stray")],
            &n,
        );
        assert_eq!(r.lost, vec![1]);
        assert_eq!(r.adopted, vec![2]);
        let todo: Vec<u64> = r.todo.iter().map(|(s, _)| s.index).collect();
        assert_eq!(todo, vec![1, 3]);
        assert_eq!(r.todo[1].1.as_ref().unwrap().hash, "zz");
        let charged = r.changed.iter().find(|s| s.index == 3).unwrap();
        assert_eq!((charged.sent, charged.inflight), (10, 0));
    }
}
