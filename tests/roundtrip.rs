//! Round trips against the real Swift: what is read back has the source's MD5.

mod common;

use common::{Observer, Run, Testbed, unique, write_random};

const MIB: u64 = 1 << 20;

fn roundtrip(creds: common::Creds, size: u64, extra: &[&str], object: &str) -> (Run, Observer, String) {
    roundtrip_in(Run::new(creds.clone()), creds, size, extra, object)
}

fn roundtrip_in(run: Run, creds: common::Creds, size: u64, extra: &[&str], object: &str) -> (Run, Observer, String) {
    let src = run.path("image.raw");
    let md5 = write_random(&src, size, size);
    let c = unique("rt");
    let mut args = vec!["upload", src.to_str().unwrap(), "--container", &c, "--object", object, "--no-progress"];
    args.extend_from_slice(extra);
    run.ok(&args);
    let obs = Observer::login(&creds);
    let (got, len) = obs.get_md5(&c, object).expect("object exists");
    assert_eq!(len, size, "object size");
    assert_eq!(got, md5, "object read back has the source's MD5");
    let job = run.only_job();
    let st = run.status(&job);
    assert_eq!(st["phase"], "done");
    assert_eq!(st["bytes_confirmed"], size);
    assert_eq!(st["manifest_etag"].as_str().unwrap(), obs.head(&c, object).unwrap()["etag"].trim_matches('"'));
    (run, obs, c)
}

#[test]
fn slo_many_segments_not_a_multiple_with_unicode_name() {
    let tb = Testbed::get();
    // 37 segments of 1 MiB + 12345 bytes; the small proxy allows 16 entries per
    // manifest, so this is a nested SLO too.
    let (run, obs, c) = roundtrip(
        tb.small(),
        37 * MIB + 12345,
        &["--segment-size", "1MiB", "--manifest", "slo"],
        "disks/my image ü 日本.raw",
    );
    let h = obs.head(&c, "disks/my image ü 日本.raw").unwrap();
    assert_eq!(h["x-static-large-object"], "True");
    let segs = obs.list(&format!("{c}_segments"), "disks/my image ü 日本.raw/slo/");
    assert_eq!(segs.keys().filter(|k| !k.contains("/manifest/")).count(), 38);
    assert!(segs.keys().any(|k| k.contains("/manifest/")), "nested sub-manifests exist");
    let v = run.ok(&["verify", &run.only_job(), "--deep"]);
    assert!(v.contains("content") && !v.contains("FAIL"), "{v}");
}

#[test]
fn slo_exact_multiple_of_segment_size() {
    let tb = Testbed::get();
    roundtrip(tb.small(), 8 * MIB, &["--segment-size", "2MiB"], "exact.img");
}

#[test]
fn dlo_round_trip_both_shapes() {
    let tb = Testbed::get();
    let (_, obs, c) = roundtrip(tb.small(), 9 * MIB, &["--segment-size", "3MiB", "--manifest", "dlo"], "dlo exact.img");
    let h = obs.head(&c, "dlo exact.img").unwrap();
    assert!(h.contains_key("x-object-manifest"), "{h:?}");
    roundtrip(tb.small(), 9 * MIB + 1, &["--segment-size", "3MiB", "--manifest", "dlo"], "dlo odd.img");
}

#[test]
fn default_plan_on_the_small_proxy_uses_its_max_file_size() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let src = run.path("a.img");
    // The small proxy's limits, as testbed/up set them.
    let max: u64 = tb.var("SMALL_MAX_FILE_SIZE").parse().unwrap();
    let entries = tb.var("SMALL_MAX_MANIFEST_SEGMENTS");
    // The ramp's first four 8 MiB segments, then segments of max_file_size.
    let size = 32 * MIB + 2 * max + max / 2;
    write_random(&src, size, 3);
    let out = run.ok(&["upload", src.to_str().unwrap(), "-c", "x", "--dry-run"]);
    let (full, last) = (common::format_mib(max), common::format_mib(max / 2));
    assert!(out.contains(&format!("4 × 8.00 MiB + 2 × {full} + 1 × {last} ({} bytes)", max / 2)), "{out}");
    assert!(out.contains(&format!("max_manifest_segments {entries}")), "{out}");
    // A 200 MiB file is cut as it will be: the ramp's segments, smaller than the
    // plan's 256 MiB (it was once shown as 1 × 256.00 MiB).
    let big = run.path("b.img");
    std::fs::File::create(&big).unwrap().set_len(200 * MIB).unwrap();
    let stock = Run::new(tb.stock());
    let out = stock.ok(&["upload", big.to_str().unwrap(), "-c", "x", "--dry-run"]);
    let want = "segments       4 × 8.00 MiB + 4 × 16.00 MiB + 3 × 32.00 MiB + 1 × 8.00 MiB (8388608 bytes)";
    assert!(out.contains(want), "{out}");
}

