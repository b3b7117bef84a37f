//! Data safety: what the server holds after a replacement with the same size and
//! mtime, a file rewritten in place, segments deleted or overwritten behind
//! k5up's back, an object whose name extends another job's prefix, and a source
//! whose size lies. Every check reads the server (or the fault proxy), not k5up.

mod common;

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use common::throttle::Throttle;
use common::{Answer, Observer, Run, Testbed, md5_of_range, unique, write_random};

const MIB: u64 = 1 << 20;

/// Sets the file's mtime (what a reproducible build does with SOURCE_DATE_EPOCH).
fn pin_mtime(path: &std::path::Path, secs: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
}

/// The method of a request and the object it names (`container/object`,
/// percent-decoded; empty for a request outside the account: a login, `/info`).
fn target(r: &common::throttle::Seen) -> (String, String) {
    let object = r.target().map(|(c, o)| format!("{c}/{o}")).unwrap_or_default();
    (r.method().to_string(), object)
}

/// The segment prefix (`…/bytes/`) of the names listed under `under`; panics
/// unless they all share one.
fn one_prefix(names: &HashMap<String, serde_json::Value>) -> String {
    let prefixes: std::collections::HashSet<String> =
        names.keys().map(|n| n[..n.rfind("/bytes/").expect("a ranged name") + "/bytes/".len()].to_string()).collect();
    assert_eq!(prefixes.len(), 1, "one job's prefix: {prefixes:?}");
    prefixes.into_iter().next().unwrap()
}

#[test]
fn a_replacement_with_the_same_size_and_mtime_keeps_the_old_object_whole_until_the_new_one_is_verified() {
    let tb = Testbed::get();
    let proxy = Throttle::start(tb.small().port(), 2 * MIB);
    let run = Run::new(tb.small().via(proxy.port));
    let obs = Observer::login(&tb.small());
    let (old, new) = (run.path("old.img"), run.path("new.img"));
    let size = 12 * MIB;
    let old_md5 = write_random(&old, size, 31);
    let new_md5 = write_random(&new, size, 32);
    pin_mtime(&old, 1_600_000_000);
    pin_mtime(&new, 1_600_000_000);
    let c = unique("samesize");
    let segs = format!("{c}_segments");
    let base = ["-c", c.as_str(), "-o", "disk.raw", "--segment-size", "1MiB", "--concurrency", "2", "--no-progress"];
    let mut first = vec!["upload", old.to_str().unwrap()];
    first.extend(base);
    run.ok(&first);
    let before = obs.list(&segs, "");
    assert_eq!(before.len(), 12);
    assert_eq!(obs.get_md5(&c, "disk.raw"), Some((old_md5.clone(), size)));

    // The new build, Ctrl-C after a few of its segments are on the server.
    let mut second = vec!["upload", new.to_str().unwrap()];
    second.extend(base);
    second.push("--replace");
    let seen_before = proxy.stats.requests().len();
    let mut child = run.spawn(&second);
    run.wait_segments(&mut child, &obs, &segs, before.len() + 3);
    assert!(child.try_wait().unwrap().is_none(), "still uploading when interrupted:\n{}", run.stderr());
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(75), "interrupted, resumable:\n{}", run.stderr());

    // The old object is whole and readable, its segments untouched.
    assert_eq!(obs.get_md5(&c, "disk.raw"), Some((old_md5.clone(), size)), "the old object still reads whole");
    let now = obs.list(&segs, "");
    for (name, e) in &before {
        assert_eq!(now.get(name), Some(e), "old segment {name} untouched");
    }
    // What the proxy saw: no write and no delete of any old segment name.
    let old_names: std::collections::HashSet<String> = before.keys().map(|n| format!("{segs}/{n}")).collect();
    let touched: Vec<String> = proxy.stats.requests()[seen_before..]
        .iter()
        .map(target)
        .filter(|(m, t)| (m == "PUT" || m == "DELETE") && old_names.contains(t))
        .map(|(m, t)| format!("{m} {t}"))
        .collect();
    assert!(touched.is_empty(), "requests on the old segments: {touched:?}");
    // (The same reading of the log finds the new build's segment PUTs: the check
    // above looked at the requests that were made.)
    let new_puts = proxy.stats.requests()[seen_before..].iter().filter(|r| r.put_into(&segs).is_some()).count();
    assert!(new_puts >= 3, "the new build's segment PUTs, as the proxy saw them: {new_puts}");

    // Resumed: the new object, then (only then) the old segments deleted.
    let job = run.only_job();
    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(obs.get_md5(&c, "disk.raw"), Some((new_md5, size)), "the new build is uploaded");
    let after = obs.list(&segs, "");
    assert!(before.keys().all(|n| !after.contains_key(n)), "the replaced object's segments are deleted");
    one_prefix(&after);
    let reqs = proxy.stats.requests();
    let targets: Vec<(String, String)> = reqs.iter().map(target).collect();
    let manifest =
        targets.iter().rposition(|(m, t)| m == "PUT" && *t == format!("{c}/disk.raw")).expect("the manifest PUT");
    let first_delete = targets
        .iter()
        .position(|(m, t)| m == "DELETE" && old_names.contains(t))
        .expect("the old segments were deleted through the proxy");
    assert!(first_delete > manifest, "old segments deleted only after the new manifest");
    assert_eq!(run.jobs().len(), 1);
}

