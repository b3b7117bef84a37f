//! `verify` against the real Swift: a segment overwritten behind k5up's back (with
//! other bytes of the same length), an object deleted, a file changed since its
//! upload, and a read cut by the link. Each failure exits 1 (75 only when the link
//! keeps breaking), names what differs, and names the command that repairs it;
//! the tests then run that very command and check the server and a clean verify.

mod common;

use std::process::Output;

use common::throttle::{Fault, Throttle};
use common::{Observer, Run, Testbed, md5_of_range, unique, write_random};
use md5::{Digest, Md5};

const MIB: u64 = 1 << 20;

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// The command a failed verify names in its hint (between the first backticks),
/// as arguments for k5up (without the leading `k5up`). Names in the tests need no
/// shell quoting.
fn repair_of(stderr: &str) -> Vec<String> {
    let hint = stderr.lines().find_map(|l| l.trim().strip_prefix("hint: ")).unwrap_or_else(|| panic!("{stderr}"));
    let cmd = hint.split('`').nth(1).unwrap_or_else(|| panic!("a command in backticks: {hint}"));
    let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    assert_eq!(words[0], "k5up", "{cmd}");
    words[1..].to_vec()
}

/// `verify JOB [--deep]`, which must fail with exit 1: (stdout, stderr).
fn verify_fails(run: &Run, job: &str, deep: bool) -> (String, String) {
    let mut args = vec!["verify", job];
    if deep {
        args.push("--deep");
    }
    let out = run.run(&args);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(1), "verify {args:?} is a failed verification (exit 1):\n{o}\n{e}");
    (o, e)
}

/// The listed segments of `segs` (name → MD5), sorted by name (file order).
fn segments(obs: &Observer, segs: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = obs
        .list(segs, "")
        .into_iter()
        .filter(|(n, _)| n.contains("/bytes/"))
        .map(|(n, e)| (n, e["hash"].as_str().unwrap().to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_segment_overwritten_behind_k5ups_back_is_named_and_resume_repairs_it() {
    let tb = Testbed::get();
    let obs = Observer::login(&tb.small());
    for manifest in ["slo", "dlo"] {
        let run = Run::new(tb.small());
        let src = run.path("disk.img");
        let size = 6 * MIB + 5;
        let md5 = write_random(&src, size, 71);
        let c = unique("verifyseg");
        let segs = format!("{c}_segments");
        let s = src.to_str().unwrap();
        run.ok(&["upload", s, "-c", &c, "--segment-size", "1MiB", "--manifest", manifest, "--no-progress"]);
        let job = run.only_job();
        let names = segments(&obs, &segs);
        assert_eq!(names.len(), 7, "{manifest}");
        // The first segment (an SLO's GET then answers 409) and the fourth (the read
        // breaks off mid-body) get other bytes of the same length.
        let bad: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
        let bad_md5 = hex::encode(Md5::digest(&bad));
        for k in [0, 3] {
            obs.put(&segs, &names[k].0, &bad);
        }

        let (o, e) = verify_fails(&run, &job, false);
        for (k, off) in [(0usize, 0u64), (3, 3 * MIB)] {
            let want = md5_of_range(&src, off, MIB);
            assert!(
                o.contains(&format!("segment {off:016}+{MIB} holds MD5 {bad_md5}, expected {want}")),
                "{manifest}: segment {k} and both MD5s named:\n{o}"
            );
        }
        assert!(o.contains(&format!("repair: `k5up resume {job}`")), "{manifest}: {o}");
        assert_eq!(repair_of(&e), ["resume", job.as_str()], "{manifest}: {e}");

        // --deep: exit 1 (not 75), each segment named with its range, object and MD5s.
        let (o, e) = verify_fails(&run, &job, true);
        let content = o.lines().find(|l| l.starts_with("FAIL content")).unwrap_or_else(|| panic!("{o}\n{e}"));
        for off in [0, 3 * MIB] {
            let want = md5_of_range(&src, off, MIB);
            let range = format!("segment {off:016}+{MIB} (bytes {off}-{})", off + MIB - 1);
            assert!(content.contains(&range), "{manifest}: {range} named:\n{content}");
            assert!(content.contains(&want) && content.contains(&bad_md5), "{manifest}: MD5s named:\n{content}");
        }
        assert!(content.contains(&names[3].0), "{manifest}: the segment object named:\n{content}");
        if manifest == "slo" {
            assert!(content.contains("HTTP 409") && content.contains("X-Trans-Id: tx"), "{content}");
        }
        assert!(!e.contains("error decoding response body"), "{manifest}: not an error of the read: {e}");
        assert_eq!(repair_of(&e), ["resume", job.as_str()], "{manifest}: {e}");
        // verify is read-only: the server still holds the other bytes.
        assert_eq!(segments(&obs, &segs)[3].1, bad_md5, "{manifest}");

        // The command named repairs it: the segments hold the file's bytes again.
        let repair = repair_of(&e);
        let mut args: Vec<&str> = repair.iter().map(String::as_str).collect();
        args.push("--no-progress");
        run.ok(&args);
        let now = segments(&obs, &segs);
        for (k, off) in [(0usize, 0u64), (3, 3 * MIB)] {
            assert_eq!(now[k].1, md5_of_range(&src, off, MIB), "{manifest}: segment {k} repaired on the server");
        }
        assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5.clone(), size)), "{manifest}");
        let v = run.ok(&["verify", &job, "--deep"]);
        assert!(!v.contains("FAIL") && v.contains("content"), "{manifest}: {v}");
    }
}

