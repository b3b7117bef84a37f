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

mod codec;
mod lock;
mod root;

use std::path::PathBuf;

use codec::{decode, decode_job, decode_segment, encode, sled_err, sled_open};
pub(crate) use root::Opened;
pub use root::Root;

pub(crate) use crate::model::{
    BaseSegment, ImportOutcome, ImportState, JobRecord, Phase, Replaced, RunSettings, SegKind, SegState, SegmentRecord,
    ShareState, SourceStamp,
};

use crate::digest::DigestState;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

const JOB_KEY: &[u8] = b"job";
const DIGEST_KEY: &[u8] = b"digest";
const IMPORT_KEY: &[u8] = b"import";
const SHARE_KEY: &[u8] = b"share";
/// The sharing request, beside `birth.json`.
pub(crate) const SHARE_FILE: &str = "share.json";
/// The objects a job replaces, beside `birth.json`.
const REPLACES_FILE: &str = "replaces.json";
/// The source's change stamp, beside `birth.json`.
const SOURCE_FILE: &str = "source.json";
/// What the store did when the job was planned (its cuts and manifest follow it).
pub(crate) const STORE_FILE: &str = "store.json";
const SETTINGS_KEY: &[u8] = b"settings";
const BASE_KEY: &[u8] = b"base";
const SPLITS_KEY: &[u8] = b"splits";
const SEGMENTS_TREE: &[u8] = b"segments";
/// Segment records written per sled batch when a journal is created or rebuilt.
const BATCH: usize = 10_000;

/// An open job journal. Holds the job's lock while alive.
#[derive(Debug)]
pub struct Journal {
    id: String,
    dir: PathBuf,
    db: sled::Db,
    segs: sled::Tree,
    _lock: lock::JobLock,
}

impl Journal {
    fn open_db(dir: PathBuf, id: &str, lock: lock::JobLock) -> Result<Journal> {
        let db = sled_open(&dir.join("db"), id)?;
        let segs = db.open_tree(SEGMENTS_TREE).map_err(|e| sled_err(id, &dir.join("db"), e))?;
        Ok(Journal { id: id.to_string(), dir, db, segs, _lock: lock })
    }

    /// An error of sled on this journal's database.
    fn sled_err(&self, e: sled::Error) -> Error {
        sled_err(&self.id, &self.dir.join("db"), e)
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
            .map_err(|e| self.sled_err(e))?
            .ok_or_else(|| Error::failed(format!("the journal of job {} has no job record", self.id)))?;
        decode_job(&self.id, &raw)
    }

