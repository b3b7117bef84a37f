//! Image import against the real Keystone + Swift + Glance, and the K5 vmimport
//! emulator (testbed/vmimport.py): digests, resume during the import, bad inputs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::mounts::EioFs;
use common::swift_proxy::SwiftProxy;
use common::throttle::{Fault, Throttle};
use common::{Observer, Run, Testbed, curl_json, unique, wait_for, write_random};
use serde_json::Value;
use sha2::Digest;

const MIB: u64 = 1 << 20;

/// Glance imports share the account's TempURL keys: one at a time.
static GLANCE: Mutex<()> = Mutex::new(());

fn ks_run(tb: &Testbed, extra: &[(&str, &str)]) -> Run {
    let mut vars = tb.keystone_password_env();
    vars.push(("K5UP_IMPORT_POLL_MS".into(), "100".into()));
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Run::with_env(&v)
}

/// A real image of `fmt` (qemu-img) made from `size` random bytes.
fn image(run: &Run, name: &str, fmt: &str, size: u64, seed: u64) -> PathBuf {
    let raw = run.path(&format!("{name}.raw"));
    write_random(&raw, size, seed);
    let out = run.path(name);
    let mut c = Command::new("qemu-img");
    c.args(["convert", "-f", "raw", "-O", fmt]);
    if fmt == "vmdk" {
        c.args(["-o", "subformat=streamOptimized"]);
    }
    let st = c.arg(&raw).arg(&out).status().expect("qemu-img (package qemu-utils) is needed");
    assert!(st.success());
    out
}

fn hex_of<D: Digest>(path: &Path) -> String {
    hex::encode(D::digest(std::fs::read(path).unwrap()))
}

fn account_keys(obs: &Observer) -> (Option<String>, Option<String>) {
    let out = Command::new("curl")
        .args(["-s", "-f", "-I", "-H", &format!("X-Auth-Token: {}", obs.token), &obs.storage_url])
        .output()
        .unwrap();
    assert!(out.status.success(), "HEAD of the account failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let get = |h: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{h}: ")).map(|v| v.trim().to_string()));
    (get("x-account-meta-temp-url-key"), get("x-account-meta-temp-url-key-2"))
}

fn set_account_meta(obs: &Observer, headers: &[&str]) {
    let mut c = Command::new("curl");
    c.args(["-s", "-f", "-X", "POST", "-H", &format!("X-Auth-Token: {}", obs.token)]);
    for h in headers {
        c.args(["-H", h]);
    }
    assert!(c.arg(&obs.storage_url).status().unwrap().success());
}

/// The imports the emulator knows of the object `container/object` (its
/// `location`), with their status bodies: every page of the project's list (100 at
/// most per page, newest first), each import once (one started meanwhile shifts the
/// pages: it is seen twice, never missed), and every status read (a failed request
/// fails the test, it is not an import fewer). Counted by object, not by image id: a
/// second import under a new id is an import more.
fn vmimports(tb: &Testbed, token: &str, container: &str, object: &str) -> Vec<Value> {
    let base = tb.var("VMIMPORT_URL");
    let location = format!("/v1/AUTH_{}/{container}/{object}", tb.var("KS_OS_PROJECT_ID"));
    let mut ids: Vec<String> = vec![];
    loop {
        let list = curl_json(token, "GET", &format!("{base}/v1/imageimport?start={}&limit=100", ids.len()));
        let page = list["imports"].as_array().unwrap_or_else(|| panic!("not an import list: {list}"));
        if page.is_empty() {
            break;
        }
        ids.extend(page.iter().map(|i| i["import_id"].as_str().unwrap().to_string()));
    }
    ids.sort();
    ids.dedup();
    ids.iter()
        .map(|i| curl_json(token, "GET", &format!("{base}/v1/imageimport/{i}/status")))
        .filter(|s| s["location"].as_str() == Some(location.as_str()))
        .collect()
}

/// The one import of `container/object`, which registers image `id`.
fn one_vmimport(tb: &Testbed, token: &str, container: &str, object: &str, id: &str) -> Value {
    let imports = vmimports(tb, token, container, object);
    assert_eq!(imports.len(), 1, "exactly one import of {container}/{object}: {imports:?}");
    assert_eq!(imports[0]["id"].as_str(), Some(id), "the import registers the job's image: {imports:?}");
    imports.into_iter().next().unwrap()
}

/// Every file under `dir`, as (lossy) text.
fn all_files_text(dir: &Path) -> String {
    let mut s = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            s.push_str(&all_files_text(&p));
        } else {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (a file not read is not searched)", p.display()));
            s.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    s
}

/// No TempURL signature (a read credential for the image) in `s`.
fn assert_no_signature(s: &str) {
    for (i, _) in s.match_indices("temp_url_sig=") {
        let next = s[i + "temp_url_sig=".len()..].chars().next();
        assert!(!next.is_some_and(|c| c.is_ascii_hexdigit()), "a TempURL signature leaked: {s}");
    }
}

/// `upload IMG -c C --import k5 --os-type OS --vmimport-url VM --no-progress`.
fn k5_upload<'a>(img: &'a str, c: &'a str, os_type: &'a str, vm: &'a str) -> Vec<&'a str> {
    vec!["upload", img, "-c", c, "--import", "k5", "--os-type", os_type, "--vmimport-url", vm, "--no-progress"]
}

