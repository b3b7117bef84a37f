//! Repeated segments: a segment with the MD5 and length of a data segment of the
//! same job that the server already holds is not sent. An SLO lists the original
//! again; a DLO copies it on the server. Only confirmed originals count (never one
//! still in flight, which an outage could split), and only of this job: a segment
//! shared by two images would be deleted with either (`swift delete`).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::journal::{SegState, SegmentRecord};

/// The job's confirmed data segments, by (MD5, length): the lowest offset.
#[derive(Debug, Default)]
pub(crate) struct Originals(Mutex<HashMap<(String, u64), u64>>);

impl Originals {
    /// From the journal's records.
    pub(crate) fn new(segs: &[SegmentRecord]) -> Self {
        let o = Originals::default();
        segs.iter().for_each(|s| o.add(s));
        o
    }

    /// Registers `s` if it is a confirmed segment holding its bytes, with a known MD5.
    pub(crate) fn add(&self, s: &SegmentRecord) {
        let (true, SegState::Confirmed, Some(md5)) = (s.holds_bytes(), s.state, &s.md5) else { return };
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = m.entry((md5.clone(), s.length)).or_insert(s.offset);
        *at = (*at).min(s.offset);
    }

    /// The offset of a confirmed data segment other than the one at `offset` with
    /// the same MD5 and length.
    pub(crate) fn find(&self, md5: &str, length: u64, offset: u64) -> Option<u64> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&(md5.to_string(), length)).copied().filter(|&o| o != offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::journal::SegKind;

    #[test]
    fn only_confirmed_data_segments_are_originals() {
        let rec = |off: u64, md5: &str, state, kind| SegmentRecord {
            md5: Some(md5.into()),
            state,
            kind,
            ..SegmentRecord::at(off, 8)
        };
        let o = Originals::new(&[
            rec(16, "a", SegState::Confirmed, SegKind::Data),
            rec(8, "a", SegState::Confirmed, SegKind::Data),
            rec(24, "b", SegState::Pending, SegKind::Data),
            rec(32, "c", SegState::Confirmed, SegKind::Repeat { of: 0 }),
        ]);
        assert_eq!(o.find("a", 8, 40), Some(8), "the lowest offset");
        assert_eq!(o.find("a", 8, 8), None, "not itself");
        assert_eq!(o.find("a", 9, 40), None, "same MD5, other length");
        assert_eq!(o.find("b", 8, 40), None, "pending: may still be split");
        assert_eq!(o.find("c", 8, 40), None, "a repeat is no original");
    }
}
