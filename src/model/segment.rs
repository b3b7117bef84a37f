//! A job's ranges: segment records (state, kind), the segments of `--base`, and
//! the objects a job replaces.

use serde::{Deserialize, Serialize};

/// A segment's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SegState {
    /// Not (known to be) on the server.
    Pending,
    /// On the server with the journaled MD5 and length, and durably journaled so.
    Confirmed,
}

/// What a segment's bytes are, and so how they reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SegKind {
    /// Bytes of the file, sent by a PUT.
    #[default]
    Data,
    /// Zeros (a hole, or a run of zero MiB blocks found while hashing): never sent.
    /// In an SLO the manifest points at the job's zero object with a `range`; in a
    /// DLO the segment is made on the server by a copy.
    Zero,
    /// The same bytes (MD5 and length) as the confirmed data segment at offset `of`
    /// of this job: never sent. An SLO's manifest lists that segment again; a DLO
    /// copies it on the server.
    Repeat {
        /// The original's offset (its journal key).
        of: u64,
    },
    /// The bytes of a segment of the base (`--base`), copied on the server into
    /// this segment's own object: not sent.
    Copied,
}

/// A segment of the object given as `--base` (the previous version of an image):
/// where its bytes are, for server-side copies of unchanged segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseSegment {
    /// Offset in the base object.
    pub offset: u64,
    /// Length.
    pub length: u64,
    /// MD5 (hex), `None` when the base lists only part of the segment (a range).
    pub md5: Option<String>,
    /// Container of the segment object.
    pub container: String,
    /// Its name.
    pub name: String,
}

/// An object this job replaces (`--replace`): the segments of the job that
/// uploaded it. They stay whole, so the old object stays readable, until this job's
/// manifest is written and verified; then this job deletes them (exactly their
/// names). Kept as JSON beside `birth.json` (`replaces.json`), outside the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    /// The job that uploaded it (its journal entry is gone).
    pub job: String,
    /// Its container and object (the same as this job's).
    pub target: String,
    /// Its segment container.
    pub segment_container: String,
    /// Its segment prefix.
    pub segment_prefix: String,
}

/// One segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// Index (0-based).
    pub index: u64,
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// MD5 (hex) of the range, once hashed.
    pub md5: Option<String>,
    /// Pending or confirmed.
    pub state: SegState,
    /// PUT attempts, all runs included.
    pub attempts: u32,
    /// Bytes of this segment put on the wire, all attempts and runs included.
    pub sent: u64,
    /// Bytes of a PUT that was started and not yet accounted in `bytes_sent`: if the
    /// process dies mid-PUT they are charged in full on the next open (an upper bound).
    pub inflight: u64,
    /// Bytes of the file, or zeros.
    pub kind: SegKind,
}

impl SegmentRecord {
    /// A pending segment of `length` bytes at `offset`, keyed `index`.
    pub fn new(index: u64, offset: u64, length: u64, kind: SegKind) -> Self {
        SegmentRecord {
            index,
            offset,
            length,
            md5: None,
            state: SegState::Pending,
            attempts: 0,
            sent: 0,
            inflight: 0,
            kind,
        }
    }

    /// A pending data segment whose journal key is its offset (ranged names).
    pub fn at(offset: u64, length: u64) -> Self {
        Self::new(offset, offset, length, SegKind::Data)
    }

    /// True for zeros that are never sent.
    pub fn is_zero(&self) -> bool {
        self.kind == SegKind::Zero
    }

    /// The original of a repeated segment.
    pub fn repeat_of(&self) -> Option<u64> {
        match self.kind {
            SegKind::Repeat { of } => Some(of),
            _ => None,
        }
    }

    /// True for zeros and repeats: made from other objects, without an object of
    /// their own in an SLO.
    pub fn is_made(&self) -> bool {
        matches!(self.kind, SegKind::Zero | SegKind::Repeat { .. })
    }

    /// True when the segment has an object of its own holding its bytes: data sent
    /// or adopted, or copied from the base.
    pub fn holds_bytes(&self) -> bool {
        matches!(self.kind, SegKind::Data | SegKind::Copied)
    }
}
