//! The fault-suite report: one upload per fault kind through the fault proxy in front
//! of the real Swift, and a table of what happened: completed, object MD5 correct,
//! wasted bytes / file size, time / a clean run's time. Targets: every survivable fault
//! survived, the object identical every time, waste at most the segments the faults hit.
//! `FAULT_REPORT_MIB` (default 8) sets the file size for a longer local mode.

mod common;

use std::time::{Duration, Instant};

use common::throttle::{Fault, Throttle};
use common::{Observer, Run, Testbed, unique, write_random};

const MIB: u64 = 1 << 20;

struct Case {
    name: &'static str,
    faults: Vec<Fault>,
    rate: u64,
    latency: Duration,
    /// Faults that can each waste at most one segment.
    hits: u64,
    /// Take the link down this long once 2 segments are up.
    link_down: Option<Duration>,
}

fn case(name: &'static str, faults: Vec<Fault>, hits: u64) -> Case {
    Case { name, faults, rate: 1 << 30, latency: Duration::ZERO, hits, link_down: None }
}

struct Outcome {
    completed: bool,
    md5_ok: bool,
    /// Request bytes the proxy forwarded to the server (heads and bodies).
    up: u64,
    /// How many scripted faults the proxy actually played (its own counters).
    fired: usize,
    secs: f64,
    /// After an outage: seconds from the link's return to the first segment PUT the
    /// proxy saw.
    back_after: Option<f64>,
}

