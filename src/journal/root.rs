//! The journal directory: one folder per job, its lock, its birth record; creating,
//! opening (as writer, as reader, checked), rebuilding and removing a job's journal.

use std::path::{Path, PathBuf};

use super::codec::{encode, sled_err, sled_open};
use super::lock::{self, Role};
use super::{BATCH, JOB_KEY, Journal, SEGMENTS_TREE};
use crate::error::{Error, Result};
use crate::model::{JobRecord, SegmentRecord};

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
            None => default_dir(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))?,
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

    /// The error for `id` while another process holds it (its pid named).
    pub fn busy(&self, id: &str) -> Error {
        lock::busy(id, lock::holder(&self.job_dir(id)))
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
            .map_err(|e| Error::failed(format!("the birth record of job {id} is unreadable: {e}")).caused_by(e))
    }

    /// The birth record of `id` (the job as created, kept outside sled), if readable.
    pub fn birth(&self, id: &str) -> Option<JobRecord> {
        let raw = std::fs::read(self.job_dir(id).join("birth.json")).ok()?;
        serde_json::from_slice(&raw).ok()
    }

    /// The job record of `id` as it was created (`birth.json`: the target, the file,
    /// the credentials' description never change), without opening its database or
    /// taking any lock; else as [`Root::read_job`] reads it (jobs older than birth records).
    pub fn read_birth(&self, id: &str) -> Result<JobRecord> {
        match std::fs::read(self.job_dir(id).join("birth.json")) {
            Ok(raw) => serde_json::from_slice(&raw)
                .map_err(|e| Error::failed(format!("the birth record of job {id} is unreadable: {e}")).caused_by(e)),
            Err(_) => self.read_job(id),
        }
    }

    /// What the store of job `id` does, as probed when it was planned (Swift's
    /// behaviour for a job made before the probes).
    pub fn job_store(&self, id: &str) -> Result<crate::swift::StoreTraits> {
        super::read_json(&self.job_dir(id), super::STORE_FILE).map(|t| t.unwrap_or(crate::swift::StoreTraits::swift()))
    }

    /// What the store at `storage_url` was found to do, if it was probed (kept per
    /// storage URL in `stores/`, for every job of this journal).
    pub fn store_of(&self, storage_url: &str) -> Option<crate::swift::StoreTraits> {
        let raw = std::fs::read(self.store_file(storage_url)).ok()?;
        let k: KnownStore = serde_json::from_slice(&raw).ok()?;
        (k.storage_url == storage_url).then_some(k.traits)
    }

    /// Keeps what the store at `storage_url` was found to do.
    pub fn put_store_of(&self, storage_url: &str, traits: &crate::swift::StoreTraits) -> Result<()> {
        let dir = self.dir.join("stores");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let k = KnownStore { storage_url: storage_url.to_string(), probed_unix: now_unix(), traits: *traits };
        let bytes = serde_json::to_vec_pretty(&k).map_err(|e| Error::failed(e.to_string()).caused_by(e))?;
        let path = self.store_file(storage_url);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("store.json").to_string();
        write_durable(&dir, &name, &bytes)
    }

    fn store_file(&self, storage_url: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let h = hex::encode(&Sha256::digest(storage_url.as_bytes())[..8]);
        self.dir.join("stores").join(format!("{h}.json"))
    }

    /// Opens `id` for a run; fails clearly if another process is working on it.
    pub fn open(&self, id: &str) -> Result<Journal> {
        self.check_known(id)?;
        self.check_complete(id)?;
        let dir = self.job_dir(id);
        let l = lock::lock(&dir, id, Role::Writer)?.map_err(|_| Error::failed("unreachable: writer lock"))?;
        Journal::open_db(dir, id, l)
    }

    /// Creates the journal of a new job with its segments, planned for a store that
    /// does `store` (kept beside the birth record, before it). Fails if it exists.
    pub fn create(
        &self,
        job: &JobRecord,
        store: &crate::swift::StoreTraits,
        segments: impl Iterator<Item = SegmentRecord>,
    ) -> Result<Journal> {
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
        let t = serde_json::to_vec_pretty(store).map_err(|e| Error::failed(e.to_string()).caused_by(e))?;
        write_durable(&dir, super::STORE_FILE, &t)?;
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
        let birth = serde_json::to_vec_pretty(job).map_err(|e| Error::failed(e.to_string()).caused_by(e))?;
        write_atomic(&dir, "birth.json", &birth)?;
        // Build in a temporary directory and rename it into place, so a crash while
        // creating never leaves a half-written journal that looks complete.
        let tmp = dir.join("db.new");
        let _ = std::fs::remove_dir_all(&tmp);
        {
            let db = sled_open(&tmp, &job.id)?;
            let segs = db.open_tree(SEGMENTS_TREE).map_err(|e| sled_err(&job.id, &tmp, e))?;
            // Bounded batches: memory does not grow with the segment count.
            let mut batch = sled::Batch::default();
            let mut n = 0usize;
            for s in segments {
                batch.insert(&s.index.to_be_bytes(), encode(&s)?);
                n += 1;
                if n.is_multiple_of(BATCH) {
                    segs.apply_batch(std::mem::take(&mut batch)).map_err(|e| sled_err(&job.id, &tmp, e))?;
                }
            }
            segs.apply_batch(batch).map_err(|e| sled_err(&job.id, &tmp, e))?;
            db.insert(JOB_KEY, encode(job)?).map_err(|e| sled_err(&job.id, &tmp, e))?;
            db.flush().map_err(|e| sled_err(&job.id, &tmp, e))?;
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
            let reason = format!("the journal of job {id} is incomplete: its creation was interrupted");
            return Ok(Opened::Damaged { reason, birth, held: Held { dir, lock: l } });
        }
        // sled 0.34 can panic on some damaged files instead of returning an error.
        let probe = std::panic::catch_unwind(|| {
            sled_open(&dir.join("db"), id).and_then(|db| {
                let segs = db.open_tree(SEGMENTS_TREE).map_err(|e| sled_err(id, &dir.join("db"), e))?;
                Ok((db, segs))
            })
        })
        .unwrap_or_else(|p| Err(panicked(id, p.as_ref(), "opening")));
        // Only damage sets the journal aside: a failure to reach it (a lock, too many
        // open files, no permission, a full disk) is the caller's error, and touches nothing.
        let (db, segs) = match probe {
            Ok(x) => x,
            Err(e) if e.is_damage() => {
                return Ok(Opened::Damaged { reason: e.msg, birth, held: Held { dir, lock: l } });
            }
            Err(e) => return Err(e),
        };
        let j = Journal { id: id.to_string(), dir, db, segs, _lock: l };
        let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            j.job().and_then(|_| j.segments()).and_then(|_| j.digest()).and_then(|_| j.import())
        }))
        .unwrap_or_else(|p| Err(panicked(id, p.as_ref(), "reading")));
        match check {
            Ok(_) => Ok(Opened::Ok(j)),
            Err(e) if e.is_damage() => {
                let Journal { dir, _lock, .. } = j;
                Ok(Opened::Damaged { reason: e.msg, birth, held: Held { dir, lock: _lock } })
            }
            Err(e) => Err(e),
        }
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
        // The sharing request survives (it runs again: Glance is asked before anything is added).
        let share = std::fs::read(dir.join(super::SHARE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<crate::model::ShareState>(&b).ok());
        let j = Self::create_locked(dir, lock, job, segments)?;
        if let Some(s) = share {
            j.put_share(&s)?;
            j.flush()?;
        }
        Ok(j)
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

/// A panic inside sled while `doing` (opening, reading) the journal of `id`: damage,
/// unless its words name an OS error (sled panics when it cannot spawn a thread or
/// open a file), which is a failure to reach the journal and touches nothing.
fn panicked(id: &str, payload: &(dyn std::any::Any + Send), doing: &str) -> Error {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    if text.contains("os error") || text.contains("Os {") {
        return Error::resumable(format!("cannot use the journal of job {id}: sled failed while {doing} it"))
            .hint(format!("check the open-file limit (`ulimit -n`) and free memory, then `k5up resume {id}`"));
    }
    super::codec::damaged(id, &format!("sled failed while {doing} it"))
}

/// The default journal directory, by the XDG rules: `$XDG_STATE_HOME/k5up`, else
/// `$HOME/.local/state/k5up`. An empty or relative value counts as unset (the XDG
/// specification: relative paths are invalid), so the journal never lands in the
/// working directory unasked; without either, the user is told how to choose.
fn default_dir(xdg_state: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> Result<PathBuf> {
    let usable = |v: &Option<std::ffi::OsString>| v.as_ref().map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(x) = usable(&xdg_state) {
        return Ok(x.join("k5up"));
    }
    if let Some(h) = usable(&home) {
        return Ok(h.join(".local/state/k5up"));
    }
    let say = |name: &str, v: &Option<std::ffi::OsString>| match v {
        None => format!("{name} is not set"),
        Some(v) if v.is_empty() => format!("{name} is empty"),
        Some(v) => format!("{name} ({}) is not an absolute path", v.to_string_lossy()),
    };
    Err(Error::input(format!(
        "cannot place the journal: {} and {}",
        say("HOME", &home),
        say("XDG_STATE_HOME", &xdg_state)
    ))
    .hint("give --journal DIR (or K5UP_JOURNAL=DIR), or set HOME: the journal goes to $XDG_STATE_HOME/k5up, else $HOME/.local/state/k5up"))
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

/// Makes the renames in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot sync {}", dir.display()), e))
}

/// Like [`write_atomic`], and durable when it returns (the file and the rename).
pub(super) fn write_durable(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    };
    write().map_err(|e| Error::io(format!("cannot write {}", dir.join(name).display()), e))?;
    sync_dir(dir)
}

pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, dir.join(name)))
        .map_err(|e| Error::io(format!("cannot write {}", dir.join(name).display()), e))
}

