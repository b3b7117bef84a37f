//! Reconciling the journal with the server's listing at the start of every run.
//!
//! The server is the truth: a segment is done when the listing holds it with the
//! journaled MD5 and length, whatever the journal says. This closes the crash
//! windows "PUT completed, process died before journaling" (adopted here) and
//! "journaled as confirmed, since deleted" (sent again).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::journal::{SegKind, SegState, SegmentRecord};
use crate::names::SegmentNaming;
use crate::plan::MIN_SEGMENT_SIZE;
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
    /// Journal keys whose records are replaced by other cuts (ranged jobs).
    pub removed: Vec<u64>,
}

/// Charges a PUT cut off by a kill (`inflight`) to `sent`; true if there was one.
fn charge_inflight(s: &mut SegmentRecord) -> bool {
    let cut = s.inflight > 0;
    s.sent += std::mem::take(&mut s.inflight);
    cut
}

/// Compares `segs` (the journal) with `listing` (the segment container, our prefix).
/// A PUT cut off by a kill (`inflight`) is charged to `sent` here.
///
/// `made_objects`: a segment made on the server (zeros, a repeat) is an object of
/// its own (a DLO's, copied on the server); an SLO's are ranges of the job's zero
/// object or entries of the original, with no object to find.
pub(super) fn reconcile(
    segs: Vec<SegmentRecord>,
    listing: Vec<ListEntry>,
    naming: &SegmentNaming,
    made_objects: bool,
    copyable: &[ListEntry],
) -> Reconciled {
    if naming.ranged {
        return reconcile_ranged(segs, listing, naming, made_objects, copyable);
    }
    let mut by_index: HashMap<u64, ListEntry> =
        listing.into_iter().filter_map(|e| naming.key_of(&e.name).map(|i| (i, e))).collect();
    let mut out = Reconciled::default();
    for mut s in segs {
        let mut dirty = charge_inflight(&mut s);
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

/// The confirmed segments that `listing` (of the job's prefix) does not hold whole
/// under their names (name, size and MD5): deleted or overwritten behind k5up's
/// back. An SLO's zeros and repeats have no object of their own: not looked for.
pub(super) fn missing_on_server<'a>(
    segs: &'a [SegmentRecord],
    listing: &[ListEntry],
    naming: &SegmentNaming,
    slo: bool,
) -> Vec<&'a SegmentRecord> {
    let by_name: HashMap<&str, &ListEntry> = listing.iter().map(|e| (e.name.as_str(), e)).collect();
    segs.iter()
        .filter(|s| s.state == SegState::Confirmed && !(slo && s.is_made()))
        .filter(|s| {
            !by_name.get(naming.name(s).as_str()).is_some_and(|e| {
                s.md5.as_deref().is_some_and(|m| e.hash.eq_ignore_ascii_case(m)) && e.bytes == s.length
            })
        })
        .collect()
}

/// The offsets of the repeats among `segs` whose original (the segment at `of`) is
/// not a data segment with the same length and MD5.
pub(super) fn broken_repeats<'a>(segs: impl Iterator<Item = &'a SegmentRecord> + Clone) -> HashSet<u64> {
    let data: HashMap<u64, &SegmentRecord> = segs.clone().filter(|s| s.holds_bytes()).map(|s| (s.offset, s)).collect();
    segs.filter_map(|s| {
        let of = s.repeat_of()?;
        let ok = data.get(&of).is_some_and(|o| o.length == s.length && o.md5.is_some() && o.md5 == s.md5);
        (!ok).then_some(s.offset)
    })
    .collect()
}

/// One cut reconciliation chose: where, what the server holds there, the journal
/// record it reuses (by position in the journal), else the kind of its new record.
struct Choice {
    off: u64,
    len: u64,
    entry: Option<ListEntry>,
    reuse: Option<usize>,
    kind: SegKind,
}

