//! What the journal stores: one job record and one record per segment.
//! Secrets never appear here: credentials are read from the environment on every run.

use serde::{Deserialize, Serialize};

use crate::plan::{Limits, Plan};
use crate::source::FileIdentity;

/// Version of the record layout. A journal written with another version is refused
/// with a clear error instead of being misread.
pub const SCHEMA_VERSION: u16 = 1;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Segments are being (or remain to be) uploaded.
    Uploading,
    /// Every segment is confirmed; the manifest is being written and verified.
    Manifest,
    /// The manifest is written and verified: the object is complete.
    Done,
    /// Stopped on an error that needs the user (see `last_error`); `resume` retries.
    Failed,
}

impl Phase {
    /// Lower-case name, as shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Uploading => "uploading",
            Phase::Manifest => "manifest",
            Phase::Done => "done",
            Phase::Failed => "failed",
        }
    }
}

/// One upload job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Short, deterministic id (hex).
    pub id: String,
    /// When the job was created (seconds since the epoch).
    pub created_unix: u64,
    /// Canonical path of the source file.
    pub file: String,
    /// The source's identity when the job was created.
    pub identity: FileIdentity,
    /// A description of the credentials used (never the secret), e.g. `tempauth test:tester`.
    pub auth: String,
    /// The account's storage URL.
    pub storage_url: String,
    /// Target container.
    pub container: String,
    /// Target object.
    pub object: String,
    /// Container of the segments.
    pub segment_container: String,
    /// Prefix of every segment name.
    pub segment_prefix: String,
    /// The plan: segment size, count, manifest kind.
    pub plan: Plan,
    /// The server limits the plan was made for.
    pub limits: Limits,
    /// Current phase.
    pub phase: Phase,
    /// The verified ETag of the finished object.
    pub manifest_etag: Option<String>,
    /// Bytes put on the wire for this job other than segment bodies (manifests).
    pub bytes_sent_other: u64,
    /// The last error that stopped a run.
    pub last_error: Option<String>,
    /// How many runs (upload or resume) have worked on this job.
    pub runs: u32,
}

/// A segment's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SegState {
    /// Not (known to be) on the server.
    Pending,
    /// On the server with the journaled MD5 and length, and durably journaled so.
    Confirmed,
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
}
