//! Killing k5up at several points of an upload: the object reads back identical, and
//! nothing the server already held whole before the kill is PUT again.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Observer, Slow, Testbed, md5_of_range, wait_for};
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// Segments whole on the server (the bytes their names say, with those bytes' MD5):
/// name → last_modified.
fn whole(obs: &Observer, c: &str, prefix: &str, src: &std::path::Path) -> HashMap<String, String> {
    obs.list(&format!("{c}_segments"), prefix)
        .into_iter()
        .filter(|(name, e)| {
            // (sub-manifests of a nested SLO are not segments)
            let Some((off, len)) = common::piece_of(name) else { return false };
            e["bytes"] == len && e["hash"].as_str().unwrap() == md5_of_range(src, off, len)
        })
        .map(|(n, e): (String, Value)| (n, e["last_modified"].as_str().unwrap().to_string()))
        .collect()
}

fn kill_at(fraction: f64) {
    let tb = Testbed::get();
    let seg = MIB;
    // 8 MiB/s: the upload takes about 3 s, long enough to kill it where we want.
    let t = Slow::new(&tb.small(), 8 * MIB, 24 * MIB + 333, 42, "crash");
    let (run, obs, c, src, size) = (&t.run, &t.obs, &t.c, &t.src, t.size);
    let nseg = size.div_ceil(seg);
    let args = t.upload_args(&["--concurrency", "3"]);
    let job = run.job_id(&args);
    let prefix = "disk.img/slo/";
    let target = ((nseg as f64) * fraction).round().max(1.0) as usize;

    run.kill_after(&args, obs, &t.segs, target); // SIGKILL
    // What the killed process had handed to the kernel drains to the server first.
    t.proxy.wait_idle(Duration::from_secs(30));
    // (Run::kill fails the test if k5up had ended first; the server agrees: no object.)
    assert!(obs.head(c, "disk.img").is_none(), "the kill landed before the object was complete");
    let before = whole(obs, c, prefix, src);
    assert!(before.len() >= target, "{} whole before the kill", before.len());
    let st = run.status(&job);
    assert!(!st["running"].as_bool().unwrap());
    assert!(st["segments_confirmed"].as_u64().unwrap() as usize <= before.len(), "journal never ahead of the server");

    let (seen_before, up_before) = (t.proxy.stats.requests().len(), t.proxy.stats.bytes_up.load(Ordering::Relaxed));
    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(t.object().unwrap(), (t.md5.clone(), size), "object identical after resume");
    let after = whole(obs, c, prefix, src);
    for (name, lm) in &before {
        assert_eq!(after.get(name), Some(lm), "segment {name} (whole before the kill) was PUT again");
    }
    // The wire, as the proxy saw it. The resume PUT none of the segments whole before
    // the kill, and sent at most the rest of the file (plus heads and the manifest);
    // both runs together, at most the file plus what was in flight at the kill.
    let resumed: Vec<String> =
        t.proxy.stats.requests()[seen_before..].iter().filter_map(|r| r.put_into(&t.segs)).collect();
    let again: Vec<&String> = resumed.iter().filter(|n| before.contains_key(*n)).collect();
    assert!(again.is_empty(), "the resume PUT segments that were whole before the kill: {again:?}");
    let held: u64 = before.keys().map(|n| common::piece_of(n).unwrap().1).sum();
    assert!(held == size || !resumed.is_empty(), "the resume sent the rest of the file");
    let wire = t.proxy.stats.bytes_up.load(Ordering::Relaxed);
    assert!(
        wire - up_before <= size - held + 256 * 1024,
        "the resume sent {} bytes for {} missing",
        wire - up_before,
        size - held
    );
    assert!(wire <= size + 3 * seg + 256 * 1024, "{wire} bytes crossed the link for a {size}-byte file");
    assert_eq!(run.status(&job)["phase"], "done");
}

#[test]
fn kill_after_first_segment() {
    kill_at(0.05);
}

#[test]
fn kill_at_half() {
    kill_at(0.5);
}

#[test]
fn kill_near_the_end() {
    kill_at(0.95);
}

#[test]
fn ctrl_c_exits_75_and_resume_completes() {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 4 * MIB, 16 * MIB, 7, "sigint");
    let (run, obs) = (&t.run, &t.obs);
    let args = t.upload_args(&["--concurrency", "2"]);
    let job = run.job_id(&args);
    let mut child = run.spawn(&args);
    wait_for(Duration::from_secs(60), || (obs.count_segments(&t.segs) >= 3).then_some(()));
    let pid = child.id().to_string();
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    let err = run.stderr();
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(err.contains(&format!("k5up resume {job}")), "{err}");
    let st = run.status(&job);
    assert_eq!(st["phase"], "uploading");
    assert!(st["segments_confirmed"].as_u64().unwrap() >= 2);
    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(t.object().unwrap(), (t.md5.clone(), t.size));
}
