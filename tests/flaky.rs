//! Links that drop every few seconds (issue 10): an upload with the default plan,
//! whose segments could never cross one up-period, completes unattended by
//! splitting them; a kill in the middle of that, or a lost journal, loses nothing
//! the server already holds whole. Everything is checked on the server: the
//! object's bytes, its manifest, the segment listing.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Observer, Slow, Testbed, md5_of_range, wait_for};

const MIB: u64 = 1 << 20;

/// The link: 2 MiB/s, up 3 s then down 1 s (every connection cut). One up-period
/// carries 6 MiB in all; the plan's first segments are 8 MiB.
fn flapping_link(t: &Slow) -> common::throttle::Flapping {
    t.proxy.flap(Duration::from_secs(3), Duration::from_secs(1))
}

/// `upload FILE -c C --no-progress` with the default plan, plus `extra`.
fn default_args<'a>(t: &'a Slow, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["upload", t.src.to_str().unwrap(), "-c", &t.c, "--no-progress"];
    a.extend_from_slice(extra);
    a
}

/// Segments whole on the server (their names' bytes, with those bytes' MD5): name →
/// last_modified. `obs` must reach the server directly (not through the flapping link).
fn whole(obs: &Observer, t: &Slow) -> HashMap<String, String> {
    obs.list(&t.segs, "disk.img/")
        .into_iter()
        .filter(|(name, e)| {
            let Some((off, len)) = common::piece_of(name) else { return false };
            off + len <= t.size && e["bytes"] == len && e["hash"].as_str() == Some(&md5_of_range(&t.src, off, len))
        })
        .map(|(n, e)| (n, e["last_modified"].as_str().unwrap().to_string()))
        .collect()
}

/// The object's segments as the manifest lists them: contiguous, covering the file,
/// and nothing else left under the job's prefix (but sub-manifests).
fn check_layout(obs: &Observer, t: &Slow, leaves: &[(String, u64)]) {
    let mut at = 0;
    for (path, bytes) in leaves {
        let (off, len) = common::piece_of(path).unwrap_or_else(|| panic!("a segment name says its bytes: {path}"));
        assert_eq!((off, len), (at, *bytes), "segments in file order, each as long as its name says");
        at += len;
    }
    assert_eq!(at, t.size, "the segments cover the file");
    let listed: Vec<String> =
        obs.list(&t.segs, "disk.img/").into_keys().filter(|n| !n.contains("/manifest/")).collect();
    let used: std::collections::HashSet<&str> =
        leaves.iter().map(|(p, _)| p.strip_prefix(&format!("{}/", t.segs)).unwrap()).collect();
    let extra: Vec<&String> = listed.iter().filter(|n| !used.contains(n.as_str())).collect();
    assert!(extra.is_empty(), "segments outside the manifest are deleted: {extra:?}");
}

#[test]
fn segments_that_never_fit_the_link_are_split_and_the_upload_completes() {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 2 * MIB, 20 * MIB + 5, 51, "split");
    let flapping = flapping_link(&t);
    let out = t.run.run(&default_args(&t, &[]));
    drop(flapping);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(t.proxy.stats.outages.load(Ordering::Relaxed) >= 2, "the link dropped while the upload ran");
    // Splits after an outage say so.
    assert!(err.lines().any(|l| l.contains(" split: ") && l.contains("between outages")), "{err}");
    // Straight from the server, not through the flapping link.
    let direct = Observer::login(&tb.small());
    assert_eq!(direct.get_md5(&t.c, "disk.img"), Some((t.md5.clone(), t.size)));
    let leaves = direct.slo_leaves(&t.c, "disk.img");
    check_layout(&direct, &t, &leaves);
    let largest = leaves.iter().map(|l| l.1).max().unwrap();
    assert!(largest <= 6 * MIB, "every segment fits one up-period (6 MiB); the largest is {largest}");
    // More segments than one manifest of the small proxy holds (16): a nested SLO,
    // of segments of several sizes.
    assert!(leaves.len() > 16, "{} segments", leaves.len());
    let sizes: std::collections::BTreeSet<u64> = leaves.iter().map(|l| l.1).collect();
    assert!(sizes.len() >= 2, "{sizes:?}");
    let st = t.run.status(&t.run.only_job());
    assert!(st["splits"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["segments_total"].as_u64().unwrap(), leaves.len() as u64, "{st}");
}

