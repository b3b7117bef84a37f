//! The upload keeps going through transient faults injected in front of the real
//! Swift: 503/429/498 answers with Retry-After, and a stalled request body.

mod common;

use std::sync::atomic::Ordering;
use std::time::Instant;

use common::throttle::{Fault, Throttle};
use common::{Observer, Run, Testbed, unique, write_random};

const MIB: u64 = 1 << 20;

/// The segment PUTs the proxy saw for `c`: (object name, fault that met it).
fn segment_puts(proxy: &Throttle, c: &str) -> Vec<(String, Option<String>, bool)> {
    let segs = format!("{c}_segments");
    proxy
        .stats
        .puts_into(&segs)
        .iter()
        .map(|r| (r.put_into(&segs).unwrap(), r.fault.clone(), r.forwarded_whole()))
        .collect()
}

/// Every fault the proxy played met a PUT of a segment of `c` (not a container
/// PUT, not the manifest), `want` of them, and each faulted segment was then sent
/// again whole: returns the faulted segment names.
fn faults_hit_segments_and_were_recovered(proxy: &Throttle, c: &str, want: usize) -> Vec<String> {
    let segs = format!("{c}_segments");
    let faulted = proxy.stats.faulted();
    assert_eq!(faulted.len(), want, "faults played: {faulted:?}");
    let names: Vec<String> = faulted
        .iter()
        .map(|r| r.put_into(&segs).unwrap_or_else(|| panic!("a fault met something else than a segment PUT: {r:?}")))
        .collect();
    let puts = segment_puts(proxy, c);
    for n in &names {
        assert!(
            puts.iter().any(|(p, fault, whole)| p == n && fault.is_none() && *whole),
            "segment {n} was never sent again whole after its fault: {puts:?}"
        );
    }
    names
}

