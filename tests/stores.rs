//! The same test bodies against each object store of the testbed: Swift (the
//! stock proxy) and Ceph RGW's Swift API (`testbed/rgw`). Each body runs twice, once
//! per store (`both!`), and judges by what the store holds (read back with curl)
//! or what the counting proxy in front of it saw, never by k5up's own words.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::throttle::Throttle;
use common::{Creds, Observer, Run, Testbed, unique, write_random};

const MIB: u64 = 1 << 20;

/// One object store of the testbed.
#[derive(Clone)]
struct Store {
    creds: Creds,
    rgw: bool,
}

impl Store {
    fn swift() -> Store {
        Store { creds: Testbed::get().stock(), rgw: false }
    }
    fn rgw() -> Store {
        Store { creds: Testbed::get().rgw(), rgw: true }
    }
    fn name(&self) -> &'static str {
        if self.rgw { "rgw" } else { "swift" }
    }
    fn observer(&self) -> Observer {
        Observer::login(&self.creds)
    }
    /// This store's account of the testbed's Keystone project `demo`, and an observer of
    /// it with a Keystone token (Swift: the proxy behind Keystone; RGW takes Keystone
    /// tokens as well as its own).
    fn keystone_account(&self, tb: &Testbed) -> Observer {
        let storage_url = if self.rgw {
            format!("{}/AUTH_{}", tb.var("RGW_SWIFT_BASE"), tb.var("KS_OS_PROJECT_ID"))
        } else {
            tb.var("KS_SWIFT_URL")
        };
        Observer { storage_url, token: common::keystone_token(tb, "KS") }
    }
    /// A container name for this test (RGW takes at least 3 bytes; these are longer).
    fn container(&self, what: &str) -> String {
        unique(&format!("st-{what}"))
    }
}

/// `both!(name, |store| body)`: `name::swift` and `name::rgw`.
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn swift() {
                ($body)(Store::swift())
            }
            #[test]
            fn rgw() {
                ($body)(Store::rgw())
            }
        }
    };
}

/// A k5up run whose requests to the store go through a counting proxy (a token
/// from the observer's login, and the storage URL on the proxy's port).
fn proxied(store: &Store) -> (Run, Throttle, Observer) {
    let obs = store.observer();
    let proxy = Throttle::start(common::port_of(&obs.storage_url), 1 << 40);
    let url = common::via_port(&obs.storage_url, proxy.port);
    let run = Run::with_env(&[("OS_STORAGE_URL", &url), ("OS_AUTH_TOKEN", &obs.token)]);
    (run, proxy, obs)
}

/// Bytes of every request body the store was sent through `proxy`.
fn bytes_put(proxy: &Throttle) -> u64 {
    proxy.stats.requests().iter().filter(|r| r.method() == "PUT").map(|r| r.body_len()).sum()
}

fn md5_of(path: &Path) -> String {
    common::md5_of_range(path, 0, std::fs::metadata(path).unwrap().len())
}

/// The job's `status --json`.
fn status(run: &Run) -> serde_json::Value {
    run.status(&run.only_job())
}

both!(slo_and_dlo_read_back_verify_and_purge, |store: Store| {
    let obs = store.observer();
    for manifest in ["slo", "dlo"] {
        let run = Run::new(store.creds.clone());
        let c = store.container(manifest);
        let f = run.path("img.raw");
        let md5 = write_random(&f, 21 * MIB + 12345, 7);
        run.ok(&["upload", f.to_str().unwrap(), "-c", &c, "--segment-size", "4MiB", "--manifest", manifest]);
        assert_eq!(obs.get_md5(&c, "img.raw"), Some((md5.clone(), 21 * MIB + 12345)), "{manifest} read back");
        let job = run.only_job();
        run.ok(&["verify", &job]);
        run.ok(&["verify", "--deep", &job]);
        let segs = format!("{c}_segments");
        assert!(!obs.list(&segs, "").is_empty(), "{manifest}: the segments are listed");
        run.ok(&["abort", "--purge", &job]);
        assert_eq!(obs.get_md5(&c, "img.raw"), None, "{manifest}: --purge deletes the object");
        assert!(obs.list(&segs, "").is_empty(), "{manifest}: --purge deletes every segment: {:?}", obs.list(&segs, ""));
    }
});