fn out_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn glance_import_digests_match_and_existing_tempurl_keys_are_kept() {
    let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::get();
    let obs = Observer::keystone(&tb);
    // An account without any TempURL key: k5up sets one in the second slot.
    set_account_meta(&obs, &["X-Remove-Account-Meta-Temp-URL-Key: x", "X-Remove-Account-Meta-Temp-URL-Key-2: x"]);
    let run = ks_run(&tb, &[]);
    let img = image(&run, "disk.qcow2", "qcow2", 5 * MIB + 123, 31);
    let c = unique("glance");
    let f = img.to_str().unwrap();
    run.ok(&[
        "upload",
        f,
        "-c",
        &c,
        "--segment-size",
        "1MiB",
        "--import",
        "glance",
        "--digest",
        "md5,sha256",
        "--no-progress",
    ]);
    let st = run.status(&run.only_job());
    assert_eq!(st["phase"], "done");
    let imp = &st["import"];
    assert_eq!(
        (imp["kind"].as_str(), imp["status"].as_str(), imp["outcome"].as_str()),
        (Some("glance"), Some("active"), Some("succeeded"))
    );
    let sha512 = hex_of::<sha2::Sha512>(&img);
    let md5 = hex_of::<md5::Md5>(&img);
    assert_eq!(st["digests"]["sha512"].as_str(), Some(sha512.as_str()));
    assert_eq!(st["digests"]["md5"].as_str(), Some(md5.as_str()));
    assert_eq!(st["digests"]["sha256"].as_str(), Some(hex_of::<sha2::Sha256>(&img).as_str()));
    // What Glance holds, asked independently.
    let id = imp["id"].as_str().unwrap();
    let g = curl_json(&obs.token, "GET", &format!("{}/v2/images/{id}", tb.var("GLANCE_URL")));
    assert_eq!(g["status"], "active");
    assert_eq!(g["disk_format"], "qcow2", "detected from the file's header");
    assert_eq!(g["size"].as_u64(), Some(std::fs::metadata(&img).unwrap().len()));
    assert_eq!(g["os_hash_value"].as_str(), Some(sha512.as_str()));
    assert_eq!(g["checksum"].as_str(), Some(md5.as_str()));
    assert_eq!(g["name"], "disk", "the object name without its extension");
    let (k1, k2) = account_keys(&obs);
    assert!(k1.is_none() && k2.is_some(), "a key was set in the second slot only: {k1:?} {k2:?}");

    // An account that has a key: it is used, not replaced, and no other key is added.
    set_account_meta(&obs, &["X-Account-Meta-Temp-URL-Key: operator-key", "X-Remove-Account-Meta-Temp-URL-Key-2: x"]);
    let run = ks_run(&tb, &[]);
    let src = run.path("second.raw");
    write_random(&src, 3 * MIB, 32);
    let out = run.run(&["-vv", "upload", src.to_str().unwrap(), "-c", &c, "--import", "glance", "--no-progress"]);
    assert!(out.status.success(), "{}", out_text(&out));
    assert_eq!(run.status(&run.only_job())["import"]["outcome"], "succeeded");
    assert_eq!(account_keys(&obs), (Some("operator-key".into()), None));
    // This proxy hides /info: the TempURL was signed with SHA-1, and Swift took it.
    assert!(
        out_text(&out).contains("signed with HMAC-SHA1 (assumed: the store's /info lists no"),
        "{}",
        out_text(&out)
    );
    // The key and the signed URL never reach the logs (even -vv) or the journal.
    let everything = format!("{}{}", out_text(&out), all_files_text(&run.journal()));
    assert!(!everything.contains("operator-key"), "the TempURL key leaked");
    assert_no_signature(&everything);
}

/// A store whose /info lists the TempURL digests it allows: the strongest is used.
/// This one allows SHA-512 only, so the import succeeds only if k5up signs with it.
#[test]
fn glance_tempurl_is_signed_with_the_strongest_digest_the_store_lists() {
    let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::get();
    let proxy = SwiftProxy::keystone_with_tempurl("allowed_digests = sha512", true);
    let url = common::via_port(&tb.var("KS_SWIFT_URL"), proxy.port);
    let run = ks_run(&tb, &[("OS_STORAGE_URL", &url)]);
    let src = run.path("strong.raw");
    write_random(&src, MIB + 7, 71);
    let c = unique("tu512");
    let out = run.run(&["-v", "upload", src.to_str().unwrap(), "-c", &c, "--import", "glance", "--no-progress"]);
    let text = out_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("signed with HMAC-SHA512 (the strongest the store's /info lists"), "{text}");
    let st = run.status(&run.only_job());
    assert_eq!(st["import"]["outcome"], "succeeded");
    let obs = Observer::keystone(&tb);
    let g = curl_json(
        &obs.token,
        "GET",
        &format!("{}/v2/images/{}", tb.var("GLANCE_URL"), st["import"]["id"].as_str().unwrap()),
    );
    assert_eq!((g["status"].as_str(), g["size"].as_u64()), (Some("active"), Some(MIB + 7)));
    assert_no_signature(&format!("{text}{}", all_files_text(&run.journal())));
}

/// What Glance holds of image `id` is the source: active, its size, MD5 and SHA-512.
fn assert_image_is(token: &str, glance: &str, id: &str, src: &Path) {
    let g = curl_json(token, "GET", &format!("{glance}/v2/images/{id}"));
    assert_eq!(g["status"], "active", "{g}");
    assert_eq!(g["size"].as_u64(), Some(std::fs::metadata(src).unwrap().len()), "{g}");
    assert_eq!(g["checksum"].as_str(), Some(hex_of::<md5::Md5>(src).as_str()), "{g}");
    assert_eq!(g["os_hash_value"].as_str(), Some(hex_of::<sha2::Sha512>(src).as_str()), "{g}");
}

