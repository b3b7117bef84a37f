//! Zeros never cross the link (issue 11): images made the way operators make them
//! (an ext4 file system built with `mkfs.ext4 -d` from a directory of files: sparse,
//! metadata scattered; and a fully allocated copy of it) upload with only their data
//! on the wire, as the proxy counts it, and read back from Swift identical. The
//! zero object belongs to one image only: python-swiftclient's own `swift delete`
//! of one image leaves another readable.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Creds, Observer, Run, Testbed, throttle::Throttle, unique, wait_for, write_random};

const MIB: u64 = 1 << 20;

/// An ext4 image of `size` bytes made by `mkfs.ext4 -d` from `files` random files
/// (seeded, 64 KiB to 6 MiB each), as an operator makes one: a sparse file.
fn ext4_image(dir: &Path, name: &str, size: u64, files: u64, seed: u64) -> PathBuf {
    let src = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(src.join("usr/lib")).unwrap();
    for i in 0..files {
        let len = 64 * 1024 + (seed * 7919 + i * 104_729) % (6 * MIB);
        write_random(&src.join("usr/lib").join(format!("f{i:03}.so")), len, seed * 1000 + i);
    }
    let img = dir.join(name);
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(size).unwrap();
    let out = Command::new("mkfs.ext4").args(["-q", "-F", "-b", "4096", "-d"]).arg(&src).arg(&img).output().unwrap();
    assert!(out.status.success(), "mkfs.ext4: {}", String::from_utf8_lossy(&out.stderr));
    img
}

/// A copy with every block allocated (`cp --sparse=never`): its zeros are written.
fn allocated_copy(img: &Path) -> PathBuf {
    let dst = img.with_extension("full");
    let st = Command::new("cp").arg("--sparse=never").arg(img).arg(&dst).status().unwrap();
    assert!(st.success());
    dst
}

/// The image converted to qcow2 and back to raw with qemu-img, as an operator who
/// keeps qcow2 images and uploads raw ones does.
fn via_qcow2(img: &Path) -> PathBuf {
    let (q, r) = (img.with_extension("qcow2"), img.with_extension("raw"));
    for (from, to, fmt) in [(img, &q, "qcow2"), (q.as_path(), &r, "raw")] {
        let st = Command::new("qemu-img").args(["convert", "-O", fmt]).arg(from).arg(to).status().unwrap();
        assert!(st.success(), "qemu-img convert -O {fmt}");
    }
    r
}

/// Bytes of `path` in 4 KiB blocks that are not all zeros (the image's data), and
/// the whole file's MD5.
fn data_and_md5(path: &Path) -> (u64, String) {
    use md5::{Digest, Md5};
    let bytes = std::fs::read(path).unwrap();
    let data = bytes.chunks(4096).filter(|b| b.iter().any(|&x| x != 0)).map(|b| b.len() as u64).sum();
    (data, hex::encode(Md5::digest(&bytes)))
}

/// A proxy in front of `upstream` that counts what crosses it (fast: no real cap).
fn counting(upstream: &Creds) -> (Throttle, Creds) {
    let p = Throttle::start(upstream.port(), 1 << 30);
    let c = upstream.via(p.port);
    (p, c)
}

fn sent(p: &Throttle) -> u64 {
    p.stats.bytes_up.load(Ordering::Relaxed)
}

/// Uploads `img` as `object` and returns what crossed the link; the object read back
/// from Swift must be the file.
fn upload_counted(run: &Run, p: &Throttle, img: &Path, c: &str, object: &str, extra: &[&str]) -> u64 {
    let before = sent(p);
    let mut args = vec!["upload", img.to_str().unwrap(), "-c", c, "-o", object, "--no-progress"];
    args.extend_from_slice(extra);
    run.ok(&args);
    sent(p) - before
}

