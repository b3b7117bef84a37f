//! One process at a time per job: an advisory lock file plus an owner note, so the
//! second process gets "job 3fa2c1 is busy: k5up pid 1234 is working on it" instead of sled's
//! own lock error (sled allows one process per database).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Who holds a job's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// An upload, resume, verify or abort: holds it for the whole run.
    Writer,
    /// A `status`/`jobs` reader: holds it for a few milliseconds.
    Reader,
}

/// A held lock; released when dropped (the OS releases it if the process dies).
#[derive(Debug)]
pub(super) struct JobLock {
    _file: File,
}

/// The holder of a lock that could not be taken.
#[derive(Debug)]
pub(super) struct Held {
    /// Its pid, when the owner note could be read.
    pub(super) pid: Option<u32>,
    /// Whether it is a short-lived reader.
    pub(super) reader: bool,
}

fn owner_path(dir: &Path) -> PathBuf {
    dir.join("owner")
}

fn try_lock(dir: &Path, role: Role) -> Result<std::result::Result<JobLock, Held>> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot open lock file {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => {
            let note = format!("{} {}\n", std::process::id(), if role == Role::Reader { "reader" } else { "writer" });
            let tmp = dir.join("owner.tmp");
            let _ = std::fs::File::create(&tmp)
                .and_then(|mut f| f.write_all(note.as_bytes()))
                .and_then(|_| std::fs::rename(&tmp, owner_path(dir)));
            Ok(Ok(JobLock { _file: file }))
        }
        Err(TryLockError::WouldBlock) => {
            let note = std::fs::read_to_string(owner_path(dir)).unwrap_or_default();
            let reader = note.split_whitespace().nth(1) == Some("reader");
            Ok(Err(Held { pid: holder(dir), reader }))
        }
        Err(TryLockError::Error(e)) => Err(Error::io(format!("cannot lock {}", path.display()), e)),
    }
}

/// Takes the lock of the job whose directory is `dir`. A writer waits up to 10 s for
/// readers (a `status` call) to go; another writer is an error naming its pid.
pub(super) fn lock(dir: &Path, job: &str, role: Role) -> Result<std::result::Result<JobLock, Held>> {
    let start = Instant::now();
    loop {
        match try_lock(dir, role)? {
            Ok(l) => return Ok(Ok(l)),
            Err(held) if role == Role::Writer && held.reader && start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(held) if role == Role::Writer => return Err(busy(job, held.pid)),
            Err(held) => return Ok(Err(held)),
        }
    }
}

/// The one error for a job that another k5up process is working on (exit 2: run one
/// command per job at a time), naming that process.
pub(super) fn busy(job: &str, pid: Option<u32>) -> Error {
    let who = pid.map_or("another k5up process".to_string(), |p| format!("k5up pid {p}"));
    let stop = pid.map_or("stop it".to_string(), |p| format!("stop it (Ctrl-C in its terminal, or `kill {p}`)"));
    Error::input(format!("job {job} is busy: {who} is working on it"))
        .hint(format!("wait for it to finish (`k5up status {job}` shows it), or {stop}; then run this command again"))
}

/// The pid that holds (or last held) the lock of the job in `dir`, from its owner note.
pub(super) fn holder(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(owner_path(dir)).ok()?.split_whitespace().next()?.parse().ok()
}