/// A store that refuses the digest k5up signs with: a modern Swift that hides /info
/// (k5up falls back to SHA-1) and allows only SHA-2, as Swift will once SHA-1 goes.
/// The GET of byte 0 finds it before Glance is asked anything, so Glance is never
/// given that URL: the image is staged by k5up instead (glance-direct), and says why.
#[test]
fn a_tempurl_the_store_refuses_is_caught_before_glance_and_glance_direct_is_used() {
    let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::get();
    let proxy = SwiftProxy::keystone_with_tempurl("allowed_digests = sha256 sha512", false);
    let url = common::via_port(&tb.var("KS_SWIFT_URL"), proxy.port);
    let run = ks_run(&tb, &[("OS_STORAGE_URL", &url)]);
    let src = run.path("sha1.raw");
    write_random(&src, 3 * MIB + 5, 72);
    let c = unique("tusha1");
    let out = run.run(&["-vv", "upload", src.to_str().unwrap(), "-c", &c, "--import", "glance", "--no-progress"]);
    let text = out_text(&out);
    assert!(out.status.success(), "{text}");
    // What Swift answered, the digest, and the way taken, printed; what to ask, warned.
    let why = "the object store refused the TempURL made for Glance, signed with HMAC-SHA1 (assumed";
    assert!(text.contains(&format!("web-download cannot be used ({why}")), "{text}");
    assert!(text.contains("by its TempURL (HMAC-SHA1, no token) failed: HTTP 401"), "{text}");
    assert!(text.contains("(X-Trans-Id: tx"), "Swift's transaction id: {text}");
    assert!(text.contains("allowed_digests") && text.contains("glance-direct"), "{text}");
    assert_no_signature(&format!("{text}{}", all_files_text(&run.journal())));
    // ... and in the status (--json).
    let st = run.status(&run.only_job());
    assert_eq!(st["import"]["outcome"], "succeeded");
    let msg = st["import"]["message"].as_str().unwrap_or_else(|| panic!("the reason in the status: {st}"));
    assert!(msg.starts_with("glance-direct (staged by k5up from the local file): ") && msg.contains(why), "{msg}");
    // Glance never got the URL: its one import task is glance-direct; the image is the file.
    let obs = Observer::keystone(&tb);
    let glance = tb.var("GLANCE_URL");
    let id = st["import"]["id"].as_str().unwrap();
    assert_eq!(common::glance_import_methods(&obs.token, &glance, id), ["glance-direct"]);
    assert_image_is(&obs.token, &glance, id, &src);
}

/// Glance's URL filter refuses the TempURL (the testbed's Glance allows 127.0.0.1
/// only, so a storage URL naming localhost is refused by the same filter that
/// refuses a port outside `allowed_ports`): k5up stages the image itself
/// (glance-direct) from the local file, telling Glance the size, and says why.
#[test]
fn glance_filtering_the_tempurl_falls_back_to_glance_direct() {
    let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::get();
    let url = tb.var("KS_SWIFT_URL").replace("127.0.0.1", "localhost");
    let glance = tb.var("GLANCE_URL");
    let seen = Throttle::start(common::port_of(&glance), 1 << 40);
    let via = format!("http://127.0.0.1:{}", seen.port);
    let run = ks_run(&tb, &[("OS_STORAGE_URL", &url)]);
    let src = run.path("refused.raw");
    let size = 5 * MIB + 321;
    write_random(&src, size, 41);
    let c = unique("refused");
    let out = run.run(&[
        "upload",
        src.to_str().unwrap(),
        "-c",
        &c,
        "--import",
        "glance",
        "--glance-url",
        &via,
        "--no-progress",
    ]);
    let text = out_text(&out);
    assert!(out.status.success(), "{text}");
    let why = "Glance refused the web-download (HTTP 400): URI for web-download does not pass filtering";
    assert!(text.contains(&format!("web-download cannot be used ({why}")) && text.contains("glance-direct"), "{text}");
    // The object store is on a port a default Glance refuses: the line that allows it.
    let port = common::port_of(&url);
    assert!(text.contains(&format!("allowed_ports = [80,443,{port}]")) && text.contains("allowed_hosts"), "{text}");
    assert_no_signature(&format!("{text}{}", all_files_text(&run.journal())));
    let st = run.status(&run.only_job());
    assert_eq!(st["import"]["outcome"], "succeeded");
    assert!(st["import"]["message"].as_str().is_some_and(|m| m.contains(why)), "{st}");
    // What Glance was sent: one refused web-download, then the data staged whole with
    // its size, then the glance-direct import, with its size.
    let id = st["import"]["id"].as_str().unwrap();
    let reqs: Vec<_> =
        seen.stats.requests().into_iter().filter(|r| r.line.contains(&format!("/v2/images/{id}/"))).collect();
    let lines: Vec<String> = reqs
        .iter()
        .map(|r| format!("{} {}", r.method(), r.line.split(' ').nth(1).unwrap().rsplit('/').next().unwrap()))
        .collect();
    assert_eq!(lines, ["POST import", "PUT stage", "POST import"], "{reqs:?}");
    let size_s = size.to_string();
    for r in &reqs {
        assert_eq!(r.header("x-openstack-image-size"), Some(size_s.as_str()), "{r:?}");
    }
    assert_eq!(reqs[1].body_len(), size, "the stage carries the whole file: {:?}", reqs[1]);
    let obs = Observer::keystone(&tb);
    assert_eq!(common::glance_import_methods(&obs.token, &glance, id), ["glance-direct"]);
    assert_image_is(&obs.token, &glance, id, &src);
    assert!(obs.get_md5(&c, "refused.raw").is_some(), "the object stays in Swift");
}