#[test]
fn sparse_and_allocated_ext4_images_send_only_their_data() {
    let tb = Testbed::get();
    let (proxy, creds) = counting(&tb.stock());
    let run = Run::new(creds.clone());
    let img = ext4_image(run.dir.path(), "root.img", 512 * MIB, 20, 1);
    let full = allocated_copy(&img);
    let raw = via_qcow2(&img);
    let (data, md5) = data_and_md5(&img);
    assert_eq!(data_and_md5(&full), (data, md5.clone()));
    assert_eq!(data_and_md5(&raw), (data, md5.clone()));
    assert!(data > 8 * MIB && data < 96 * MIB, "{data}");
    // k5up's unit is a whole MiB block: a block holding any data is sent whole (a
    // superblock backup of 4 KiB costs 1 MiB: Swift throttles reads of smaller
    // segments), a block of zeros never is.
    let blocks = std::fs::read(&img).unwrap();
    let mib_blocks = blocks.chunks(MIB as usize).filter(|b| b.iter().any(|&x| x != 0)).count() as u64 * MIB;
    drop(blocks);
    let c = unique("zeros");
    let direct = Observer::login(&tb.stock());
    for (file, object) in [(&img, "sparse.img"), (&full, "allocated.img"), (&raw, "from-qcow2.img")] {
        let wire = upload_counted(&run, &proxy, file, &c, object, &[]);
        assert_eq!(direct.get_md5(&c, object), Some((md5.clone(), 512 * MIB)), "{object} reads back as the file");
        // The MiB blocks holding data, the 1 MiB zero seed, manifests and HTTP
        // headers: nothing else.
        let allowed = mib_blocks + MIB + MIB / 2;
        assert!(
            wire <= allowed,
            "{object}: {wire} bytes crossed the link for {data} bytes of data in {mib_blocks} bytes of MiB blocks (allowed {allowed})"
        );
        eprintln!("{object}: {wire} bytes on the wire for {data} bytes of data ({:.3}x)", wire as f64 / data as f64);
        let job = run.jobs().into_iter().find(|j| j["object"] == object).unwrap();
        let zero = job["bytes_zero"].as_u64().unwrap();
        assert_eq!(zero, 512 * MIB - mib_blocks, "{object}: every MiB block of zeros is made on the server");
    }
    // The zero seed and its maker are gone; each image keeps its own zero object.
    let left: Vec<String> =
        direct.list(&format!("{c}_segments"), "").into_keys().filter(|n| n.contains("/zero/")).collect();
    assert_eq!(left.len(), 3, "one zero object per image, nothing else: {left:?}");
    assert!(left.iter().all(|n| n.contains("/zero/object+")), "{left:?}");
    drop(proxy);
}

#[test]
fn a_dlo_gets_its_zero_segments_by_server_side_copy() {
    let tb = Testbed::get();
    let (proxy, creds) = counting(&tb.stock());
    let run = Run::new(creds);
    let img = ext4_image(run.dir.path(), "k5.img", 384 * MIB, 6, 2);
    let full = allocated_copy(&img);
    let (data, md5) = data_and_md5(&full);
    let c = unique("zerodlo");
    let wire = upload_counted(&run, &proxy, &full, &c, "k5.img", &["--manifest", "dlo", "--segment-size", "64MiB"]);
    let direct = Observer::login(&tb.stock());
    assert_eq!(direct.get_md5(&c, "k5.img"), Some((md5, 384 * MIB)));
    assert!(direct.head(&c, "k5.img").unwrap().contains_key("x-object-manifest"));
    // A DLO reads every object its prefix lists: exactly the cuts, zeros included,
    // contiguous; the makers live outside the prefix and are deleted.
    let segs = direct.list(&format!("{c}_segments"), "");
    let mut cuts: Vec<(u64, u64)> =
        segs.keys().filter(|n| n.contains("/bytes/")).map(|n| common::piece_of(n).unwrap()).collect();
    cuts.sort();
    let mut at = 0;
    for (off, len) in &cuts {
        assert_eq!(*off, at, "contiguous cuts: {cuts:?}");
        at += len;
    }
    assert_eq!(at, 384 * MIB);
    assert!(segs.keys().all(|n| n.contains("/bytes/")), "nothing left beside the segments: {:?}", segs.keys());
    // Runs under 32 MiB are sent in a DLO (each skipped run costs reads a second per
    // extra segment); most of the image is still not sent.
    assert!(wire < 384 * MIB / 2, "{wire} bytes crossed the link for {data} bytes of data");
    drop(proxy);
}

