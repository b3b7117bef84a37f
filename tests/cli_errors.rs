//! Bad input gets one clear line, the documented exit code, and no panic.

mod common;

use common::{Creds, Run, Testbed, write_random};

fn fails(run: &Run, args: &[&str], code: i32, needle: &str) -> String {
    let out = run.run(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "k5up {args:?}: {err}");
    assert!(err.contains(needle), "k5up {args:?}: expected `{needle}` in: {err}");
    assert!(err.lines().count() <= 3, "a short message: {err}");
    err
}

#[test]
fn bad_files_names_and_jobs() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let img = run.path("a.img");
    write_random(&img, 1000, 1);
    let i = img.to_str().unwrap();
    let d = run.dir.path().to_str().unwrap();
    fails(&run, &["upload", "/nonexistent/disk.img", "-c", "x"], 2, "No such file");
    fails(&run, &["upload", d, "-c", "x"], 2, "is a directory");
    fails(&run, &["upload", i, "-c", "a/b"], 2, "contains `/`");
    fails(&run, &["upload", i, "-c", ""], 2, "container name is empty");
    fails(&run, &["upload", i, "-c", "x", "-o", &"o".repeat(1100)], 2, "1024");
    fails(&run, &["upload", i, "-c", "x", "--segment-size", "1GiB"], 2, "larger than the server's max_file_size");
    fails(&run, &["upload", i, "-c", "x", "--segment-size", "lots"], 2, "not a size");
    fails(&run, &["resume", "abcdef12"], 2, "unknown job");
    fails(&run, &["status", "abcdef12"], 2, "unknown job");
    fails(&run, &["verify", "../../etc"], 2, "unknown job");
}

#[test]
fn bad_credentials_and_unreachable_endpoints() {
    let tb = Testbed::get();
    let good = tb.small();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    write_random(&img, 1000, 1);
    let i = img.to_str().unwrap();
    let wrong = Run::new(Creds { key: "not-the-key".into(), ..good.clone() });
    let err = fails(&wrong, &["upload", i, "-c", "x"], 2, "credentials were rejected");
    assert!(!err.contains("not-the-key"), "the key is not echoed: {err}");
    let down = Run::new(Creds { auth: "http://127.0.0.1:9/auth/v1.0".into(), ..good.clone() });
    let t0 = std::time::Instant::now();
    fails(&down, &["upload", i, "-c", "x"], 2, "cannot reach the server");
    assert!(t0.elapsed().as_secs() < 60, "gives up on first contact within seconds");
}

#[test]
fn no_credentials_at_all() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let img = run.path("a.img");
    write_random(&img, 10, 1);
    let out = run.cmd(&["upload", img.to_str().unwrap(), "-c", "x"]).env_remove("ST_AUTH").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credentials found"));
}

#[test]
fn secrets_never_reach_logs_journal_or_json() {
    let tb = Testbed::get();
    let creds = tb.small();
    let run = Run::new(creds.clone());
    let img = run.path("a.img");
    write_random(&img, 3 << 20, 9);
    let c = common::unique("secret");
    let out = run.run(&["-vv", "upload", img.to_str().unwrap(), "-c", &c, "--segment-size", "1MiB", "--no-progress"]);
    assert!(out.status.success());
    let token = common::Observer::login(&creds).token; // tempauth hands out the same token while valid
    let mut haystack = String::from_utf8_lossy(&out.stderr).to_string();
    haystack += &String::from_utf8_lossy(&out.stdout);
    haystack += &run.ok(&["jobs", "--json"]);
    for e in walk(&run.journal()) {
        haystack += &String::from_utf8_lossy(&std::fs::read(e).unwrap());
    }
    assert!(haystack.contains(&c), "the haystack holds the run's output and journal");
    assert!(!haystack.contains(&creds.key), "the key leaked");
    assert!(!haystack.contains(&token), "the token leaked");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}