#[test]
fn stock_proxy_single_segment_and_empty_file() {
    let tb = Testbed::get();
    roundtrip(tb.stock(), 3 * MIB + 7, &[], "small.img");
    let (_, obs, c) = roundtrip(tb.stock(), 0, &[], "empty.img");
    let h = obs.head(&c, "empty.img").unwrap();
    assert_eq!(h["content-length"], "0");
}

#[test]
fn every_md5_backend_gives_the_same_object() {
    // The default is the widest SIMD lanes this CPU has (AVX2 here); the others are
    // chosen with K5UP_MD5. Segment ETags are checked by Swift, the object by MD5.
    let tb = Testbed::get();
    let creds = tb.small();
    for backend in ["scalar", "sse2", "avx2"] {
        let run = Run::with_env(&[
            ("ST_AUTH", &creds.auth),
            ("ST_USER", &creds.user),
            ("ST_KEY", &creds.key),
            ("K5UP_MD5", backend),
        ]);
        roundtrip_in(run, creds.clone(), 11 * MIB + 5, &["--segment-size", "1MiB", "--concurrency", "3"], "lanes.raw");
    }
}

/// Names are data: every one reaches Swift byte for byte as the literal name, and
/// nothing lands in another container. (`-o '../victim/x'` once wrote into `victim`,
/// and with DLO replaced `victim/important.raw` by an empty manifest.)
#[test]
fn odd_object_names_reach_swift_literally_and_touch_no_other_container() {
    let tb = Testbed::get();
    let creds = tb.small();
    let run = Run::new(creds.clone());
    let obs = Observer::login(&creds);
    let src = run.path("image.raw");
    let md5 = write_random(&src, 2 * MIB + 3, 77);
    let c = unique("names");
    // A victim container whose object must survive everything below.
    let victim = unique("victim");
    obs.put(&victim, "important.raw", b"precious bytes");
    let victim_before = obs.list(&victim, "");
    assert_eq!(victim_before.len(), 1, "the victim is in place");
    let names = [
        format!("../{victim}/important.raw"),
        format!("a/../../{victim}/pwn.raw"),
        "a/../b.raw".to_string(),
        "..".to_string(),
        ".".to_string(),
        "./x/./y".to_string(),
        "//double//slash".to_string(),
        "pct%2Fencoded%25.raw".to_string(),
        "what?q=1&r=2".to_string(),
        "hash#fragment".to_string(),
        "trailing/".to_string(),
        "new\nline".to_string(),
        "ünï cödé 日本.raw".to_string(),
    ];
    for (i, name) in names.iter().enumerate() {
        let manifest = if i % 2 == 0 { "dlo" } else { "slo" };
        let args = [
            "upload",
            src.to_str().unwrap(),
            "-c",
            &c,
            "-o",
            name,
            "--segment-size",
            "1MiB",
            "--manifest",
            manifest,
            "--no-progress",
        ];
        run.ok(&args);
        assert_eq!(obs.get_md5(&c, name), Some((md5.clone(), 2 * MIB + 3)), "{name:?} read back under its name");
        // Its segments are under exactly its name in the segment container
        // (`<name>/[slo/]<mtime>/<size>/j<nonce>/bytes/<offset>+<length>`; `..`'s
        // prefix also lists those of `../victim…`, hence the shape check).
        let ours = |k: &String| {
            let rest = k[name.len() + 1..].strip_prefix("slo/").unwrap_or(&k[name.len() + 1..]);
            let parts: Vec<&str> = rest.split('/').collect();
            let numeric = |p: &&str| p.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'+');
            let nonce = |p: &str| p.len() == 17 && p.starts_with('j') && p[1..].bytes().all(|b| b.is_ascii_hexdigit());
            parts.len() == 5 && nonce(parts[2]) && parts[3] == "bytes" && [0, 1, 4].iter().all(|&i| numeric(&parts[i]))
        };
        let segs = obs.list(&format!("{c}_segments"), &format!("{name}/"));
        assert_eq!(segs.keys().filter(|k| ours(k)).count(), 3, "{name:?}: segments under its literal name: {segs:?}");
    }
    // The victim container is exactly as it was, and its object intact.
    assert_eq!(obs.list(&victim, ""), victim_before, "another container changed");
    assert_eq!(obs.get_md5(&victim, "important.raw").unwrap().1, 14);
    // The container holds exactly these objects, by their literal names.
    let mut held: Vec<String> = obs.list(&c, "").into_keys().collect();
    let mut want: Vec<String> = names.to_vec();
    held.sort();
    want.sort();
    assert_eq!(held, want);
    // Human output escapes control characters: one line per job, whatever the names.
    let table = run.ok(&["jobs"]);
    assert_eq!(table.lines().count(), names.len() + 1, "{table}");
    assert!(table.contains("new\\nline"), "{table}");
    // A reader that has gone (`k5up jobs | head -1`): exit 0, no panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = run.cmd(&["jobs"]).stdout(writer).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{:?}: {err}", out.status);
    // abort finds every segment of a job with an odd name.
    let jobs = run.jobs();
    let odd = jobs.iter().find(|j| j["object"] == "a/../b.raw").expect("job of a/../b.raw");
    run.ok(&["abort", odd["job"].as_str().unwrap(), "--purge"]);
    assert!(obs.list(&format!("{c}_segments"), "a/../b.raw/").is_empty(), "abort left segments");
    assert!(obs.get_md5(&c, "a/../b.raw").is_none(), "--purge deletes the object");
}

