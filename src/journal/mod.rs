//! The on-disk journal: the only module that names sled and bincode.
//!
//! Layout: `<root>/jobs/<id>/` per job, holding `db/` (a sled database: the job
//! record and one record per segment, keyed by big-endian index), `lock` + `owner`
//! (one writer process at a time), and `status.json`, a snapshot that a running
//! upload replaces atomically so `status` and `jobs` work from another terminal
//! while sled's own process lock is held.
//!
//! The journal is a fast cache of the truth, which lives in the file and in the
//! server's listing: a lost or damaged journal is rebuilt from those.

mod lock;
pub use std::fs::File;
use std::path::{Path, PathBuf};

pub use crate::model::{ImportOutcome, ImportState, JobRecord, Phase, RunSettings, SegState, SegmentRecord};
pub use lock::Role;

/// Version of the record layout. A journal written with another version is refused
/// with a clear error instead of being misread.
///
/// 2: whole-image digests and the image import (a schema-1 journal is rebuilt from
/// its `birth.json`, adopting what the server holds).
pub const SCHEMA_VERSION: u16 = 2;

use crate::digest::DigestState;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

const JOB_KEY: &[u8] = b"job";
const DIGEST_KEY: &[u8] = b"digest";
const IMPORT_KEY: &[u8] = b"import";
const SETTINGS_KEY: &[u8] = b"settings";
const SEGMENTS_TREE: &[u8] = b"segments";
/// Segment records written per sled batch when a journal is created or rebuilt.
const BATCH: usize = 10_000;

