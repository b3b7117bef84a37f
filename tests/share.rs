//! Sharing imported images with other projects, against the real Keystone and
//! Glance of the testbed (and its vmimport emulator, which registers K5 imports in
//! that Glance, private, as K5 does). What is checked is what Glance holds: its
//! member lists and the member project's own image list.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::throttle::{Fault, Throttle};
use common::{Observer, Run, Testbed, curl_json, keystone_token, unique, wait_for, write_random};
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// Glance imports share the account's TempURL keys: one at a time.
static GLANCE: Mutex<()> = Mutex::new(());

/// A run with the Keystone password credentials of testbed user `prefix` (KS, KS2).
fn ks_run_as(tb: &Testbed, prefix: &str) -> Run {
    let mut vars: Vec<(String, String)> = tb
        .keystone_password_env()
        .into_iter()
        .map(|(k, v)| {
            let own = k.strip_prefix("OS_").map(|s| format!("{prefix}_OS_{s}"));
            let v = own.and_then(|o| tb.env_var(&o)).unwrap_or(v);
            (k, v)
        })
        .collect();
    vars.push(("K5UP_IMPORT_POLL_MS".into(), "100".into()));
    let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Run::with_env(&v)
}

/// The image's members as Glance holds them: project id → status.
fn members(tb: &Testbed, token: &str, image: &str) -> BTreeMap<String, String> {
    let v = curl_json(token, "GET", &format!("{}/v2/images/{image}/members", tb.var("GLANCE_URL")));
    v["members"]
        .as_array()
        .expect("a member list")
        .iter()
        .map(|m| (m["member_id"].as_str().unwrap().to_string(), m["status"].as_str().unwrap().to_string()))
        .collect()
}

