//! What identifies the source file: its identity as journaled, and the stamp
//! (inode change time) kept beside it.

use serde::{Deserialize, Serialize};

/// What identifies a file's content without reading all of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// SHA-256 (hex, 32 chars) of 16 blocks of 64 KiB sampled evenly through the file.
    pub fingerprint: String,
}

impl FileIdentity {
    /// Explains how `now` differs from `self` (the journaled identity), if it does.
    pub fn changes(&self, now: &FileIdentity) -> Option<String> {
        if self.size != now.size {
            return Some(format!("its size changed from {} to {} bytes", self.size, now.size));
        }
        if self.mtime_ns != now.mtime_ns {
            return Some("its modification time changed".into());
        }
        if self.fingerprint != now.fingerprint {
            return Some("its content changed".into());
        }
        None
    }
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