#[test]
fn swift_delete_of_one_image_leaves_another_readable() {
    let tb = Testbed::get();
    let creds = tb.stock();
    let run = Run::new(creds.clone());
    let a = ext4_image(run.dir.path(), "a.img", 256 * MIB, 4, 3);
    let b = ext4_image(run.dir.path(), "b.img", 256 * MIB, 4, 3);
    let (_, md5_b) = data_and_md5(&b);
    let c = unique("zerodel");
    for img in [&a, &b] {
        run.ok(&["upload", img.to_str().unwrap(), "-c", &c, "--no-progress"]);
    }
    // python-swiftclient's delete of an SLO deletes every segment it references.
    let out = Command::new("swift")
        .args(["-A", &creds.auth, "-U", &creds.user, "-K", &creds.key, "delete", &c, "a.img"])
        .output()
        .unwrap();
    assert!(out.status.success(), "swift delete: {}", String::from_utf8_lossy(&out.stderr));
    let direct = Observer::login(&creds);
    assert!(direct.head(&c, "a.img").is_none());
    let left = direct.list(&format!("{c}_segments"), "a.img/");
    assert!(left.is_empty(), "swift delete removed a.img's segments and zero object: {:?}", left.keys());
    assert_eq!(direct.get_md5(&c, "b.img"), Some((md5_b, 256 * MIB)), "b.img is intact");
}

/// The bytes of the file that the segment objects `names` hold: the union of their
/// ranges (two runs may cut the same bytes differently).
fn covered<'a>(names: impl Iterator<Item = &'a String>) -> u64 {
    let mut pieces: Vec<(u64, u64)> = names.filter_map(|n| common::piece_of(n)).collect();
    pieces.sort();
    let (mut held, mut end) = (0, 0);
    for (off, len) in pieces {
        held += (off + len).saturating_sub(end.max(off));
        end = end.max(off + len);
    }
    held
}

#[test]
fn a_kill_then_resume_and_a_lost_journal_send_no_zeros_and_nothing_twice() {
    let tb = Testbed::get();
    let proxy = Throttle::start(tb.stock().port(), 8 * MIB);
    let creds = tb.stock().via(proxy.port);
    let run = Run::new(creds);
    let img = allocated_copy(&ext4_image(run.dir.path(), "k.img", 512 * MIB, 16, 4));
    let (data, md5) = data_and_md5(&img);
    let c = unique("zerokill");
    let segs = format!("{c}_segments");
    let args = ["upload", img.to_str().unwrap(), "-c", &c, "-o", "k.img", "--no-progress", "--segment-size", "8MiB"];
    let direct = Observer::login(&tb.stock());
    let data_segments = || direct.list(&segs, "k.img/").into_keys().filter(|n| n.contains("/bytes/")).count();
    for lose_journal in [false, true] {
        let job = run.job_id(&args);
        let mut child = run.spawn(&args);
        wait_for(Duration::from_secs(120), || {
            assert!(child.try_wait().unwrap().is_none(), "the upload ended before the kill: {}", run.stderr());
            (data_segments() >= 3).then_some(())
        });
        run.kill(&mut child);
        proxy.wait_idle(Duration::from_secs(30));
        assert!(direct.head(&c, "k.img").is_none(), "the kill landed before the object was complete");
        let before: std::collections::HashMap<String, String> = direct
            .list(&segs, "k.img/")
            .into_iter()
            .map(|(n, e)| (n, e["last_modified"].as_str().unwrap().to_string()))
            .collect();
        let held = covered(before.keys());
        let up = sent(&proxy);
        if lose_journal {
            std::fs::remove_dir_all(run.journal().join("jobs").join(&job)).unwrap();
            run.ok(&args);
        } else {
            run.ok(&["resume", &job, "--no-progress"]);
        }
        let wire = sent(&proxy) - up;
        assert_eq!(direct.get_md5(&c, "k.img"), Some((md5.clone(), 512 * MIB)));
        let after = direct.list(&segs, "k.img/");
        // What the object needs from the link: its data pieces (zeros inside a piece
        // included), less what the server already held.
        let needed = covered(after.keys());
        for (name, lm) in &before {
            if lose_journal {
                // The new job copied them into its own names on the server (the wire
                // check below) and deleted them once its object was verified.
                assert!(!after.contains_key(name), "{name} of the lost job was left behind");
            } else {
                assert_eq!(
                    after.get(name).and_then(|e| e["last_modified"].as_str()),
                    Some(lm.as_str()),
                    "{name} was PUT again"
                );
            }
        }
        assert!(
            wire < needed - held.min(needed) + data / 10 + 2 * MIB,
            "lost journal {lose_journal}: the second run sent {wire} bytes; its pieces hold {needed}, {held} were held; {data} of data"
        );
        // Start over for the second round.
        run.ok(&["abort", &job, "--purge"]);
        assert!(direct.list(&segs, "k.img/").is_empty(), "abort deletes every segment and the zero objects");
    }
}