#[test]
fn a_file_rewritten_with_the_same_size_and_mtime_is_not_taken_for_the_uploaded_one() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let obs = Observer::login(&tb.small());
    let src = run.path("disk.img");
    let size = 4 * MIB;
    let md5 = write_random(&src, size, 41);
    pin_mtime(&src, 1_500_000_000);
    let c = unique("rewritten");
    let s = src.to_str().unwrap();
    let args = ["upload", s, "-c", &c, "--segment-size", "1MiB", "--no-progress"];
    run.ok(&args);
    let head = obs.head(&c, "disk.img").unwrap();

    // Only the change time moves (chmod): the content is compared, found the same.
    let out = run.run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::process::Command::new("chmod").args(["600", s]).status().unwrap();
    let out = run.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("comparing its content"), "the file was read again: {err}");
    assert_eq!(obs.head(&c, "disk.img").unwrap()["last-modified"], head["last-modified"], "nothing rewritten");

    // Rewritten in place between the fingerprint's samples, mtime put back.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.write_all_at(b"a new build", 2 * MIB + 300_000).unwrap();
    drop(f);
    pin_mtime(&src, 1_500_000_000);
    let new_md5 = md5_of_range(&src, 0, size);
    assert_ne!(new_md5, md5);
    let out = run.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "refused, not 'complete': {err}");
    assert!(err.contains("is not the file this job uploaded") && err.contains("--replace"), "{err}");
    assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5, size)), "the object is still the old one, whole");
    let job = run.only_job();
    assert_eq!(run.run(&["resume", &job, "--no-progress"]).status.code(), Some(1), "resume refuses it too");

    // --replace uploads it.
    let mut replace = args.to_vec();
    replace.push("--replace");
    run.ok(&replace);
    assert_eq!(obs.get_md5(&c, "disk.img"), Some((new_md5, size)), "the new content is on the server");
    one_prefix(&obs.list(&format!("{c}_segments"), ""));
}