/// A link that never breaks but is slow: the slow start cuts the plan's 16 MiB
/// segments to what a stream sends in 10 s. Nothing in the output speaks of outages
/// (there were none): the splits say they are the slow start's.
#[test]
fn splits_on_a_slow_link_without_outages_do_not_speak_of_outages() {
    let tb = Testbed::get();
    // 4 MiB/s for 4 streams: 1 MiB/s each, 10 MiB in 10 s; the plan's fifth segment is 16 MiB.
    let t = Slow::new(&tb.small(), 4 * MIB, 48 * MIB + 5, 55, "slowstart");
    let out = t.run.run(&default_args(&t, &[]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(t.proxy.stats.outages.load(Ordering::Relaxed), 0, "the proxy played no outage");
    let direct = Observer::login(&tb.small());
    assert_eq!(direct.get_md5(&t.c, "disk.img"), Some((t.md5.clone(), t.size)));
    let st = t.run.status(&t.run.only_job());
    assert!(st["splits"].as_u64().unwrap() >= 1, "the slow start split a segment: {st}\n{err}");
    assert!(!err.to_lowercase().contains("outage"), "no outage happened, none is spoken of:\n{err}");
    assert!(err.lines().any(|l| l.contains(" split: ") && l.contains("slow start")), "{err}");
    let leaves = direct.slo_leaves(&t.c, "disk.img");
    check_layout(&direct, &t, &leaves);
}

/// Runs the default upload on the flapping link until the server holds at least 4
/// whole segments and the job has split some, then SIGKILLs it and stops the flapping.
/// Returns the job id and the segments whole at the kill.
fn kill_an_adapted_run(t: &Slow, direct: &Observer) -> (String, HashMap<String, String>) {
    let args = default_args(t, &[]);
    let job = t.run.job_id(&args);
    let flapping = flapping_link(t);
    let mut child = t.run.spawn(&args);
    let splits = || {
        let out = t.run.run(&["status", &job, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["splits"].as_u64().unwrap_or(0)
    };
    wait_for(Duration::from_secs(90), || {
        assert!(child.try_wait().unwrap().is_none(), "the upload ended before the kill: {}", t.run.stderr());
        (splits() >= 1 && whole(direct, t).len() >= 4).then_some(())
    });
    t.run.kill(&mut child);
    drop(flapping);
    t.proxy.wait_idle(Duration::from_secs(30));
    assert!(direct.head(&t.c, "disk.img").is_none(), "the kill landed before the object was complete");
    (job, whole(direct, t))
}

/// After the kill, the object is identical and laid out as its manifest says; for
/// the same job (`resumed`), every segment whole on the server is still there, not
/// PUT again.
fn nothing_whole_was_sent_again(t: &Slow, before: &HashMap<String, String>, resumed: bool) {
    assert_eq!(t.object(), Some((t.md5.clone(), t.size)), "object identical");
    let after = whole(&t.obs, t);
    for (name, lm) in before.iter().filter(|_| resumed) {
        assert_eq!(after.get(name), Some(lm), "segment {name} (whole before the kill) was PUT again or dropped");
    }
    let leaves = t.obs.slo_leaves(&t.c, "disk.img");
    check_layout(&t.obs, t, &leaves);
    let sizes: std::collections::BTreeSet<u64> = leaves.iter().map(|l| l.1).collect();
    assert!(sizes.len() >= 2, "segments of several sizes (split ones and planned ones): {sizes:?}");
}

#[test]
fn a_kill_during_an_adapted_run_then_resume_loses_nothing() {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 2 * MIB, 24 * MIB + 77, 52, "splitkill");
    let (job, before) = kill_an_adapted_run(&t, &Observer::login(&tb.small()));
    t.run.ok(&["resume", &job, "--no-progress"]);
    nothing_whole_was_sent_again(&t, &before, true);
}

#[test]
fn a_journal_lost_after_splits_the_same_command_adopts_every_whole_segment() {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 2 * MIB, 24 * MIB + 99, 53, "splitlost");
    let (job, before) = kill_an_adapted_run(&t, &Observer::login(&tb.small()));
    std::fs::remove_dir_all(t.run.journal().join("jobs").join(&job)).unwrap();
    let up = t.proxy.stats.bytes_up.load(Ordering::Relaxed);
    t.run.ok(&default_args(&t, &[]));
    // A new job (names of its own): the old segments were copied on the server where
    // they matched (the wire count below), then deleted once the object was verified
    // (check_layout: nothing left beside the manifest's segments).
    nothing_whole_was_sent_again(&t, &before, false);
    assert!(before.keys().all(|n| !whole(&t.obs, &t).contains_key(n)), "the lost job's segments are deleted");
    let whole_bytes: u64 = before.keys().map(|n| common::piece_of(n).unwrap().1).sum();
    let sent = t.proxy.stats.bytes_up.load(Ordering::Relaxed) - up;
    assert!(
        sent < t.size - whole_bytes + 2 * MIB,
        "the new run sent {sent} bytes for {} missing ones",
        t.size - whole_bytes
    );
}

#[test]
fn a_dlo_on_a_flapping_link_holds_exactly_its_segments() {
    let tb = Testbed::get();
    let t = Slow::new(&tb.small(), 2 * MIB, 12 * MIB + 3, 54, "splitdlo");
    let flapping = flapping_link(&t);
    let out = t.run.run(&default_args(&t, &["--manifest", "dlo"]));
    drop(flapping);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let direct = Observer::login(&tb.small());
    assert_eq!(direct.get_md5(&t.c, "disk.img"), Some((t.md5.clone(), t.size)));
    assert!(direct.head(&t.c, "disk.img").unwrap().contains_key("x-object-manifest"));
    // A DLO reads whatever its prefix lists: the listing must be exactly the cuts.
    let mut listed: Vec<(String, u64)> = direct
        .list(&t.segs, "disk.img/")
        .into_iter()
        .map(|(n, e)| (format!("{}/{n}", t.segs), e["bytes"].as_u64().unwrap()))
        .collect();
    listed.sort();
    check_layout(&direct, &t, &listed);
    assert!(listed.len() > 1, "split to fit the link: {listed:?}");
}