#[test]
fn repeated_segments_are_sent_once_and_a_lost_journal_finds_them_again() {
    let tb = Testbed::get();
    let (proxy, creds) = counting(&tb.stock());
    let run = Run::new(creds);
    // Blocks A B A C A of 8 MiB: with 8 MiB segments, two are repeats of the first.
    let blocks: Vec<PathBuf> = (0..3)
        .map(|k| {
            let p = run.path(&format!("b{k}"));
            write_random(&p, 8 * MIB, 60 + k);
            p
        })
        .collect();
    let img = run.path("rep.img");
    let mut bytes = vec![];
    for k in [0, 1, 0, 2, 0] {
        bytes.extend(std::fs::read(&blocks[k]).unwrap());
    }
    std::fs::write(&img, &bytes).unwrap();
    let (_, md5) = data_and_md5(&img);
    let c = unique("repeats");
    let direct = Observer::login(&tb.stock());
    for manifest in ["slo", "dlo"] {
        let object = format!("rep-{manifest}.img");
        let args = ["--manifest", manifest, "--segment-size", "8MiB", "--concurrency", "1"];
        let wire = upload_counted(&run, &proxy, &img, &c, &object, &args);
        assert_eq!(direct.get_md5(&c, &object), Some((md5.clone(), 40 * MIB)), "{object}");
        assert!(wire < 24 * MIB + MIB, "{object}: {wire} bytes crossed the link for 24 MiB of distinct segments");
        let objects = direct.list(&format!("{c}_segments"), &format!("{object}/")).len();
        // An SLO lists the original again; a DLO's listing must hold every segment.
        assert_eq!(objects, if manifest == "slo" { 3 } else { 5 }, "{object}");
        // The journal is lost: the same command adopts the three originals and
        // finds the repeats again, sending nothing but requests.
        let job = run.jobs().into_iter().find(|j| j["object"] == object.as_str()).unwrap();
        std::fs::remove_dir_all(run.journal().join("jobs").join(job["job"].as_str().unwrap())).unwrap();
        let wire = upload_counted(&run, &proxy, &img, &c, &object, &args);
        assert!(wire < MIB, "{object}: a rerun after a lost journal sent {wire} bytes");
        assert_eq!(direct.get_md5(&c, &object), Some((md5.clone(), 40 * MIB)), "{object}");
        // The new job copies the lost job's segments into its own names and finds
        // the repeats again; the lost job's segments are deleted once it is verified.
        let st = run.jobs().into_iter().find(|j| j["object"] == object.as_str()).unwrap();
        assert_eq!(st["bytes_deduplicated"].as_u64(), Some(16 * MIB), "{st}");
        let again = direct.list(&format!("{c}_segments"), &format!("{object}/")).len();
        assert_eq!(again, objects, "{object}: the lost job's segments were deleted, the new job's kept");
    }
}

/// Rewrites `n` 4 KiB blocks of data (not zeros) of `img`, spread over it; returns
/// their offsets.
fn rewrite_blocks(img: &Path, n: usize, seed: u64) -> Vec<u64> {
    use std::os::unix::fs::FileExt;
    let bytes = std::fs::read(img).unwrap();
    let data: Vec<u64> = bytes
        .chunks(4096)
        .enumerate()
        .filter(|(_, b)| b.iter().any(|&x| x != 0))
        .map(|(i, _)| i as u64 * 4096)
        .collect();
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    let picked: Vec<u64> = (0..n).map(|k| data[(k + 1) * data.len() / (n + 1)]).collect();
    for (k, off) in picked.iter().enumerate() {
        let block: Vec<u8> = (0..4096u64).map(|i| ((i * 31 + seed * 7 + k as u64 * 13) % 251 + 1) as u8).collect();
        f.write_all_at(&block, *off).unwrap();
    }
    picked
}

