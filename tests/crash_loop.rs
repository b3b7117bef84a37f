//! A crash test in the style of sled's: k5up is SIGKILLed at seeded random points
//! (a count of request bytes the server has received, so a seed replays them),
//! several times per job, over many jobs; every kill must land mid-upload. After every job: the object reads back
//! with the source's MD5, and no segment that was whole on the server at any kill
//! was PUT again afterwards (its listing `last_modified` never changed). The listing is
//! taken once the link has drained: bytes a killed process had already written to its
//! socket still reach the server after the kill, as they would in real life.
//!
//! CI runs a short mode; `CRASH_ITERATIONS=50 CRASH_KILLS=6 cargo test --test crash_loop`
//! is the long one. `CRASH_SEED` replays a run.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::throttle::Throttle;
use common::{Observer, Run, Testbed, md5_of_range, unique, write_random};

const MIB: u64 = 1 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn env(k: &str, d: u64) -> u64 {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// One job: returns an error text if an invariant broke.
fn one_job(tb: &Testbed, rng: &mut Rng, kills: u64) -> Result<String, String> {
    let size = rng.range(6 * MIB, 14 * MIB) + rng.range(0, 4095);
    let conc = rng.range(1, 4).to_string();
    let proxy = Throttle::start(tb.small().port(), 6 * MIB);
    let creds = tb.small().via(proxy.port);
    let run = Run::new(creds.clone());
    let src = run.path("disk.img");
    let md5 = write_random(&src, size, rng.next());
    let c = unique("loop");
    let s = src.to_str().unwrap();
    let up_args = ["upload", s, "-c", &c, "--segment-size", "1MiB", "--concurrency", &conc, "--no-progress"];
    let job = run.job_id(&up_args);
    let obs = Observer::login(&creds);
    let segs = format!("{c}_segments");
    // Segment names: the job's own prefix (it holds a nonce drawn when the job is
    // created, read from its birth record once there is one), then the range.
    // Nothing is uploaded before the birth record exists.
    let birth = run.journal().join("jobs").join(&job).join("birth.json");
    let prefix_now = || -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&birth).ok()?).ok()?;
        v["segment_prefix"].as_str().map(str::to_string)
    };
    let name_in = |prefix: &str, i: u64| format!("{prefix}{}", common::piece(i * MIB, MIB.min(size - i * MIB)));
    // name → X-Timestamp, the first time the segment was seen whole
    let mut whole: HashMap<String, String> = HashMap::new();
    let mut killed_at = vec![];
    for _ in 0..kills {
        // Killed before its journal held anything: there is no job to resume, and a
        // user runs the same upload again. A journal cut off while being created
        // (birth record only) is resumed like any other.
        let dir = run.journal().join("jobs").join(&job);
        let known = dir.join("db").exists() || dir.join("birth.json").exists();
        // The kill point is an event count, not a clock: after `at` more request bytes
        // have reached the server, a seeded share of what this run must still send
        // (so the same seed replays the same kill points, and the kill always lands
        // before the upload can have finished).
        let prefix = prefix_now().unwrap_or_default();
        let left: u64 = (0..size.div_ceil(MIB))
            .filter(|&i| !whole.contains_key(&name_in(&prefix, i)))
            .map(|i| MIB.min(size - i * MIB))
            .sum();
        if left < 256 << 10 {
            // Too little left for a kill to land mid-upload for certain: no more kills.
            killed_at.push(format!("(no kill: {left} B left)"));
            break;
        }
        let at = rng.range(left / 10, left * 8 / 10);
        let up = || proxy.stats.bytes_up.load(std::sync::atomic::Ordering::Relaxed);
        let target = up() + at;
        let mut child = if known { run.spawn(&["resume", &job, "--no-progress"]) } else { run.spawn(&up_args) };
        let t0 = std::time::Instant::now();
        while up() < target {
            if let Some(st) = child.try_wait().unwrap() {
                return Err(format!(
                    "k5up ended ({st}) before the kill point ({at} of {left} bytes left, {} whole, sent {}): the kill would not land mid-upload\n{}",
                    whole.len(),
                    up() - (target - at),
                    run.stderr()
                ));
            }
            if t0.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                return Err(format!("no progress to the kill point in 120 s\n{}", run.stderr()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        // What the killed process had already handed to the kernel still drains to
        // the server; only once the link is idle is the listing what the next run sees.
        proxy.wait_idle(Duration::from_secs(30));
        {
            use std::os::unix::process::ExitStatusExt;
            if status.signal() != Some(libc::SIGKILL) || obs.head(&c, "disk.img").is_some() {
                return Err(format!("the kill after {at} bytes did not land mid-upload (status {status})"));
            }
        }
        killed_at.push(format!("{at}B"));
        // HEAD each segment (the object server's answer is immediate; a container
        // listing may lag behind it): name → X-Timestamp of the whole segment.
        // Without a birth record there is no prefix to check, and then nothing may be
        // on the server either (else the checks below would check nothing).
        let Some(prefix) = prefix_now() else {
            let listed = obs.list(&segs, "disk.img/");
            if !listed.is_empty() {
                return Err(format!(
                    "segments on the server but no segment_prefix in {}: {:?}",
                    birth.display(),
                    listed.keys()
                ));
            }
            continue;
        };
        for idx in 0..size.div_ceil(MIB) {
            let name = name_in(&prefix, idx);
            let len = MIB.min(size - idx * MIB);
            if let Some(h) = obs.head(&segs, &name)
                && h.get("content-length").map(String::as_str) == Some(len.to_string().as_str())
                && h.get("etag").map(|e| e.trim_matches('"')) == Some(md5_of_range(&src, idx * MIB, len).as_str())
            {
                whole.entry(name).or_insert_with(|| h["x-timestamp"].clone());
            }
        }
    }
    let out = run.run(&["resume", &job, "--no-progress"]);
    if !out.status.success() {
        return Err(format!("final resume failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    match obs.get_md5(&c, "disk.img") {
        Some((m, n)) if m == md5 && n == size => {}
        other => return Err(format!("object differs: {other:?}, expected ({md5}, {size})")),
    }
    for (name, ts) in &whole {
        if obs.head(&segs, name).and_then(|h| h.get("x-timestamp").cloned()).as_deref() != Some(ts.as_str()) {
            return Err(format!("segment {name} was whole at a kill and was PUT again"));
        }
    }
    Ok(format!(
        "{size} bytes, concurrency {conc}, kills at {}, {} segments whole at kills",
        killed_at.join(" "),
        whole.len()
    ))
}

fn main() {
    let tb = Testbed::get();
    let iterations = env("CRASH_ITERATIONS", 3);
    let kills = env("CRASH_KILLS", 3);
    let seed = env("CRASH_SEED", 0x6b35_7570);
    let mut rng = Rng(seed | 1);
    let (mut passed, mut failed) = (0, 0);
    println!("crash loop: seed {seed}, {iterations} jobs, {kills} kills each");
    for i in 0..iterations {
        match one_job(&tb, &mut rng, kills) {
            Ok(what) => {
                passed += 1;
                println!("job {i}: ok: {what}");
            }
            Err(why) => {
                failed += 1;
                println!("job {i}: FAILED: {why}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