/// The directory holding every job's journal.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// The journal root: `explicit`, else `$XDG_STATE_HOME/k5up`, else `~/.local/state/k5up`.
    pub fn new(explicit: Option<PathBuf>) -> Result<Self> {
        let dir = match explicit {
            Some(d) => d,
            None => match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
                Some(x) => PathBuf::from(x).join("k5up"),
                None => {
                    let home = std::env::var_os("HOME").ok_or_else(|| {
                        Error::input("neither XDG_STATE_HOME nor HOME is set").hint("use --journal DIR")
                    })?;
                    PathBuf::from(home).join(".local/state/k5up")
                }
            },
        };
        if dir.exists() && !dir.is_dir() {
            return Err(Error::input(format!("the journal path {} is not a directory", dir.display()))
                .hint("--journal DIR (or K5UP_JOURNAL) names a directory k5up may create and write"));
        }
        Ok(Root { dir })
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join("jobs").join(id)
    }

    /// True when a journal exists for `id`, complete or with its creation
    /// interrupted (only the birth record written: [`Root::open_checked`] rebuilds it).
    pub fn exists(&self, id: &str) -> bool {
        let d = self.job_dir(id);
        d.join("db").exists() || d.join("birth.json").exists()
    }

    /// Refuses to open a journal whose creation was interrupted (sled would make an
    /// empty database there).
    fn check_complete(&self, id: &str) -> Result<()> {
        if self.job_dir(id).join("db").exists() {
            return Ok(());
        }
        Err(Error::failed(format!("job {id} was interrupted while its journal was being created"))
            .hint(format!("`k5up resume {id}` (or the same `k5up upload` command) finishes creating it")))
    }

    /// Ids of every job in the journal, sorted.
    pub fn job_ids(&self) -> Result<Vec<String>> {
        let dir = self.dir.join("jobs");
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(format!("cannot list {}", dir.display()), e)),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("db").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The last snapshot a writer left for `id`, if any.
    pub fn read_snapshot(&self, id: &str) -> Option<Vec<u8>> {
        std::fs::read(self.job_dir(id).join("status.json")).ok()
    }

    /// Opens `id` for reading if no writer holds it; `Ok(None)` when one does
    /// (the caller then reads the snapshot).
    pub fn open_reader(&self, id: &str) -> Result<Option<Journal>> {
        self.check_known(id)?;
        self.check_complete(id)?;
        let dir = self.job_dir(id);
        match lock::lock(&dir, id, Role::Reader)? {
            Ok(l) => Ok(Some(Journal::open_db(dir, id, l)?)),
            Err(_) => Ok(None),
        }
    }

    /// The job record of `id` for a reader (`--dry-run`, `verify`): from its journal
    /// when no writer holds it, else from its birth record (the plan never changes).
    /// Never takes the writer lock, never rebuilds: a damaged journal is an error here.
    pub fn read_job(&self, id: &str) -> Result<JobRecord> {
        if let Some(j) = self.open_reader(id)? {
            return j.job();
        }
        let raw = std::fs::read(self.job_dir(id).join("birth.json"))
            .map_err(|e| Error::io(format!("cannot read the birth record of job {id}"), e))?;
        serde_json::from_slice(&raw)
            .map_err(|e| Error::failed(format!("the birth record of job {id} is unreadable: {e}")))
    }

    /// Opens `id` for a run; fails clearly if another process is working on it.
    pub fn open(&self, id: &str) -> Result<Journal> {
        self.check_known(id)?;
        self.check_complete(id)?;
        let dir = self.job_dir(id);
        let l = lock::lock(&dir, id, Role::Writer)?.map_err(|_| Error::failed("unreachable: writer lock"))?;
        Journal::open_db(dir, id, l)
    }

    /// Creates the journal of a new job with its segments. Fails if it exists.
    pub fn create(&self, job: &JobRecord, segments: impl Iterator<Item = SegmentRecord>) -> Result<Journal> {
        let dir = self.job_dir(&job.id);
        std::fs::create_dir_all(&dir).map_err(|e| {
            let full = e.kind() == std::io::ErrorKind::StorageFull;
            let err = Error::io(format!("cannot create journal {}", dir.display()), e);
            if full {
                err
            } else {
                Error { kind: crate::error::ErrorKind::BadInput, ..err }
                    .hint("--journal DIR (or K5UP_JOURNAL) names a directory k5up may create and write")
            }
        })?;
        let l = lock::lock(&dir, &job.id, Role::Writer)?.map_err(|_| Error::failed("unreachable: writer lock"))?;
        if dir.join("db").exists() {
            return Err(Error::failed(format!("job {} exists already", job.id)));
        }
        Self::create_locked(dir, l, job, segments)
    }

    fn create_locked(
        dir: PathBuf,
        l: lock::JobLock,
        job: &JobRecord,
        segments: impl Iterator<Item = SegmentRecord>,
    ) -> Result<Journal> {
        // The birth record: a plain copy of the job as created, outside sled, from
        // which a damaged journal can be rebuilt.
        let birth = serde_json::to_vec_pretty(job).map_err(|e| Error::failed(e.to_string()))?;
        write_atomic(&dir, "birth.json", &birth)?;
        // Build in a temporary directory and rename it into place, so a crash while
        // creating never leaves a half-written journal that looks complete.
        let tmp = dir.join("db.new");
        let _ = std::fs::remove_dir_all(&tmp);
        {
            let db = sled_open(&tmp, &job.id)?;
            let segs = db.open_tree(SEGMENTS_TREE).map_err(|e| sled_err(&job.id, e))?;
            // Bounded batches: memory does not grow with the segment count.
            let mut batch = sled::Batch::default();
            let mut n = 0usize;
            for s in segments {
                batch.insert(&s.index.to_be_bytes(), encode(&s)?);
                n += 1;
                if n.is_multiple_of(BATCH) {
                    segs.apply_batch(std::mem::take(&mut batch)).map_err(|e| sled_err(&job.id, e))?;
                }
            }
            segs.apply_batch(batch).map_err(|e| sled_err(&job.id, e))?;
            db.insert(JOB_KEY, encode(job)?).map_err(|e| sled_err(&job.id, e))?;
            db.flush().map_err(|e| sled_err(&job.id, e))?;
        }
        std::fs::rename(&tmp, dir.join("db")).map_err(|e| Error::io("cannot finish journal", e))?;
        Journal::open_db(dir, &job.id, l)
    }

    /// Opens `id` for a run, reading every record once: a journal that sled cannot
    /// open, or whose records do not decode, comes back as [`Opened::Damaged`]
    /// (still locked) instead of being trusted.
    pub fn open_checked(&self, id: &str) -> Result<Opened> {
        self.check_known(id)?;
        let dir = self.job_dir(id);
        let l = lock::lock(&dir, id, Role::Writer)?.map_err(|_| Error::failed("unreachable: writer lock"))?;
        let birth =
            std::fs::read(dir.join("birth.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).map(Box::new);
        if !dir.join("db").exists() {
            let reason = "its creation was interrupted".to_string();
            return Ok(Opened::Damaged { reason, birth, held: Held { dir, lock: l } });
        }
        // sled 0.34 can panic on some damaged files instead of returning an error.
        let probe = std::panic::catch_unwind(|| {
            sled_open(&dir.join("db"), id).and_then(|db| {
                let segs = db.open_tree(SEGMENTS_TREE).map_err(|e| sled_err(id, e))?;
                Ok((db, segs))
            })
        })
        .unwrap_or_else(|_| Err(Error::failed("sled panicked while opening it")));
        let (db, segs) = match probe {
            Ok(x) => x,
            Err(e) => return Ok(Opened::Damaged { reason: e.msg, birth, held: Held { dir, lock: l } }),
        };
        let j = Journal { id: id.to_string(), dir, db, segs, _lock: l };
        let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            j.job().and_then(|_| j.segments()).and_then(|_| j.digest()).and_then(|_| j.import())
        }))
        .unwrap_or_else(|_| Err(Error::failed("sled panicked while reading it")));
        if let Err(e) = check {
            let Journal { dir, _lock, .. } = j;
            return Ok(Opened::Damaged { reason: e.msg, birth, held: Held { dir, lock: _lock } });
        }
        Ok(Opened::Ok(j))
    }

    /// Replaces a damaged journal (kept aside as `db.damaged-<time>`) by a new one.
    pub fn rebuild(
        &self,
        held: Held,
        job: &JobRecord,
        segments: impl Iterator<Item = SegmentRecord>,
    ) -> Result<Journal> {
        let Held { dir, lock } = held;
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let aside = dir.join(format!("db.damaged-{stamp}"));
        if dir.join("db").exists() {
            std::fs::rename(dir.join("db"), &aside)
                .map_err(|e| Error::io(format!("cannot move the damaged journal of job {} aside", job.id), e))?;
        }
        Self::create_locked(dir, lock, job, segments)
    }

    /// Deletes the journal of `id` (the caller holds its lock through `journal`).
    pub fn remove(&self, journal: Journal) -> Result<()> {
        let dir = journal.dir.clone();
        drop(journal);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))
    }

    fn check_known(&self, id: &str) -> Result<()> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) || !self.exists(id) {
            return Err(Error::input(format!("unknown job `{id}` in journal {}", self.dir.display()))
                .hint("`k5up jobs` lists the known jobs; --journal/K5UP_JOURNAL selects another journal"));
        }
        Ok(())
    }
}