    /// Replaces the job record (durable at the next flush).
    pub fn put_job(&self, job: &JobRecord) -> Result<()> {
        self.db.insert(JOB_KEY, encode(job)?).map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Every segment, in index order.
    pub fn segments(&self) -> Result<Vec<SegmentRecord>> {
        self.segs
            .iter()
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.sled_err(e))?;
                decode_segment(&self.id, &v)
            })
            .collect()
    }

    /// Replaces a segment record (durable at the next flush).
    pub fn put_segment(&self, s: &SegmentRecord) -> Result<()> {
        self.segs.insert(s.index.to_be_bytes(), encode(s)?).map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Writes `put` and deletes the records keyed `remove`, all at once (a split, or
    /// reconciliation choosing other cuts): a crash leaves either the old records or
    /// the new ones, never a mix. Durable at the next flush.
    pub fn apply(&self, put: &[SegmentRecord], remove: &[u64]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for k in remove {
            batch.remove(&k.to_be_bytes());
        }
        for s in put {
            batch.insert(&s.index.to_be_bytes(), encode(s)?);
        }
        self.segs.apply_batch(batch).map_err(|e| self.sled_err(e))
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

    /// Segments split so far because the link carried less than them (all runs).
    pub fn splits(&self) -> Result<u64> {
        self.get_extra(SPLITS_KEY).map(Option::unwrap_or_default)
    }

    /// Records the number of link splits so far (durable at the next flush).
    pub fn put_splits(&self, n: u64) -> Result<()> {
        self.put_extra(SPLITS_KEY, &n)
    }

    /// The segments of the job's `--base` (empty without one).
    pub fn base(&self) -> Result<Vec<BaseSegment>> {
        self.get_extra(BASE_KEY).map(Option::unwrap_or_default)
    }

    /// Records the segments of the job's `--base` (durable at the next flush).
    pub fn put_base(&self, b: &[BaseSegment]) -> Result<()> {
        self.put_extra(BASE_KEY, &b.to_vec())
    }

    /// The import's state, once an import was started.
    pub fn import(&self) -> Result<Option<ImportState>> {
        self.get_extra(IMPORT_KEY)
    }

    /// Replaces the import's state (durable at the next flush).
    pub fn put_import(&self, s: &ImportState) -> Result<()> {
        self.put_extra(IMPORT_KEY, s)
    }

    /// The sharing step's state, once sharing was asked for.
    pub fn share(&self) -> Result<Option<ShareState>> {
        self.get_extra(SHARE_KEY)
    }

    /// Replaces the sharing step's state (durable at the next flush). The request
    /// (which projects, which Glance) is also kept beside the birth record, in
    /// `share.json`, so a journal rebuilt after damage shares the image again.
    pub fn put_share(&self, s: &ShareState) -> Result<()> {
        self.put_extra(SHARE_KEY, s)?;
        let request = ShareState::new(s.targets.clone(), s.glance_url.clone());
        let bytes = serde_json::to_vec_pretty(&request).map_err(|e| Error::failed(e.to_string()).caused_by(e))?;
        root::write_atomic(&self.dir, SHARE_FILE, &bytes)
    }

    /// The objects this job replaces, whose segments it deletes once its own
    /// manifest is verified (`replaces.json`; empty when there is none).
    pub fn replaces(&self) -> Result<Vec<Replaced>> {
        read_json(&self.dir, REPLACES_FILE).map(Option::unwrap_or_default)
    }

    /// Replaces the list of objects this job replaces (durable when it returns).
    pub fn put_replaces(&self, r: &[Replaced]) -> Result<()> {
        write_json(&self.dir, REPLACES_FILE, &r)
    }

    /// The source's change stamp as last checked (`source.json`).
    pub fn source_stamp(&self) -> Result<SourceStamp> {
        read_json(&self.dir, SOURCE_FILE).map(Option::unwrap_or_default)
    }

    /// Records the source's change stamp (durable when it returns).
    pub fn put_source_stamp(&self, s: &SourceStamp) -> Result<()> {
        write_json(&self.dir, SOURCE_FILE, s)
    }

    /// What the job's store does, as probed when the job was planned; a job made
    /// before the probes was planned for Swift's behaviour, and keeps it.
    pub fn store(&self) -> Result<crate::swift::StoreTraits> {
        read_json(&self.dir, STORE_FILE).map(|t| t.unwrap_or(crate::swift::StoreTraits::swift()))
    }

    fn get_extra<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.db.get(key).map_err(|e| self.sled_err(e))? {
            Some(raw) => decode(&self.id, &raw).map(Some),
            None => Ok(None),
        }
    }

    fn put_extra<T: Serialize>(&self, key: &[u8], v: &T) -> Result<()> {
        self.db.insert(key, encode(v)?).map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Makes every write so far durable (fsync). A segment counts as confirmed only
    /// after the flush that follows its record.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Atomically replaces the job's status snapshot (read by other processes).
    pub fn write_snapshot(&self, bytes: &[u8]) -> Result<()> {
        root::write_atomic(&self.dir, "status.json", bytes)
    }
}

/// A JSON file of a job's directory; `None` when it does not exist.
pub(super) fn read_json<T: DeserializeOwned>(dir: &std::path::Path, name: &str) -> Result<Option<T>> {
    match std::fs::read(dir.join(name)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::failed(format!("{} is unreadable: {e}", dir.join(name).display())).caused_by(e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("cannot read {}", dir.join(name).display()), e)),
    }
}

/// Writes a JSON file of a job's directory atomically and durably.
fn write_json<T: Serialize + ?Sized>(dir: &std::path::Path, name: &str, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::failed(e.to_string()).caused_by(e))?;
    root::write_durable(dir, name, &bytes)
}

#[cfg(test)]
mod tests {
    use super::codec::SCHEMA_VERSION;
    use super::*;
    use crate::model::tests_support::sample_job;

    fn seg(i: u64) -> SegmentRecord {
        SegmentRecord::new(i, i * 4, 4, SegKind::Data)
    }