#[test]
fn sweeps_touch_only_the_jobs_own_names_and_a_finished_job_checks_its_segments() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let obs = Observer::login(&tb.small());
    let c = unique("sweep");
    let segs = format!("{c}_segments");
    let a = run.path("a");
    let a_md5 = write_random(&a, 5 * MIB, 51);
    let up = |path: &std::path::Path, object: &str| {
        let p = path.to_str().unwrap().to_string();
        run.ok(&["upload", &p, "-c", &c, "-o", object, "--segment-size", "1MiB", "--no-progress"]);
    };
    up(&a, "a");
    let prefix = one_prefix(&obs.list(&segs, "a/"));
    // An object whose name extends a's prefix: its segments list under a's prefix.
    let other = format!("{prefix}zz");
    let b = run.path("b");
    let b_md5 = write_random(&b, 3 * MIB, 52);
    up(&b, &other);
    let b_segments: Vec<String> = obs.list(&segs, &format!("{other}/")).into_keys().collect();
    assert_eq!(b_segments.len(), 3);
    assert!(b_segments.iter().all(|n| n.starts_with(&prefix)), "listed under a's prefix");

    // Behind k5up's back: one of a's segments deleted, another overwritten.
    let a_segments: Vec<String> = {
        let mut v: Vec<String> = obs.list(&segs, &prefix).into_keys().filter(|n| !n.starts_with(&other)).collect();
        v.sort();
        v
    };
    assert_eq!(a_segments.len(), 5);
    obs.delete(&segs, &a_segments[1], "");
    obs.put(&segs, &a_segments[3], &vec![7u8; MIB as usize]);
    // a is broken now: Swift refuses it (409) or cuts its body short at the missing
    // segment; a 404, a 503 or no answer is not "broken" but another failure.
    match obs.get_answer(&c, "a") {
        Answer::Present((m, _)) => assert_ne!(m, a_md5, "a is broken now"),
        Answer::Error { status, curl, .. }
            if status == "409" || (status == "200" && curl.starts_with("exit Some(18)")) => {}
        other => panic!("a should read as broken: {other:?}"),
    }

    // The same command: not "complete", rebuilt; the sweep leaves b alone.
    let args = ["upload", a.to_str().unwrap(), "-c", &c, "-o", "a", "--segment-size", "1MiB", "--no-progress"];
    let out = run.run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("2 of its segment(s) are missing or different"), "says what it rebuilt: {err}");
    assert_eq!(obs.get_md5(&c, "a"), Some((a_md5, 5 * MIB)), "a rebuilt");
    assert_eq!(obs.get_md5(&c, &other), Some((b_md5.clone(), 3 * MIB)), "b untouched by a's sweep");

    // abort --purge of a: b and its segments stay.
    let job_a = run.job_id(&args);
    let said = run.ok(&["abort", &job_a, "--purge"]);
    assert!(said.contains("left alone"), "{said}");
    assert_eq!(obs.head(&c, "a"), None, "a purged");
    assert_eq!(obs.get_md5(&c, &other), Some((b_md5, 3 * MIB)), "b untouched by a's abort");
    let left: Vec<String> = obs.list(&segs, &prefix).into_keys().collect();
    let mut want = b_segments.clone();
    want.sort();
    let mut left_sorted = left;
    left_sorted.sort();
    assert_eq!(left_sorted, want, "exactly b's segments remain under a's prefix");
}

#[test]
fn a_lost_journal_copies_what_the_server_holds_instead_of_sending_it() {
    let tb = Testbed::get();
    let proxy = Throttle::start(tb.small().port(), 1 << 40);
    let run = Run::new(tb.small().via(proxy.port));
    let obs = Observer::login(&tb.small());
    let src = run.path("disk.img");
    let size = 8 * MIB + 5;
    let md5 = write_random(&src, size, 61);
    let c = unique("lostcopy");
    let segs = format!("{c}_segments");
    let s = src.to_str().unwrap();
    let args = ["upload", s, "-c", &c, "--segment-size", "1MiB", "--no-progress"];
    run.ok(&args);
    let before = obs.list(&segs, "");
    std::fs::remove_dir_all(run.journal()).unwrap();
    let up = || proxy.stats.bytes_up.load(std::sync::atomic::Ordering::Relaxed);
    let before_up = up();
    run.ok(&args);
    assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5, size)));
    // What crossed the link (every request byte the proxy forwarded): requests
    // without segment bodies; 8 MiB of segments would be 8 MiB more.
    let wire = up() - before_up;
    assert!(wire < MIB, "no segment was sent again: {wire} bytes went up");
    // The old segments were copy sources, then deleted once the object was verified:
    // only the new job's remain, as many.
    let after = obs.list(&segs, "");
    assert!(before.keys().all(|n| !after.contains_key(n)), "the lost job's segments are deleted");
    assert_eq!(after.len(), before.len());
    one_prefix(&after);
}

