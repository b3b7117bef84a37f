//! The records of a job: what the journal stores (one job record, one record per
//! segment, the import's state, the run's tunables) and what the image import is
//! asked to do. A leaf module: the journal stores these, the import reads and
//! reports them, and neither knows the other. Secrets never appear here:
//! credentials are read from the environment on every run.

mod import;
mod job;
mod segment;
mod share;
mod source_id;

pub(crate) use import::*;
pub use job::*;
pub use segment::*;
pub(crate) use share::*;
pub(crate) use source_id::*;

/// Fixtures for unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::plan::ManifestKind;
    use crate::plan::Plan;
    use crate::swift::Limits;

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
            direction: Direction::Upload,
        }
    }

    #[test]
    fn a_birth_record_without_direction_is_an_upload() {
        let mut v = serde_json::to_value(sample_job("old")).unwrap();
        assert_eq!(v["direction"], "upload");
        v.as_object_mut().unwrap().remove("direction");
        let job: JobRecord = serde_json::from_value(v).unwrap();
        assert_eq!((job.direction, job), (Direction::Upload, sample_job("old")));
        let down: Direction = serde_json::from_str("\"download\"").unwrap();
        assert_eq!(down, Direction::Download);
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