/// Killed while the data is being staged (glance-direct): `resume` ends with one
/// image of the job, active and whole.
#[test]
fn a_kill_while_staging_resumes_to_one_whole_image() {
    let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::get();
    let url = tb.var("KS_SWIFT_URL").replace("127.0.0.1", "localhost");
    let glance = tb.var("GLANCE_URL");
    // A slow link to Glance: the stage of 6 MiB lasts about 6 s.
    let slow = Throttle::start(common::port_of(&glance), MIB);
    let via = format!("http://127.0.0.1:{}", slow.port);
    let run = ks_run(&tb, &[("OS_STORAGE_URL", &url)]);
    let src = run.path("cut.raw");
    write_random(&src, 6 * MIB, 74);
    let c = unique("gcut");
    let args = ["upload", src.to_str().unwrap(), "-c", &c, "--import", "glance", "--glance-url", &via, "--no-progress"];
    let mut child = run.spawn(&args);
    let job = wait_for(Duration::from_secs(120), || {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("k5up exited ({s}) before the stage was cut:\n{}", run.stderr());
        }
        let staging = slow.stats.requests().iter().any(|r| r.method() == "PUT" && r.line.contains("/stage "));
        let up = slow.stats.bytes_up.load(std::sync::atomic::Ordering::Relaxed);
        (staging && up > 2 * MIB).then(|| run.only_job())
    });
    run.kill(&mut child);
    slow.wait_idle(Duration::from_secs(10));
    let out = run.run(&["resume", &job, "--no-progress"]);
    let text = out_text(&out);
    assert!(out.status.success(), "{text}");
    let obs = Observer::keystone(&tb);
    let images = common::glance_images(&glance, &obs.token, &format!("k5up_job={job}"));
    let active: Vec<_> = images.iter().filter(|i| i["status"] == "active").collect();
    assert_eq!(active.len(), 1, "one active image of the job: {images:?}");
    let id = active[0]["id"].as_str().unwrap();
    assert_eq!(run.status(&job)["import"]["id"].as_str(), Some(id));
    assert_image_is(&obs.token, &glance, id, &src);
}

/// Glance accepts the URL but cannot download it: reported with Glance's words.
#[test]
fn a_failed_web_download_is_reported() {
    let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::get();
    // Glance accepts the URL but cannot download it (the object store answers 503).
    let c = unique("gfail");
    let fault = Observer::keystone(&tb).object_request("GET", &c);
    let swift = tb.var("KS_SWIFT_URL");
    let proxy = Throttle::with_faults(
        common::port_of(&swift),
        1 << 40,
        vec![Fault::Reply { method: fault, status: 503, retry_after: None, count: 1000 }],
    );
    let via = common::via_port(&swift, proxy.port);
    let run = ks_run(&tb, &[("OS_STORAGE_URL", &via)]);
    let src = run.path("fails.raw");
    write_random(&src, MIB, 42);
    let out = run.run(&["upload", src.to_str().unwrap(), "-c", &c, "--import", "glance", "--no-progress"]);
    assert_eq!(out.status.code(), Some(1), "{}", out_text(&out));
    let text = out_text(&out);
    assert!(text.contains("os_glance_failed_import"), "{text}");
    assert!(proxy.stats.replies.load(std::sync::atomic::Ordering::Relaxed) > 0, "Glance tried the TempURL");
    assert_eq!(run.status(&run.only_job())["import"]["outcome"], "failed");
}

#[test]
fn k5_import_with_dlo_and_with_slo() {
    let tb = Testbed::get();
    let obs = Observer::keystone(&tb);
    for manifest in ["dlo", "slo"] {
        let run = ks_run(&tb, &[]);
        let img = image(&run, "server.vmdk", "vmdk", 4 * MIB, 51);
        let c = unique(&format!("k5{manifest}"));
        let vm = tb.var("VMIMPORT_URL");
        let args = [
            "upload",
            img.to_str().unwrap(),
            "-c",
            &c,
            "--segment-size",
            "1MiB",
            "--manifest",
            manifest,
            "--import",
            "k5",
            "--os-type",
            "centos",
            "--vmimport-url",
            &vm,
            "--image-name",
            "web01",
            "--no-progress",
        ];
        run.ok(&args);
        let st = run.status(&run.only_job());
        let sha1 = hex_of::<sha1::Sha1>(&img);
        assert_eq!(st["digests"]["sha1"].as_str(), Some(sha1.as_str()), "{manifest}");
        assert_eq!(st["import"]["status"], "succeeded");
        assert_eq!(st["import"]["progress"], 100);
        let id = st["import"]["id"].as_str().unwrap();
        let i = &one_vmimport(&tb, &obs.token, &c, "server.vmdk", id);
        assert_eq!(i["import_status"], "succeeded");
        assert_eq!(i["name"], "web01");
        assert_eq!(i["os_type"], "centos");
        assert_eq!(i["checksum"].as_str(), Some(sha1.as_str()), "the emulator checked the object's SHA-1 against it");
        assert_eq!(i["location"].as_str().unwrap(), format!("/v1/AUTH_{}/{c}/server.vmdk", tb.var("KS_OS_PROJECT_ID")));
        // Running it again changes nothing: the job is complete.
        run.ok(&args);
        one_vmimport(&tb, &obs.token, &c, "server.vmdk", id);
        if manifest == "slo" {
            // The same object into Glance too: SHA-512 is computed by one more read.
            let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
            let job = run.only_job();
            run.ok(&["import", &job, "--import", "glance", "--no-progress"]);
            let st = run.status(&job);
            assert_eq!(
                (st["import"]["kind"].as_str(), st["import"]["status"].as_str()),
                (Some("glance"), Some("active"))
            );
            assert_eq!(st["digests"]["sha512"].as_str(), Some(hex_of::<sha2::Sha512>(&img).as_str()));
        }
    }
}

