//! Resume edge cases: a lost journal, a changed file, two processes on one job,
//! tokens that expire during the upload, abort.

mod common;

use std::time::Duration;

use common::throttle::Throttle;
use common::{Observer, Run, Slow, Testbed, unique, wait_for, write_random};

const MIB: u64 = 1 << 20;

#[test]
fn lost_journal_is_rebuilt_by_the_same_command_without_resending() {
    let tb = Testbed::get();
    // A proxy that counts what crosses the link (no real cap).
    let proxy = Throttle::start(tb.small().port(), 1 << 30);
    let run = Run::new(tb.small().via(proxy.port));
    let src = run.path("disk.img");
    let md5 = write_random(&src, 10 * MIB + 5, 1);
    let c = unique("lost");
    let s = src.to_str().unwrap();
    let args = ["upload", s, "-c", &c, "--segment-size", "1MiB", "--no-progress"];
    run.ok(&args);
    let obs = Observer::login(&tb.small());
    let before = obs.list(&format!("{c}_segments"), "disk.img/");
    assert_eq!(before.len(), 11, "the segments are there to compare against");
    let object_before = obs.head(&c, "disk.img").unwrap();
    // resuming a finished job touches nothing
    let job = run.only_job();
    let out = run.ok(&["resume", &job, "--no-progress"]);
    assert!(out.contains("is complete"), "{out}");
    assert_eq!(obs.list(&format!("{c}_segments"), "disk.img/"), before);
    assert_eq!(obs.head(&c, "disk.img").unwrap()["last-modified"], object_before["last-modified"]);
    std::fs::remove_dir_all(run.journal()).unwrap();
    let (seen, up) = (proxy.stats.requests().len(), proxy.stats.bytes_up.load(std::sync::atomic::Ordering::Relaxed));
    let out = run.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // A new job (names of its own): the old segments are copied on the server, then
    // deleted once the object is verified: one job's 11 segments remain.
    let after = obs.list(&format!("{c}_segments"), "disk.img/");
    assert_eq!(after.len(), 11, "{:?}", after.keys());
    assert!(before.keys().all(|n| !after.contains_key(n)), "the lost job's segments are deleted");
    assert_eq!(run.status(&run.only_job())["phase"], "done");
    // The wire, as the proxy saw it: every segment PUT of the rerun is a server-side
    // copy (X-Copy-From, no body), and requests only crossed the link.
    let segs = format!("{c}_segments");
    let sent: Vec<String> = proxy.stats.requests()[seen..]
        .iter()
        .filter(|r| r.put_into(&segs).is_some() && (r.header("x-copy-from").is_none() || r.body_len() > 0))
        .map(|r| r.line.clone())
        .collect();
    assert!(sent.is_empty(), "segments sent again instead of copied: {sent:?}");
    let copies = proxy.stats.requests()[seen..].iter().filter(|r| r.put_into(&segs).is_some()).count();
    assert_eq!(copies, 11, "the 11 segments were copied on the server");
    let wire = proxy.stats.bytes_up.load(std::sync::atomic::Ordering::Relaxed) - up;
    assert!(wire < MIB, "{wire} bytes crossed the link: segment bodies were sent again");
    assert_eq!(obs.get_md5(&c, "disk.img").unwrap().0, md5);
}

