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
    read_error_stops_and_resumes(b"", "eio");
}

/// The sector reads once (for the hash), then fails: the error comes from inside
/// the PUT body, and must stop the run at once as well, not be retried as a
/// network fault for `--retry-for`.
#[test]
fn a_read_error_while_sending_a_body_stops_at_once() {
    read_error_stops_and_resumes(b"1", "eio-send");
}

/// `spare`: the content of `.eio` (how many reads of the bad range still succeed).
fn read_error_stops_and_resumes(spare: &[u8], prefix: &str) {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 4 * MIB, 12 * MIB, 9, prefix);
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
    // A fresh mount, so the count of good reads starts from zero.
    drop(fs);
    std::fs::write(media.join(".eio"), spare).unwrap();
    let fs = EioFs::start(&media, &run.path("mnt"), lo, lo + 4096, "disk.img");
    let file = fs.mnt.join("disk.img");
    // A read error retried as a network fault would end after --retry-for with exit 75
    // and a network message; one taken for what it is ends at once with exit 1.
    let args = ["upload", file.to_str().unwrap(), "-c", &t.c, "--segment-size", "1MiB", "--no-progress"];
    let job = run.job_id(&args);

    let mut first = args.to_vec();
    first.extend(["--retry-for", "20s"]);
    let out = run.run(&first);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let named = format!("segment {:016}+{MIB} of job", 5 * MIB);
    assert!(err.contains(&named) && err.contains("cannot read the source"), "names the segment: {err}");
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
    obs.assert_not_resent(&t.segs, &before, "");
}

#[test]
fn a_full_disk_under_the_journal_stops_cleanly_and_resumes_once_space_is_freed() {
    let tb = Testbed::get();
    // 24 MiB at 4 MiB/s: the upload is still running well after the disk fills.
    let t = Slow::new(&tb.small(), 4 * MIB, 24 * MIB + 77, 10, "full");
    let (run, obs) = (&t.run, &t.obs);
    let disk = Tmpfs::mount(&run.journal(), 8 * MIB);
    let args = t.upload_args(&["--concurrency", "4"]);
    let job = run.job_id(&args);

    // 1. Full before the job is created: refused with the reason and the way out,
    //    nothing sent.
    let filler = disk.fill();
    let out = run.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "a full disk is resumable once space is freed: {err}");
    assert!(err.contains("No space left on device") && err.contains(&job), "{err}");
    assert!(err.contains("free space"), "the way out: {err}");
    assert!(obs.list(&t.segs, "").is_empty(), "nothing was sent");
    let puts: Vec<String> =
        t.proxy.stats.requests().into_iter().filter(|r| r.put_into(&t.segs).is_some()).map(|r| r.line).collect();
    assert!(puts.is_empty(), "nothing was sent, as the proxy saw: {puts:?}");
    std::fs::remove_file(&filler).unwrap();

    // 2. Full in the middle of the upload: the run stops within a second (the status
    //    snapshot, written every second, finds the disk full; a journal write that
    //    fails first stops it the same way), says why and what to do, and loses
    //    nothing: once space is freed, resume completes without re-sending.
    let mut child = run.spawn(&args);
    run.wait_segments(&mut child, obs, &t.segs, 3);
    let filler = disk.fill();
    let status = child.wait().unwrap();
    let err = run.stderr();
    assert_eq!(status.code(), Some(75), "stopped, resumable: {err}");
    assert!(err.contains("No space left on device") && err.contains(&job), "{err}");
    assert!(err.contains("free space") && err.contains(&format!("k5up resume {job}")), "the way out: {err}");
    assert!(!err.contains("panicked") && !err.contains("Os {"), "{err}");
    assert!(obs.head(&t.c, "disk.img").is_none());
    let before = obs.list(&t.segs, "");
    assert!(before.len() < 25, "stopped before the end: {} segments up", before.len());
    std::fs::remove_file(filler).unwrap();
    let out = run.run(&["resume", &job, "--no-progress"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(t.object().unwrap(), (t.md5.clone(), t.size));
    obs.assert_not_resent(&t.segs, &before, "");
    drop(disk);
}