#[test]
fn k5_bad_inputs_are_refused_before_uploading_and_a_failed_import_is_clear() {
    let tb = Testbed::get();
    let obs = Observer::keystone(&tb);
    let vm = tb.var("VMIMPORT_URL");
    let run = ks_run(&tb, &[]);
    let img = image(&run, "ok.vmdk", "vmdk", MIB, 61);
    let raw = run.path("plain.vmdk");
    write_random(&raw, 2 * MIB, 62);
    let c = unique("k5bad");
    let cases: [(&Path, Vec<&str>, &str); 4] = [
        (&img, vec!["--os-type", "windows11"], "does not accept os_type `windows11`"),
        (&img, vec![], "needs --os-type"),
        (&img, vec!["--os-type", "ubuntu", "-o", "ok.img"], "ending in `.vmdk`"),
        (&raw, vec!["--os-type", "ubuntu"], "imports VMDK images; this file looks like raw"),
    ];
    for (file, extra, want) in cases {
        let mut a =
            vec!["upload", file.to_str().unwrap(), "-c", &c, "--import", "k5", "--vmimport-url", &vm, "--no-progress"];
        a.extend(extra);
        let out = run.run(&a);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {}", out_text(&out));
        assert!(out_text(&out).contains(want), "{a:?}: {}", out_text(&out));
    }
    assert!(obs.list(&c, "").is_empty() && obs.list(&format!("{c}_segments"), "").is_empty(), "nothing was uploaded");
    assert!(run.jobs().is_empty(), "no job was created");

    // The detection overridden: uploaded, then vmimport finds it is not a VMDK.
    let a = [
        "upload",
        raw.to_str().unwrap(),
        "-c",
        &c,
        "--import",
        "k5",
        "--vmimport-url",
        &vm,
        "--os-type",
        "ubuntu",
        "--disk-format",
        "vmdk",
        "--no-progress",
    ];
    let out = run.run(&a);
    assert_eq!(out.status.code(), Some(1), "{}", out_text(&out));
    assert!(out_text(&out).contains("not a VMDK"), "{}", out_text(&out));
    let job = run.only_job();
    let st = run.status(&job);
    assert_eq!((st["phase"].as_str(), st["import"]["outcome"].as_str()), (Some("failed"), Some("failed")));
    assert!(st["import"]["message"].as_str().unwrap().contains("not a VMDK"));
    // `k5up import` tries again as a new import (a new image id); it fails the same way.
    let first = st["import"]["id"].as_str().unwrap().to_string();
    let out = run.run(&["import", &job, "--no-progress"]);
    assert_eq!(out.status.code(), Some(1));
    let again = run.status(&job)["import"]["id"].as_str().unwrap().to_string();
    assert_ne!(first, again);
    let mut ids: Vec<String> =
        vmimports(&tb, &obs.token, &c, "plain.vmdk").iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    let mut want = vec![first, again];
    want.sort();
    assert_eq!(ids, want, "two imports of the object: the first and the one `k5up import` started");
    // Phase `failed`, with the manifest written: abort keeps the object, which reads back whole.
    let md5 = common::md5_of_range(&raw, 0, 2 * MIB);
    let out = run.ok(&["abort", &job]);
    assert!(out.contains("kept"), "{out}");
    assert_eq!(obs.get_md5(&c, "plain.vmdk"), Some((md5, 2 * MIB)), "abort in phase failed kept the object");
}

/// Phase `importing`, the manifest written and the import service unreachable (503
/// to every import request): abort keeps the object and its segments.
#[test]
fn abort_during_the_import_phase_keeps_the_object() {
    let tb = Testbed::get();
    let obs = Observer::keystone(&tb);
    let vm = tb.var("VMIMPORT_URL");
    let proxy = Throttle::with_faults(
        common::port_of(&vm),
        1 << 40,
        vec![Fault::Reply { method: "POST /v1/imageimport".into(), status: 503, retry_after: None, count: 1000 }],
    );
    let via = format!("http://127.0.0.1:{}", proxy.port);
    let run = ks_run(&tb, &[]);
    let img = image(&run, "held.vmdk", "vmdk", 3 * MIB, 63);
    let md5 = common::md5_of_range(&img, 0, std::fs::metadata(&img).unwrap().len());
    let c = unique("k5abort");
    let mut a = k5_upload(img.to_str().unwrap(), &c, "ubuntu", &via);
    a.extend(["--segment-size", "1MiB", "--retry-for", "2s"]);
    let out = run.run(&a);
    assert_eq!(out.status.code(), Some(75), "{}", out_text(&out));
    assert!(proxy.stats.replies.load(std::sync::atomic::Ordering::Relaxed) > 0, "the import was tried");
    let job = run.only_job();
    assert_eq!(run.status(&job)["phase"], "importing");
    let segs = obs.list(&format!("{c}_segments"), "");
    assert!(!segs.is_empty());
    let out = run.ok(&["abort", &job]);
    assert!(out.contains("kept"), "{out}");
    assert_eq!(obs.list(&format!("{c}_segments"), ""), segs, "segments kept");
    let len = std::fs::metadata(&img).unwrap().len();
    assert_eq!(obs.get_md5(&c, "held.vmdk"), Some((md5, len)), "the object reads back whole");
}

/// Starts `args`, SIGKILLs it once its status shows the import running, resumes.
fn kill_during_import(run: &Run, args: &[&str], started: impl Fn(&Value) -> bool) -> String {
    let mut child = run.spawn(args);
    let job = wait_for(Duration::from_secs(120), || {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("k5up exited ({s}) before the import ran:\n{}", run.stderr());
        }
        let jobs = run.cmd(&["jobs", "--json"]).output().ok()?;
        let v: Vec<Value> = serde_json::from_slice(&jobs.stdout).ok()?;
        let j = v.first()?;
        (j["phase"] == "importing" && started(&j["import"])).then(|| j["job"].as_str().unwrap().to_string())
    });
    run.kill(&mut child);
    run.ok(&["resume", &job, "--no-progress"]);
    job
}

