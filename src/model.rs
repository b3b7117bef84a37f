//! The records of a job: what the journal stores (one job record, one record per
//! segment, the import's state, the run's tunables) and what the image import is
//! asked to do. A leaf module: the journal stores these, the import reads and
//! reports them, and neither knows the other. Secrets never appear here:
//! credentials are read from the environment on every run.

use serde::{Deserialize, Serialize};

use crate::digest::Algo;
use crate::plan::Plan;
use crate::source::FileIdentity;
use crate::swift::Limits;

/// Which image service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportKind {
    /// Fujitsu K5 vmimport.
    K5,
    /// OpenStack Glance (image v2, web-download).
    Glance,
}

impl ImportKind {
    /// `k5` or `glance`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::K5 => "k5",
            ImportKind::Glance => "glance",
        }
    }

    /// The whole-image digests this import needs: SHA-1 for K5's `checksum`,
    /// SHA-512 to check Glance's `os_hash_value`.
    pub fn digests(self) -> &'static [Algo] {
        match self {
            ImportKind::K5 => &[Algo::Sha1],
            ImportKind::Glance => &[Algo::Sha512],
        }
    }
}

/// What to import, as journaled with the job (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSpec {
    /// The service.
    pub kind: ImportKind,
    /// The image's name.
    pub image_name: String,
    /// K5's `os_type`.
    pub os_type: Option<String>,
    /// Glance's `disk_format` (detected from the file unless given).
    pub disk_format: String,
    /// Minimum RAM (MB).
    pub min_ram: Option<u64>,
    /// Minimum disk (GB).
    pub min_disk: Option<u64>,
    /// `--vmimport-url` / `--glance-url`; `None`: from the K5 profile or the catalog.
    pub endpoint: Option<String>,
    /// K5 regions that convert images need `conversion`, `user_name`, `password`, `domain_name`.
    pub k5_conversion: bool,
    /// Allow the password to vmimport over plain http to a loopback address (tests).
    pub allow_http_password: bool,
}

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

/// One upload job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Short, deterministic id (hex).
    pub id: String,
    /// When the job was created (seconds since the epoch).
    pub created_unix: u64,
    /// Canonical path of the source file, as [`path_record`] writes it (the path
    /// itself when it is UTF-8); [`JobRecord::file_path`] gives it back byte for byte.
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
}

/// Where an import stands on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportOutcome {
    /// Requested (or about to be); not finished.
    Running,
    /// The image is registered and verified.
    Succeeded,
    /// The service reported a failure (see `message`).
    Failed,
}

/// The journaled state of the image import. Its ids are derived from the job and
/// the attempt number, so a crash between the request and this record cannot
/// lead to a second import: the next run finds the first one by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportState {
    /// K5 vmimport or Glance.
    pub kind: ImportKind,
    /// 1 for the first import of this job; a new attempt after a failure adds one.
    pub attempt: u32,
    /// The image id (asked for by k5up, so known before the request).
    pub image_id: String,
    /// K5's `import_id`, once the request was accepted.
    pub import_id: Option<String>,
    /// The last status the service reported.
    pub status: String,
    /// The last progress (percent) the service reported.
    pub progress: Option<u8>,
    /// Running, succeeded or failed.
    pub outcome: ImportOutcome,
    /// The service's failure message.
    pub message: Option<String>,
}

/// A project the image is to be shared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareTarget {
    /// The Keystone project id (what Glance's member list holds).
    pub id: String,
    /// The name the user gave, when a name was resolved to `id`.
    pub name: Option<String>,
}

impl ShareTarget {
    /// `name (id)`, or the id alone.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.id),
            None => self.id.clone(),
        }
    }
}

/// The journaled sharing step: which projects, and what Glance said. Every step is
/// idempotent on the server (the visibility is set, not toggled; a member added
/// twice is a 409), so a run killed at any point continues from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareState {
    /// The projects, as resolved before anything was uploaded (ids), in order.
    pub targets: Vec<ShareTarget>,
    /// `--glance-url` given for the sharing (a K5 import's image is in the region's Glance).
    pub glance_url: Option<String>,
    /// The image shared, once the sharing started.
    pub image_id: Option<String>,
    /// The image's visibility as last seen (after k5up set it).
    pub visibility: Option<String>,
    /// Project id → member status (`pending`, `accepted`, `rejected`), as Glance
    /// last reported it.
    pub members: Vec<(String, String)>,
    /// Every target is a member and its status was read back.
    pub done: bool,
    /// Why the last sharing run stopped, in Glance's words.
    pub message: Option<String>,
}

impl ShareState {
    /// A new request for `targets`.
    pub fn new(targets: Vec<ShareTarget>, glance_url: Option<String>) -> Self {
        ShareState {
            targets,
            glance_url,
            image_id: None,
            visibility: None,
            members: vec![],
            done: false,
            message: None,
        }
    }

