//! The records on disk: sled opened (waiting for its own lock), its errors in the
//! user's words, and bincode records behind a schema version.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

/// Version of the record layout. A journal written with another version is refused
/// with a clear error instead of being misread.
///
/// 2: whole-image digests and the image import (a schema-1 journal is rebuilt from
/// its `birth.json`, adopting what the server holds).
/// 3: segment records say their kind (data or zeros). Schema-2 records are read as
/// data segments; every other record kept its layout.
/// 4: the `sharing` phase and the sharing record (new key). Older records keep
/// their layout and read as they were; an older k5up refuses a schema-4 journal
/// instead of misreading a phase it does not know.
/// 5: the job record says its direction (upload or download), as its last field.
/// Job records of schemas 2 to 4 read as uploads (`decode_job`); every other
/// record kept its layout.
pub(crate) const SCHEMA_VERSION: u16 = 5;

/// The first schema whose job records hold their direction.
const DIRECTION_SINCE: u16 = 5;

/// The oldest schema this version reads.
const OLDEST_READ: u16 = 2;

pub(super) fn sled_open(path: &Path, id: &str) -> Result<sled::Db> {
    wait_for_sled_lock(path);
    sled::Config::new().path(path).flush_every_ms(Some(500)).open().map_err(|e| sled_err(id, path, e))
}

/// Our job lock keeps other processes out, so sled's own lock (a `flock` on `db`)
/// can only be held by a handle this process just dropped: sled releases it from a
/// background thread a moment later. Wait (up to 10 s) until the lock is free, by
/// taking and releasing it ourselves: sled reports a held lock only as text, which
/// is never matched.
pub(super) fn wait_for_sled_lock(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Ok(f) = File::open(path.join("db")) {
        match f.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => return, // free (released when `f` closes), or not lockable: sled will say
        }
    }
}

/// sled's error, kept whole underneath the journal's errors. Its I/O error is its
/// source (sled's own `Error` names none), so the library error finds its kind and
/// OS error by value.
#[derive(Debug)]
pub(super) struct SledError(sled::Error);

impl fmt::Display for SledError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SledError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            sled::Error::Io(io) => Some(io),
            _ => None,
        }
    }
}

/// The error of a sled operation on the database at `db` of job `id`.
pub(super) fn sled_err(id: &str, db: &Path, e: sled::Error) -> Error {
    classify(id, e, || probe(db))
}

/// `e` in the user's words, classified by its value: sled's variant, and for an I/O
/// error its OS error number (see [`os_error`]; `probe` asks the database's files).
fn classify(id: &str, e: sled::Error, probe: impl FnOnce() -> Option<io::Error>) -> Error {
    match e {
        // Only bad content is damage; sled's own text (file offsets, backtraces) is not
        // the user's business.
        e @ sled::Error::Corruption { .. } => damaged_by(id, "its data fails sled's checksums", SledError(e)),
        // What sled says of files it cannot make sense of ("created using a sled version
        // earlier than 0.29", internal inconsistencies): their content, not their access.
        e @ (sled::Error::Unsupported(_) | sled::Error::ReportableBug(_)) => {
            damaged_by(id, "its files are not a database sled can read", SledError(e))
        }
        sled::Error::Io(io) if matches!(io.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData) => {
            damaged_by(id, "a file of its database is cut short", SledError(sled::Error::Io(io)))
        }
        sled::Error::Io(io) => {
            let io = os_error(io, probe);
            let full = io.kind() == io::ErrorKind::StorageFull;
            let err = Error::io_within(format!("cannot use the journal of job {id}"), SledError(sled::Error::Io(io)));
            if full {
                err.hint(format!(
                    "free space on the file system holding the journal (--journal / K5UP_JOURNAL), then `k5up resume {id}`"
                ))
            } else {
                err
            }
        }
        other => Error::failed(format!("journal of job {id}: {other}")).caused_by(SledError(other)),
    }
}

/// The OS's own error for an I/O error of sled. sled 0.34 keeps the OS error number
/// only until it clones the error (it often does): the clone keeps the kind and
/// sled's text. Then the number is had again without reading that text: from a
/// probe of our own on the same files (which fails the same way when the process is
/// out of file descriptors, EMFILE, whose kind is uncategorised, or has no
/// permission), else from the kind when only one OS error has it (ENOSPC for a full
/// disk). Failing that, the kind is all there is.
fn os_error(io: io::Error, probe: impl FnOnce() -> Option<io::Error>) -> io::Error {
    if io.raw_os_error().is_some() {
        return io;
    }
    if let Some(own) = probe().filter(|p| p.kind() == io.kind()) {
        return own;
    }
    match only_errno_of(io.kind()) {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io,
    }
}