#[test]
fn a_kill_during_the_import_resumes_the_same_import() {
    let tb = Testbed::get();
    let obs = Observer::keystone(&tb);
    // K5: killed while vmimport processes (the emulator takes about 2 s).
    let run = ks_run(&tb, &[]);
    let img = image(&run, "k.vmdk", "vmdk", 2 * MIB, 71);
    let c = unique("k5kill");
    let vm = tb.var("VMIMPORT_URL");
    let job =
        kill_during_import(&run, &k5_upload(img.to_str().unwrap(), &c, "rhel7", &vm), |i| i["import_id"].is_string());
    let st = run.status(&job);
    assert_eq!(st["import"]["status"], "succeeded");
    one_vmimport(&tb, &obs.token, &c, "k.vmdk", st["import"]["id"].as_str().unwrap());

    // Glance: killed once the image exists and its import was requested.
    let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    let run = ks_run(&tb, &[]);
    let src = run.path("g.raw");
    write_random(&src, 3 * MIB, 72);
    let c = unique("gkill");
    let job = kill_during_import(
        &run,
        &["upload", src.to_str().unwrap(), "-c", &c, "--import", "glance", "--no-progress"],
        |i| i["status"] != "new",
    );
    let st = run.status(&job);
    assert_eq!(st["import"]["outcome"], "succeeded");
    let images = common::glance_images(&tb.var("GLANCE_URL"), &obs.token, &format!("k5up_job={job}"));
    assert_eq!(images.len(), 1, "exactly one image: {images:?}");
    assert_eq!(images[0]["status"], "active");
}

#[test]
fn a_lost_answer_to_the_import_request_does_not_start_a_second_import() {
    let tb = Testbed::get();
    let obs = Observer::keystone(&tb);
    // vmimport accepts the request, but its answer never reaches k5up.
    let port: u16 = tb.var("VMIMPORT_URL").rsplit(':').next().unwrap().parse().unwrap();
    let proxy = Throttle::with_faults(
        port,
        1 << 40,
        vec![Fault::CloseBeforeResponse { method: "POST /v1/imageimport".into(), count: 1 }],
    );
    let run = ks_run(&tb, &[]);
    let img = image(&run, "lost.vmdk", "vmdk", MIB, 81);
    let c = unique("k5lost");
    let vm = format!("http://127.0.0.1:{}", proxy.port);
    run.ok(&k5_upload(img.to_str().unwrap(), &c, "ubuntu", &vm));
    assert_eq!(proxy.stats.closes.load(std::sync::atomic::Ordering::Relaxed), 1, "the fault was injected");
    let st = run.status(&run.only_job());
    assert_eq!(st["import"]["status"], "succeeded");
    one_vmimport(&tb, &obs.token, &c, "lost.vmdk", st["import"]["id"].as_str().unwrap());
}

#[test]
fn import_later_and_digests_resume_from_the_saved_state() {
    let tb = Testbed::get();
    // Killed mid-upload with a digest asked for, while the whole-image hashing is
    // slowed by the disk past 6 MiB: the resume continues the hashers from their saved
    // state instead of re-reading the file from the start.
    let swift = tb.var("KS_SWIFT_URL");
    let proxy = Throttle::start(common::port_of(&swift), 4 * MIB);
    let via = common::via_port(&swift, proxy.port);
    let run = ks_run(&tb, &[("OS_STORAGE_URL", &via)]);
    let media = run.path("media");
    std::fs::create_dir(&media).unwrap();
    write_random(&media.join("later.raw"), 12 * MIB + 5, 91);
    std::fs::write(media.join(".slow"), (6 * MIB).to_string()).unwrap();
    let disk = EioFs::start(&media, &run.path("mnt"), 0, 0, "later.raw");
    let src = disk.mnt.join("later.raw");
    let c = unique("later");
    let obs = Observer { storage_url: via.clone(), token: Observer::keystone(&tb).token };
    let args =
        ["upload", src.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--digest", "sha256", "--no-progress"];
    run.kill_after(&args, &obs, &format!("{c}_segments"), 4);
    proxy.wait_idle(Duration::from_secs(10));
    std::fs::remove_file(media.join(".slow")).unwrap();
    let job = run.only_job();
    std::fs::write(media.join(".reads"), "").unwrap();
    let out = run.cmd(&["resume", &job, "--no-progress"]).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    // What the disk served during the resume. The first 4 MiB (whole on the server and
    // hashed before the kill) are not read again, but for the file-identity samples
    // (16 blocks of 64 KiB spread over the file), read once when the file is opened and
    // once more before the manifest.
    let reads = std::fs::read_to_string(media.join(".reads")).unwrap();
    std::fs::remove_file(media.join(".reads")).unwrap();
    let size = 12 * MIB + 5;
    let samples: Vec<u64> = (0..16).map(|i| (size - 65536) * i / 15).collect();
    let early: Vec<(u64, u64)> = reads
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(o, n)| (o.parse::<u64>().unwrap(), n.parse::<u64>().unwrap()))
        .filter(|(o, _)| *o < 4 * MIB)
        .collect();
    let is_sample = |(o, n): &(u64, u64)| *n == 65536 && samples.contains(o);
    let identity = early.iter().filter(|r| is_sample(r)).count();
    let data: Vec<_> = early.iter().filter(|r| !is_sample(r)).collect();
    assert!(data.is_empty(), "the resume read confirmed bytes again: {data:?}");
    let in_range = samples.iter().filter(|o| **o < 4 * MIB).count();
    assert_eq!(identity, 2 * in_range, "identity samples read twice, no more: {early:?}");
    let log = out_text(&out);
    let from: u64 = log
        .split("whole-image digests continue from byte ")
        .nth(1)
        .unwrap_or_else(|| panic!("the resume re-read the file from the start:\n{log}"))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(from >= 4 * MIB, "continued from byte {from}");
    let st = run.status(&job);
    assert_eq!(st["digests"]["sha256"].as_str(), Some(hex_of::<sha2::Sha256>(&src).as_str()));
    assert!(st["import"].is_null());

    // `k5up import JOB` on the uploaded job: one read of the file for SHA-512, then Glance.
    let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    run.ok(&["import", &job, "--import", "glance", "--image-name", "later-image", "--no-progress"]);
    let st = run.status(&job);
    assert_eq!(st["import"]["outcome"], "succeeded");
    assert_eq!(st["digests"]["sha512"].as_str(), Some(hex_of::<sha2::Sha512>(&src).as_str()));
    assert_eq!(st["digests"]["sha256"].as_str(), Some(hex_of::<sha2::Sha256>(&src).as_str()));
}