#[test]
fn a_deleted_or_overwritten_object_is_named_and_resume_repairs_it() {
    let tb = Testbed::get();
    let obs = Observer::login(&tb.small());
    let run = Run::new(tb.small());
    let src = run.path("disk.img");
    let md5 = write_random(&src, 3 * MIB + 1, 72);
    let c = unique("verifyobj");
    run.ok(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--no-progress"]);
    let job = run.only_job();
    obs.delete(&c, "disk.img", "");
    let (o, e) = verify_fails(&run, &job, true);
    assert!(o.contains("FAIL object") && o.contains("does not exist"), "{o}");
    assert!(o.contains("FAIL content") && o.contains("not read back"), "{o}");
    let repair = repair_of(&e);
    assert_eq!(repair, ["resume", job.as_str()], "{e}");
    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5.clone(), 3 * MIB + 1)));
    let v = run.ok(&["verify", &job, "--deep"]);
    assert!(!v.contains("FAIL"), "{v}");

    // A plain object PUT over it (same size): not the manifest any more.
    obs.put(&c, "disk.img", &vec![5u8; 3 * MIB as usize + 1]);
    let (o, e) = verify_fails(&run, &job, false);
    assert!(o.contains("FAIL object") && o.contains("FAIL manifest") && o.contains("not an SLO"), "{o}");
    assert_eq!(repair_of(&e), ["resume", job.as_str()], "{e}");
    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5, 3 * MIB + 1)));
    let v = run.ok(&["verify", &job, "--deep"]);
    assert!(!v.contains("FAIL"), "{v}");
}