#[test]
fn changed_file_is_refused() {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 4 * MIB, 12 * MIB, 2, "changed");
    let (run, src, c, obs) = (&t.run, &t.src, &t.c, &t.obs);
    let args = t.upload_args(&[]);
    let job = run.job_id(&args);
    run.kill_after(&args, obs, &t.segs, 1);
    t.proxy.wait_idle(Duration::from_secs(30)); // (the killed process's last bytes land first)
    // Change the content (same size).
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(src).unwrap();
    f.write_all_at(b"changed!", 0).unwrap();
    drop(f);
    let out = run.run(&["resume", &job, "--no-progress"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has changed since the upload started"), "{err}");
    assert!(obs.head(c, "disk.img").is_none(), "no object was written from a changed file");

    // The same upload command again: not a silent second job for the same object
    // (resuming the first one later would overwrite the second one's object).
    let out = run.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("belongs to job {job}")), "names the other job: {err}");
    assert!(err.contains(&format!("k5up abort {job}")) && err.contains("--replace"), "the ways out: {err}");
    assert_eq!(run.jobs().len(), 1, "no second job");
    let old_segments = obs.list(&t.segs, "");
    assert!(!old_segments.is_empty());

    // --replace: the old job is dropped (its segments deleted), the changed file uploaded.
    let mut replace = args.clone();
    replace.push("--replace");
    run.ok(&replace);
    let jobs = run.jobs();
    assert_eq!(jobs.len(), 1);
    assert_ne!(jobs[0]["job"], job.as_str());
    let md5 = common::md5_of_range(src, 0, t.size);
    assert_eq!(obs.get_md5(c, "disk.img"), Some((md5, t.size)), "the changed file's content");
    let now = obs.list(&t.segs, "");
    assert!(
        old_segments.keys().all(|k| !now.contains_key(k)),
        "the old job's segments are deleted once the new object is verified"
    );
    assert_eq!(run.run(&["resume", &job]).status.code(), Some(2), "the old job is gone");
}