/// Reconciliation for segments named by their bytes: the journal's cuts and the
/// server's may differ (an earlier run's larger segment whose PUT completed unseen,
/// the pieces a lost journal's run split it into, a journal rebuilt with the first
/// cuts). Walking the file from its start, each position takes, in this order:
/// the journal's confirmed segment there, if the server still holds it whole; else
/// the longest whole segment the server holds there (checked by hashing before it
/// is adopted) that overlaps no confirmed segment and leaves at least 1 MiB to the
/// next journal cut; else the journal's cut (or the rest of it). The result still
/// covers the file exactly; segments on the server outside it are deleted once the
/// manifest is written (see `finish::sweep`).
fn reconcile_ranged(
    segs: Vec<SegmentRecord>,
    listing: Vec<ListEntry>,
    naming: &SegmentNaming,
    made_objects: bool,
    copyable: &[ListEntry],
) -> Reconciled {
    let mut out = Reconciled::default();
    // Changed records by journal key: a later change of a record replaces an earlier one.
    let mut changed: BTreeMap<u64, SegmentRecord> = BTreeMap::new();
    let size = segs.last().map_or(0, |s| s.offset + s.length);
    // Whole pieces on the server, by offset: (length, entry).
    let mut on_server: BTreeMap<u64, Vec<(u64, ListEntry)>> = BTreeMap::new();
    for e in listing {
        if let Some((off, len)) = naming.range_of(&e.name)
            && e.bytes == len
            && off.checked_add(len).is_some_and(|end| end <= size)
        {
            on_server.entry(off).or_default().push((len, e));
        }
    }
    // Other uploads' whole pieces (see `SegmentNaming::foreign_range_of`), by offset: lengths.
    let mut copyable_at: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for e in copyable {
        if let Some((off, len)) = naming.foreign_range_of(&e.name)
            && e.bytes == len
            && off.checked_add(len).is_some_and(|end| end <= size)
        {
            copyable_at.entry(off).or_default().push(len);
        }
    }
    let copyable = copyable_at;
    let whole = |s: &SegmentRecord, e: &ListEntry| s.md5.as_deref() == Some(e.hash.as_str()) && e.bytes == s.length;
    let exact = |on: &BTreeMap<u64, Vec<(u64, ListEntry)>>, off: u64, len: u64| {
        on.get(&off).and_then(|v| v.iter().find(|(l, _)| *l == len)).map(|(_, e)| e.clone())
    };
    // The journal's cuts, its records charged for cut-off PUTs, and what stays confirmed.
    let mut recs: Vec<SegmentRecord> = Vec::with_capacity(segs.len());
    for mut s in segs {
        let mut dirty = charge_inflight(&mut s);
        // An SLO's zero or repeated segment has no object of its own (its manifest
        // points at the job's zero object, or at the original): nothing to find.
        let objectless = s.is_made() && !made_objects;
        if s.state == SegState::Confirmed
            && !objectless
            && !exact(&on_server, s.offset, s.length).is_some_and(|e| whole(&s, &e))
        {
            s.state = SegState::Pending;
            dirty = true;
            out.lost.push(s.index);
        }
        if dirty {
            changed.insert(s.index, s.clone());
        }
        recs.push(s);
    }
    let boundaries: BTreeSet<u64> = recs.iter().map(|s| s.offset).chain([size]).collect();
    let confirmed_ends: BTreeMap<u64, u64> =
        recs.iter().filter(|s| s.state == SegState::Confirmed).map(|s| (s.offset, s.offset + s.length)).collect();
    let overlaps_confirmed =
        |from: u64, to: u64| confirmed_ends.range(..to).next_back().is_some_and(|(_, &end)| end > from);
    let fits = |from: u64, end: u64| {
        let next = *boundaries.range(end..).next().unwrap_or(&size);
        (end - from >= MIN_SEGMENT_SIZE || end == size) && (next == end || next - end >= MIN_SEGMENT_SIZE)
    };
    // Pass 1: choose the cuts.
    let mut chosen: Vec<Choice> = vec![];
    let mut p = 0u64;
    let mut i = 0usize;
    while p < size {
        while i < recs.len() && recs[i].offset + recs[i].length <= p {
            i += 1;
        }
        let Some(r) = recs.get(i).filter(|r| r.offset <= p) else {
            // A gap in the journal's cuts (never written so): a cut of its own.
            let end = recs.get(i).map_or(size, |r| r.offset);
            chosen.push(Choice {
                off: p,
                len: end - p,
                entry: exact(&on_server, p, end - p),
                reuse: None,
                kind: SegKind::Data,
            });
            p = end;
            continue;
        };
        if r.offset == p && r.state == SegState::Confirmed {
            chosen.push(Choice { off: p, len: r.length, entry: None, reuse: Some(i), kind: r.kind });
            p += r.length;
            continue;
        }
        // The longest whole piece here: the job's own (adopted once hashed), or
        // another upload's of the same file (copied on the server once hashed).
        let best = on_server
            .get(&p)
            .into_iter()
            .flatten()
            .map(|(len, e)| (*len, Some(e)))
            .chain(copyable.get(&p).into_iter().flatten().map(|len| (*len, None)))
            .filter(|(len, _)| fits(p, p + len) && !overlaps_confirmed(p, p + len))
            .max_by_key(|(len, e)| (*len, e.is_some()));
        let (len, entry, kind) = match best {
            Some((len, e)) => (len, e.cloned(), SegKind::Data),
            // The rest of the journal's cut: zeros stay zeros (a rest is no repeat).
            None => (r.offset + r.length - p, None, if r.is_zero() { SegKind::Zero } else { SegKind::Data }),
        };
        let reuse = (r.offset == p && r.length == len).then_some(i);
        chosen.push(Choice { off: p, len, entry, reuse, kind });
        p += len;
    }
    // Pass 2: records. Bytes sent for records that are not reused stay charged, to
    // the first new record.
    let reused: HashSet<usize> = chosen.iter().filter_map(|c| c.reuse).collect();
    let starts: HashSet<u64> = chosen.iter().map(|c| c.off).collect();
    let mut carry = 0u64;
    for (k, r) in recs.iter().enumerate() {
        if !reused.contains(&k) {
            carry += r.sent;
            if !starts.contains(&r.offset) {
                out.removed.push(r.index);
            }
        }
    }
    let mut finals: Vec<(SegmentRecord, Option<ListEntry>)> = Vec::with_capacity(chosen.len());
    for Choice { off, len, entry, reuse, kind } in chosen {
        let rec = match reuse {
            Some(k) => {
                let mut s = recs[k].clone();
                if s.state == SegState::Pending
                    && let Some(e) = &entry
                    && whole(&s, e)
                {
                    s.state = SegState::Confirmed;
                    out.adopted.push(s.index);
                    changed.insert(s.index, s.clone());
                }
                s
            }
            None => {
                let s = SegmentRecord { sent: std::mem::take(&mut carry), kind, ..SegmentRecord::at(off, len) };
                changed.insert(s.index, s.clone());
                s
            }
        };
        finals.push((rec, entry));
    }
    // A repeat stands only while its original is a data segment of the chosen cuts
    // with the same bytes; else it is sent like any segment.
    let broken = broken_repeats(finals.iter().map(|f| &f.0));
    for (rec, _) in finals.iter_mut().filter(|(r, _)| broken.contains(&r.offset)) {
        (rec.kind, rec.state) = (SegKind::Data, SegState::Pending);
        changed.insert(rec.index, rec.clone());
    }
    out.todo = finals.into_iter().filter(|(r, _)| r.state == SegState::Pending).collect();
    // Only records of the chosen cuts are written back.
    let cuts: HashSet<(u64, u64)> = out.todo.iter().map(|(s, _)| (s.offset, s.length)).collect();
    out.changed = changed
        .into_values()
        .filter(|c| c.state == SegState::Confirmed || cuts.contains(&(c.offset, c.length)))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(i: u64, md5: Option<&str>, state: SegState) -> SegmentRecord {
        SegmentRecord {
            md5: md5.map(Into::into),
            state,
            attempts: 1,
            ..SegmentRecord::new(i, i * 10, 10, SegKind::Data)
        }
    }

    #[test]
    fn the_three_crash_windows() {
        let n = SegmentNaming::indexed("c", "o", true, 0, 40, 10);
        let entry = |i: u64, h: &str| ListEntry {
            name: n.name(&seg(i, None, SegState::Pending)),
            hash: h.into(),
            bytes: 10,
            last_modified: String::new(),
        };
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
            true,
            &[],
        );
        assert_eq!(r.lost, vec![1]);
        assert_eq!(r.adopted, vec![2]);
        let todo: Vec<u64> = r.todo.iter().map(|(s, _)| s.index).collect();
        assert_eq!(todo, vec![1, 3]);
        assert_eq!(r.todo[1].1.as_ref().unwrap().hash, "zz");
        let charged = r.changed.iter().find(|s| s.index == 3).unwrap();
        assert_eq!((charged.sent, charged.inflight), (10, 0));
    }

    fn listed(n: &SegmentNaming, off: u64, len: u64, h: &str) -> ListEntry {
        ListEntry { name: n.name_at(off, len), hash: h.into(), bytes: len, last_modified: String::new() }
    }

    fn rec(off: u64, len: u64, md5: Option<&str>, state: SegState) -> SegmentRecord {
        SegmentRecord { md5: md5.map(Into::into), state, attempts: 1, ..SegmentRecord::at(off, len) }
    }

    const M: u64 = 1 << 20;

    fn cuts(r: &Reconciled) -> Vec<(u64, u64, bool)> {
        r.todo.iter().map(|(s, e)| (s.offset / M, s.length / M, e.is_some())).collect()
    }

    #[test]
    fn ranged_pieces_of_a_lost_journal_are_adopted_and_the_rest_cut_to_fit() {
        let n = SegmentNaming::new("c", "o", true, 0, 64 * M, "j0000000000000000").unwrap();
        // The journal knows one 64 MiB cut (rebuilt); the server holds seven 8 MiB pieces.
        let listing = (0..7).map(|k| listed(&n, k * 8 * M, 8 * M, "x")).collect();
        let r = reconcile(vec![rec(0, 64 * M, None, SegState::Pending)], listing, &n, true, &[]);
        let mut want: Vec<_> = (0..7).map(|k| (k * 8, 8, true)).collect();
        want.push((56, 8, false));
        assert_eq!(cuts(&r), want);
        assert!(r.removed.is_empty(), "the 64 MiB record's key is reused by the first piece");
        assert_eq!(r.changed.len(), 8);
    }

    #[test]
    fn ranged_a_parent_completed_unseen_replaces_its_pieces() {
        let n = SegmentNaming::new("c", "o", true, 0, 64 * M, "j0000000000000000").unwrap();
        let mut head = rec(0, 8 * M, None, SegState::Pending);
        head.sent = 5 * M;
        let journal = vec![head, rec(8 * M, 56 * M, None, SegState::Pending)];
        let listing = vec![listed(&n, 0, 64 * M, "p"), listed(&n, 0, 8 * M, "h")];
        let r = reconcile(journal, listing, &n, true, &[]);
        assert_eq!(cuts(&r), vec![(0, 64, true)]);
        assert_eq!(r.removed, vec![8 * M]);
        assert_eq!(r.todo[0].0.sent, 5 * M, "bytes sent for replaced records stay charged");
    }

    #[test]
    fn ranged_confirmed_cuts_stand_and_lost_ones_are_sent_again() {
        let n = SegmentNaming::new("c", "o", true, 0, 64 * M, "j0000000000000000").unwrap();
        let journal = vec![
            rec(0, 8 * M, Some("a"), SegState::Confirmed),
            rec(8 * M, 8 * M, Some("b"), SegState::Confirmed),
            rec(16 * M, 48 * M, Some("c"), SegState::Pending),
        ];
        // A whole 64 MiB piece must not displace confirmed cuts; 8+ is gone (lost);
        // 16+48 was PUT before a crash and is adopted without hashing.
        let listing = vec![listed(&n, 0, 64 * M, "p"), listed(&n, 0, 8 * M, "a"), listed(&n, 16 * M, 48 * M, "c")];
        let r = reconcile(journal, listing, &n, true, &[]);
        assert_eq!((r.lost.clone(), r.adopted.clone()), (vec![8 * M], vec![16 * M]));
        assert_eq!(cuts(&r), vec![(8, 8, false)]);
        assert!(r.removed.is_empty());
    }

    #[test]
    fn ranged_zero_segments_of_an_slo_have_no_object_and_zeros_stay_zeros() {
        let n = SegmentNaming::new("c", "o", true, 0, 64 * M, "j0000000000000000").unwrap();
        let zero = |off, len, state| SegmentRecord { kind: SegKind::Zero, state, ..SegmentRecord::at(off, len) };
        let journal = vec![
            rec(0, 8 * M, Some("a"), SegState::Confirmed),
            zero(8 * M, 24 * M, SegState::Confirmed),
            zero(32 * M, 32 * M, SegState::Pending),
        ];
        // An earlier run (without the hole map) left an 8 MiB data piece at 32 MiB.
        let listing = vec![listed(&n, 0, 8 * M, "a"), listed(&n, 32 * M, 8 * M, "d")];
        let r = reconcile(journal.clone(), listing.clone(), &n, false, &[]);
        assert!(r.lost.is_empty(), "an SLO zero segment is not looked for in the listing");
        assert_eq!(cuts(&r), vec![(32, 8, true), (40, 24, false)]);
        assert_eq!(
            (r.todo[0].0.kind, r.todo[1].0.kind),
            (SegKind::Data, SegKind::Zero),
            "the rest of a zero cut stays zeros"
        );
        // A DLO's zero segments are objects: a confirmed one missing from the listing is lost.
        let r = reconcile(journal, listing, &n, true, &[]);
        assert_eq!(r.lost, vec![8 * M]);
    }

    #[test]
    fn ranged_pieces_that_would_leave_a_sliver_are_not_taken() {
        let n = SegmentNaming::new("c", "o", true, 0, 64 * M, "j0000000000000000").unwrap();
        let listing = vec![listed(&n, 0, 64 * M - M / 2, "x"), listed(&n, 0, 100, "tiny")];
        let r = reconcile(vec![rec(0, 64 * M, None, SegState::Pending)], listing, &n, true, &[]);
        assert_eq!(cuts(&r), vec![(0, 64, false)]);
        // Pieces past the end of the file, or not whole, are ignored too.
        let mut short = listed(&n, 0, 8 * M, "x");
        short.bytes = 4 * M;
        let r = reconcile(
            vec![rec(0, 64 * M, None, SegState::Pending)],
            vec![listed(&n, 60 * M, 8 * M, "x"), short],
            &n,
            true,
            &[],
        );
        assert_eq!(cuts(&r), vec![(0, 64, false)]);
    }

    #[test]
    fn other_uploads_pieces_shape_the_cuts_but_are_never_adopted_in_place() {
        let n = SegmentNaming::new("c", "o", true, 0, 64 * M, "j0000000000000000").unwrap();
        let other = SegmentNaming::new("c", "o", true, 0, 64 * M, "j1111111111111111").unwrap();
        // A lost journal's run split its first 8 MiB into 1 MiB pieces.
        let foreign: Vec<ListEntry> = (0..8).map(|k| listed(&other, k * M, M, "x")).collect();
        let r = reconcile(vec![rec(0, 64 * M, None, SegState::Pending)], vec![], &n, true, &foreign);
        let c = cuts(&r);
        assert_eq!(&c[..8], &(0..8).map(|k| (k, 1, false)).collect::<Vec<_>>()[..], "{c:?}");
        assert!(r.adopted.is_empty());
        assert_eq!(c.last().map(|x| x.0 + x.1), Some(64), "the cuts still cover the file");
        // An own piece of the same length wins: adopted once hashed.
        let r =
            reconcile(vec![rec(0, 64 * M, None, SegState::Pending)], vec![listed(&n, 0, M, "y")], &n, true, &foreign);
        assert_eq!(cuts(&r)[0], (0, 1, true));
    }
}
