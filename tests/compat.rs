//! Journals written by an older k5up still open and resume.
//!
//! tests/fixtures/journal-v4.tar.gz is the journal of an upload interrupted by
//! Ctrl-C, made by k5up 8ee015d (record schema 4, before job records said their
//! direction) with scripts/make-journal-fixture, which documents the source file,
//! the container and the options used.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Observer, Run, Testbed, write_random};

const MIB: u64 = 1 << 20;
/// The source as the script made it: the journal keeps its canonical path, its
/// size, its mtime and the MD5 of each segment read.
const DIR: &str = "/tmp/k5up-compat-v4";
const SIZE: u64 = 24 * MIB + 12345;
const SEED: u64 = 4;
const MTIME_SECS: u64 = 1_700_000_000;
const SOURCE_MD5: &str = "fe30e0b0efb02ba988873bf4383da82e";
const CONTAINER: &str = "k5up-compat-v4";

/// Serializes the runs of this test (its path and container are fixed): held
/// until dropped.
fn exclusive() -> std::fs::File {
    let f = std::fs::File::create(format!("{DIR}.lock")).unwrap();
    f.lock().unwrap();
    f
}

/// Deletes every object of the job's containers, and checks that none is left.
fn empty(obs: &Observer) {
    for c in [CONTAINER.to_string(), format!("{CONTAINER}_segments")] {
        for name in obs.list(&c, "").keys() {
            obs.delete(&c, name, "");
        }
        assert!(obs.list(&c, "").is_empty(), "{c} is empty");
    }
}

/// The source file again, at the path the journal names, with its mtime.
fn recreate_source() -> PathBuf {
    match std::fs::remove_dir_all(DIR) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("cannot remove {DIR}: {e}"),
        _ => {}
    }
    std::fs::create_dir_all(DIR).unwrap();
    let src = Path::new(DIR).join("disk.img");
    assert_eq!(write_random(&src, SIZE, SEED), SOURCE_MD5, "the source the fixture was made from");
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(MTIME_SECS);
    std::fs::File::options().write(true).open(&src).unwrap().set_modified(mtime).unwrap();
    src
}

fn extract_fixture(journal: &Path) {
    let tar = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v4.tar.gz");
    std::fs::create_dir_all(journal).unwrap();
    let out = Command::new("tar").arg("-xzf").arg(&tar).arg("-C").arg(journal).output().unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_interrupted_upload_journaled_by_schema_4_resumes_to_the_whole_object() {
    let _one_at_a_time = exclusive();
    let tb = Testbed::get();
    let obs = Observer::login(&tb.stock());
    // The server forgets the first run: every segment the old journal confirms is
    // gone, and must be sent again rather than trusted.
    empty(&obs);
    let src = recreate_source();
    let run = Run::new(tb.stock());
    extract_fixture(&run.journal());

    let jobs = run.jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let before = &jobs[0];
    let job = before["job"].as_str().unwrap().to_string();
    assert_eq!(before["direction"], "upload", "{before}");
    assert_eq!(before["phase"], "uploading", "not damaged, not rebuilt: {before}");
    assert!(before["hint"].is_null(), "{before}");
    assert_eq!(before["file"], src.to_str().unwrap());
    assert_eq!((before["container"].as_str(), before["object"].as_str()), (Some(CONTAINER), Some("disk.img")));
    assert_eq!(before["bytes_total"], SIZE);
    assert_eq!(before["settings"]["bwlimit"], 4 * MIB, "the old run's tunables are read: {before}");
    let confirmed = before["segments_confirmed"].as_u64().unwrap();
    let total = before["segments_total"].as_u64().unwrap();
    assert!(confirmed >= 1 && confirmed < total, "an interrupted job with confirmed segments: {before}");
    assert_eq!(run.status(&job)["direction"], "upload");

    let out = run.run(&["resume", &job, "--no-progress"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume failed ({:?}):\n{err}", out.status.code());

    // What a user checks: the object reads back as the file.
    assert_eq!(obs.get_md5(CONTAINER, "disk.img"), Some((SOURCE_MD5.to_string(), SIZE)));
    let st = run.status(&job);
    assert_eq!((st["phase"].as_str(), st["direction"].as_str()), (Some("done"), Some("upload")), "{st}");
    assert_eq!(st["segments_confirmed"], st["segments_total"], "{st}");
    // Not a pass by trusting the journal: the containers were emptied, so every
    // segment the manifest reads was sent again, and the server holds them all.
    let segments = obs.list(&format!("{CONTAINER}_segments"), "");
    let held: u64 = segments.values().map(|e| e["bytes"].as_u64().unwrap()).sum();
    assert_eq!((segments.len() as u64, held), (total, SIZE), "the segments on the server");

    empty(&obs);
    std::fs::remove_dir_all(DIR).unwrap();
}
