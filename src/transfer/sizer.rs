//! How large a segment the link can carry: the rule that splits segments on a link
//! that keeps dropping. Pure: fed with byte counts and link events, unit-tested.
//!
//! Swift cannot append, so a segment whose PUT is cut by an outage is sent again
//! whole: a segment must fit between two outages. Until the link first breaks, no
//! segment is started that its stream would need more than [`HORIZON_SECS`] to send
//! at the rate seen so far (at least [`crate::plan::RAMP_START`]): on a slow link
//! the first outage, when it comes, cuts off little, while on a fast one the plan's
//! cuts stand and nothing is hashed twice. (For a DLO the plan's cuts stand until
//! then: every DLO segment costs a second on every read.) When the link breaks, the bytes each stream carried since it last came
//! back tell what an up-period holds; from then on a segment is started at no more
//! than 1/[`SHARE`] of that, so most of an up-period ends in confirmed segments and
//! an outage wastes on average 1/(2 × SHARE) of it. While the link stays up, the
//! stretch it has carried grows, and with it the size, back to the plan's.

use std::sync::Mutex;

use crate::plan::{MIN_SEGMENT_SIZE, RAMP_START};

/// A segment started after an outage is at most 1/SHARE of what one stream carried
/// in the last unbroken stretch.
pub(crate) const SHARE: u64 = 8;

/// Before the first outage, a segment is at most what its stream sends in this many
/// seconds at the rate seen so far.
pub(crate) const HORIZON_SECS: f64 = 10.0;

const MIB: u64 = 1 << 20;

/// The link's recent behaviour, shared by every segment task.
#[derive(Debug)]
pub(crate) struct Sizer {
    floor: u64,
    enabled: bool,
    slow_start: bool,
    st: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// The link answered since the last transport failure.
    up: bool,
    /// Bytes sent (the run's counter) when the link last came back.
    up_at: u64,
    /// The size set by the last outage (`None`: the link never broke).
    after_outage: Option<u64>,
}

impl Sizer {
    /// A sizer whose smallest segment is `floor` (at least 1 MiB); `enabled` is false
    /// for jobs whose segments cannot split (index-named jobs of k5up 0.1);
    /// `slow_start` limits segments before the first outage too (SLO, not DLO).
    pub(crate) fn new(floor: u64, enabled: bool, slow_start: bool) -> Self {
        let floor = floor.max(MIN_SEGMENT_SIZE).div_ceil(MIB) * MIB;
        Sizer { floor, enabled, slow_start, st: Mutex::new(State { up: true, up_at: 0, after_outage: None }) }
    }