both!(abort_keeps_a_finished_object_and_removes_an_unfinished_jobs_segments, |store: Store| {
    let obs = store.observer();
    for manifest in ["slo", "dlo"] {
        // Finished: abort forgets the job, the object and its segments stay readable.
        let run = Run::new(store.creds.clone());
        let c = store.container(&format!("ab-{manifest}"));
        let segs = format!("{c}_segments");
        let f = run.path("img.raw");
        let md5 = write_random(&f, 10 * MIB, 13);
        run.ok(&["upload", f.to_str().unwrap(), "-c", &c, "--segment-size", "4MiB", "--manifest", manifest]);
        let held = obs.list(&segs, "");
        run.ok(&["abort", &run.only_job()]);
        assert_eq!(obs.get_md5(&c, "img.raw"), Some((md5, 10 * MIB)), "{manifest}: abort keeps the object");
        assert_eq!(obs.list(&segs, ""), held, "{manifest}: abort keeps the finished object's segments");

        // Unfinished (killed after two segments): abort deletes what it had sent.
        let run = Run::new(store.creds.clone());
        let c = store.container(&format!("ab2-{manifest}"));
        let segs = format!("{c}_segments");
        let f = run.path("img.raw");
        write_random(&f, 40 * MIB, 17);
        let args = [
            "upload",
            f.to_str().unwrap(),
            "-c",
            &c,
            "--segment-size",
            "4MiB",
            "--manifest",
            manifest,
            "--bwlimit",
            "8MiB",
            "--concurrency",
            "1",
        ];
        let job = run.job_id(&args);
        run.kill_after(&args, &obs, &segs, 2);
        assert!(obs.count_segments(&segs) >= 2, "{manifest}: segments were on the server before the abort");
        run.ok(&["abort", &job]);
        assert_eq!(obs.get_md5(&c, "img.raw"), None, "{manifest}: no object was written");
        assert_eq!(obs.count_segments(&segs), 0, "{manifest}: abort deletes the unfinished job's segments");
    }
});

both!(a_kill_then_resume_sends_only_unconfirmed_segments, |store: Store| {
    let obs = store.observer();
    let run = Run::new(store.creds.clone());
    let c = store.container("kill");
    let segs = format!("{c}_segments");
    let f = run.path("img.raw");
    let md5 = write_random(&f, 48 * MIB, 11);
    let args =
        ["upload", f.to_str().unwrap(), "-c", &c, "--segment-size", "4MiB", "--bwlimit", "8MiB", "--concurrency", "2"];
    // The dry run probes the store (its tiny objects are not segments to count).
    let job = run.job_id(&args);
    run.kill_after(&args, &obs, &segs, 3);
    let before = obs.list(&segs, "");
    assert!(before.len() < 12, "the kill landed before the last segment: {} of 12", before.len());
    run.ok(&["resume", &job]);
    obs.assert_not_resent(&segs, &before, "a segment on the server before the kill: ");
    assert_eq!(obs.get_md5(&c, "img.raw"), Some((md5, 48 * MIB)));
});

both!(a_sparse_image_crosses_as_its_data_and_at_most_one_segment, |store: Store| {
    for manifest in ["slo", "dlo"] {
        let (run, proxy, obs) = proxied(&store);
        let c = store.container(&format!("sparse-{manifest}"));
        let f = run.path("sparse.raw");
        // 1 GiB: 16 MiB of data at 100 MiB, holes elsewhere.
        let data = run.path("data");
        write_random(&data, 16 * MIB, 3);
        {
            let file = std::fs::File::create(&f).unwrap();
            file.set_len(1 << 30).unwrap();
            use std::os::unix::fs::FileExt;
            file.write_all_at(&std::fs::read(&data).unwrap(), 100 * MIB).unwrap();
        }
        let md5 = md5_of(&f);
        run.ok(&["upload", f.to_str().unwrap(), "-c", &c, "--manifest", manifest]);
        assert_eq!(obs.get_md5(&c, "sparse.raw"), Some((md5, 1 << 30)), "{manifest} read back");
        let seg = status(&run)["segment_size"].as_u64().expect("status --json has segment_size");
        let put = bytes_put(&proxy);
        eprintln!("figure: {} sparse 1 GiB {manifest}: {put} bytes sent for {} of data", store.name(), 16 * MIB);
        assert!(
            put <= 16 * MIB + seg + MIB,
            "{manifest}: {put} bytes crossed the link for 16 MiB of data (a segment is {seg})"
        );
    }
});

