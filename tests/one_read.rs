//! A small page cache: segments are hashed while they are sent (each byte read from
//! storage once), and the server's ETag is checked against the MD5 of the bytes
//! read. Judged by what the proxy in front of Swift saw and what Swift holds.
//! (What is read from storage is measured by `bench/lowmem.sh`, under real cgroup
//! limits; here the page cache k5up counts on is set with K5UP_PAGE_CACHE_ROOM.)

mod common;

use std::sync::atomic::Ordering;

use common::throttle::{Fault, Throttle};
use common::{Observer, Run, Testbed, unique, write_random};

const MIB: u64 = 1 << 20;

/// Uploads `src` to `c` (stock proxy) through a proxy with `faults`, counting on
/// `room` of page cache; returns the segment PUTs the proxy saw, and the proxy.
fn upload(room: &str, c: &str, src: &std::path::Path, faults: Vec<Fault>) -> (Vec<common::throttle::Seen>, Throttle) {
    upload_via(1 << 40, room, c, src, faults, ["4MiB", "4"])
}

/// [`upload`] over a link of `rate` bytes/s, with [segment size, concurrency].
fn upload_via(
    rate: u64,
    room: &str,
    c: &str,
    src: &std::path::Path,
    faults: Vec<Fault>,
    [seg, conc]: [&str; 2],
) -> (Vec<common::throttle::Seen>, Throttle) {
    let tb = Testbed::get();
    let proxy = Throttle::new(tb.stock().port(), rate, std::time::Duration::ZERO, faults);
    let creds = tb.stock().via(proxy.port);
    let run = Run::with_env(&[
        ("ST_AUTH", &creds.auth),
        ("ST_USER", &creds.user),
        ("ST_KEY", &creds.key),
        ("K5UP_PAGE_CACHE_ROOM", room),
    ]);
    run.ok(&["upload", src.to_str().unwrap(), "-c", c, "--segment-size", seg, "--concurrency", conc, "--no-progress"]);
    // The data segments (names `…/bytes/OFFSET+LENGTH`), not the job's zero object.
    let segs = format!("{c}_segments");
    let data = proxy.stats.puts_into(&segs).into_iter().filter(|p| p.put_into(&segs).unwrap().contains("/bytes/"));
    (data.collect(), proxy)
}

#[test]
fn a_small_page_cache_hashes_while_sending_and_checks_what_the_server_stored() {
    let tb = Testbed::get();
    let obs = Observer::login(&tb.stock());
    let run = Run::new(tb.stock());
    // 4 MiB of written zeros, then 16 MiB of data.
    let src = run.path("disk.img");
    let data = run.path("data");
    write_random(&data, 16 * MIB + 77, 51);
    let mut bytes = vec![0u8; 4 * MIB as usize];
    bytes.extend(std::fs::read(&data).unwrap());
    std::fs::write(&src, &bytes).unwrap();
    let md5 = common::md5_of_range(&src, 0, bytes.len() as u64);

    // 12 MiB of page cache: too little to hash 4 segments of 4 MiB and read them again.
    // The proxy flips a byte in the first data segment's body: with no ETag header
    // Swift stores it, and only k5up's own MD5 of the bytes read can catch it.
    let c = unique("oneread");
    let seg = obs.object_request("PUT", &format!("{c}_segments"));
    let faults = vec![Fault::Corrupt { method: seg, at: 1000, count: 1 }];
    let (puts, proxy) = upload("12MiB", &c, &src, faults);
    assert_eq!(proxy.stats.corruptions.load(Ordering::Relaxed), 1, "the byte was flipped");
    assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5.clone(), bytes.len() as u64)), "the object is the file");
    assert!(puts.iter().all(|p| p.header("etag").is_none()), "hashed while sent: no PUT carried an ETag header");
    let sent: u64 = puts.iter().map(|p| p.body_len()).sum();
    assert!(
        sent <= 16 * MIB + 77 + 4 * MIB,
        "the zeros were not sent, only the data and the corrupted segment again: {sent}"
    );
    let names: Vec<String> = puts.iter().filter_map(|p| p.put_into(&format!("{c}_segments"))).collect();
    let mut unique_names = names.clone();
    unique_names.sort();
    unique_names.dedup();
    assert_eq!(names.len(), unique_names.len() + 1, "exactly the corrupted segment was sent again: {names:?}");

    // A roomy page cache: hashed first, each PUT with its MD5 as ETag (Swift checks it).
    let c = unique("tworead");
    let (puts, _proxy) = upload("8GiB", &c, &src, vec![]);
    assert_eq!(obs.get_md5(&c, "disk.img"), Some((md5, bytes.len() as u64)));
    assert!(
        !puts.is_empty() && puts.iter().all(|p| p.header("etag").is_some()),
        "hashed first: every PUT has its ETag"
    );
}