#[test]
fn second_process_is_refused_and_status_works_meanwhile() {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 4 * MIB, 12 * MIB, 3, "twice");
    let run = &t.run;
    let args = t.upload_args(&["--concurrency", "2"]);
    let job = run.job_id(&args);
    let mut child = run.spawn(&args);
    let pid = child.id();
    // status from another process while the upload holds the journal
    let st = wait_for(Duration::from_secs(30), || {
        let out = run.run(&["status", &job, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["running"] == true && v["segments_confirmed"].as_u64().unwrap() >= 1).then_some(v)
    });
    assert_eq!(st["pid"], pid, "{st}");
    assert_eq!(st["phase"], "uploading");
    let jobs = run.jobs();
    assert_eq!(jobs[0]["job"], job.as_str());
    // Every command that needs the job (the same upload, resume, --replace, abort,
    // verify, and another file for the same object) is refused alike: one exit code
    // (2), one message naming the other process and how to stop it.
    let other = run.path("other.img");
    write_random(&other, MIB, 99);
    let other = other.to_str().unwrap().to_string();
    let replace = [&args[..], &["--replace"]].concat();
    let same_object = ["upload", &other, "-c", &t.c, "-o", "disk.img", "--no-progress"];
    let dry = run.ok(&[&args[..], &["--dry-run"]].concat());
    assert!(dry.contains(&job), "{dry}");
    let cases: [&[&str]; 6] =
        [&args, &["resume", &job, "--no-progress"], &replace, &["abort", &job], &["verify", &job], &same_object];
    for a in cases {
        let out = run.run(a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {err}");
        assert!(err.contains(&format!("job {job} is busy: k5up pid {pid} is working on it")), "{a:?}: {err}");
        assert!(err.contains(&format!("kill {pid}")), "{a:?}: how to stop it first: {err}");
    }
    assert!(child.wait().unwrap().success(), "{}", run.stderr());
    assert_eq!(t.object().unwrap().0, t.md5);
}

#[test]
fn upload_survives_several_token_expiries() {
    let tb = Testbed::get();
    let life: u64 = tb.var("SHORT_TOKEN_LIFE").parse().unwrap();
    // About 5 token lives of upload time.
    let rate = 2 * MIB;
    let size = rate * life * 5;
    let throttle = Throttle::start(tb.short().port(), rate);
    let creds = tb.short().via(throttle.port);
    let run = Run::new(creds.clone());
    let src = run.path("disk.img");
    let md5 = write_random(&src, size, 4);
    let c = unique("token");
    let s = src.to_str().unwrap();
    let t0 = std::time::Instant::now();
    let out = run.run(&["-v", "upload", s, "-c", &c, "--segment-size", "1MiB", "--concurrency", "2", "--no-progress"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(t0.elapsed() > Duration::from_secs(3 * life), "the upload outlived several tokens");
    // What the server side saw: several logins, and the segments sent with several
    // distinct tokens (each issued by tempauth for a few seconds).
    let seen = throttle.stats.requests();
    let logins = seen.iter().filter(|r| r.line.starts_with("GET /auth/")).count();
    let tokens: std::collections::HashSet<&str> =
        seen.iter().filter(|r| r.line.starts_with("PUT ")).filter_map(|r| r.header("x-auth-token")).collect();
    assert!(logins >= 3, "expected several logins, the proxy saw {logins}");
    assert!(tokens.len() >= 3, "expected segments sent under several tokens, saw {}", tokens.len());
    assert_eq!(Observer::login(&tb.short()).get_md5(&c, "disk.img").unwrap(), (md5, size));
}

#[test]
fn abort_deletes_segments_and_journal() {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 4 * MIB, 12 * MIB, 5, "abort");
    let (run, obs, c) = (&t.run, &t.obs, &t.c);
    let args = t.upload_args(&[]);
    let job = run.job_id(&args);
    run.kill_after(&args, obs, &t.segs, 2);
    // What the killed process had handed to the kernel still reaches the server (the
    // proxy forwards it): only then is the listing what abort will find.
    t.proxy.wait_idle(Duration::from_secs(30));
    assert_eq!(run.status(&job)["phase"], "uploading");
    assert!(obs.list(&t.segs, "").len() >= 2, "segments were up before the abort");
    let out = run.ok(&["abort", &job]);
    assert!(out.contains("aborted"), "{out}");
    let left = obs.list(&format!("{c}_segments"), "");
    assert!(left.is_empty(), "segments deleted: left {left:?}\n{out}");
    assert!(run.jobs().is_empty(), "journal entry removed");
    let out = run.run(&["resume", &job]);
    assert_eq!(out.status.code(), Some(2), "unknown job after abort");
}

/// The manifest PUT fails (the server answers 503 to every request for an object
/// of the target container): the job stops in phase `manifest` with every segment
/// up and no object. abort deletes the segments: nothing refers to them.
#[test]
fn abort_in_the_manifest_phase_without_an_object_deletes_the_segments() {
    let tb = Testbed::get();
    let c = unique("abortm");
    let obs = Observer::login(&tb.small());
    let faults = vec![common::throttle::Fault::Reply {
        method: obs.object_request("PUT", &c),
        status: 503,
        retry_after: None,
        count: 1000,
    }];
    let proxy = Throttle::with_faults(tb.small().port(), 1 << 40, faults);
    let run = Run::new(tb.small().via(proxy.port));
    let src = run.path("disk.img");
    write_random(&src, 3 * MIB + 1, 51);
    let s = src.to_str().unwrap();
    let args = ["upload", s, "-c", &c, "--segment-size", "1MiB", "--no-progress", "--retry-for", "2s"];
    let out = run.run(&args);
    assert_eq!(out.status.code(), Some(75), "{}", String::from_utf8_lossy(&out.stderr));
    let job = run.only_job();
    assert_eq!(run.status(&job)["phase"], "manifest");
    let segs = format!("{c}_segments");
    assert_eq!(obs.list(&segs, "").len(), 4, "every segment is up");
    assert!(obs.head(&c, "disk.img").is_none());
    let out = run.ok(&["abort", &job]);
    assert!(out.contains("4 segment object(s) deleted"), "{out}");
    assert!(obs.list(&segs, "").is_empty(), "segments deleted");
}

/// A finished object (SLO and DLO) is kept with its segments by abort, and reads
/// back whole afterwards; `--purge` deletes both and says so.
#[test]
fn abort_keeps_a_finished_object_and_purge_deletes_it() {
    let tb = Testbed::get();
    let obs = Observer::login(&tb.small());
    for manifest in ["slo", "dlo"] {
        let run = Run::new(tb.small());
        let src = run.path("disk.img");
        let md5 = write_random(&src, 3 * MIB + 1, 52);
        let c = unique("abortd");
        let segs = format!("{c}_segments");
        let s = src.to_str().unwrap();
        let args = ["upload", s, "-c", &c, "--segment-size", "1MiB", "--manifest", manifest, "--no-progress"];
        run.ok(&args);
        let before = obs.list(&segs, "");
        assert_eq!(before.len(), 4);
        let out = run.ok(&["abort", &run.only_job()]);
        assert!(out.contains("kept"), "{out}");
        assert!(run.jobs().is_empty(), "journal entry removed");
        assert_eq!(obs.list(&segs, ""), before, "{manifest}: segments kept");
        assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5.clone(), 3 * MIB + 1)), "{manifest}: reads back whole");

        // The same upload again adopts everything; then --purge deletes object and segments.
        run.ok(&args);
        let out = run.ok(&["abort", &run.only_job(), "--purge"]);
        assert!(out.contains(&format!("{c}/disk.img deleted")) && out.contains("4 segment object(s) deleted"), "{out}");
        assert!(obs.head(&c, "disk.img").is_none(), "{manifest}: object deleted");
        assert!(obs.list(&segs, "").is_empty(), "{manifest}: segments deleted");
    }
}