/// The outcome of [`Root::open_checked`].
#[derive(Debug)]
pub enum Opened {
    /// Opened, every record readable.
    Ok(Journal),
    /// Unusable; the job's lock is still held.
    Damaged {
        /// What is wrong.
        reason: String,
        /// The job as it was created (from `birth.json`), if readable.
        birth: Option<Box<JobRecord>>,
        /// The held lock, for [`Root::rebuild`].
        held: Held,
    },
}

/// A job's lock held across a rebuild.
#[derive(Debug)]
pub struct Held {
    dir: PathBuf,
    lock: lock::JobLock,
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, dir.join(name)))
        .map_err(|e| Error::io(format!("cannot write {}", dir.join(name).display()), e))
}

/// An open job journal. Holds the job's lock while alive.
#[derive(Debug)]
pub struct Journal {
    id: String,
    dir: PathBuf,
    db: sled::Db,
    segs: sled::Tree,
    _lock: lock::JobLock,
}

fn sled_open(path: &Path, id: &str) -> Result<sled::Db> {
    wait_for_sled_lock(path);
    sled::Config::new().path(path).flush_every_ms(Some(500)).open().map_err(|e| sled_err(id, e))
}

/// Our job lock keeps other processes out, so sled's own lock (a `flock` on `db`)
/// can only be held by a handle this process just dropped: sled releases it from a
/// background thread a moment later. Wait (up to 10 s) until the lock is free, by
/// taking and releasing it ourselves: sled reports a held lock only as text, which
/// is never matched.
fn wait_for_sled_lock(path: &Path) {
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

fn sled_err(id: &str, e: sled::Error) -> Error {
    match e {
        sled::Error::Corruption { .. } => Error::failed(format!("the journal of job {id} is damaged ({e})"))
            .hint(format!("remove jobs/{id} from the journal directory and run the same `k5up upload` command again: segments already on the server are adopted, not sent again")),
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            Error::failed(format!("cannot write the journal of job {id}: {}", io_text(&io))).hint(format!(
                "free space on the file system holding the journal (--journal / K5UP_JOURNAL), then `k5up resume {id}`"
            ))
        }
        sled::Error::Io(io) => Error::failed(format!("cannot write the journal of job {id}: {}", io_text(&io))),
        other => Error::failed(format!("journal of job {id}: {other}")),
    }
}