/// The OS error number that is the only one of its kind (Linux, as the standard
/// library decodes them), for the kinds a file system gives.
fn only_errno_of(kind: io::ErrorKind) -> Option<i32> {
    use io::ErrorKind as K;
    Some(match kind {
        K::StorageFull => libc::ENOSPC,
        K::QuotaExceeded => libc::EDQUOT,
        K::ReadOnlyFilesystem => libc::EROFS,
        K::NotFound => libc::ENOENT,
        K::AlreadyExists => libc::EEXIST,
        K::IsADirectory => libc::EISDIR,
        K::NotADirectory => libc::ENOTDIR,
        K::DirectoryNotEmpty => libc::ENOTEMPTY,
        K::FileTooLarge => libc::EFBIG,
        K::TooManyLinks => libc::EMLINK,
        _ => return None,
    })
}

/// An OS error of our own at the database `db`: its directory and files opened as
/// sled opens them (read and write). `None` when they open, or fail without an OS
/// error number.
fn probe(db: &Path) -> Option<io::Error> {
    let os = |r: io::Result<File>| r.err().filter(|e| e.raw_os_error().is_some());
    os(File::open(db))
        .or_else(|| ["conf", "db"].iter().find_map(|f| os(File::options().read(true).write(true).open(db.join(f)))))
}

/// A damaged journal of job `id`, and what the next run does about it.
pub(super) fn damaged(id: &str, why: &str) -> Error {
    Error::damaged(format!("the journal of job {id} is damaged: {why}")).hint(damage_hint(id))
}

/// [`damaged`], with what found the damage underneath.
fn damaged_by(id: &str, why: &str, cause: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::damaged_by(format!("the journal of job {id} is damaged: {why}"), cause).hint(damage_hint(id))
}

fn damage_hint(id: &str) -> String {
    format!(
        "`k5up resume {id}` (or the same `k5up upload` command) sets it aside and rebuilds it from the job's birth record; segments already on the server are adopted, not sent again"
    )
}

pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut out = SCHEMA_VERSION.to_be_bytes().to_vec();
    let body = bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| Error::failed(format!("cannot encode journal record: {e}")).caused_by(e))?;
    out.extend_from_slice(&body);
    Ok(out)
}

pub(super) fn decode<T: DeserializeOwned>(id: &str, bytes: &[u8]) -> Result<T> {
    decode_versioned(id, bytes).map(|(_, r)| r)
}

/// A job record, of this schema or an older one. A job record of schema 2 to 4 is
/// one of today's without `direction`, its last field: it is decoded with the
/// encoding of the default direction (upload) appended, which is what this schema
/// writes for an upload.
pub(super) fn decode_job(id: &str, bytes: &[u8]) -> Result<crate::model::JobRecord> {
    match bytes {
        [hi, lo, ..] if (OLDEST_READ..DIRECTION_SINCE).contains(&u16::from_be_bytes([*hi, *lo])) => {
            let mut upgraded = bytes.to_vec();
            upgraded.extend(encode(&crate::model::Direction::default())?.split_off(2));
            decode(id, &upgraded)
        }
        _ => decode(id, bytes),
    }
}

/// A segment record of schema 2: the same fields, without the kind.
#[derive(serde::Deserialize)]
struct SegmentV2 {
    index: u64,
    offset: u64,
    length: u64,
    md5: Option<String>,
    state: crate::model::SegState,
    attempts: u32,
    sent: u64,
    inflight: u64,
}

/// A segment record, of this schema or the one before.
pub(super) fn decode_segment(id: &str, bytes: &[u8]) -> Result<crate::model::SegmentRecord> {
    if bytes.len() >= 2 && u16::from_be_bytes([bytes[0], bytes[1]]) == 2 {
        let (_, v): (u16, SegmentV2) = decode_versioned(id, bytes)?;
        let SegmentV2 { index, offset, length, md5, state, attempts, sent, inflight } = v;
        let kind = crate::model::SegKind::Data;
        return Ok(crate::model::SegmentRecord { index, offset, length, md5, state, attempts, sent, inflight, kind });
    }
    decode(id, bytes)
}