#[test]
fn k5_conversion_credentials_only_over_https_or_an_allowed_loopback_and_never_logged() {
    let tb = Testbed::get();
    let vm = tb.var("VMIMPORT_URL");
    let password = tb.var("KS_OS_PASSWORD");
    let run = ks_run(&tb, &[]);
    let img = image(&run, "conv.vmdk", "vmdk", MIB, 101);
    let c = unique("k5conv");
    let base = ["upload", img.to_str().unwrap(), "-c", &c, "--import", "k5", "--os-type", "ubuntu", "--k5-conversion"];
    // Plain http without the explicit loopback exception: refused before uploading.
    let mut a = base.to_vec();
    a.extend(["--vmimport-url", &vm, "--no-progress"]);
    let out = run.run(&a);
    assert_eq!(out.status.code(), Some(2), "{}", out_text(&out));
    assert!(out_text(&out).contains("not https"), "{}", out_text(&out));
    assert!(run.jobs().is_empty());
    // Allowed for the loopback test endpoint: the emulator logs in with them at Keystone.
    let mut a = vec!["-vv"];
    a.extend(base);
    a.extend(["--vmimport-url", &vm, "--allow-http-password", "--no-progress"]);
    let out = run.run(&a);
    assert!(out.status.success(), "{}", out_text(&out));
    assert_eq!(run.status(&run.only_job())["import"]["status"], "succeeded");
    let everything = format!("{}{}", out_text(&out), all_files_text(&run.journal()));
    assert!(!everything.contains(&password), "the password leaked");
    use base64::Engine as _;
    assert!(
        !everything.contains(&base64::engine::general_purpose::STANDARD.encode(&password)),
        "the base64 password leaked"
    );
}

/// Every import prerequisite is checked before the upload: Swift-only credentials
/// (tempauth, no catalog, a token Glance does not accept) were found out only after
/// the whole upload, leaving the job in `importing` with an image that never existed.
#[test]
fn import_prerequisites_are_checked_before_uploading() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let src = run.path("disk.raw");
    write_random(&src, 2 * MIB, 71);
    let c = unique("preflight");
    let s = src.to_str().unwrap();
    let glance = tb.var("GLANCE_URL");
    // Tempauth credentials: the remedy is Keystone credentials, with or without
    // --glance-url (once "give its URL with --glance-url", which then failed with 401).
    for extra in [vec!["--import", "glance"], vec!["--import", "glance", "--glance-url", &glance]] {
        let mut a = vec!["upload", s, "-c", &c, "--no-progress", "--retry-for", "2s"];
        a.extend(extra);
        let out = run.run(&a);
        let text = out_text(&out);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {text}");
        assert!(text.contains("Glance needs Keystone credentials") && text.contains("ST_AUTH"), "{a:?}: {text}");
        assert!(text.contains("OS_AUTH_URL") && text.contains("OS_CLOUD"), "{a:?}: the remedy: {text}");
        assert!(!text.contains("give its URL with --glance-url"), "{a:?}: not the remedy: {text}");
        assert!(!text.contains(&tb.small().key), "{a:?}: {text}");
    }
    let obs = Observer::login(&tb.small());
    assert!(obs.list(&c, "").is_empty() && obs.list(&format!("{c}_segments"), "").is_empty(), "nothing uploaded");
    assert!(run.jobs().is_empty(), "no job created");
    // Keystone credentials and a Glance that cannot be reached.
    let ks = ks_run(&tb, &[]);
    let out =
        ks.run(&["upload", s, "-c", &c, "--no-progress", "--import", "glance", "--glance-url", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2), "{}", out_text(&out));
    assert!(out_text(&out).contains("cannot use Glance"), "{}", out_text(&out));
    assert!(ks.jobs().is_empty(), "no job created");
}

/// `k5up import JOB --glance-url URL` (no `--import`) runs a Glance import at that
/// URL: the flag was ignored unless `--import glance` was given too.
#[test]
fn import_with_only_a_glance_url_imports_into_glance() {
    let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    let tb = Testbed::get();
    let run = ks_run(&tb, &[]);
    let src = run.path("later.raw");
    write_random(&src, MIB, 72);
    let c = unique("gurl");
    run.ok(&["upload", src.to_str().unwrap(), "-c", &c, "--no-progress"]);
    let job = run.only_job();
    assert!(run.status(&job)["import"].is_null());
    run.ok(&["import", &job, "--glance-url", &tb.var("GLANCE_URL"), "--no-progress"]);
    let st = run.status(&job);
    assert_eq!((st["import"]["kind"].as_str(), st["import"]["status"].as_str()), (Some("glance"), Some("active")));
    let obs = Observer::keystone(&tb);
    let img = curl_json(
        &obs.token,
        "GET",
        &format!("{}/v2/images/{}", tb.var("GLANCE_URL"), st["import"]["id"].as_str().unwrap()),
    );
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["os_hash_value"].as_str(), Some(hex_of::<sha2::Sha512>(&src).as_str()));
}