/// Overwrites every file of a job's sled database with garbage of the same size.
fn corrupt_sled(journal: &std::path::Path, job: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![journal.join("jobs").join(job).join("db")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(|e| e.unwrap()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let len = std::fs::metadata(&p).unwrap().len() as usize;
                let junk: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
                std::fs::write(&p, junk).unwrap();
                n += 1;
            }
        }
    }
    n
}

#[test]
fn corrupted_journal_is_rebuilt_from_the_listing_without_resending() {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 4 * MIB, 12 * MIB + 9, 6, "corrupt");
    let (run, obs, c) = (&t.run, &t.obs, &t.c);
    let args = t.upload_args(&[]);
    let job = run.job_id(&args);
    run.kill_after(&args, obs, &t.segs, 4);
    let before = obs.list(&format!("{c}_segments"), "");
    assert!(before.len() >= 4, "segments were up before the damage: {}", before.len());
    assert!(corrupt_sled(&run.journal(), &job) > 0);
    // Read-only commands never rebuild it (nothing is moved aside) and never panic.
    let dir = run.journal().join("jobs").join(&job);
    for a in [&["status", &job][..], &["verify", &job][..], &[&args[..], &["--dry-run"]].concat()[..]] {
        let out = run.run(a);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let aside = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .any(|e| e.file_name().to_string_lossy().contains("damaged"));
        assert!(!aside, "{a:?} rebuilt the journal: {text}");
    }
    // Listed, not hidden: state `damaged`, what is wrong and how it is rebuilt, in the
    // user's words (no sled internals, no escaped line breaks).
    let out = run.run(&["jobs", "--json"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = jobs.as_array().unwrap().iter().find(|j| j["job"] == job.as_str()).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(listed["phase"], "damaged", "{text}");
    assert_eq!(listed["object"], "disk.img", "{text}");
    assert!(listed["hint"].as_str().unwrap().contains(&format!("k5up resume {job}")), "{text}");
    let out = run.run(&["jobs"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&job) && text.contains("damaged"), "{text}");
    for bad in ["backtrace", "offset None", "\\n", "Corruption"] {
        assert!(!text.contains(bad), "{bad:?} in {text}");
    }
    let out = run.run(&["resume", &job, "--no-progress"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("the journal of job {job} is damaged")), "said clearly: {err}");
    assert_eq!(t.object().unwrap(), (t.md5.clone(), t.size));
    obs.assert_not_resent(&format!("{c}_segments"), &before, "");
}

/// Changes the file mid-upload (`change`), checks the run stops with a clear error,
/// restores the original (content and mtime), and checks `resume` finishes the job.
fn change_then_restore(name: &str, change: impl Fn(&std::path::Path)) {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 3 * MIB, 12 * MIB, 8, name);
    let (run, src, c, obs) = (&t.run, &t.src, &t.c, &t.obs);
    let original = std::fs::read(src).unwrap();
    let mtime = std::fs::metadata(src).unwrap().modified().unwrap();
    let args = t.upload_args(&["--concurrency", "2"]);
    let job = run.job_id(&args);
    let mut child = run.spawn(&args);
    run.wait_segments(&mut child, obs, &t.segs, 2);
    change(src);
    let status = child.wait().unwrap();
    let err = run.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("changed") || err.contains("cannot read the source"), "a clear reason: {err}");
    assert!(err.contains(&format!("k5up resume {job}")), "the way out: {err}");
    assert!(obs.head(c, "disk.img").is_none(), "no object from a changed file");
    // restore, then resume
    std::fs::write(src, &original).unwrap();
    std::fs::File::options().write(true).open(src).unwrap().set_modified(mtime).unwrap();
    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(t.object().unwrap(), (t.md5.clone(), t.size));
}