#[test]
fn a_new_version_sends_only_its_changed_segments_and_outlives_its_base() {
    let tb = Testbed::get();
    let (proxy, creds) = counting(&tb.stock());
    let run = Run::new(creds.clone());
    let v1 = ext4_image(run.dir.path(), "app-v1.raw", 384 * MIB, 16, 5);
    let v2 = run.path("app-v2.raw");
    std::fs::copy(&v1, &v2).unwrap();
    let changed = rewrite_blocks(&v2, 3, 5);
    let (_, md5_v2) = data_and_md5(&v2);
    let c = unique("version");
    run.ok(&["upload", v1.to_str().unwrap(), "-c", &c, "--no-progress"]);
    let direct = Observer::login(&tb.stock());
    // The segments of v1 holding a changed block: what v2 must send.
    let mut at = 0;
    let mut must_send = 0;
    for (_, len) in direct.slo_leaves(&c, "app-v1.raw") {
        if changed.iter().any(|&o| o >= at && o < at + len) {
            must_send += len;
        }
        at += len;
    }
    assert!(must_send > 0);
    let base = format!("{c}/app-v1.raw");
    let wire = upload_counted(&run, &proxy, &v2, &c, "app-v2.raw", &["--base", &base]);
    assert_eq!(direct.get_md5(&c, "app-v2.raw"), Some((md5_v2.clone(), 384 * MIB)));
    assert!(
        wire <= must_send + must_send / 10 + 2 * MIB,
        "v2 sent {wire} bytes; the segments holding its {} changed blocks are {must_send} bytes",
        changed.len()
    );
    let st = run.jobs().into_iter().find(|j| j["object"] == "app-v2.raw").unwrap();
    assert!(st["bytes_copied_server_side"].as_u64().unwrap() > 0, "{st}");
    // The base deleted with python-swiftclient (its segments too): v2 is intact.
    let out = Command::new("swift")
        .args(["-A", &creds.auth, "-U", &creds.user, "-K", &creds.key, "delete", &c, "app-v1.raw"])
        .output()
        .unwrap();
    assert!(out.status.success(), "swift delete: {}", String::from_utf8_lossy(&out.stderr));
    assert!(direct.list(&format!("{c}_segments"), "app-v1.raw/").is_empty());
    assert_eq!(direct.get_md5(&c, "app-v2.raw"), Some((md5_v2, 384 * MIB)), "v2 outlives its base");
}

#[test]
fn a_kill_during_the_copies_from_the_base_loses_nothing() {
    let tb = Testbed::get();
    let direct = Observer::login(&tb.stock());
    let c = unique("basekill");
    let setup = Run::new(tb.stock());
    let v1 = setup.path("v1.raw");
    write_random(&v1, 24 * MIB, 81);
    setup.ok(&["upload", v1.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--no-progress"]);
    let v2 = setup.path("v2.raw");
    std::fs::copy(&v1, &v2).unwrap();
    rewrite_blocks(&v2, 1, 81);
    let (_, md5) = data_and_md5(&v2);
    // Every request takes half a second: the copies, one at a time, take a while.
    let proxy = Throttle::new(tb.stock().port(), 1 << 30, Duration::from_millis(500), vec![]);
    let run = Run::new(tb.stock().via(proxy.port));
    let base = format!("{c}/v1.raw");
    let args = ["upload", v2.to_str().unwrap(), "-c", &c, "--base", &base, "--concurrency", "1", "--no-progress"];
    let job = run.job_id(&args);
    let segs = format!("{c}_segments");
    let mut child = run.spawn(&args);
    wait_for(Duration::from_secs(60), || {
        assert!(child.try_wait().unwrap().is_none(), "the upload ended before the kill: {}", run.stderr());
        (direct.list(&segs, "v2.raw/").len() >= 4).then_some(())
    });
    run.kill(&mut child);
    proxy.wait_idle(Duration::from_secs(30));
    assert!(direct.head(&c, "v2.raw").is_none(), "the kill landed before the object was complete");
    let before: std::collections::HashMap<String, String> = direct
        .list(&segs, "v2.raw/")
        .into_iter()
        .map(|(n, e)| (n, e["last_modified"].as_str().unwrap().to_string()))
        .collect();
    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(direct.get_md5(&c, "v2.raw"), Some((md5, 24 * MIB)));
    let after = direct.list(&segs, "v2.raw/");
    for (name, lm) in &before {
        assert_eq!(after.get(name).and_then(|e| e["last_modified"].as_str()), Some(lm.as_str()), "{name} made again");
    }
    // One changed 1 MiB segment crossed the link, the other 23 were copied.
    assert!(sent(&proxy) < 2 * MIB, "{} bytes crossed the link", sent(&proxy));
    // (A copy the server finished as the kill landed is adopted by the resume.)
    let st = run.status(&job);
    assert!(st["bytes_copied_server_side"].as_u64().unwrap() >= 20 * MIB, "{st}");
}