#[test]
fn whole_image_digests_are_made_from_the_uploads_reads_across_a_kill() {
    // Hashed while sent, with whole-image digests (as an import needs): the digests
    // read each byte after the upload has, within the page cache's budget. Two kills
    // land while they run; the digests continue from their saved state.
    let tb = Testbed::get();
    let obs = Observer::login(&tb.stock());
    let c = tb.stock();
    let run = Run::with_env(&[
        ("ST_AUTH", &c.auth),
        ("ST_USER", &c.user),
        ("ST_KEY", &c.key),
        ("K5UP_PAGE_CACHE_ROOM", "12MiB"),
    ]);
    let c = unique("onedigest");
    let segs = format!("{c}_segments");
    let f = run.path("img.raw");
    let md5 = write_random(&f, 40 * MIB + 5, 61);
    let path = f.to_str().unwrap();
    let args = [
        "upload",
        path,
        "-c",
        &c,
        "--segment-size",
        "4MiB",
        "--digest",
        "sha256,sha1",
        "--bwlimit",
        "8MiB",
        "--no-progress",
    ];
    let job = run.job_id(&args);
    run.kill_after(&args, &obs, &segs, 3);
    let first = obs.list(&segs, "");
    assert!(first.len() < 11, "the first kill landed before the last segment: {} of 11", first.len());
    let resume = ["resume", job.as_str(), "--bwlimit", "8MiB", "--no-progress"];
    run.kill_after(&resume, &obs, &segs, first.len() + 2);
    let second = obs.list(&segs, "");
    assert!(second.len() < 11, "the second kill landed before the last segment: {} of 11", second.len());
    run.ok(&["resume", &job]);
    obs.assert_not_resent(&segs, &first, "a segment on the server before the first kill: ");
    assert_eq!(obs.get_md5(&c, "img.raw"), Some((md5, 40 * MIB + 5)));
    let img = std::fs::read(&f).unwrap();
    let st = run.status(&job);
    use sha2::Digest;
    assert_eq!(st["digests"]["sha256"].as_str(), Some(hex::encode(sha2::Sha256::digest(&img)).as_str()), "{st}");
    assert_eq!(st["digests"]["sha1"].as_str(), Some(hex::encode(sha1::Sha1::digest(&img)).as_str()), "{st}");
}

#[test]
fn a_link_much_slower_than_the_disk_hashes_first_and_finds_repeats() {
    // A small page cache, but a 4 MiB/s link: once measured, a second read costs
    // nothing next to the send, so segments are hashed first and repeats are not sent.
    let tb = Testbed::get();
    let obs = Observer::login(&tb.stock());
    let run = Run::new(tb.stock());
    // Eight different 2 MiB segments, then the first one six times more.
    let src = run.path("repeats.img");
    let data = run.path("data");
    write_random(&data, 16 * MIB, 63);
    let mut bytes = std::fs::read(&data).unwrap();
    let first = bytes[..2 * MIB as usize].to_vec();
    for _ in 0..6 {
        bytes.extend_from_slice(&first);
    }
    std::fs::write(&src, &bytes).unwrap();
    let md5 = common::md5_of_range(&src, 0, bytes.len() as u64);
    let c = unique("slowlink");
    let (puts, _proxy) = upload_via(4 * MIB, "3MiB", &c, &src, vec![], ["2MiB", "2"]);
    assert_eq!(obs.get_md5(&c, "repeats.img"), Some((md5, bytes.len() as u64)), "the object is the file");
    assert!(puts.first().is_some_and(|p| p.header("etag").is_none()), "before any measure: hashed while sent");
    assert!(puts.last().is_some_and(|p| p.header("etag").is_some()), "once the link is known slow: hashed first");
    let sent: u64 = puts.iter().map(|p| p.body_len()).sum();
    assert!(sent <= 18 * MIB, "the repeats of the first segment were not sent: {sent} bytes PUT");
}

// A kill and resume in this mode, on Swift and on RGW: tests/stores.rs
// (hashed_while_sent_then_killed_resumes_without_resending).