/// The image ids a project lists (`query`: Glance's filters), through every page: an
/// image on a later page is listed too (a `!contains` on one page proved nothing).
fn listed(tb: &Testbed, token: &str, query: &str) -> Vec<String> {
    common::glance_images(&tb.var("GLANCE_URL"), token, &format!("limit=1000{query}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn shared_with(st: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(st["shared_with"].clone()).unwrap()
}

#[test]
fn a_shared_image_is_listed_by_the_member_once_it_accepts_and_refusals_name_the_project() {
    let tb = Testbed::get();
    let _g = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    let run = ks_run_as(&tb, "KS");
    let src = run.path("golden.raw");
    write_random(&src, 12 * MIB + 5, 41);
    let c = unique("share");
    let (p2, s1, s2) = (tb.var("KS2_OS_PROJECT_ID"), tb.var("SHARE1_PROJECT_ID"), tb.var("SHARE2_PROJECT_ID"));
    // demo2 by id (demo may not look it up), share1 by name (demo is one of its readers).
    let with = format!("{p2},share1");
    let out = run.ok(&[
        "upload",
        src.to_str().unwrap(),
        "-c",
        &c,
        "--import",
        "glance",
        "--share-with",
        &with,
        "--no-progress",
    ]);
    let job = run.only_job();
    let st = run.status(&job);
    let image = st["import"]["id"].as_str().unwrap().to_string();
    assert!(out.contains(&format!("k5up accept {image}")), "{out}");
    let owner = keystone_token(&tb, "KS");
    let member = keystone_token(&tb, "KS2");

    // What Glance holds, read directly.
    assert_eq!(members(&tb, &owner, &image), map(&[(&p2, "pending"), (&s1, "pending")]));
    let img = curl_json(&owner, "GET", &format!("{}/v2/images/{image}", tb.var("GLANCE_URL")));
    assert_eq!((img["visibility"].as_str(), img["status"].as_str()), (Some("shared"), Some("active")));
    assert_eq!((st["phase"].as_str(), shared_with(&st)), (Some("done"), map(&[(&p2, "pending"), (&s1, "pending")])));
    assert_eq!(st["shared_with_names"][&s1].as_str(), Some("share1"));

    // The member sees it only among pending offers until it accepts.
    assert!(!listed(&tb, &member, "").contains(&image), "listed before accept");
    assert!(listed(&tb, &member, "&visibility=shared&member_status=pending").contains(&image));
    let mrun = ks_run_as(&tb, "KS2");
    let said = mrun.ok(&["accept", &image]);
    assert!(said.contains("accepted"), "{said}");
    assert!(listed(&tb, &member, "").contains(&image), "not listed after accept");
    assert_eq!(members(&tb, &owner, &image), map(&[(&p2, "accepted"), (&s1, "pending")]));

    // A second share of the same image: nothing added twice, the status read back.
    run.ok(&["share", &job, "--with", &format!("{p2},share1")]);
    assert_eq!(members(&tb, &owner, &image), map(&[(&p2, "accepted"), (&s1, "pending")]));
    assert_eq!(shared_with(&run.status(&job)), map(&[(&p2, "accepted"), (&s1, "pending")]));

    // Past image_member_quota (2 in the testbed): 413 in Glance's words, naming the project.
    let out = run.run(&["share", &job, "--with", &s2]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&s2) && t.contains("413") && t.contains("Image member limit exceeded"), "{t}");
    assert!(t.contains("image_member_quota"), "{t}");
    assert_eq!(members(&tb, &owner, &image), map(&[(&p2, "accepted"), (&s1, "pending")]));
    assert_eq!(
        shared_with(&run.status(&job)),
        map(&[(&p2, "accepted"), (&s1, "pending")]),
        "a refused project is not kept"
    );

    // The member project may not share the owner's image: Glance's 403, both projects named.
    let mut cmd = run.cmd(&["share", &job, "--with", &s2]);
    cmd.envs(mrun.env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("403") && t.contains("Not allowed to create members"), "{t}");
    assert!(t.contains(&tb.var("KS_OS_PROJECT_ID")) && t.contains("demo2"), "{t}");
    assert_eq!(members(&tb, &owner, &image), map(&[(&p2, "accepted"), (&s1, "pending")]));

    // Accepting an image that was not shared with the project.
    let out = ks_run_as(&tb, "KS2").run(&["accept", "00000000-0000-4000-8000-000000000000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is not shared with project demo2"), "{}", text(&out));
}

#[test]
fn an_unknown_project_is_refused_before_the_upload_and_a_job_never_imported_has_nothing_to_share() {
    let tb = Testbed::get();
    let run = ks_run_as(&tb, "KS");
    let src = run.path("disk.raw");
    write_random(&src, 3 * MIB, 43);
    let s = src.to_str().unwrap();
    let c = unique("share-unknown");
    let obs = Observer::keystone(&tb);

    let out =
        run.run(&["upload", s, "-c", &c, "--import", "glance", "--share-with", "no-such-project", "--no-progress"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("`no-such-project`"), "{}", text(&out));
    assert!(obs.list(&c, "").is_empty() && obs.list(&format!("{c}_segments"), "").is_empty(), "something was uploaded");
    assert!(run.jobs().is_empty(), "a job was created");

    // The user's own project owns the image already.
    let out = run.run(&["upload", s, "-c", &c, "--import", "glance", "--share-with", "demo", "--no-progress"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("owns the image already"), "{}", text(&out));

    // Sharing needs an import.
    let p2 = tb.var("KS2_OS_PROJECT_ID");
    let out = run.run(&["upload", s, "-c", &c, "--share-with", &p2, "--no-progress"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("needs an import"), "{}", text(&out));
    assert!(obs.list(&format!("{c}_segments"), "").is_empty(), "something was uploaded");

    // A job uploaded without an import has no image to share.
    run.ok(&["upload", s, "-c", &c, "--no-progress"]);
    let job = run.only_job();
    let out = run.run(&["share", &job, "--with", &p2]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("was never imported"), "{}", text(&out));
    assert!(text(&out).contains(&format!("k5up import {job}")), "{}", text(&out));
    assert!(run.status(&job)["shared_with"].as_object().unwrap().is_empty());

    // What the hint says: the import, then the sharing, of the job already uploaded.
    let _g = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    run.ok(&["import", &job, "--import", "glance", "--share-with", &p2, "--no-progress"]);
    let st = run.status(&job);
    let image = st["import"]["id"].as_str().unwrap().to_string();
    let owner = keystone_token(&tb, "KS");
    assert_eq!(members(&tb, &owner, &image), map(&[(&p2, "pending")]));
    assert_eq!((st["phase"].as_str(), shared_with(&st)), (Some("done"), map(&[(&p2, "pending")])));

    // The same upload command again, with one more project: only the sharing runs.
    let out = run.ok(&["upload", s, "-c", &c, "--share-with", "share1", "--no-progress"]);
    let s1 = tb.var("SHARE1_PROJECT_ID");
    assert_eq!(members(&tb, &owner, &image), map(&[(&p2, "pending"), (&s1, "pending")]), "{out}");
    assert_eq!(run.status(&job)["import"]["id"].as_str(), Some(image.as_str()), "no second import");
    let images: Vec<String> = common::glance_images(&tb.var("GLANCE_URL"), &owner, &format!("k5up_job={job}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(images, vec![image.clone()], "Glance holds one image of the job");
}

/// A k5up started in the background, killed if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real VMDK (qemu-img) of `size` random bytes.
fn vmdk(run: &Run, size: u64) -> PathBuf {
    let raw = run.path("disk.raw");
    write_random(&raw, size, 47);
    let out = run.path("disk.vmdk");
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized"])
        .arg(&raw)
        .arg(&out)
        .status()
        .expect("qemu-img (package qemu-utils) is needed");
    assert!(st.success());
    out
}

/// A K5 import (registered in Glance, private) shared through a proxy in front of
/// Glance that forwards the member request and holds back Glance's answer: k5up is
/// killed once Glance holds the member, before it hears of it. `resume` finishes
/// without setting the visibility again or adding anything twice.
#[test]
fn a_kill_during_the_sharing_of_a_k5_import_resumes_without_duplicating_anything() {
    let tb = Testbed::get();
    let run = ks_run_as(&tb, "KS");
    let img = vmdk(&run, 4 * MIB);
    let c = unique("share-kill");
    let p2 = tb.var("KS2_OS_PROJECT_ID");
    let glance = tb.var("GLANCE_URL");
    let proxy = Throttle::with_faults(
        common::port_of(&glance),
        1 << 30,
        vec![
            Fault::HoldResponse { method: "POST /v2/images/".into(), count: 1 },
            Fault::CloseBeforeResponse { method: "POST /v2/images/".into(), count: 1 },
        ],
    );
    let via = format!("http://127.0.0.1:{}", proxy.port);
    let vm = tb.var("VMIMPORT_URL");
    let args = [
        "upload",
        img.to_str().unwrap(),
        "-c",
        &c,
        "--import",
        "k5",
        "--os-type",
        "ubuntu",
        "--vmimport-url",
        &vm,
        "--glance-url",
        &via,
        "--share-with",
        &p2,
        "--no-progress",
    ];
    let job = run.job_id(&args);
    let mut child = KillOnDrop(run.spawn(&args));
    let owner = keystone_token(&tb, "KS");
    // The member request reached Glance, and Glance holds the member.
    let image = wait_for(Duration::from_secs(120), || {
        if let Ok(Some(s)) = child.0.try_wait() {
            panic!("k5up exited ({s}) before the sharing:\n{}", run.stderr());
        }
        let seen = proxy.stats.requests().iter().any(|r| r.line.starts_with("POST /v2/images/"));
        let out = run.run(&["status", &job, "--json"]);
        let st: Value = serde_json::from_slice(&out.stdout).ok()?; // no job yet
        let image = st["import"]["id"].as_str().map(str::to_string)?;
        (seen && members(&tb, &owner, &image).contains_key(&p2)).then_some(image)
    });
    run.kill(&mut child.0);
    let st = run.status(&job);
    assert_eq!(st["phase"].as_str(), Some("sharing"), "{st}");
    assert_eq!(shared_with(&st), map(&[(&p2, "to share")]), "the kill landed before k5up heard of the member");

    run.ok(&["resume", &job, "--no-progress"]);
    assert_eq!(members(&tb, &owner, &image), map(&[(&p2, "pending")]));
    let img = curl_json(&owner, "GET", &format!("{glance}/v2/images/{image}"));
    assert_eq!(img["visibility"].as_str(), Some("shared"));
    let st = run.status(&job);
    assert_eq!((st["phase"].as_str(), shared_with(&st)), (Some("done"), map(&[(&p2, "pending")])));
    // What crossed the proxy: the private image made shared once, the member added
    // once (the resume found it in Glance), nothing else changed.
    let lines = || -> Vec<String> { proxy.stats.requests().iter().map(|r| r.line.clone()).collect() };
    let count = |m: &str| lines().iter().filter(|l| l.starts_with(m)).count();
    assert_eq!((count("PATCH "), count("POST ")), (1, 1), "{:?}", lines());

    // A member request whose answer is lost (the connection closes after Glance
    // added the member): the retry's 409 counts as done.
    run.ok(&["share", &job, "--with", "share1"]);
    let s1 = tb.var("SHARE1_PROJECT_ID");
    assert_eq!(members(&tb, &owner, &image), map(&[(&p2, "pending"), (&s1, "pending")]));
    assert_eq!(shared_with(&run.status(&job)), map(&[(&p2, "pending"), (&s1, "pending")]));
    assert_eq!((count("PATCH "), count("POST ")), (1, 3), "{:?}", lines());
    assert_eq!(proxy.stats.closes.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(count("DELETE ") + count("PUT "), 0, "{:?}", lines());

    // A later import of the same job (into Glance now) makes a new image: the
    // job's projects are given it too.
    let _g = GLANCE.lock().unwrap_or_else(|e| e.into_inner());
    run.ok(&["import", &job, "--import", "glance", "--glance-url", &glance, "--no-progress"]);
    let st = run.status(&job);
    let image2 = st["import"]["id"].as_str().unwrap().to_string();
    assert_ne!(image2, image);
    assert_eq!(members(&tb, &owner, &image2), map(&[(&p2, "pending"), (&s1, "pending")]));
    assert_eq!((st["phase"].as_str(), shared_with(&st)), (Some("done"), map(&[(&p2, "pending"), (&s1, "pending")])));
    assert_eq!(
        members(&tb, &owner, &image),
        map(&[(&p2, "pending"), (&s1, "pending")]),
        "the first image kept its members"
    );
}