/// The test helpers fail loudly instead of passing vacuously: the observer takes
/// only a 404 for "no object" (a server that answers 503, or none at all, fails the
/// test), and a kill that lands after the job ended fails the test.
#[test]
fn the_observer_and_the_kill_never_pass_vacuously() {
    use common::throttle::{Fault, Throttle};
    let tb = Testbed::get();
    let obs = Observer::login(&tb.small());
    let c = unique("observer");
    obs.put(&c, "there", b"abc");
    assert_eq!(obs.get_md5(&c, "there").map(|m| m.1), Some(3));
    assert!(obs.head(&c, "there").is_some());
    assert!(obs.get_md5(&c, "missing").is_none() && obs.head(&c, "missing").is_none(), "a 404 is absent");
    assert_eq!(obs.head_answer(&c, "missing"), common::Answer::Absent);
    assert_eq!(obs.get_answer(&c, "missing"), common::Answer::Absent);
    let fails = |what: &str, f: &dyn Fn()| {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        assert!(r.is_err(), "{what}: taken for an answer");
    };
    // A server that does not answer (nothing listens on the port): an error, with no
    // HTTP status, and the two-state calls fail the test.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = Observer { storage_url: common::via_port(&obs.storage_url, port), token: obs.token.clone() };
    assert_eq!(down.head_answer(&c, "missing").error_status(), Some("000"), "HEAD, server down");
    assert_eq!(down.get_answer(&c, "missing").error_status(), Some("000"), "GET, server down");
    fails("HEAD, server down", &|| drop(down.head(&c, "missing")));
    fails("GET, server down", &|| drop(down.get_md5(&c, "missing")));
    // A server that answers 503 to everything.
    let faults = ["HEAD ", "GET "]
        .map(|m| Fault::Reply { method: m.into(), status: 503, retry_after: None, count: 1000 })
        .to_vec();
    let proxy = Throttle::with_faults(tb.small().port(), 1 << 30, faults);
    let busy = Observer { storage_url: common::via_port(&obs.storage_url, proxy.port), token: obs.token.clone() };
    assert_eq!(busy.head_answer(&c, "there").error_status(), Some("503"), "HEAD, 503");
    assert_eq!(busy.get_answer(&c, "missing").error_status(), Some("503"), "GET, 503");
    fails("HEAD, 503", &|| drop(busy.head(&c, "there")));
    fails("GET, 503", &|| drop(busy.get_md5(&c, "there")));
    // A job that ended before the kill was due.
    let run = Run::new(tb.small());
    let mut child = run.spawn(&["--version"]);
    assert!(child.wait().unwrap().success());
    let child = std::sync::Mutex::new(child);
    fails("kill of an ended job", &|| run.kill(&mut child.lock().unwrap()));
}