#[test]
fn sources_whose_size_lies_are_refused_before_anything_is_created() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let obs = Observer::login(&tb.small());
    let c = unique("procfs");
    for src in ["/proc/self/status", "/proc/cpuinfo", "/sys/kernel/mm/transparent_hugepage/enabled"] {
        if !std::path::Path::new(src).exists() {
            continue;
        }
        let out = run.run(&["upload", src, "-c", &c, "--no-progress"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{src}: {err}");
        assert!(err.contains("size that is not their length"), "{src}: {err}");
    }
    assert!(obs.head(&c, "status").is_none() && obs.list(&c, "").is_empty(), "nothing created");
    assert!(run.jobs().is_empty(), "no job");
}

/// Writes `len` zero bytes at `off` of `path`.
fn zero_out(path: &std::path::Path, off: u64, len: u64) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(&vec![0u8; len as usize], off).unwrap();
}

/// Rewrites a few bytes of `path` at `off`.
fn scribble(path: &std::path::Path, off: u64, what: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(what, off).unwrap();
}

/// A new version uploaded in the old one's place with `--base` that old object
/// (`--replace`): once the new object is verified, the segment container holds
/// exactly what the new manifest names (segments, sub-manifests, zero object), none
/// of the old version's; and that whether the old version's job is in the journal
/// (its segments are the replaced job's) or not (uploaded from another machine, or
/// its journal lost: only the base's names say whose they are).
#[test]
fn a_new_version_in_place_of_its_base_leaves_exactly_its_own_segments() {
    let tb = Testbed::get();
    let obs = Observer::login(&tb.small());
    let c = unique("baseplace");
    let segs = format!("{c}_segments");
    let target = format!("{c}/app.raw");
    // 20 MiB of 1 MiB segments (more than the small proxy's 16 per manifest: nested),
    // 2 MiB of zeros in it (an SLO zero object).
    let size = 20 * MIB + 5;
    let elsewhere = Run::new(tb.small());
    let v1 = elsewhere.path("v1.raw");
    write_random(&v1, size, 91);
    zero_out(&v1, 5 * MIB, 2 * MIB);
    let up = |run: &Run, file: &std::path::Path, extra: &[&str]| {
        let mut a = vec!["upload", file.to_str().unwrap(), "-c", &c, "-o", "app.raw", "--segment-size", "1MiB"];
        a.extend_from_slice(extra);
        a.push("--no-progress");
        let out = run.run(&a);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{a:?}: {err}");
        err
    };
    up(&elsewhere, &v1, &[]);
    let old: HashMap<String, serde_json::Value> = obs.list(&segs, "app.raw/");
    assert!(old.keys().any(|n| n.contains("/zero/object+")), "v1 has a zero object: {:?}", old.keys());
    assert!(old.keys().any(|n| n.contains("/manifest/")), "v1 is a nested SLO");

    // The only one of its objects whose segments this object holds: the new object's
    // listing under app.raw/ must be exactly what its manifests name.
    let exactly_the_manifests = |what: &str, md5: &str| {
        assert_eq!(obs.get_md5(&c, "app.raw"), Some((md5.to_string(), size)), "{what}: reads back as the file");
        let mut named: Vec<String> = obs
            .slo_names(&c, "app.raw")
            .into_iter()
            .map(|p| p.strip_prefix(&format!("{segs}/")).unwrap_or_else(|| panic!("{p} in {segs}")).to_string())
            .collect();
        named.sort();
        named.dedup();
        let mut listed: Vec<String> = obs.list(&segs, "app.raw/").into_keys().collect();
        listed.sort();
        assert_eq!(listed, named, "{what}: the segment container holds exactly the new manifest's objects");
        listed
    };

    // v2 from a machine whose journal never saw v1.
    let run = Run::new(tb.small());
    let v2 = run.path("v2.raw");
    std::fs::copy(&v1, &v2).unwrap();
    scribble(&v2, 9 * MIB + 100, b"version 2");
    let md5_v2 = md5_of_range(&v2, 0, size);
    let err = up(&run, &v2, &["--base", &target, "--replace"]);
    let now = exactly_the_manifests("v2", &md5_v2);
    assert!(err.contains("the segments of the version it replaces"), "it says so before: {err}");
    assert!(old.keys().all(|n| !now.contains(n)), "none of v1's objects are left");
    let st = run.status(&run.only_job());
    assert!(st["bytes_copied_server_side"].as_u64().unwrap() >= 16 * MIB, "unchanged segments copied: {st}");

    // v3 in the same journal as v2 (v2's job replaced, and v2 the base): the same.
    let v3 = run.path("v3.raw");
    std::fs::copy(&v2, &v3).unwrap();
    scribble(&v3, 14 * MIB + 7, b"version 3");
    let md5_v3 = md5_of_range(&v3, 0, size);
    up(&run, &v3, &["--base", &target, "--replace"]);
    let last = exactly_the_manifests("v3", &md5_v3);
    assert!(now.iter().all(|n| !last.contains(n)), "none of v2's objects are left");
    assert_eq!(run.jobs().len(), 1);

    // v4 from another machine, without --replace: v3's segments stay (a copy of v3's
    // manifest may still name them), and the run says so.
    let other = Run::new(tb.small());
    let v4 = other.path("v4.raw");
    std::fs::copy(&v3, &v4).unwrap();
    scribble(&v4, 3 * MIB + 11, b"version 4");
    let err = up(&other, &v4, &["--base", &target]);
    assert!(err.contains("without --replace"), "it says the old segments stay: {err}");
    assert_eq!(obs.get_md5(&c, "app.raw"), Some((md5_of_range(&v4, 0, size), size)));
    let listed = obs.list(&segs, "app.raw/");
    assert!(last.iter().all(|n| listed.contains_key(n)), "v3's objects are all still there");
}