/// The system's words for an I/O error sled passes on: sled re-wraps OS errors as
/// the `Debug` text of the original (`Os { code: 28, .., message: "No space left on
/// device" }`), so the message is taken back out of it.
fn io_text(io: &std::io::Error) -> String {
    if let Some(c) = io.raw_os_error() {
        return std::io::Error::from_raw_os_error(c).to_string();
    }
    let text = io.to_string();
    let msg = text.split_once("message: \"").and_then(|(_, rest)| rest.split_once('"')).map(|(m, _)| m.to_string());
    msg.unwrap_or(text)
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut out = SCHEMA_VERSION.to_be_bytes().to_vec();
    let body = bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| Error::failed(format!("cannot encode journal record: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode<T: DeserializeOwned>(id: &str, bytes: &[u8]) -> Result<T> {
    if bytes.len() < 2 {
        return Err(Error::failed(format!("the journal of job {id} holds a truncated record")));
    }
    let v = u16::from_be_bytes([bytes[0], bytes[1]]);
    if v != SCHEMA_VERSION {
        return Err(Error::failed(format!(
            "the journal of job {id} was written with record schema {v}; this k5up reads schema {SCHEMA_VERSION}"
        ))
        .hint(format!("`k5up resume {id}` rebuilds the journal from the job's birth record (segments on the server are adopted, not sent again), or use the k5up version that created it")));
    }
    let (rec, _) = bincode::serde::decode_from_slice(&bytes[2..], bincode::config::standard())
        .map_err(|e| Error::failed(format!("the journal of job {id} holds an unreadable record: {e}")))?;
    Ok(rec)
}

impl Journal {
    fn open_db(dir: PathBuf, id: &str, lock: lock::JobLock) -> Result<Journal> {
        let db = sled_open(&dir.join("db"), id)?;
        let segs = db.open_tree(SEGMENTS_TREE).map_err(|e| sled_err(id, e))?;
        Ok(Journal { id: id.to_string(), dir, db, segs, _lock: lock })
    }

    /// The job id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The job record.
    pub fn job(&self) -> Result<JobRecord> {
        let raw = self
            .db
            .get(JOB_KEY)
            .map_err(|e| sled_err(&self.id, e))?
            .ok_or_else(|| Error::failed(format!("the journal of job {} has no job record", self.id)))?;
        decode(&self.id, &raw)
    }

    /// Replaces the job record (durable at the next flush).
    pub fn put_job(&self, job: &JobRecord) -> Result<()> {
        self.db.insert(JOB_KEY, encode(job)?).map_err(|e| sled_err(&self.id, e))?;
        Ok(())
    }

    /// Every segment, in index order.
    pub fn segments(&self) -> Result<Vec<SegmentRecord>> {
        self.segs
            .iter()
            .map(|kv| {
                let (_, v) = kv.map_err(|e| sled_err(&self.id, e))?;
                decode(&self.id, &v)
            })
            .collect()
    }

    /// Replaces a segment record (durable at the next flush).
    pub fn put_segment(&self, s: &SegmentRecord) -> Result<()> {
        self.segs.insert(s.index.to_be_bytes(), encode(s)?).map_err(|e| sled_err(&self.id, e))?;
        Ok(())
    }

    /// The whole-image digests' progress (default: nothing hashed yet).
    pub fn digest(&self) -> Result<DigestState> {
        self.get_extra(DIGEST_KEY).map(Option::unwrap_or_default)
    }

    /// Replaces the whole-image digests' progress (durable at the next flush).
    pub fn put_digest(&self, d: &DigestState) -> Result<()> {
        self.put_extra(DIGEST_KEY, d)
    }

    /// The tunables of the job's last run (none in journals of older versions).
    pub fn settings(&self) -> Result<Option<RunSettings>> {
        self.get_extra(SETTINGS_KEY)
    }

    /// Replaces the tunables of the job (durable at the next flush).
    pub fn put_settings(&self, s: &RunSettings) -> Result<()> {
        self.put_extra(SETTINGS_KEY, s)
    }

    /// The import's state, once an import was started.
    pub fn import(&self) -> Result<Option<ImportState>> {
        self.get_extra(IMPORT_KEY)
    }

    /// Replaces the import's state (durable at the next flush).
    pub fn put_import(&self, s: &ImportState) -> Result<()> {
        self.put_extra(IMPORT_KEY, s)
    }

    fn get_extra<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.db.get(key).map_err(|e| sled_err(&self.id, e))? {
            Some(raw) => decode(&self.id, &raw).map(Some),
            None => Ok(None),
        }
    }

    fn put_extra<T: Serialize>(&self, key: &[u8], v: &T) -> Result<()> {
        self.db.insert(key, encode(v)?).map_err(|e| sled_err(&self.id, e))?;
        Ok(())
    }

    /// Makes every write so far durable (fsync). A segment counts as confirmed only
    /// after the flush that follows its record.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| sled_err(&self.id, e))?;
        Ok(())
    }

    /// Atomically replaces the job's status snapshot (read by other processes).
    pub fn write_snapshot(&self, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir, "status.json", bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests_support::sample_job;

    fn seg(i: u64) -> SegmentRecord {
        SegmentRecord {
            index: i,
            offset: i * 4,
            length: 4,
            md5: None,
            state: SegState::Pending,
            attempts: 0,
            sent: 0,
            inflight: 0,
        }
    }

    #[test]
    fn create_reopen_and_update() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(Some(d.path().to_path_buf())).unwrap();
        let j = root.create(&sample_job("abc123"), (0..3).map(seg)).unwrap();
        let mut s = seg(300);
        s.index = 1;
        s.state = SegState::Confirmed;
        s.md5 = Some("x".into());
        j.put_segment(&s).unwrap();
        j.flush().unwrap();
        drop(j);
        let j = root.open("abc123").unwrap();
        let segs = j.segments().unwrap();
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[1].state, SegState::Confirmed);
        assert_eq!(j.job().unwrap(), sample_job("abc123"));
        assert_eq!(root.job_ids().unwrap(), vec!["abc123".to_string()]);
    }

    #[test]
    fn second_writer_is_refused_and_reader_falls_back() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(Some(d.path().to_path_buf())).unwrap();
        let j = root.create(&sample_job("abc"), (0..3).map(seg)).unwrap();
        // flock is per open file description: a second open in this process conflicts too
        let e = root.open("abc").unwrap_err();
        assert!(e.msg.contains("is being uploaded by pid"), "{e}");
        assert!(root.open_reader("abc").unwrap().is_none());
        drop(j);
        assert!(root.open_reader("abc").unwrap().is_some());
    }

    #[test]
    fn a_full_disk_is_named_in_the_systems_words_with_the_way_out() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("{:?}", std::io::Error::from_raw_os_error(28)),
        );
        let e = sled_err("j1", sled::Error::Io(wrapped));
        assert_eq!(e.msg, "cannot write the journal of job j1: No space left on device");
        assert!(e.hint.unwrap().contains("k5up resume j1"));
        let e = sled_err("j1", sled::Error::Io(std::io::Error::from_raw_os_error(5)));
        assert_eq!(e.msg, "cannot write the journal of job j1: Input/output error (os error 5)");
    }

    #[test]
    fn a_creation_cut_off_after_the_birth_record_is_finished_from_it() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(Some(d.path().to_path_buf())).unwrap();
        drop(root.create(&sample_job("cut"), (0..3).map(seg)).unwrap());
        // As after a kill between birth.json and the rename of db.new into place.
        let dir = d.path().join("jobs/cut");
        std::fs::rename(dir.join("db"), dir.join("db.new")).unwrap();
        assert!(root.exists("cut"));
        assert!(root.open_reader("cut").unwrap_err().hint.unwrap().contains("k5up resume cut"));
        assert!(!dir.join("db").exists(), "a reader must not create an empty database");
        let Opened::Damaged { reason, birth, held } = root.open_checked("cut").unwrap() else { panic!("opened") };
        assert!(reason.contains("interrupted"), "{reason}");
        let j = root.rebuild(held, &birth.unwrap(), (0..3).map(seg)).unwrap();
        assert_eq!((j.job().unwrap(), j.segments().unwrap().len()), (sample_job("cut"), 3));
    }

    #[test]
    fn damaged_journal_is_reported_not_trusted_and_rebuilt() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(Some(d.path().to_path_buf())).unwrap();
        let j = root.create(&sample_job("dmg"), (0..3).map(seg)).unwrap();
        let mut bad = SCHEMA_VERSION.to_be_bytes().to_vec();
        bad.extend([0xff, 0xff]);
        j.segs.insert(1u64.to_be_bytes(), bad).unwrap();
        j.flush().unwrap();
        drop(j);
        let Opened::Damaged { reason, birth, held } = root.open_checked("dmg").unwrap() else { panic!("trusted") };
        assert!(reason.contains("unreadable record"), "{reason}");
        assert_eq!(**birth.as_ref().unwrap(), sample_job("dmg"));
        let j = root.rebuild(held, &birth.unwrap(), (0..3).map(seg)).unwrap();
        assert_eq!(j.segments().unwrap().len(), 3);
        drop(j);
        assert!(matches!(root.open_checked("dmg").unwrap(), Opened::Ok(_)));
        let kept = std::fs::read_dir(d.path().join("jobs/dmg")).unwrap().flatten();
        assert!(kept.into_iter().any(|e| e.file_name().to_string_lossy().starts_with("db.damaged-")));
    }

    #[test]
    fn a_schema_1_birth_record_still_reads() {
        // Jobs created before digests and imports existed: their birth.json lacks both.
        let mut v = serde_json::to_value(sample_job("old")).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("digests");
        o.remove("import");
        let job: JobRecord = serde_json::from_value(v).unwrap();
        assert_eq!(job, sample_job("old"));
    }

    #[test]
    fn unknown_schema_and_unknown_job_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(Some(d.path().to_path_buf())).unwrap();
        assert!(root.open("nope").unwrap_err().msg.contains("unknown job"));
        assert!(root.open("../x").unwrap_err().msg.contains("unknown job"));
        let j = root.create(&sample_job("v"), (0..1).map(seg)).unwrap();
        let mut raw = encode(&sample_job("v")).unwrap();
        raw[0..2].copy_from_slice(&99u16.to_be_bytes());
        j.db.insert(JOB_KEY, raw).unwrap();
        let e = j.job().unwrap_err();
        assert!(e.msg.contains("schema 99"), "{e}");
        let mut bad = SCHEMA_VERSION.to_be_bytes().to_vec();
        bad.extend([255, 255, 255]);
        j.db.insert(JOB_KEY, bad).unwrap();
        assert!(j.job().unwrap_err().msg.contains("unreadable"));
    }
}
