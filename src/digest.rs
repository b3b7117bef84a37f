//! Whole-image digests (SHA-1 for K5's `checksum`, SHA-512 for Glance's
//! `os_hash_value`, any the user asks for), computed in the same sequential read
//! pass that hashes the segments, and resumable: the running state of every
//! hasher is saved at segment boundaries (digest 0.11's `SerializableState`), so
//! a resume never re-reads the part of the file already hashed.

use std::fmt;
use std::str::FromStr;

use digest::Digest;
use digest::common::hazmat::SerializableState;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A digest algorithm of the whole image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Algo {
    /// MD5 (Glance's legacy `checksum`).
    Md5,
    /// SHA-1 (K5 vmimport's `checksum`).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512 (Glance's `os_hash_value`).
    Sha512,
}

impl Algo {
    /// All of them, in display order.
    pub const ALL: [Algo; 4] = [Algo::Md5, Algo::Sha1, Algo::Sha256, Algo::Sha512];

    /// The lower-case name (`sha512`), as in `--digest` and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algo {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.to_ascii_lowercase().replace(['-', '_'], "");
        Algo::ALL.into_iter().find(|a| a.as_str() == norm).ok_or_else(|| {
            Error::input(format!("unknown digest `{s}`")).hint("--digest takes md5, sha1, sha256 or sha512")
        })
    }
}

/// One running hasher.
#[derive(Clone)]
enum Running {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

fn restore<H: SerializableState>(algo: Algo, bytes: &[u8]) -> Result<H> {
    let arr = bytes.try_into().map_err(|_| {
        Error::failed(format!("the saved {algo} state has {} bytes, not the expected size", bytes.len()))
    })?;
    H::deserialize(arr).map_err(|_| Error::failed(format!("the saved {algo} state is not valid")))
}

impl Running {
    fn new(a: Algo) -> Self {
        match a {
            Algo::Md5 => Running::Md5(md5::Md5::new()),
            Algo::Sha1 => Running::Sha1(sha1::Sha1::new()),
            Algo::Sha256 => Running::Sha256(sha2::Sha256::new()),
            Algo::Sha512 => Running::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Running::Md5(h) => h.update(b),
            Running::Sha1(h) => h.update(b),
            Running::Sha256(h) => h.update(b),
            Running::Sha512(h) => h.update(b),
        }
    }

    fn save(&self) -> Vec<u8> {
        match self {
            Running::Md5(h) => h.serialize().to_vec(),
            Running::Sha1(h) => h.serialize().to_vec(),
            Running::Sha256(h) => h.serialize().to_vec(),
            Running::Sha512(h) => h.serialize().to_vec(),
        }
    }

    fn load(a: Algo, bytes: &[u8]) -> Result<Self> {
        Ok(match a {
            Algo::Md5 => Running::Md5(restore(a, bytes)?),
            Algo::Sha1 => Running::Sha1(restore(a, bytes)?),
            Algo::Sha256 => Running::Sha256(restore(a, bytes)?),
            Algo::Sha512 => Running::Sha512(restore(a, bytes)?),
        })
    }

    fn finish(self) -> String {
        match self {
            Running::Md5(h) => hex::encode(h.finalize()),
            Running::Sha1(h) => hex::encode(h.finalize()),
            Running::Sha256(h) => hex::encode(h.finalize()),
            Running::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// The journaled progress of the whole-image digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DigestState {
    /// Bytes of the file already hashed (always a segment boundary).
    pub offset: u64,
    /// Saved hasher states, one per algorithm, while hashing.
    pub states: Vec<(Algo, Vec<u8>)>,
    /// The final values (hex), once the whole file was hashed.
    pub values: Vec<(Algo, String)>,
}

impl DigestState {
    /// True when every value is known.
    pub fn complete(&self, algos: &[Algo]) -> bool {
        algos.iter().all(|a| self.value(*a).is_some())
    }

    /// The final value of `a`, if known.
    pub fn value(&self, a: Algo) -> Option<&str> {
        self.values.iter().find(|(x, _)| *x == a).map(|(_, v)| v.as_str())
    }
}

/// The whole-image hashers of one job, fed in file order.
pub(crate) struct Whole {
    offset: u64,
    hashers: Vec<(Algo, Running)>,
}

impl fmt::Debug for Whole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algos: Vec<_> = self.hashers.iter().map(|(a, _)| a.as_str()).collect();
        write!(f, "Whole({} at {})", algos.join(","), self.offset)
    }
}

impl Whole {
    /// Continues from a saved state (or starts at 0). A state that does not cover
    /// every algorithm in `algos`, or cannot be restored, restarts from 0.
    pub(crate) fn resume(algos: &[Algo], saved: &DigestState) -> Whole {
        let restored: Option<Vec<(Algo, Running)>> = algos
            .iter()
            .map(|a| {
                let bytes = saved.states.iter().find(|(x, _)| x == a).map(|(_, b)| b)?;
                Running::load(*a, bytes).ok().map(|r| (*a, r))
            })
            .collect();
        match restored {
            Some(h) if saved.offset > 0 => Whole { offset: saved.offset, hashers: h },
            _ => Whole { offset: 0, hashers: algos.iter().map(|a| (*a, Running::new(*a))).collect() },
        }
    }

    /// Bytes hashed so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Feeds the next bytes of the file.
    pub(crate) fn update(&mut self, b: &[u8]) {
        for (_, h) in &mut self.hashers {
            h.update(b);
        }
        self.offset += b.len() as u64;
    }

    /// The state to journal.
    pub(crate) fn checkpoint(&self) -> DigestState {
        DigestState {
            offset: self.offset,
            states: self.hashers.iter().map(|(a, h)| (*a, h.save())).collect(),
            values: vec![],
        }
    }

    /// The final values.
    pub(crate) fn finish(self) -> DigestState {
        DigestState {
            offset: self.offset,
            states: vec![],
            values: self.hashers.into_iter().map(|(a, h)| (a, h.finish())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_continues_exactly() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let algos = Algo::ALL;
        let mut one = Whole::resume(&algos, &DigestState::default());
        one.update(&data);
        let straight = one.finish();

        // Checkpoint at an odd offset (not a block multiple), restore, continue.
        let mut a = Whole::resume(&algos, &DigestState::default());
        a.update(&data[..100_003]);
        let saved = a.checkpoint();
        let mut b = Whole::resume(&algos, &saved);
        assert_eq!(b.offset(), 100_003);
        b.update(&data[100_003..]);
        assert_eq!(b.finish().values, straight.values);
        assert_eq!(straight.value(Algo::Sha1), Some(hex::encode(<sha1::Sha1 as Digest>::digest(&data)).as_str()));
    }

    #[test]
    fn names_and_bad_state() {
        assert_eq!("SHA-512".parse::<Algo>().unwrap(), Algo::Sha512);
        assert!("crc32".parse::<Algo>().is_err());
        let bad = DigestState { offset: 10, states: vec![(Algo::Sha1, vec![1, 2, 3])], values: vec![] };
        let w = Whole::resume(&[Algo::Sha1], &bad);
        assert_eq!(w.offset(), 0, "an unusable state restarts from the beginning");
        let partial = Whole::resume(&[Algo::Sha1, Algo::Sha512], &Whole::resume(&[Algo::Sha1], &bad).checkpoint());
        assert_eq!(partial.offset(), 0);
    }
}