both!(repeated_blocks_read_back_and_are_sent_once, |store: Store| {
    let (run, proxy, obs) = proxied(&store);
    let c = store.container("rep");
    let f = run.path("rep.raw");
    // A B A C A, in 4 MiB blocks.
    let (a, b, cc) = (run.path("a"), run.path("b"), run.path("c"));
    write_random(&a, 4 * MIB, 1);
    write_random(&b, 4 * MIB, 2);
    write_random(&cc, 4 * MIB, 3);
    let bytes: Vec<u8> = [&a, &b, &a, &cc, &a].iter().flat_map(|p| std::fs::read(p).unwrap()).collect();
    std::fs::write(&f, &bytes).unwrap();
    let md5 = md5_of(&f);
    run.ok(&["upload", f.to_str().unwrap(), "-c", &c, "--segment-size", "4MiB", "--concurrency", "1"]);
    assert_eq!(obs.get_md5(&c, "rep.raw"), Some((md5, 20 * MIB)));
    let put = bytes_put(&proxy);
    eprintln!("figure: {} repeats A B A C A: {put} bytes sent for 20 MiB", store.name());
    assert!(put < 13 * MIB, "{put} bytes sent for 12 MiB of distinct blocks");
    run.ok(&["verify", &run.only_job()]);
});

both!(a_new_version_on_its_base_sends_only_what_changed, |store: Store| {
    for manifest in ["slo", "dlo"] {
        let obs = store.observer();
        let run = Run::new(store.creds.clone());
        let c = store.container(&format!("base-{manifest}"));
        let v1 = run.path("v1.raw");
        write_random(&v1, 32 * MIB, 5);
        let seg = ["--segment-size", "8MiB", "--manifest", manifest];
        run.ok(&[&["upload", v1.to_str().unwrap(), "-c", &c][..], &seg[..]].concat());
        // v2: one byte changed in the third segment.
        let v2 = run.path("v2.raw");
        let mut bytes = std::fs::read(&v1).unwrap();
        bytes[17 * MIB as usize] ^= 0xff;
        std::fs::write(&v2, &bytes).unwrap();
        let md5 = md5_of(&v2);
        // The second upload goes through the counting proxy, with the same journal.
        let proxy = Throttle::start(common::port_of(&obs.storage_url), 1 << 40);
        let url = common::via_port(&obs.storage_url, proxy.port);
        let run2 = Run::with_env(&[("OS_STORAGE_URL", &url), ("OS_AUTH_TOKEN", &obs.token)]);
        std::fs::rename(run.journal(), run2.journal()).unwrap();
        let base = format!("{c}/v1.raw");
        run2.ok(&[&["upload", v2.to_str().unwrap(), "-c", &c, "--base", &base][..], &seg[..]].concat());
        assert_eq!(obs.get_md5(&c, "v2.raw"), Some((md5, 32 * MIB)), "{manifest} v2 read back");
        let put = bytes_put(&proxy);
        eprintln!(
            "figure: {} --base {manifest}: {put} bytes sent for a 32 MiB v2 with one changed 8 MiB segment",
            store.name()
        );
        assert!(put <= 8 * MIB + MIB, "{manifest}: {put} bytes sent for one changed segment of 8 MiB");
    }
});

both!(a_container_name_the_store_refuses_is_bad_input_before_any_upload, |store: Store| {
    let obs = store.observer();
    let run = Run::new(store.creds.clone());
    let f = run.path("x.raw");
    let md5 = write_random(&f, MIB, 9);
    let name = format!("t{}", std::process::id() % 10);
    let out = run.run(&["upload", f.to_str().unwrap(), "-c", &name]);
    let err = String::from_utf8_lossy(&out.stderr);
    if store.rgw {
        assert_eq!(out.status.code(), Some(2), "exit 2: {err}");
        assert!(err.contains("3 to 255 bytes"), "the store's rule is said: {err}");
        assert!(obs.list(&format!("{name}_segments"), "").is_empty(), "nothing was uploaded");
    } else {
        assert!(out.status.success(), "Swift takes a 2-byte container name: {err}");
        assert_eq!(obs.get_md5(&name, "x.raw"), Some((md5, MIB)), "this file, read back");
    }
});

/// The probes of a new storage URL run once per journal, leave nothing behind, and
/// `--dry-run` says what they found.
#[test]
fn the_store_probe_says_what_it_found_and_leaves_nothing() {
    #[allow(clippy::single_element_loop)]
    for store in [Store::swift()] {
        let obs = store.observer();
        let run = Run::new(store.creds.clone());
        let c = store.container("probe");
        let f = run.path("p.raw");
        write_random(&f, MIB, 4);
        let out = run.ok(&["upload", "--dry-run", f.to_str().unwrap(), "-c", &c]);
        let line = out.lines().find(|l| l.starts_with("object store")).unwrap_or_else(|| panic!("{out}"));
        if store.rgw {
            assert!(line.contains("SLO ranges honoured: no") && line.contains("nested SLO: no"), "{line}");
            assert!(line.contains("manifest Etag header accepted: no"), "{line}");
        } else {
            assert!(line.contains("as Swift"), "{line}");
        }
        let listed: HashMap<_, _> = obs.list(&format!("{c}_segments"), "");
        assert!(listed.is_empty(), "the probe left {listed:?}");
        let again = run.ok(&["upload", "--dry-run", f.to_str().unwrap(), "-c", &c]);
        assert!(again.contains("as probed before, kept in the journal"), "{again}");
    }
}

