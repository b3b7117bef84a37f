//! The records on disk: sled opened (waiting for its own lock), its errors in the
//! user's words, and bincode records behind a schema version.

use std::fs::File;
use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

/// Version of the record layout. A journal written with another version is refused
/// with a clear error instead of being misread.
///
/// 2: whole-image digests and the image import (a schema-1 journal is rebuilt from
/// its `birth.json`, adopting what the server holds).
pub const SCHEMA_VERSION: u16 = 2;

pub(super) fn sled_open(path: &Path, id: &str) -> Result<sled::Db> {
    wait_for_sled_lock(path);
    sled::Config::new().path(path).flush_every_ms(Some(500)).open().map_err(|e| sled_err(id, e))
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

pub(super) fn sled_err(id: &str, e: sled::Error) -> Error {
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
pub(super) fn io_text(io: &std::io::Error) -> String {
    if let Some(c) = io.raw_os_error() {
        return std::io::Error::from_raw_os_error(c).to_string();
    }
    let text = io.to_string();
    let msg = text.split_once("message: \"").and_then(|(_, rest)| rest.split_once('"')).map(|(m, _)| m.to_string());
    msg.unwrap_or(text)
}

pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut out = SCHEMA_VERSION.to_be_bytes().to_vec();
    let body = bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| Error::failed(format!("cannot encode journal record: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

pub(super) fn decode<T: DeserializeOwned>(id: &str, bytes: &[u8]) -> Result<T> {
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