/// A container that keeps old versions (`X-History-Location`) keeps the old manifest
/// when `--replace` writes the new one: the old segments are what that kept version
/// reads, so they stay, and the kept version reads back whole.
#[test]
fn replacing_in_a_versioned_container_keeps_the_old_versions_segments() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let obs = Observer::login(&tb.small());
    let (c, archive) = (unique("versioned"), unique("history"));
    for (name, headers) in [(&archive, vec![]), (&c, vec![format!("X-History-Location: {archive}")])] {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-f", "-X", "PUT", "-H", &format!("X-Auth-Token: {}", obs.token), "-H", "Content-Length: 0"]);
        for h in &headers {
            cmd.args(["-H", h]);
        }
        let out = cmd.arg(format!("{}/{name}", obs.storage_url)).output().unwrap();
        assert!(out.status.success(), "PUT container {name}: {out:?}");
    }
    let (v1, v2) = (run.path("v1.img"), run.path("v2.img"));
    let md5_1 = write_random(&v1, 6 * MIB + 3, 41);
    let md5_2 = write_random(&v2, 6 * MIB + 3, 42);
    let up = |file: &std::path::Path, extra: &[&str]| {
        let f = file.to_str().unwrap();
        let args =
            [&["upload", f, "-c", &c, "-o", "app.raw", "--segment-size", "1MiB", "--no-progress"][..], extra].concat();
        let out = run.run(&args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        err
    };
    up(&v1, &[]);
    let old_segments = obs.list(&format!("{c}_segments"), "");
    assert!(old_segments.len() >= 6, "{old_segments:?}");
    let err = up(&v2, &["--replace"]);
    assert!(err.contains("keeps old versions"), "said why the old segments stay: {err}");
    assert_eq!(obs.get_md5(&c, "app.raw"), Some((md5_2, 6 * MIB + 3)));
    // The kept version is the old manifest, and it still reads whole.
    let kept = obs.list(&archive, "");
    assert_eq!(kept.len(), 1, "one old version kept: {kept:?}");
    let name = kept.keys().next().unwrap();
    assert_eq!(obs.get_md5(&archive, name), Some((md5_1, 6 * MIB + 3)), "the kept version reads back whole");
    let now = obs.list(&format!("{c}_segments"), "");
    for n in old_segments.keys() {
        assert!(now.contains_key(n), "{n}, which the kept version reads, was deleted");
    }
}