    /// The largest segment to start now (`None`: no limit), given the run's bytes
    /// sent so far, the streams in flight and the seconds since the run began.
    pub(crate) fn target(&self, sent: u64, streams: u64, secs: f64) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        let st = *self.st.lock().unwrap_or_else(|e| e.into_inner());
        let Some(base) = st.after_outage else {
            let rate = sent as f64 / streams.max(1) as f64 / secs.max(1.0);
            let size = ((rate * HORIZON_SECS) as u64 / MIB * MIB).max(RAMP_START).max(self.floor);
            return self.slow_start.then_some(size);
        };
        let grown = if st.up { self.size_for(sent.saturating_sub(st.up_at), streams) } else { 0 };
        Some(base.max(grown))
    }

    /// The size to cut `len` bytes down to now, if it should be cut: the head must
    /// be smaller than `len` by at least the floor, so the rest is a segment too.
    pub(crate) fn cut(&self, len: u64, sent: u64, streams: u64, secs: f64) -> Option<u64> {
        let t = self.target(sent, streams, secs)?;
        (len >= t.saturating_add(self.floor)).then_some(t)
    }

    /// A transport failure (reset, refused, timeout, stall): the first one after the
    /// link was up marks an outage, sized by what the link carried since it came back.
    /// Returns true for that first one.
    pub(crate) fn broke(&self, sent: u64, streams: u64) -> bool {
        let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        if !st.up {
            return false;
        }
        st.up = false;
        st.after_outage = Some(self.size_for(sent.saturating_sub(st.up_at), streams));
        true
    }

    /// True once the link has broken during this run (an outage sized the segments);
    /// before that, segments are cut by the slow start only.
    pub(crate) fn after_outage(&self) -> bool {
        self.st.lock().unwrap_or_else(|e| e.into_inner()).after_outage.is_some()
    }

    /// The server answered: the link is up (again).
    pub(crate) fn answered(&self, sent: u64) {
        let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        if !st.up {
            st.up = true;
            st.up_at = sent;
        }
    }

    fn size_for(&self, stretch: u64, streams: u64) -> u64 {
        let per_stream = stretch / streams.max(1);
        (per_stream / SHARE / MIB * MIB).max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_any_outage_a_slow_start_or_the_plan() {
        let s = Sizer::new(MIB, true, true);
        // What a stream sends in 10 s at the rate seen so far, at least 8 MiB.
        assert_eq!(s.target(0, 4, 0.0), Some(8 * MIB));
        // 4 streams, 120 MiB in 30 s: 1 MiB/s each → 10 MiB.
        assert_eq!(s.target(120 * MIB, 4, 30.0), Some(10 * MIB));
        assert_eq!(s.cut(32 * MIB, 120 * MIB, 4, 30.0), Some(10 * MIB));
        assert_eq!(s.cut(256 * MIB, 400 * MIB, 4, 1.0), None, "a fast link keeps the plan's cuts");
        assert!(!s.after_outage(), "no outage yet: a cut now is the slow start's");
        // A DLO keeps the plan's cuts until the link breaks; a k5up 0.1 job always.
        assert_eq!(Sizer::new(MIB, true, false).target(0, 4, 1.0), None);
        assert_eq!(Sizer::new(MIB, false, true).target(0, 1, 1.0), None);
    }

    #[test]
    fn an_outage_sizes_segments_by_what_a_stream_carried() {
        let s = Sizer::new(MIB, true, true);
        // Up for a while: 4 streams carried 160 MiB together, 40 MiB each → 5 MiB.
        assert!(s.broke(160 * MIB, 4));
        assert!(!s.broke(170 * MIB, 4), "the other streams failing is the same outage");
        assert!(s.after_outage());
        assert_eq!(s.target(170 * MIB, 2, 1.0), Some(5 * MIB));
        assert_eq!(s.cut(256 * MIB, 170 * MIB, 2, 1.0), Some(5 * MIB));
        assert_eq!(s.cut(5 * MIB, 170 * MIB, 2, 1.0), None, "fits already");
        assert_eq!(s.cut(6 * MIB - 1, 170 * MIB, 2, 1.0), None, "the rest would be under the floor");
        // Back up: the size grows as the link carries more without breaking...
        s.answered(200 * MIB);
        assert_eq!(s.target(200 * MIB + 40 * MIB, 2, 1.0), Some(5 * MIB));
        assert_eq!(s.target(200 * MIB + 160 * MIB, 2, 1.0), Some(10 * MIB));
        assert_eq!(s.target(200 * MIB + (4 << 30), 2, 1.0), Some(256 * MIB), "back to the plan's size");
        // ...and a short up-period shrinks it to the floor.
        assert!(s.broke(200 * MIB + 3 * MIB, 2));
        assert_eq!(s.target(0, 2, 1.0), Some(MIB));
    }

    #[test]
    fn the_floor_holds() {
        let s = Sizer::new(3 * MIB + 1, true, true);
        assert!(s.broke(0, 8));
        assert_eq!(s.target(0, 8, 1.0), Some(4 * MIB), "whole MiB, at least the floor");
        assert_eq!(Sizer::new(0, true, true).floor, MIN_SEGMENT_SIZE);
    }
}