#[test]
fn a_file_that_shrinks_mid_upload_stops_cleanly_and_resumes_once_restored() {
    change_then_restore("shrink", |p| {
        std::fs::File::options().write(true).open(p).unwrap().set_len(3 * MIB).unwrap();
    });
}

#[test]
fn a_file_that_grows_mid_upload_stops_cleanly_and_resumes_once_restored() {
    change_then_restore("grow", |p| {
        use std::io::Write;
        std::fs::File::options().append(true).open(p).unwrap().write_all(&[7u8; 4096]).unwrap();
    });
}

/// A finished job whose object was deleted behind k5up's back is not "complete":
/// the same command HEADs the object and rebuilds it, the manifest from the segments
/// when they are still there (none sent again), the segments first when not.
#[test]
fn a_finished_object_deleted_on_the_server_is_rebuilt_by_the_same_command() {
    let tb = Testbed::get();
    let obs = Observer::login(&tb.small());
    for manifest in ["slo", "dlo"] {
        let run = Run::new(tb.small());
        let src = run.path("disk.img");
        let size = 4 * MIB + 3;
        let md5 = write_random(&src, size, 61);
        let c = unique("rebuild");
        let segs = format!("{c}_segments");
        let s = src.to_str().unwrap();
        let args = ["upload", s, "-c", &c, "--segment-size", "1MiB", "--manifest", manifest, "--no-progress"];
        run.ok(&args);
        let job = run.only_job();
        let before = obs.list(&segs, "");
        assert_eq!(before.len(), 5);

        // Only the manifest deleted: the same upload writes it again, sending no segment.
        obs.delete(&c, "disk.img", "");
        assert!(obs.head(&c, "disk.img").is_none());
        let out = run.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(!err.contains("is already complete"), "{manifest}: not taken for complete: {err}");
        assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5.clone(), size)), "{manifest}: rebuilt");
        obs.assert_not_resent(&segs, &before, &format!("{manifest}: "));

        // Object and segments deleted (python-swiftclient's `swift delete` of an SLO):
        // resume sends the segments again, then the manifest.
        if manifest == "slo" {
            obs.delete(&c, "disk.img", "multipart-manifest=delete");
        } else {
            obs.delete(&c, "disk.img", "");
            for name in before.keys() {
                obs.delete(&segs, name, "");
            }
        }
        assert!(obs.list(&segs, "").is_empty());
        run.ok(&["resume", &job, "--no-progress"]);
        assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5.clone(), size)), "{manifest}: rebuilt with its segments");
        assert_eq!(obs.list(&segs, "").len(), 5);
        // Intact now: a further run changes nothing.
        let again = obs.list(&segs, "");
        run.ok(&args);
        assert_eq!(obs.list(&segs, ""), again);
    }
}