/// Credentials that may not write (a reader): the probe is refused, the dry run
/// still plans (for the least any store does) and says so, and nothing is kept.
#[test]
fn a_probe_the_store_refuses_plans_for_the_least_and_keeps_nothing() {
    let tb = Testbed::get();
    let reader = Creds { user: tb.var("READER_ST_USER"), key: tb.var("READER_ST_KEY"), ..tb.stock() };
    let run = Run::new(reader);
    let f = run.path("r.raw");
    write_random(&f, MIB, 6);
    let c = unique("st-reader");
    let out = run.ok(&["upload", "--dry-run", f.to_str().unwrap(), "-c", &c]);
    let line = out.lines().find(|l| l.starts_with("object store")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("assumed: the probe was refused") && line.contains("nested SLO: no"), "{line}");
    assert!(!run.journal().join("stores").exists(), "a refused probe is not kept");
    assert!(Store::swift().observer().list(&format!("{c}_segments"), "").is_empty());
}

/// One Glance import at a time (the testbed's Glance runs one worker).
static GLANCE: std::sync::Mutex<()> = std::sync::Mutex::new(());

both!(glance_imports_the_object_by_web_download_from_a_tempurl, |store: Store| {
    let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::get();
    let obs = store.keystone_account(&tb);
    let mut vars = tb.keystone_password_env();
    vars.push(("OS_STORAGE_URL".into(), obs.storage_url.clone()));
    vars.push(("K5UP_IMPORT_POLL_MS".into(), "100".into()));
    let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = Run::with_env(&v);
    let c = store.container("glance");
    let f = run.path("disk.raw");
    let md5 = write_random(&f, 6 * MIB + 77, 19);
    run.ok(&["upload", f.to_str().unwrap(), "-c", &c, "--segment-size", "2MiB", "--import", "glance", "--no-progress"]);
    assert_eq!(obs.get_md5(&c, "disk.raw"), Some((md5, 6 * MIB + 77)), "the object reads back");
    let st = status(&run);
    let id = st["import"]["id"].as_str().expect("status --json has the image id");
    // What Glance holds, asked independently.
    let g = common::curl_json(&obs.token, "GET", &format!("{}/v2/images/{id}", tb.var("GLANCE_URL")));
    assert_eq!(g["status"], "active", "{g}");
    assert_eq!(g["size"].as_u64(), Some(6 * MIB + 77));
    let sha512 = {
        use sha2::Digest;
        hex::encode(sha2::Sha512::digest(std::fs::read(&f).unwrap()))
    };
    assert_eq!(g["os_hash_value"].as_str(), Some(sha512.as_str()), "Glance's SHA-512 is the file's");
    // Glance downloaded it from the store (the testbed's Glance may read 127.0.0.1 on any port).
    assert_eq!(common::glance_import_methods(&obs.token, &tb.var("GLANCE_URL"), id), ["web-download"]);
    eprintln!("figure: {} Glance import: {}", store.name(), st["import"]);
});

both!(hashed_while_sent_then_killed_resumes_without_resending, |store: Store| {
    // A small page cache (K5UP_PAGE_CACHE_ROOM): segments are hashed as they are sent,
    // with no ETag header; the store's answer is what is checked.
    let obs = store.observer();
    let c = &store.creds;
    let run = Run::with_env(&[
        ("ST_AUTH", &c.auth),
        ("ST_USER", &c.user),
        ("ST_KEY", &c.key),
        ("K5UP_PAGE_CACHE_ROOM", "12MiB"),
    ]);
    let c = store.container("hws");
    let segs = format!("{c}_segments");
    let f = run.path("img.raw");
    let md5 = write_random(&f, 40 * MIB, 59);
    let args = ["upload", f.to_str().unwrap(), "-c", &c, "--segment-size", "4MiB", "--bwlimit", "8MiB"];
    let job = run.job_id(&args);
    run.kill_after(&args, &obs, &segs, 3);
    let before = obs.list(&segs, "");
    assert!(before.len() < 10, "the kill landed before the last segment: {} of 10", before.len());
    run.ok(&["resume", &job]);
    obs.assert_not_resent(&segs, &before, "a segment on the store before the kill: ");
    assert_eq!(obs.get_md5(&c, "img.raw"), Some((md5, 40 * MIB)));
});