#[test]
fn throttling_answers_are_retried_honouring_retry_after() {
    let tb = Testbed::get();
    let c = unique("faults");
    let seg = Observer::login(&tb.small()).object_request("PUT", &format!("{c}_segments"));
    let faults = vec![
        Fault::Reply { method: seg.clone(), status: 503, retry_after: Some(2), count: 1 },
        Fault::Reply { method: seg.clone(), status: 498, retry_after: Some(2), count: 1 },
        Fault::Reply { method: seg.clone(), status: 429, retry_after: Some(2), count: 1 },
    ];
    let proxy = Throttle::with_faults(tb.small().port(), 1 << 30, faults);
    let creds = tb.small().via(proxy.port);
    let run = Run::new(creds.clone());
    let src = run.path("disk.img");
    let md5 = write_random(&src, 6 * MIB + 3, 31);
    let t0 = Instant::now();
    let out = run.run(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--concurrency", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(proxy.stats.replies.load(Ordering::Relaxed), 3, "three faults injected");
    let hit = faults_hit_segments_and_were_recovered(&proxy, &c, 3);
    assert!(hit.iter().all(|n| n == &hit[0]), "one worker: the same segment met the three answers in turn: {hit:?}");
    // One worker, three consecutive faults, each asking for 2 s: at least 6 s.
    assert!(t0.elapsed().as_secs_f64() >= 6.0, "Retry-After honoured ({:?})", t0.elapsed());
    for code in ["HTTP 503", "HTTP 498", "HTTP 429"] {
        assert!(err.contains(code), "{code} logged with its retry: {err}");
    }
    assert!(err.contains("tx-injected-fault"), "the X-Trans-Id is in the log: {err}");
    assert_eq!(Observer::login(&tb.small()).get_md5(&c, "disk.img"), Some((md5, 6 * MIB + 3)));
}

#[test]
fn a_stalled_body_is_abandoned_and_sent_again() {
    let tb = Testbed::get();
    let c = unique("stall");
    let seg = Observer::login(&tb.small()).object_request("PUT", &format!("{c}_segments"));
    let faults = vec![Fault::Stall { method: seg, after: 300 << 10, count: 2 }];
    let proxy = Throttle::with_faults(tb.small().port(), 1 << 30, faults);
    let creds = tb.small().via(proxy.port);
    let run = Run::new(creds.clone());
    let src = run.path("disk.img");
    let md5 = write_random(&src, 4 * MIB, 32);
    let out = run.run(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--stall-timeout", "2s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(proxy.stats.stalls.load(Ordering::Relaxed), 2, "two bodies stalled");
    faults_hit_segments_and_were_recovered(&proxy, &c, 2);
    assert!(
        proxy.stats.faulted().iter().all(|r| r.body_len() > 300 << 10),
        "the stalls met bodies, past their first 300 KiB"
    );
    assert!(err.contains("stalled: no progress for 2s"), "{err}");
    assert_eq!(Observer::login(&tb.small()).get_md5(&c, "disk.img"), Some((md5, 4 * MIB)));
    let st = run.status(&run.only_job());
    assert!(st["bytes_wasted"].as_u64().unwrap() >= 2 * (300 << 10) - 4096, "stalled bytes counted as wasted: {st}");
}

/// A segment PUT refused with 403 stops the run at once (no retry), naming the
/// segment and the request id; the job is kept, and once the server accepts again a
/// resume completes it.
#[test]
fn a_refused_segment_is_fatal_and_named() {
    let tb = Testbed::get();
    let c = unique("refused");
    let seg = Observer::login(&tb.small()).object_request("PUT", &format!("{c}_segments"));
    let faults = vec![Fault::Reply { method: seg, status: 403, retry_after: None, count: 100 }];
    let proxy = Throttle::with_faults(tb.small().port(), 1 << 30, faults);
    let run = Run::new(tb.small().via(proxy.port));
    let src = run.path("disk.img");
    let md5 = write_random(&src, 2 * MIB, 33);
    let out = run.run(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--concurrency", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("HTTP 403") && err.contains("tx-injected-fault"), "{err}");
    let refused = proxy.stats.faulted();
    let segs = format!("{c}_segments");
    let names: Vec<String> = refused
        .iter()
        .map(|r| r.put_into(&segs).unwrap_or_else(|| panic!("the 403 met something else than a segment PUT: {r:?}")))
        .collect();
    // Not retried: no segment met the 403 twice (one worker: at most one more
    // segment was on its way when the first was refused).
    let mut distinct = names.clone();
    distinct.sort();
    distinct.dedup();
    assert!(!names.is_empty() && names.len() <= 2 && distinct.len() == names.len(), "a 403 is not retried: {names:?}");
    let name = names[0].clone();
    let (off, len) = common::piece_of(&name).unwrap();
    assert!(err.contains(&format!("segment {off:016}+{len}")), "names the segment: {err}");
    let direct = Observer::login(&tb.small());
    assert!(direct.head(&c, "disk.img").is_none(), "no object after a refused segment");

    // The server accepts again: the job resumes and completes.
    proxy.clear_faults();
    run.ok(&["resume", &run.only_job(), "--no-progress"]);
    assert!(
        segment_puts(&proxy, &c).iter().any(|(p, f, whole)| p == &name && f.is_none() && *whole),
        "the refused segment was sent again"
    );
    assert_eq!(direct.get_md5(&c, "disk.img"), Some((md5, 2 * MIB)));
}

#[test]
fn bwlimit_caps_the_rate() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let src = run.path("disk.img");
    let size = 6 * MIB;
    let md5 = write_random(&src, size, 34);
    let c = unique("bwlimit");
    let t0 = Instant::now();
    run.ok(&[
        "upload",
        src.to_str().unwrap(),
        "-c",
        &c,
        "--segment-size",
        "1MiB",
        "--bwlimit",
        "2MiB",
        "--no-progress",
    ]);
    // A lower bound only: 6 MiB at 2 MiB/s cannot take less than ~2.5 s (the first block is free).
    let e = t0.elapsed().as_secs_f64();
    assert!(e >= 2.4, "6 MiB at 2 MiB/s took only {e:.2} s");
    assert_eq!(Observer::login(&tb.small()).get_md5(&c, "disk.img").unwrap(), (md5, size));
    let out = run.run(&["upload", src.to_str().unwrap(), "-c", &c, "--bwlimit", "10"]);
    assert_eq!(out.status.code(), Some(2), "a rate below 1 KiB/s is refused");
}

/// The proxy's view of the segment PUTs: for each one, in order of arrival, its
/// request line and how many segment bodies were in flight at that moment (itself
/// included).
fn in_flight_at_each_start(proxy: &Throttle, segments_prefix: &str) -> Vec<(String, usize)> {
    let puts: Vec<_> = proxy.stats.requests().into_iter().filter(|r| r.line.starts_with(segments_prefix)).collect();
    puts.iter()
        .map(|p| {
            let n = puts.iter().filter(|q| q.start <= p.start && q.end.is_none_or(|e| e > p.start)).count();
            (p.line.clone(), n)
        })
        .collect()
}

#[test]
fn concurrency_backs_off_under_errors_and_recovers() {
    let tb = Testbed::get();
    let c = unique("adapt");
    let segments = Observer::login(&tb.small()).object_request("PUT", &format!("{c}_segments"));
    let faults = vec![Fault::Reply { method: segments.clone(), status: 503, retry_after: None, count: 4 }];
    // A shared cap, so that bodies overlap as long as the pool lets them.
    let proxy = Throttle::with_faults(tb.small().port(), 8 * MIB, faults);
    let creds = tb.small().via(proxy.port);
    let run = Run::new(creds.clone());
    let src = run.path("disk.img");
    let md5 = write_random(&src, 24 * MIB, 35);
    let out = run.run(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--concurrency", "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(proxy.stats.replies.load(Ordering::Relaxed), 4, "the four 503s were played");
    // What the server side saw. The four segments that met a 503 retry in their own
    // tasks; a pool that kept 4 in flight would start the next segment beside three
    // others. Halved to 2 (and +1 after two clean confirmations, which the retried
    // segments give), the first fresh segment starts beside at most two; later,
    // fresh segments start beside three others again.
    let seen = in_flight_at_each_start(&proxy, &segments);
    let hit: Vec<&String> = seen[..4].iter().map(|(l, _)| l).collect();
    let fresh: Vec<usize> = seen.iter().filter(|(l, _)| !hit.contains(&l)).map(|(_, n)| *n).collect();
    assert!(fresh[0] <= 3, "the pool did not back off: in flight at each fresh start {fresh:?}");
    assert!(fresh.contains(&4), "never recovered to 4 in flight: {fresh:?}");
    assert_eq!(Observer::login(&creds).get_md5(&c, "disk.img").unwrap(), (md5, 24 * MIB));
}

#[test]
fn resets_lost_responses_corrupted_bodies_and_latency_are_survived() {
    let tb = Testbed::get();
    let c = unique("mixed");
    let seg = Observer::login(&tb.small()).object_request("PUT", &format!("{c}_segments"));
    let faults = vec![
        Fault::Reset { method: seg.clone(), after: 200 << 10, count: 2 },
        Fault::CloseBeforeResponse { method: seg.clone(), count: 2 },
        Fault::Corrupt { method: seg.clone(), at: 1000, count: 2 },
    ];
    let proxy = Throttle::new(tb.small().port(), 1 << 30, std::time::Duration::from_millis(30), faults);
    let creds = tb.small().via(proxy.port);
    let run = Run::new(creds.clone());
    let src = run.path("disk.img");
    let size = 10 * MIB + 77;
    let md5 = write_random(&src, size, 36);
    let out = run.run(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--concurrency", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let s = &proxy.stats;
    assert_eq!(
        (s.resets.load(Ordering::Relaxed), s.closes.load(Ordering::Relaxed), s.corruptions.load(Ordering::Relaxed)),
        (2, 2, 2),
        "every scripted fault was injected"
    );
    assert!(err.contains("HTTP 422"), "Swift refused the corrupted bodies: {err}");
    assert_eq!(Observer::login(&creds).get_md5(&c, "disk.img").unwrap(), (md5, size), "the object is identical");
    let st = run.status(&run.only_job());
    // wasted: at most the faulted attempts (each at most one segment)
    assert!(st["bytes_wasted"].as_u64().unwrap() <= 6 * MIB, "{st}");
}

#[test]
fn a_link_down_mid_upload_heals_without_the_user() {
    let tb = Testbed::get();
    // CI: 12 s down; K5UP_LINK_DOWN_SECS=300 for the long local mode.
    let down: u64 = std::env::var("K5UP_LINK_DOWN_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let proxy = Throttle::start(tb.small().port(), 4 * MIB);
    let creds = tb.small().via(proxy.port);
    let run = Run::new(creds.clone());
    let src = run.path("disk.img");
    let size = 16 * MIB;
    let md5 = write_random(&src, size, 37);
    let c = unique("linkdown");
    let args = ["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--no-progress"];
    let obs = Observer::login(&creds);
    let t0 = Instant::now();
    let mut child = run.spawn(&args);
    common::wait_for(std::time::Duration::from_secs(60), || {
        (obs.count_segments(&format!("{c}_segments")) >= 3).then_some(())
    });
    proxy.link_down(std::time::Duration::from_secs(down));
    let status = child.wait().unwrap();
    let err = run.stderr();
    assert!(status.success(), "{err}");
    assert!(t0.elapsed().as_secs() >= down, "the upload waited out the outage");
    assert!(proxy.stats.link_down_cuts.load(Ordering::Relaxed) > 0, "the link really went down");
    assert_eq!(Observer::login(&creds).get_md5(&c, "disk.img").unwrap(), (md5, size));
}

/// `--bwlimit` (like --concurrency and --stall-timeout) is kept with the job: a
/// `resume` without it is still capped (it was forgotten); `--bwlimit off` lifts it.
#[test]
fn resume_keeps_the_bandwidth_limit_unless_told_otherwise() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let src = run.path("disk.img");
    let size = 10 * MIB;
    let md5 = write_random(&src, size, 36);
    let c = unique("bwkeep");
    let obs = Observer::login(&tb.small());
    let s = src.to_str().unwrap();
    let args =
        ["upload", s, "-c", &c, "--segment-size", "1MiB", "--bwlimit", "1MiB", "--concurrency", "2", "--no-progress"];
    let job = run.job_id(&args);
    run.kill_after(&args, &obs, &format!("{c}_segments"), 2);
    let left = size - obs.count_segments(&format!("{c}_segments")) as u64 * MIB;
    assert!(left >= 5 * MIB, "the kill left most of the file: {left}");
    let t0 = Instant::now();
    run.ok(&["resume", &job, "--no-progress"]);
    // A lower bound only: what was left, at 1 MiB/s, cannot go faster (the first block is free).
    let e = t0.elapsed().as_secs_f64();
    let floor = (left - MIB) as f64 / MIB as f64 - 0.5;
    assert!(e >= floor, "resume sent {left} bytes in {e:.2} s: the limit was forgotten");
    assert_eq!(obs.get_md5(&c, "disk.img").unwrap(), (md5, size));
    let st = run.status(&job);
    assert_eq!(st["settings"]["bwlimit"], MIB, "{st}");
    assert_eq!(st["settings"]["concurrency"], 2, "{st}");
}

/// Without a progress bar, the periodic line shows the rate of the last seconds: while
/// the link is down it says nothing is being sent (an average since the start kept
/// printing "sending 85 KiB/s" then).
#[test]
fn the_progress_line_says_when_nothing_is_sent() {
    let tb = Testbed::get();
    let t = common::Slow::new(&tb.small(), 2 * MIB, 16 * MIB, 37, "quiet");
    let run = &t.run;
    let args = t.upload_args(&["--concurrency", "2"]);
    let mut child = run
        .cmd(&args)
        .env("K5UP_PROGRESS_SECS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(run.path("quiet.err")).unwrap())
        .spawn()
        .unwrap();
    run.wait_segments(&mut child, &t.obs, &t.segs, 2);
    let job = run.only_job();
    t.proxy.link_down(std::time::Duration::from_secs(6));
    // status from another terminal shows the outage while it lasts.
    let st = common::wait_for(std::time::Duration::from_secs(6), || {
        let v = run.status(&job);
        (v["link_down_secs"].as_u64().is_some_and(|s| s >= 1)).then_some(v)
    });
    assert!(st["outages"].as_u64().unwrap() >= 1, "{st}");
    assert!(child.wait().unwrap().success());
    let err = std::fs::read_to_string(run.path("quiet.err")).unwrap();
    assert!(err.contains("sending ") && err.contains("/s, ETA "), "a rate while it moves: {err}");
    assert!(err.contains("nothing sent in the last seconds"), "said while the link was down: {err}");
    assert!(err.contains(", link down for "), "the link's state: {err}");
    assert_eq!(t.object().unwrap(), (t.md5.clone(), t.size));
}

/// A link that keeps dropping (up 3 s, down 1 s, every open connection cut, one rate
/// cap for all): the upload completes unattended, with the object identical, after
/// the proxy played several outages.
#[test]
fn an_upload_on_a_flapping_link_completes_unattended() {
    let tb = Testbed::get();
    let t = common::Slow::new(&tb.small(), 2 * MIB, 16 * MIB + 5, 38, "flap");
    let flapping = t.proxy.flap(std::time::Duration::from_secs(3), std::time::Duration::from_secs(1));
    let out = t.run.run(&t.upload_args(&["--concurrency", "2"]));
    drop(flapping);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(t.proxy.stats.outages.load(Ordering::Relaxed) >= 2, "the link dropped while the upload ran");
    // Read back straight from the server, not through the flapping link.
    assert_eq!(Observer::login(&tb.small()).get_md5(&t.c, "disk.img"), Some((t.md5.clone(), t.size)));
}

#[test]
fn an_slo_manifest_answer_cut_mid_body_is_sent_again() {
    let tb = Testbed::get();
    let obs = Observer::login(&tb.small());
    let c = unique("cutanswer");
    // The manifest PUT goes to CONTAINER%2FOBJECT (segments to CONTAINER_segments):
    // its heartbeat answer is cut after the head and 1 byte of the body.
    let faults = vec![Fault::CutResponse { method: obs.object_request("PUT", &c), after: 1, count: 1 }];
    let proxy = Throttle::with_faults(tb.small().port(), 1 << 30, faults);
    let creds = tb.small().via(proxy.port);
    let run = Run::new(creds.clone());
    let src = run.path("disk.img");
    let md5 = write_random(&src, 3 * MIB + 5, 34);
    let out = run.run(&["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--no-progress"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(proxy.stats.closes.load(Ordering::Relaxed), 1, "the answer was cut once");
    let puts = proxy.stats.requests().iter().filter(|r| r.line.starts_with(&obs.object_request("PUT", &c))).count();
    assert_eq!(puts, 2, "the manifest was PUT again after its answer was lost");
    assert_eq!(obs.get_md5(&c, "disk.img").unwrap(), (md5, 3 * MIB + 5));
}
