//! Local faults under a running upload, on real file systems mounted by the test:
//! a source disk that answers EIO, and a journal on a disk that fills up. Each must
//! stop the run with a clear error, leave the journal usable, and resume to an
//! identical object once the cause is gone, without re-sending confirmed segments.

mod common;

use common::mounts::{EioFs, Tmpfs};
use common::{Slow, Testbed};

const MIB: u64 = 1 << 20;

#[test]
fn a_read_error_on_the_source_stops_cleanly_and_resumes_once_the_disk_reads_again() {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 4 * MIB, 12 * MIB, 9, "eio");
    let (run, obs) = (&t.run, &t.obs);
    // The image on a "disk" whose 4 KiB at 5.1 MiB cannot be read (segment 5), away
    // from the blocks sampled for the file's identity.
    let media = run.path("media");
    std::fs::create_dir(&media).unwrap();
    std::fs::hard_link(&t.src, media.join("disk.img")).unwrap();
    std::fs::write(media.join(".eio"), b"").unwrap();
    let lo = 5 * MIB + MIB / 10;
    let fs = EioFs::start(&media, &run.path("mnt"), lo, lo + 4096, "disk.img");
    let file = fs.mnt.join("disk.img");
    assert!(std::fs::read(&file).is_err(), "the EIO window is in place");
    let args = ["upload", file.to_str().unwrap(), "-c", &t.c, "--segment-size", "1MiB", "--no-progress"];
    let job = run.job_id(&args);

    let out = run.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("segment 5 of job") && err.contains("cannot read the source"), "names the segment: {err}");
    assert!(err.contains("Input/output error"), "the system's reason: {err}");
    assert!(err.contains(&format!("k5up resume {job}")), "the way out: {err}");
    assert!(obs.head(&t.c, "disk.img").is_none(), "no object from an unreadable file");
    let st = run.status(&job);
    assert!(st["last_error"].as_str().unwrap_or("").contains("cannot read the source"), "{st}");
    let before = obs.list(&t.segs, "");

    // The disk reads again: resume finishes, and sends nothing twice.
    std::fs::remove_file(media.join(".eio")).unwrap();
    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(t.object().unwrap(), (t.md5.clone(), t.size));
    let after = obs.list(&t.segs, "");
    for (name, e) in &before {
        assert_eq!(after[name]["last_modified"], e["last_modified"], "{name} was sent again");
    }
}

#[test]
fn a_full_disk_under_the_journal_stops_cleanly_and_resumes_once_space_is_freed() {
    let tb = Testbed::get();
    // sled's log grows 512 KiB at a time (about 3,000 records): enough segments that
    // the journal must grow after the disk is full.
    let t = Slow::new(&tb.small(), 8 * MIB, 6 * MIB + 77, 10, "full");
    let (run, obs) = (&t.run, &t.obs);
    let disk = Tmpfs::mount(&run.journal(), 8 * MIB);
    let mut args = t.upload_args(&["--concurrency", "4"]);
    args[5] = "4KiB";
    let job = run.job_id(&args);
    let mut child = run.spawn(&args);
    run.wait_segments(&mut child, obs, &t.segs, 50);
    let filler = disk.fill();
    let status = child.wait().unwrap();
    let err = run.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "the system's reason: {err}");
    assert!(err.contains(&job), "names the job: {err}");
    assert!(err.contains("free space") && err.contains(&format!("k5up resume {job}")), "the way out: {err}");
    assert!(!err.contains("panicked") && !err.contains("Os {"), "{err}");
    assert!(obs.head(&t.c, "disk.img").is_none());
    let before = obs.list(&t.segs, "");

    std::fs::remove_file(filler).unwrap();
    let out = run.run(&["resume", &job, "--no-progress"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(t.object().unwrap(), (t.md5.clone(), t.size));
    let after = obs.list(&t.segs, "");
    for (name, e) in &before {
        assert_eq!(after[name]["last_modified"], e["last_modified"], "{name} was sent again");
    }
    drop(disk);
}