fn decode_versioned<T: DeserializeOwned>(id: &str, bytes: &[u8]) -> Result<(u16, T)> {
    if bytes.len() < 2 {
        return Err(damaged(id, "a record is cut short"));
    }
    let v = u16::from_be_bytes([bytes[0], bytes[1]]);
    if !(OLDEST_READ..=SCHEMA_VERSION).contains(&v) {
        // Rebuilt like a damaged one: the birth record (JSON) and the server say it all.
        return Err(Error::damaged(format!(
            "the journal of job {id} was written with record schema {v}; this k5up reads schema {SCHEMA_VERSION}"
        ))
        .hint(format!("`k5up resume {id}` rebuilds the journal from the job's birth record (segments on the server are adopted, not sent again), or use the k5up version that created it")));
    }
    let (rec, _) = bincode::serde::decode_from_slice(&bytes[2..], bincode::config::standard())
        .map_err(|e| damaged_by(id, "a record does not decode", e))?;
    Ok((v, rec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::model::tests_support::sample_job;
    use crate::model::{Direction, JobRecord, SegKind, SegState, SegmentRecord};

    /// `sample_job("v4")` as k5up 8ee015d (schema 4, before directions) encodes it.
    const SCHEMA_4_JOB: &str = concat!(
        "000402763401062f746d702f780a0901020261621474656d706175746820746573743a74657374657222687474703a2f",
        "2f3132372e302e302e313a383038302f76312f415554485f746573740163016f0a635f7365676d656e7473066f2f736c",
        "6f2f0a040300fbe803fd020000400100000001fbe803fc0000800001fb10270000000000010000",
    );

    #[test]
    fn schema_4_job_records_read_as_uploads_and_a_newer_schema_is_refused() {
        let old = hex::decode(SCHEMA_4_JOB).unwrap();
        assert_eq!(old[..2], 4u16.to_be_bytes());
        let job = decode_job("j", &old).unwrap();
        assert_eq!(job, sample_job("v4"));
        assert_eq!(job.direction, Direction::Upload);
        // Without the upgrade the old layout is one field short: not silently read.
        assert!(decode::<JobRecord>("j", &old).is_err());

        let mut down = sample_job("v5");
        down.direction = Direction::Download;
        let now = encode(&down).unwrap();
        assert_eq!(now[..2], SCHEMA_VERSION.to_be_bytes());
        assert_eq!(decode_job("j", &now).unwrap(), down);

        let mut future = now.clone();
        future[..2].copy_from_slice(&6u16.to_be_bytes());
        let e = decode_job("j", &future).unwrap_err();
        assert!(e.msg.contains("schema 6"), "a newer schema is refused, not misread: {e}");
    }

    /// An OS error as sled 0.34 hands it on once it cloned it: its kind, and its
    /// Debug text, the number gone.
    fn wrapped(code: i32) -> sled::Error {
        let os = io::Error::from_raw_os_error(code);
        sled::Error::Io(io::Error::new(os.kind(), format!("{os:?}")))
    }

    #[test]
    fn journal_errors_are_classified_by_their_cause_and_only_corruption_is_damage() {
        let none = || None;
        // A full disk: its kind is ENOSPC's alone.
        let e = classify("j1", wrapped(28), none);
        assert_eq!(e.msg, "cannot use the journal of job j1: No space left on device (os error 28)");
        assert!(e.hint.as_deref().unwrap().contains("k5up resume j1"));
        assert_eq!((e.kind, e.is_damage(), e.os_error()), (ErrorKind::Resumable, false, Some(28)));
        // Too many open files: uncategorised, the number comes from our own probe.
        let e = classify("j1", wrapped(24), || Some(io::Error::from_raw_os_error(24)));
        assert!(e.msg.contains("Too many open files") && e.hint.as_deref().unwrap().contains("ulimit -n"), "{e}");
        assert_eq!((e.kind, e.is_damage(), e.os_error()), (ErrorKind::Resumable, false, Some(24)));
        // A probe that fails otherwise (another kind) is not taken for it.
        let e = classify("j1", wrapped(24), || Some(io::Error::from_raw_os_error(2)));
        assert_eq!((e.kind, e.os_error()), (ErrorKind::Failed, None));
        let e = classify("j1", wrapped(13), none);
        assert_eq!(
            (e.kind, e.is_damage(), e.io_kind()),
            (ErrorKind::BadInput, false, Some(io::ErrorKind::PermissionDenied))
        );
        let e = classify("j1", wrapped(13), || Some(io::Error::from_raw_os_error(13)));
        assert_eq!(e.msg, "cannot use the journal of job j1: Permission denied (os error 13)");
        let e = classify("j1", sled::Error::Io(io::Error::from_raw_os_error(5)), none);
        assert_eq!(e.msg, "cannot use the journal of job j1: Input/output error (os error 5)");
        assert!(!e.is_damage() && e.cause::<SledError>().is_some(), "sled's error stays underneath");
        let e = classify("j1", sled::Error::Corruption { at: None, bt: () }, none);
        assert!(e.is_damage() && e.kind == ErrorKind::Failed);
        assert_eq!(e.msg, "the journal of job j1 is damaged: its data fails sled's checksums");
        assert!(e.hint.as_deref().unwrap().contains("k5up resume j1"));
        assert!(matches!(e.cause::<SledError>(), Some(SledError(sled::Error::Corruption { .. }))));
    }

    /// Out of file descriptors for real (in a child process of this test binary, its
    /// limit lowered and used up): the probe finds EMFILE, and sled's error with only
    /// its uncategorised kind left is classified by it.
    #[test]
    fn the_probe_finds_emfile_when_the_process_is_out_of_descriptors() {
        const CHILD: &str = "K5UP_TEST_EMFILE_CHILD";
        let d = tempfile::tempdir().unwrap();
        if let Some(db) = std::env::var_os(CHILD) {
            let r = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
            // SAFETY: plain system call on a local value.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }, 0);
            let mut held = vec![];
            while let Ok(f) = File::open("/dev/null") {
                held.push(f);
            }
            let e = classify("j1", wrapped(libc::EMFILE), || probe(Path::new(&db)));
            drop(held);
            assert_eq!((e.kind, e.os_error()), (ErrorKind::Resumable, Some(libc::EMFILE)), "{e}");
            assert!(e.msg.starts_with("cannot use the journal of job j1: Too many open files"), "{e}");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "journal::codec::tests::the_probe_finds_emfile_when_the_process_is_out_of_descriptors"])
            .args(["--test-threads", "1", "--nocapture"])
            .env(CHILD, d.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("1 passed"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn the_probe_finds_the_os_error_of_the_database_files() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(probe(&d.path().join("gone")).and_then(|e| e.raw_os_error()), Some(libc::ENOENT));
        std::fs::write(d.path().join("conf"), b"").unwrap();
        std::fs::write(d.path().join("db"), b"").unwrap();
        assert!(probe(d.path()).is_none(), "a database that opens: nothing to say");
    }

    #[test]
    fn schema_2_segments_are_read_as_data() {
        #[derive(Serialize)]
        struct V2 {
            index: u64,
            offset: u64,
            length: u64,
            md5: Option<String>,
            state: SegState,
            attempts: u32,
            sent: u64,
            inflight: u64,
        }
        let old = V2 {
            index: 3,
            offset: 30,
            length: 10,
            md5: Some("ab".into()),
            state: SegState::Confirmed,
            attempts: 2,
            sent: 20,
            inflight: 0,
        };
        let mut bytes = 2u16.to_be_bytes().to_vec();
        bytes.extend(bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap());
        let r = decode_segment("j", &bytes).unwrap();
        assert_eq!(
            (r.index, r.offset, r.length, r.md5.as_deref(), r.state),
            (3, 30, 10, Some("ab"), SegState::Confirmed)
        );
        assert_eq!((r.attempts, r.sent, r.kind), (2, 20, SegKind::Data));
        let mut z = SegmentRecord::at(1 << 20, 1 << 20);
        z.kind = SegKind::Zero;
        assert_eq!(decode_segment("j", &encode(&z).unwrap()).unwrap(), z);
        let mut future = encode(&z).unwrap();
        future[..2].copy_from_slice(&(SCHEMA_VERSION + 1).to_be_bytes());
        assert!(decode_segment("j", &future).is_err(), "a newer schema is refused, not misread");
    }
}