/// The K5 workflow on a link that drops every few seconds: a DLO upload with the
/// default plan, whose one segment could never cross an up-period, is split to fit,
/// and vmimport then imports the object (it reads it from Swift, and checks its SHA-1).
#[test]
fn k5_import_of_a_dlo_uploaded_over_a_flapping_link() {
    let tb = Testbed::get();
    let obs = Observer::keystone(&tb);
    let swift = tb.var("KS_SWIFT_URL");
    // 2 MiB/s, up 3 s, down 1 s: an up-period carries 6 MiB; the image is one 10 MiB segment.
    let proxy = Throttle::start(common::port_of(&swift), 2 << 20);
    let via = common::via_port(&swift, proxy.port);
    let run = ks_run(&tb, &[("OS_STORAGE_URL", &via)]);
    let img = image(&run, "flaky.vmdk", "vmdk", 10 * MIB, 71);
    let c = unique("k5flap");
    let vm = tb.var("VMIMPORT_URL");
    let mut args = k5_upload(img.to_str().unwrap(), &c, "centos", &vm);
    args.extend(["--manifest", "dlo"]);
    let flapping = proxy.flap(Duration::from_secs(3), Duration::from_secs(1));
    let out = run.run(&args);
    drop(flapping);
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(proxy.stats.outages.load(std::sync::atomic::Ordering::Relaxed) >= 2, "the link dropped");
    let st = run.status(&run.only_job());
    assert_eq!(st["import"]["status"], "succeeded", "{st}");
    let import = one_vmimport(&tb, &obs.token, &c, "flaky.vmdk", st["import"]["id"].as_str().unwrap());
    let sha1 = hex_of::<sha1::Sha1>(&img);
    assert_eq!(import["checksum"].as_str(), Some(sha1.as_str()), "vmimport checked the object's SHA-1");
    // Read straight from Swift: the object is the file, made of the split segments only.
    let md5 = hex_of::<md5::Md5>(&img);
    assert_eq!(obs.get_md5(&c, "flaky.vmdk"), Some((md5, std::fs::metadata(&img).unwrap().len())));
    let listed = obs.list(&format!("{c}_segments"), "flaky.vmdk/");
    let mut cuts: Vec<(u64, u64)> = listed.keys().map(|n| common::piece_of(n).expect("ranged names")).collect();
    cuts.sort();
    assert!(cuts.len() > 1, "split to fit the link: {cuts:?}");
    assert!(cuts.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0), "contiguous, nothing else under the prefix: {cuts:?}");
}

/// A raw disk image as `qemu-img convert -O raw` leaves one: sparse, data in a few places.
fn sparse_raw(run: &Run, name: &str, size: u64, islands: &[(u64, u64)], seed: u64) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let p = run.path(name);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(size).unwrap();
    for (k, &(off, len)) in islands.iter().enumerate() {
        let tmp = run.path(&format!("{name}.{k}"));
        write_random(&tmp, len, seed + k as u64);
        f.write_all_at(&std::fs::read(&tmp).unwrap(), off).unwrap();
    }
    p
}

#[test]
fn sparse_images_import_into_glance_and_k5() {
    let tb = Testbed::get();
    let obs = Observer::keystone(&tb);
    let run = ks_run(&tb, &[]);
    let img = sparse_raw(&run, "sparse.raw", 128 * MIB, &[(0, 3 * MIB), (70 * MIB, 2 * MIB + 17)], 71);
    let f = img.to_str().unwrap();
    let c = unique("sparseimp");
    {
        let _one = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
        run.ok(&["upload", f, "-c", &c, "-o", "g.raw", "--import", "glance", "--no-progress"]);
    }
    let job = run.jobs().into_iter().find(|j| j["object"] == "g.raw").unwrap();
    assert!(job["bytes_zero"].as_u64().unwrap() >= 100 * MIB, "{job}");
    let id = job["import"]["id"].as_str().unwrap();
    let g = curl_json(&obs.token, "GET", &format!("{}/v2/images/{id}", tb.var("GLANCE_URL")));
    assert_eq!(g["status"], "active");
    assert_eq!(g["size"].as_u64(), Some(128 * MIB));
    assert_eq!(g["os_hash_value"].as_str(), Some(hex_of::<sha2::Sha512>(&img).as_str()), "Glance read every zero");
    // The K5 way: a preallocated VMDK (its unused grains are zeros), in a DLO whose
    // zero segments are copied on the server; vmimport checks the object's SHA-1.
    let vmdk = run.path("sparse.vmdk");
    let qemu = |args: &[&str]| {
        let st = Command::new("qemu-img").args(args).status().unwrap();
        assert!(st.success(), "qemu-img {args:?}");
    };
    let v = vmdk.to_str().unwrap();
    qemu(&["create", "-q", "-f", "vmdk", "-o", "preallocation=full", v, "128M"]);
    qemu(&["convert", "-n", "-O", "vmdk", f, v]);
    let vm = tb.var("VMIMPORT_URL");
    let k5 = ["--manifest", "dlo", "--import", "k5", "--os-type", "centos", "--vmimport-url", &vm];
    let mut args = vec!["upload", v, "-c", &c, "-o", "k.vmdk", "--image-name", "sparse01", "--no-progress"];
    args.extend_from_slice(&k5);
    run.ok(&args);
    let job = run.jobs().into_iter().find(|j| j["object"] == "k.vmdk").unwrap();
    assert!(job["bytes_zero"].as_u64().unwrap() >= 64 * MIB, "{job}");
    let import = one_vmimport(&tb, &obs.token, &c, "k.vmdk", job["import"]["id"].as_str().unwrap());
    assert_eq!(import["import_status"], "succeeded");
    assert_eq!(import["checksum"].as_str(), Some(hex_of::<sha1::Sha1>(&vmdk).as_str()));
}