/// A probed store, as `stores/<hash of its URL>.json` keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct KnownStore {
    storage_url: String,
    probed_unix: u64,
    traits: crate::swift::StoreTraits,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_journal_follows_xdg_and_never_the_working_directory() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(default_dir(os("/x"), os("/h")).unwrap(), PathBuf::from("/x/k5up"));
        assert_eq!(default_dir(None, os("/h")).unwrap(), PathBuf::from("/h/.local/state/k5up"));
        // Empty or relative XDG_STATE_HOME: ignored (XDG), HOME used.
        assert_eq!(default_dir(os(""), os("/h")).unwrap(), PathBuf::from("/h/.local/state/k5up"));
        assert_eq!(default_dir(os("rel"), os("/h")).unwrap(), PathBuf::from("/h/.local/state/k5up"));
        // An empty HOME once put the journal in ./.local/state/k5up.
        for (x, h, says) in [
            (None, os(""), "HOME is empty"),
            (None, None, "HOME is not set"),
            (os("s"), os("h"), "HOME (h) is not an absolute path"),
        ] {
            let e = default_dir(x, h).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::BadInput);
            assert!(e.msg.contains(says), "{}", e.msg);
            assert!(e.hint.as_deref().is_some_and(|h| h.contains("--journal DIR") && h.contains("set HOME")), "{e}");
        }
    }
}