/// A job journaled by k5up 0.1 (a uniform plan, segments named and keyed by their
/// index) resumes as it was: its segments keep their names, those already on the
/// server are not sent again, and nothing is named or cut the new way.
#[test]
fn a_job_of_k5up_0_1_with_index_names_resumes_unchanged() {
    use k5up::testing::{Phase, Root, SegKind, SegState, SegmentRecord};
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let src = run.path("disk.img");
    let size = 5 * MIB + 9;
    let md5 = write_random(&src, size, 61);
    let c = unique("old");
    let segs_c = format!("{c}_segments");
    run.ok(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--no-progress"]);
    let obs = Observer::login(&tb.small());
    obs.delete(&c, "disk.img", "multipart-manifest=delete");
    // The job's record, rewritten as k5up 0.1 journaled it, with two segments sent.
    let job = run.only_job();
    let root = Root::new(Some(run.journal())).unwrap();
    let j = root.open(&job).unwrap();
    let mut rec = j.job().unwrap();
    root.remove(j).unwrap();
    let old = k5up::testing::SegmentNaming::indexed(&c, "disk.img", true, rec.identity.mtime_ns, size, MIB);
    (rec.segment_prefix, rec.plan.segment_count, rec.phase, rec.manifest_etag) =
        (old.prefix.clone(), 6, Phase::Uploading, None);
    let data = std::fs::read(&src).unwrap();
    let segs: Vec<SegmentRecord> = (0..6u64)
        .map(|i| {
            let (offset, length) = (i * MIB, MIB.min(size - i * MIB));
            let sent = i < 2;
            SegmentRecord {
                md5: sent.then(|| common::md5_of_range(&src, offset, length)),
                state: if sent { SegState::Confirmed } else { SegState::Pending },
                attempts: u32::from(sent),
                sent: if sent { length } else { 0 },
                ..SegmentRecord::new(i, offset, length, SegKind::Data)
            }
        })
        .collect();
    for s in &segs[..2] {
        obs.put(&segs_c, &old.name(s), &data[s.offset as usize..(s.offset + s.length) as usize]);
    }
    drop(root.create(&rec, &k5up::testing::StoreTraits::swift(), segs.clone().into_iter()).unwrap());
    let before = obs.list(&segs_c, &old.prefix);
    assert_eq!(before.len(), 2);

    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5, size)), "object identical");
    let after = obs.list(&segs_c, "disk.img/");
    let mut names: Vec<&String> = after.keys().collect();
    names.sort();
    let want: Vec<String> = segs.iter().map(|s| old.name(s)).collect();
    assert_eq!(names, want.iter().collect::<Vec<_>>(), "the old names, and only them");
    for (n, e) in &before {
        assert_eq!(after[n]["last_modified"], e["last_modified"], "{n} was sent again");
    }
}

/// A journal that cannot be opened (here: too few file descriptors) is not a damaged
/// journal: the run stops with the cause and the way out (exit 75), never sets the
/// journal aside, and the next run with a sane limit continues without re-sending.
#[test]
fn a_journal_that_cannot_be_opened_is_not_taken_for_damaged() {
    use std::os::unix::process::CommandExt;
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 4 * MIB, 12 * MIB + 5, 8, "nofds");
    let (run, obs) = (&t.run, &t.obs);
    let args = t.upload_args(&[]);
    let job = run.job_id(&args);
    run.kill_after(&args, obs, &t.segs, 3);
    let before = obs.list(&t.segs, "");
    assert!(before.len() >= 3, "segments were up before the runs: {}", before.len());
    let dir = run.journal().join("jobs").join(&job);
    let mut journal_refused = 0;
    for limit in 8..=16u64 {
        let mut cmd = run.cmd(&["resume", &job, "--no-progress"]);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && !err.contains("damaged"), "limit {limit}: {err}");
        let aside = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .any(|e| e.file_name().to_string_lossy().contains("damaged"));
        assert!(!aside, "limit {limit}: the journal was set aside: {err}");
        if err.contains(&format!("cannot use the journal of job {job}: Too many open files")) {
            assert_eq!(out.status.code(), Some(75), "limit {limit}: {err}");
            assert!(err.contains("ulimit -n"), "the way out: {err}");
            journal_refused += 1;
        }
        if err.contains("too many open files in this process") {
            // A connection that could not be opened: no retry helps, and it is not
            // the server's fault (never retried for --retry-for, never exit 2).
            assert_eq!(out.status.code(), Some(75), "limit {limit}: {err}");
            assert!(err.contains("ulimit -n"), "the way out: {err}");
        }
        if out.status.success() {
            break;
        }
    }
    assert!(journal_refused > 0, "no limit made the journal itself unopenable");
    // The journal is the one it was: the next run continues it and re-sends nothing
    // the server held whole.
    let out = run.run(&["resume", &job, "--no-progress"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(t.object().unwrap(), (t.md5.clone(), t.size));
    obs.assert_not_resent(&t.segs, &before, "");
}
