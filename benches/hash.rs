//! Micro-benchmark of the hot path's first pass: reading a segment and computing its
//! MD5 (`source::md5_range`), against openssl's MD5 speed on this machine when
//! openssl is installed; then multi-buffer MD5 (`md5lanes`) on every backend this CPU
//! has, against the `md-5` crate on the same bytes in memory; then the whole-image
//! digests. Single-threaded, so seconds are CPU-seconds. Run with `cargo bench --bench hash`.

use std::io::Write;
use std::time::Instant;

fn main() {
    let size: u64 = std::env::var("BENCH_HASH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(512) << 20;
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    let block: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for _ in 0..(size >> 20) {
        f.write_all(&block).expect("write");
    }
    f.flush().expect("flush");
    let file = std::fs::File::open(f.path()).expect("open");
    // warm the page cache, as the second read of a segment would find it
    k5up::testing::md5_range(&file, 0, size).expect("read");
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(k5up::testing::md5_range(&file, 0, size).expect("read"));
        best = best.min(t.elapsed().as_secs_f64());
    }
    let gib = size as f64 / (1u64 << 30) as f64;
    println!(
        "md5_range (md-5 crate, 1 MiB reads, page cache): {:.0} MiB/s, {:.2} CPU-s/GiB",
        gib * 1024.0 / best,
        best / gib
    );
    match std::process::Command::new("openssl").args(["speed", "-seconds", "2", "-bytes", "16384", "md5"]).output() {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            if let Some(line) = text.lines().find(|l| l.starts_with("md5")) {
                let kbs: f64 =
                    line.split_whitespace().last().and_then(|v| v.trim_end_matches('k').parse().ok()).unwrap_or(0.0);
                println!(
                    "openssl md5 (16 KiB blocks, reference floor): {:.0} MiB/s, {:.2} CPU-s/GiB",
                    kbs * 1000.0 / (1 << 20) as f64,
                    (1u64 << 30) as f64 / (kbs * 1000.0)
                );
            }
        }
        _ => println!("openssl not found: no reference figure"),
    }
    lanes(size);
    whole_image(&block, size);
}

/// The whole-image digests an import needs (SHA-1 for K5, SHA-512 for Glance) and
/// `--digest sha256`, one stream each, over `total` bytes in memory.
fn whole_image(block: &[u8], total: u64) {
    fn run<D: md5::Digest>(name: &str, block: &[u8], total: u64) {
        let t = Instant::now();
        let mut h = D::new();
        for _ in 0..(total >> 20) {
            h.update(block);
        }
        std::hint::black_box(h.finalize());
        let secs = t.elapsed().as_secs_f64();
        let gib = total as f64 / (1u64 << 30) as f64;
        println!("whole-image {name} (in memory): {:.0} MiB/s, {:.2} CPU-s/GiB", gib * 1024.0 / secs, secs / gib);
    }
    run::<sha1::Sha1>("sha1", block, total);
    run::<sha2::Sha256>("sha256", block, total);
    run::<sha2::Sha512>("sha512", block, total);
}

/// Multi-buffer MD5 over `total` bytes split into streams, 1 MiB per stream per call.
fn lanes(total: u64) {
    use k5up::testing::{Backend, MAX_LANES, Md5Stream, update_many};
    use md5::Digest;
    let per = (total as usize / MAX_LANES) & !((1 << 20) - 1);
    let bufs: Vec<Vec<u8>> = (0..MAX_LANES)
        .map(|l| (0..per as u32).map(|i| (i.wrapping_mul(2654435761) >> (l + 7)) as u8).collect())
        .collect();
    let gib = (per * MAX_LANES) as f64 / (1u64 << 30) as f64;
    let report = |what: &str, secs: f64| {
        println!("{what}: {:.0} MiB/s, {:.2} CPU-s/GiB", gib * 1024.0 / secs, secs / gib);
    };
    let t = Instant::now();
    for b in &bufs {
        std::hint::black_box(md5::Md5::digest(b));
    }
    report("md-5 crate, one stream at a time (in memory)", t.elapsed().as_secs_f64());
    for backend in Backend::available() {
        let width = backend.width();
        let t = Instant::now();
        for group in bufs.chunks(width) {
            let mut streams: Vec<Md5Stream> = group.iter().map(|_| Md5Stream::new()).collect();
            for off in (0..per).step_by(1 << 20) {
                let parts: Vec<&[u8]> = group.iter().map(|b| &b[off..off + (1 << 20)]).collect();
                let mut refs: Vec<&mut Md5Stream> = streams.iter_mut().collect();
                update_many(backend, &mut refs, &parts);
            }
            for s in streams {
                std::hint::black_box(s.finalize());
            }
        }
        report(&format!("md5lanes {} (in memory)", backend.as_str()), t.elapsed().as_secs_f64());
    }
}