    /// Asks for `more` (again): the step runs again, and adds each of them anew (a
    /// member Glance holds already answers 409; one removed since is added back).
    pub fn ask(&mut self, more: &[ShareTarget], glance_url: Option<String>) {
        for t in more {
            match self.targets.iter_mut().find(|x| x.id == t.id) {
                Some(x) => x.name = x.name.take().or_else(|| t.name.clone()),
                None => self.targets.push(t.clone()),
            }
            self.members.retain(|(p, _)| p != &t.id);
        }
        if glance_url.is_some() {
            self.glance_url = glance_url;
        }
        self.done = false;
        self.message = None;
    }

    /// The member status of project `id`, as last reported.
    pub fn status_of(&self, id: &str) -> Option<&str> {
        self.members.iter().find(|(p, _)| p == id).map(|(_, s)| s.as_str())
    }

    /// Records the member status of project `id`.
    pub fn set_status(&mut self, id: &str, status: &str) {
        match self.members.iter_mut().find(|(p, _)| p == id) {
            Some(m) => m.1 = status.to_string(),
            None => self.members.push((id.to_string(), status.to_string())),
        }
    }
}

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

/// What identifies the source besides [`FileIdentity`](crate::source::FileIdentity):
/// its inode change time, which no user can set back (a file rewritten in place
/// with its size and mtime restored still moves it). Kept as JSON beside
/// `birth.json` (`source.json`); `None` when unknown (a job of an older k5up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourceStamp {
    /// ctime, nanoseconds since the epoch.
    pub ctime_ns: Option<i128>,
    /// Device and inode the stamp was read from.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
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
pub fn path_record(path: &std::path::Path) -> String {
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
pub fn record_path(record: &str) -> std::path::PathBuf {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, name: Option<&str>) -> ShareTarget {
        ShareTarget { id: id.into(), name: name.map(str::to_string) }
    }

    #[test]
    fn asking_again_reruns_the_step_and_re_adds_only_those_asked() {
        let mut s = ShareState::new(vec![t("a", None), t("b", Some("bee"))], None);
        s.set_status("a", "accepted");
        s.set_status("b", "pending");
        s.done = true;
        s.ask(&[t("b", None), t("c", Some("sea"))], Some("http://g".into()));
        assert!(!s.done);
        assert_eq!(s.targets.iter().map(|x| x.describe()).collect::<Vec<_>>(), ["a", "bee (b)", "sea (c)"]);
        assert_eq!((s.status_of("a"), s.status_of("b"), s.status_of("c")), (Some("accepted"), None, None));
        assert_eq!(s.glance_url.as_deref(), Some("http://g"));
        s.set_status("b", "pending");
        s.set_status("b", "accepted");
        assert_eq!(s.members.len(), 2);
    }
}

/// Fixtures for unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::plan::ManifestKind;

    pub(crate) fn sample_job(id: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            created_unix: 1,
            file: "/tmp/x".into(),
            identity: FileIdentity { size: 10, mtime_ns: -5, dev: 1, ino: 2, fingerprint: "ab".into() },
            auth: "tempauth test:tester".into(),
            storage_url: "http://127.0.0.1:8080/v1/AUTH_test".into(),
            container: "c".into(),
            object: "o".into(),
            segment_container: "c_segments".into(),
            segment_prefix: "o/slo/".into(),
            plan: Plan {
                file_size: 10,
                segment_size: 4,
                segment_count: 3,
                manifest: ManifestKind::Slo,
                per_manifest: 1000,
            },
            limits: Limits::swift_defaults(),
            phase: Phase::Uploading,
            manifest_etag: None,
            bytes_sent_other: 0,
            last_error: None,
            runs: 1,
            digests: vec![],
            import: None,
        }
    }

    #[test]
    fn path_records_are_lossless_and_keep_utf8_paths_as_they_are() {
        use std::os::unix::ffi::OsStrExt;
        for raw in [&b"/tmp/disk.img"[..], b"/tmp/b\xffad.img", b"/tmp/50%.img", b"%odd", b"/\xc3(%ff)"] {
            let p = std::path::Path::new(std::ffi::OsStr::from_bytes(raw));
            let r = path_record(p);
            assert_eq!(record_path(&r), p, "{r}");
            if raw[0] == b'/' && std::str::from_utf8(raw).is_ok() {
                assert_eq!(r.as_bytes(), raw, "a UTF-8 path is kept as it is");
            }
        }
        assert_eq!(path_record(std::path::Path::new(std::ffi::OsStr::from_bytes(b"/tmp/b\xffad"))), "%/tmp/b%FFad");
    }
}
