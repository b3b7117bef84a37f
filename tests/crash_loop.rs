//! A crash test in the style of sled's: k5up is SIGKILLed at seeded random moments,
//! several times per job, over many jobs. After every job: the object reads back
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
    let up = ["upload", s, "-c", &c, "--segment-size", "1MiB", "--concurrency", &conc, "--no-progress"];
    let job = run.job_id(&up);
    let obs = Observer::login(&creds);
    let segs = format!("{c}_segments");
    // name → last_modified, the first time the segment was seen whole
    let mut whole: HashMap<String, String> = HashMap::new();
    let mut killed_at = vec![];
    for _ in 0..kills {
        // Killed before its journal held anything: there is no job to resume, and a
        // user runs the same upload again. A journal cut off while being created
        // (birth record only) is resumed like any other.
        let dir = run.journal().join("jobs").join(&job);
        let known = dir.join("db").exists() || dir.join("birth.json").exists();
        let mut child = if known { run.spawn(&["resume", &job, "--no-progress"]) } else { run.spawn(&up) };
        let delay = rng.range(150, 1500);
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let status = child.wait().unwrap();
        // What the killed process had already handed to the kernel still drains to
        // the server; only once the link is idle is the listing what the next run sees.
        proxy.wait_idle(Duration::from_secs(30));
        killed_at.push(format!("{delay}ms{}", if status.success() { "(done)" } else { "" }));
        for (name, e) in obs.list(&segs, "") {
            let Ok(idx) = name.rsplit('/').next().unwrap().parse::<u64>() else { continue };
            if name.contains("/manifest/") || idx * MIB >= size {
                continue;
            }
            let len = MIB.min(size - idx * MIB);
            if e["bytes"] == len && e["hash"].as_str() == Some(&md5_of_range(&src, idx * MIB, len)) {
                whole.entry(name).or_insert_with(|| e["last_modified"].as_str().unwrap().to_string());
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
    let after = obs.list(&segs, "");
    for (name, lm) in &whole {
        if after.get(name).and_then(|e| e["last_modified"].as_str()) != Some(lm.as_str()) {
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