#[test]
fn a_file_changed_since_its_upload_is_told_apart_from_a_damaged_object() {
    let tb = Testbed::get();
    let obs = Observer::login(&tb.small());
    let run = Run::new(tb.small());
    let src = run.path("disk.img");
    let size = 4 * MIB;
    write_random(&src, size, 73);
    let mtime = std::fs::metadata(&src).unwrap().modified().unwrap();
    let c = unique("verifyfile");
    run.ok(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--no-progress"]);
    let job = run.only_job();
    // Rewritten in place, size and mtime put back.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.write_all_at(b"a new build", 2 * MIB + 12345).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let new_md5 = md5_of_range(&src, 0, size);

    // The server matches the journal; the file is what changed.
    let (o, e) = verify_fails(&run, &job, true);
    assert!(o.contains("ok   segments") && o.contains("ok   object"), "{o}");
    let content = o.lines().find(|l| l.starts_with("FAIL content")).unwrap_or_else(|| panic!("{o}"));
    assert!(content.contains("changed since") && content.contains(&new_md5), "{content}");
    let repair = repair_of(&e);
    let want = ["upload", src.to_str().unwrap(), "-c", &c, "-o", "disk.img", "--replace"];
    assert_eq!(repair, want, "{e}");

    // The command named uploads the file as it is now.
    let args: Vec<&str> = repair.iter().map(String::as_str).collect();
    run.ok(&args);
    assert_eq!(obs.get_md5(&c, "disk.img"), Some((new_md5, size)));
    let v = run.ok(&["verify", &run.only_job(), "--deep"]);
    assert!(!v.contains("FAIL"), "{v}");
}

#[test]
fn a_read_cut_by_the_link_reads_on_and_one_that_keeps_breaking_is_resumable() {
    let tb = Testbed::get();
    let direct = Run::new(tb.small());
    let src = direct.path("disk.img");
    let md5 = write_random(&src, 5 * MIB + 3, 74);
    let c = unique("verifycut");
    direct.ok(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--no-progress"]);
    let job = direct.only_job();
    let obs = Observer::login(&tb.small());
    // The object's GET (not its manifest's, which has a query), through the proxy.
    let get = format!("{}disk.img HTTP", obs.object_request("GET", &c));
    let through = |faults: Vec<Fault>| {
        let proxy = Throttle::with_faults(tb.small().port(), 1 << 40, faults);
        let run = Run::new(tb.small().via(proxy.port));
        (proxy, run)
    };

    // Cut twice mid-body: read on from where it broke; the content is checked whole.
    let (proxy, run) =
        through(vec![Fault::CutResponse { method: get.clone(), after: 2 * MIB as usize + 17, count: 2 }]);
    let out = run.cmd(&["verify", &job, "--deep"]).env("K5UP_JOURNAL", direct.journal()).output().unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}\n{e}");
    assert!(o.contains(&format!("ok   content   read back {} bytes with MD5 {md5}", 5 * MIB + 3)), "{o}");
    let lines: Vec<String> = proxy.stats.requests().iter().map(|r| r.line.clone()).collect();
    assert_eq!(
        proxy.stats.closes.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "the proxy cut the read twice: {lines:#?}\n{e}"
    );
    assert!(e.contains("reading on from there"), "{e}");

    // Cut before the first byte, again and again: a failure of the link (75), not of the object.
    let (proxy, run) = through(vec![Fault::CutResponse { method: get, after: 0, count: 100 }]);
    let out = run.cmd(&["verify", &job, "--deep"]).env("K5UP_JOURNAL", direct.journal()).output().unwrap();
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(75), "{o}\n{e}");
    assert!(e.contains("three times") && e.contains("segment 0000000000000000+1048576"), "{e}");
    assert!(e.contains(&format!("`k5up verify {job} --deep`")), "{e}");
    assert_eq!(proxy.stats.closes.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[test]
fn a_damaged_zero_object_is_named_and_resume_repairs_it() {
    let tb = Testbed::get();
    let obs = Observer::login(&tb.small());
    let run = Run::new(tb.small());
    let src = run.path("disk.img");
    let size = 4 * MIB;
    write_random(&src, size, 75);
    // One MiB of written zeros: an SLO takes it as a range of the job's zero object.
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(&src).unwrap().write_all_at(&vec![0u8; MIB as usize], MIB).unwrap();
    let md5 = md5_of_range(&src, 0, size);
    let c = unique("verifyzero");
    let segs = format!("{c}_segments");
    run.ok(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--no-progress"]);
    let job = run.only_job();
    let zero = obs.list(&segs, "").into_keys().find(|n| n.contains("/zero/object+")).expect("a zero object");
    obs.put(&segs, &zero, &vec![9u8; MIB as usize]);

    let (o, e) = verify_fails(&run, &job, false);
    assert!(o.contains(&format!("zero object {zero} holds")), "{o}");
    assert_eq!(repair_of(&e), ["resume", job.as_str()], "{e}");
    let (o, e) = verify_fails(&run, &job, true);
    let content = o.lines().find(|l| l.starts_with("FAIL content")).unwrap_or_else(|| panic!("{o}\n{e}"));
    assert!(content.contains(&format!("segment {MIB:016}+{MIB} (bytes {MIB}-{})", 2 * MIB - 1)), "{content}");
    assert!(content.contains(&zero), "the zero object named: {content}");
    assert_eq!(repair_of(&e), ["resume", job.as_str()], "{e}");

    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5, size)));
    let v = run.ok(&["verify", &job, "--deep"]);
    assert!(!v.contains("FAIL"), "{v}");
}
