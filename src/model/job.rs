//! The job record: what moves where, its plan, its phase; the run's tunables; paths
//! as the journal keeps them.

use serde::{Deserialize, Serialize};

use super::{FileIdentity, ImportSpec};
use crate::digest::Algo;
use crate::plan::Plan;
use crate::swift::Limits;

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
    /// The object is complete; the image import runs (or remains to be run).
    Importing,
    /// The image is imported; it is being shared with other projects (or remains to be).
    Sharing,
}

impl Phase {
    /// Lower-case name, as shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Uploading => "uploading",
            Phase::Manifest => "manifest",
            Phase::Done => "done",
            Phase::Failed => "failed",
            Phase::Importing => "importing",
            Phase::Sharing => "sharing",
        }
    }
}

/// Which way a job moves the bytes. Serialized `upload` / `download` (JSON); bincode
/// stores the variant's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From a local file to an object: `file` is the source, `container`/`object`
    /// the target. Every job made before directions existed is one.
    #[default]
    Upload,
    /// From an object to a local file: `container`/`object` are the source, `file`
    /// is the target file.
    Download,
}

/// One transfer job: an upload (the usual case) or a download, as `direction` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Short, deterministic id (hex).
    pub id: String,
    /// When the job was created (seconds since the epoch).
    pub created_unix: u64,
    /// Canonical path of the local file, as [`path_record`] writes it (the path
    /// itself when it is UTF-8); [`JobRecord::file_path`] gives it back byte for byte.
    /// The source of an upload; the target of a download.
    pub file: String,
    /// The source's identity when the job was created (an upload's file).
    pub identity: FileIdentity,
    /// A description of the credentials used (never the secret), e.g. `tempauth test:tester`.
    pub auth: String,
    /// The account's storage URL.
    pub storage_url: String,
    /// The object's container: the target of an upload, the source of a download.
    pub container: String,
    /// The object: the target of an upload, the source of a download.
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
    /// Whole-image digests computed while hashing (those the import needs, and `--digest`).
    ///
    /// The defaults serve `birth.json` (JSON: a birth record of schema 1 has neither
    /// field). bincode ignores them: the sled records say their layout by their schema
    /// version (`journal::codec::SCHEMA_VERSION`), and an older layout is decoded as such.
    #[serde(default)]
    pub digests: Vec<Algo>,
    /// The image import to run once the object is complete.
    #[serde(default)]
    pub import: Option<ImportSpec>,
    /// Upload or download. The last field: a bincode job record of schema 4 or older
    /// lacks it and is read as an upload (`journal::codec`); so is a `birth.json`
    /// without it (`#[serde(default)]`).
    #[serde(default)]
    pub direction: Direction,
}

/// The tunables of a job's last run, so that `resume` keeps them (`--bwlimit` was
/// forgotten); flags typed on a later run override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Segments in flight at once.
    pub concurrency: u32,
    /// A PUT without progress for this long (milliseconds) is abandoned.
    pub stall_timeout_ms: u64,
    /// Bytes per second for all bodies together; `None`: no limit.
    pub bwlimit: Option<u64>,
}

/// A path as the journal keeps it: the path itself when it is UTF-8 (every canonical
/// path starts with `/`), else `%` then the path with `%` and each byte that is not
/// UTF-8 written `%XX`. Lossless, and readable in messages.
pub(crate) fn path_record(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    if let Some(s) = path.to_str()
        && !s.starts_with('%')
    {
        return s.to_string();
    }
    let mut out = String::from("%");
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '%' => out.push_str("%25"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path that [`path_record`] wrote `record` for.
pub(crate) fn record_path(record: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let Some(rest) = record.strip_prefix('%') else { return record.into() };
    let (b, mut out, mut i) = (rest.as_bytes(), Vec::with_capacity(rest.len()), 0);
    while i < b.len() {
        let hex = (b[i] == b'%').then(|| rest.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out).into()
}

impl JobRecord {
    /// The source file's path, byte for byte.
    pub fn file_path(&self) -> std::path::PathBuf {
        record_path(&self.file)
    }
}