fn run_case(tb: &Testbed, k: &Case, size: u64) -> Outcome {
    let c = unique("report");
    let seg = Observer::login(&tb.small()).object_request("PUT", &format!("{c}_segments"));
    let faults = k
        .faults
        .iter()
        .map(|f| match *f {
            Fault::Reply { status, retry_after, count, .. } => {
                Fault::Reply { method: seg.clone(), status, retry_after, count }
            }
            Fault::Stall { after, count, .. } => Fault::Stall { method: seg.clone(), after, count },
            Fault::Reset { after, count, .. } => Fault::Reset { method: seg.clone(), after, count },
            Fault::CloseBeforeResponse { count, .. } => Fault::CloseBeforeResponse { method: seg.clone(), count },
            Fault::Corrupt { at, count, .. } => Fault::Corrupt { method: seg.clone(), at, count },
            Fault::CutResponse { after, count, .. } => Fault::CutResponse { method: seg.clone(), after, count },
            Fault::HoldResponse { count, .. } => Fault::HoldResponse { method: seg.clone(), count },
        })
        .collect();
    let proxy = Throttle::new(tb.small().port(), k.rate, k.latency, faults);
    let creds = tb.small().via(proxy.port);
    let run = Run::new(creds.clone());
    let src = run.path("disk.img");
    let md5 = write_random(&src, size, size ^ k.name.len() as u64);
    let s = src.to_str().unwrap();
    let args = ["upload", s, "-c", &c, "--segment-size", "1MiB", "--stall-timeout", "2s", "--no-progress"];
    let t0 = Instant::now();
    let mut child = run.spawn(&args);
    let mut up_at = None;
    if let Some(d) = k.link_down {
        let obs = Observer::login(&creds);
        common::wait_for(Duration::from_secs(60), || (obs.count_segments(&format!("{c}_segments")) >= 2).then_some(()));
        proxy.link_down(d);
        up_at = Some(Instant::now() + d);
    }
    let completed = child.wait().unwrap().success();
    let secs = t0.elapsed().as_secs_f64();
    let md5_ok = Observer::login(&tb.small()).get_md5(&c, "disk.img") == Some((md5, size));
    // What the proxy saw, not what k5up says of itself.
    let st = &proxy.stats;
    let fired = [&st.replies, &st.stalls, &st.resets, &st.closes, &st.corruptions]
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .sum::<usize>()
        + usize::from(st.link_down_cuts.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let up = st.bytes_up.load(std::sync::atomic::Ordering::Relaxed);
    let back_after = up_at.and_then(|t| {
        st.requests()
            .iter()
            .filter(|r| r.line.starts_with(&seg) && r.start >= t)
            .map(|r| (r.start - t).as_secs_f64())
            .reduce(f64::min)
    });
    Outcome { completed, md5_ok, up, fired, secs, back_after }
}

fn count_of(f: &Fault) -> usize {
    match f {
        Fault::Reply { count, .. }
        | Fault::Stall { count, .. }
        | Fault::Reset { count, .. }
        | Fault::CloseBeforeResponse { count, .. }
        | Fault::Corrupt { count, .. }
        | Fault::CutResponse { count, .. }
        | Fault::HoldResponse { count, .. } => *count,
    }
}

fn main() {
    let tb = Testbed::get();
    let size = std::env::var("FAULT_REPORT_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(8u64) * MIB + 123;
    let p = String::new; // the method is filled in per case
    let reply = |status, ra| Fault::Reply { method: p(), status, retry_after: ra, count: 3 };
    let cases = vec![
        case("clean", vec![], 0),
        case("503 Service Unavailable, Retry-After 1 (x3)", vec![reply(503, Some(1))], 3),
        case("498 rate limited, Retry-After 1 (x3)", vec![reply(498, Some(1))], 3),
        case("429 Too Many Requests, Retry-After 1 (x3)", vec![reply(429, Some(1))], 3),
        case("connection reset after 256 KiB (x3)", vec![Fault::Reset { method: p(), after: 256 << 10, count: 3 }], 3),
        case(
            "stalled body (x2, --stall-timeout 2s)",
            vec![Fault::Stall { method: p(), after: 256 << 10, count: 2 }],
            2,
        ),
        case("closed before the response (x3)", vec![Fault::CloseBeforeResponse { method: p(), count: 3 }], 3),
        case("byte flipped in the body, 422 (x3)", vec![Fault::Corrupt { method: p(), at: 4096, count: 3 }], 3),
        Case { latency: Duration::from_millis(50), ..case("50 ms latency per request", vec![], 0) },
        Case { rate: 4 * MIB, ..case("bandwidth capped at 4 MiB/s", vec![], 0) },
        Case { rate: 8 * MIB, link_down: Some(Duration::from_secs(5)), ..case("link down 5 s mid-upload", vec![], 4) },
    ];
    let (mut clean_secs, mut clean_up) = (1.0, 0u64);
    let (mut passed, mut failed) = (0, 0);
    println!("\nfault-suite report: {} per upload, 1 MiB segments, concurrency 4", size);
    println!(
        "waste = request bytes the proxy forwarded beyond those of the clean run; fired = faults the proxy played"
    );
    println!("| fault | fired | completed | MD5 | wasted / size | time / clean | back after outage | verdict |");
    println!("|---|---|---|---|---|---|---|---|");
    for k in &cases {
        let o = run_case(&tb, k, size);
        if k.name == "clean" {
            clean_secs = o.secs.max(0.01);
            clean_up = o.up;
        }
        let wasted = o.up.saturating_sub(clean_up);
        // Every scripted fault must have been played (else the row proves nothing); an
        // outage counts once.
        let want_fired = if k.link_down.is_some() { 1 } else { k.faults.iter().map(count_of).sum() };
        // waste allowed: the segments the faults hit (each at most one segment: an
        // immediate refusal still finds the body already pushed into the socket), or for
        // an outage the segments in flight when it struck (concurrency 4), plus 64 KiB
        // of request heads for the retries
        let ok = o.completed && o.md5_ok && o.fired == want_fired && wasted <= k.hits * MIB + (64 << 10);
        if ok {
            passed += 1
        } else {
            failed += 1
        }
        println!(
            "| {} | {}/{want_fired} | {} | {} | {:.3} | {:.2} | {} | {} |",
            k.name,
            o.fired,
            if o.completed { "yes" } else { "NO" },
            if o.md5_ok { "identical" } else { "WRONG" },
            wasted as f64 / size as f64,
            o.secs / clean_secs,
            o.back_after.map(|b| format!("{b:.1} s")).unwrap_or_else(|| "-".into()),
            if ok { "ok" } else { "FAILED" }
        );
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