    #[test]
    fn create_reopen_and_update() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(Some(d.path().to_path_buf())).unwrap();
        let j = root.create(&sample_job("abc123"), &crate::swift::StoreTraits::swift(), (0..3).map(seg)).unwrap();
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
        // A split: one record becomes two, another goes, in one batch.
        let (mut head, mut rest) = (seg(0), seg(0));
        (head.length, rest.index, rest.offset, rest.length) = (1, 1, 1, 3);
        j.apply(&[head.clone(), rest.clone()], &[2]).unwrap();
        assert_eq!(j.segments().unwrap(), vec![head, rest]);
    }

    #[test]
    fn second_writer_is_refused_and_reader_falls_back() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(Some(d.path().to_path_buf())).unwrap();
        let j = root.create(&sample_job("abc"), &crate::swift::StoreTraits::swift(), (0..3).map(seg)).unwrap();
        // flock is per open file description: a second open in this process conflicts too
        let e = root.open("abc").unwrap_err();
        assert!(e.msg.contains("is busy: k5up pid"), "{e}");
        assert!(root.open_reader("abc").unwrap().is_none());
        drop(j);
        assert!(root.open_reader("abc").unwrap().is_some());
    }

    #[test]
    fn a_creation_cut_off_after_the_birth_record_is_finished_from_it() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(Some(d.path().to_path_buf())).unwrap();
        drop(root.create(&sample_job("cut"), &crate::swift::StoreTraits::swift(), (0..3).map(seg)).unwrap());
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
        let j = root.create(&sample_job("dmg"), &crate::swift::StoreTraits::swift(), (0..3).map(seg)).unwrap();
        let mut bad = SCHEMA_VERSION.to_be_bytes().to_vec();
        bad.extend([0xff, 0xff]);
        j.segs.insert(1u64.to_be_bytes(), bad).unwrap();
        j.flush().unwrap();
        drop(j);
        let Opened::Damaged { reason, birth, held } = root.open_checked("dmg").unwrap() else { panic!("trusted") };
        assert_eq!(reason, "the journal of job dmg is damaged: a record does not decode");
        assert_eq!(**birth.as_ref().unwrap(), sample_job("dmg"));
        let j = root.rebuild(held, &birth.unwrap(), (0..3).map(seg)).unwrap();
        assert_eq!(j.segments().unwrap().len(), 3);
        assert_eq!(j.share().unwrap(), None);
        drop(j);
        assert!(matches!(root.open_checked("dmg").unwrap(), Opened::Ok(_)));
        let kept = std::fs::read_dir(d.path().join("jobs/dmg")).unwrap().flatten();
        assert!(kept.into_iter().any(|e| e.file_name().to_string_lossy().starts_with("db.damaged-")));
    }

    #[test]
    fn a_rebuilt_journal_keeps_the_sharing_request_and_shares_again() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(Some(d.path().to_path_buf())).unwrap();
        let j = root.create(&sample_job("shr"), &crate::swift::StoreTraits::swift(), (0..2).map(seg)).unwrap();
        let t = crate::model::ShareTarget { id: "p2".into(), name: Some("team".into()) };
        let mut s = ShareState::new(vec![t], Some("http://glance".into()));
        s.set_status("p2", "accepted");
        s.done = true;
        j.put_share(&s).unwrap();
        let mut bad = SCHEMA_VERSION.to_be_bytes().to_vec();
        bad.extend([0xff, 0xff]);
        j.segs.insert(1u64.to_be_bytes(), bad).unwrap();
        j.flush().unwrap();
        drop(j);
        let Opened::Damaged { birth, held, .. } = root.open_checked("shr").unwrap() else { panic!("trusted") };
        let j = root.rebuild(held, &birth.unwrap(), (0..2).map(seg)).unwrap();
        let back = j.share().unwrap().unwrap();
        assert_eq!((back.targets, back.glance_url.as_deref()), (s.targets, Some("http://glance")));
        assert!(!back.done && back.members.is_empty(), "the statuses are read from Glance again");
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
        let j = root.create(&sample_job("v"), &crate::swift::StoreTraits::swift(), (0..1).map(seg)).unwrap();
        let mut raw = encode(&sample_job("v")).unwrap();
        raw[0..2].copy_from_slice(&99u16.to_be_bytes());
        j.db.insert(JOB_KEY, raw).unwrap();
        let e = j.job().unwrap_err();
        assert!(e.msg.contains("schema 99"), "{e}");
        let mut bad = SCHEMA_VERSION.to_be_bytes().to_vec();
        bad.extend([255, 255, 255]);
        j.db.insert(JOB_KEY, bad).unwrap();
        let e = j.job().unwrap_err();
        assert!(e.msg.contains("a record does not decode") && e.is_damage(), "{e}");
    }
}
