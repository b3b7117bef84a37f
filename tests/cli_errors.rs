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
    // Options that once planned millions of segments, made every PUT fail, or panicked.
    fails(&run, &["upload", i, "-c", "x", "--segment-size", "1B"], 2, "below the smallest segment");
    fails(&run, &["upload", i, "-c", "x", "--stall-timeout", "0s"], 2, "too short");
    fails(&run, &["upload", i, "-c", "x", "--stall-timeout", "1ms"], 2, "too short");
    fails(&run, &["upload", i, "-c", "x", "--retry-for", "300000000000000000d"], 2, "invalid value");
    // `--bwlimit 0` once meant "unlimited" silently; `man --dir FILE` once exited 1.
    fails(&run, &["upload", i, "-c", "x", "--bwlimit", "0"], 2, "use no --bwlimit");
    fails(&run, &["upload", i, "-c", "x", "--bwlimit", "0MiB"], 2, "use no --bwlimit");
    fails(&run, &["man", "--dir", i], 2, "not a directory");
    fails(&run, &["resume", "abcdef12"], 2, "unknown job");
    fails(&run, &["status", "abcdef12"], 2, "unknown job");
    fails(&run, &["verify", "../../etc"], 2, "unknown job");
    // K5UP_MD5 naming lanes this CPU cannot run (or no lanes at all) fails loudly.
    let out = run.cmd(&["upload", i, "-c", "x"]).env("K5UP_MD5", "neon").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("K5UP_MD5=neon"));
    // A journal path that cannot be a journal is bad input, whatever the reason.
    fails(&run, &["--journal", i, "upload", i, "-c", "x"], 2, "is not a directory");
    fails(&run, &["--journal", "/proc/k5up-journal", "upload", i, "-c", "x"], 2, "cannot create journal");
}

/// A 1000-byte image in a folder of its own (kept alive by the returned TempDir).
fn small_image() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    write_random(&img, 1000, 1);
    (dir, img)
}

#[test]
fn bad_credentials_and_unreachable_endpoints() {
    let tb = Testbed::get();
    let good = tb.small();
    let (_dir, img) = small_image();
    let i = img.to_str().unwrap();
    let wrong = Run::new(Creds { key: "not-the-key".into(), ..good.clone() });
    let err = fails(&wrong, &["upload", i, "-c", "x"], 2, "credentials were rejected");
    assert!(!err.contains("not-the-key"), "the key is not echoed: {err}");
    let down = Run::new(Creds { auth: "http://127.0.0.1:9/auth/v1.0".into(), ..good.clone() });
    let t0 = std::time::Instant::now();
    fails(&down, &["upload", i, "-c", "x"], 2, "cannot reach the server");
    assert!(t0.elapsed().as_secs() < 60, "gives up on first contact within seconds");
}

/// Endpoints that answer, but not as the service the user meant: one clear line
/// and exit 2 (a wrong endpoint is bad input), never a raw body or a TLS internal.
#[test]
fn endpoints_that_are_not_what_they_claim() {
    let tb = Testbed::get();
    let good = tb.small();
    let (dir, img) = small_image();
    let i = img.to_str().unwrap();
    // ST_AUTH pointing at Glance (once exit 1 with raw, truncated JSON).
    let glance = Run::new(Creds { auth: tb.var("GLANCE_URL"), ..good.clone() });
    let err = fails(&glance, &["upload", i, "-c", "x"], 2, "is not a Swift auth (v1) endpoint");
    assert!(err.contains("ST_AUTH"), "{err}");
    // OS_AUTH_URL pointing at Swift's auth.
    let swift_as_keystone = Run::with_env(&[
        ("OS_AUTH_URL", &good.auth),
        ("OS_USERNAME", "u"),
        ("OS_PASSWORD", "p"),
        ("OS_PROJECT_NAME", "p"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
    ]);
    fails(&swift_as_keystone, &["upload", i, "-c", "x"], 2, "is not a Keystone v3 endpoint");
    // https:// to a plain-http port (once `InvalidContentType`).
    let https = Run::new(Creds { auth: good.auth.replace("http://", "https://"), ..good.clone() });
    let t0 = std::time::Instant::now();
    let err = fails(&https, &["upload", i, "-c", "x"], 2, "does not speak TLS");
    assert!(err.contains("http://"), "the way out: {err}");
    assert!(t0.elapsed().as_secs() < 10, "not retried");
    // --cacert with no certificate in it (once accepted silently).
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let run = Run::new(good.clone());
    fails(&run, &["upload", i, "-c", "x", "--cacert", empty.to_str().unwrap()], 2, "holds no certificate");
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
    // -vv is k5up's own trace: every request with its status and X-Trans-Id (it once
    // added nothing over -v), and no other crate's internals.
    let trace = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(trace.contains("TRACE") && trace.contains("← PUT ") && trace.contains("HTTP 201"), "{trace}");
    assert!(trace.contains("X-Trans-Id: tx"), "{trace}");
    assert!(!trace.contains("hyper") && !trace.contains("reqwest::"), "no HTTP-library internals: {trace}");
    let v = run.run(&["-v", "status", "--json"]);
    assert!(!String::from_utf8_lossy(&v.stderr).contains("TRACE"));
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

#[test]
fn tls_with_a_private_ca() {
    let tb = Testbed::get();
    let creds = Creds { auth: tb.var("TLS_ST_AUTH"), user: tb.var("TLS_ST_USER"), key: tb.var("TLS_ST_KEY") };
    let ca = tb.var("TLS_CACERT");
    let run = Run::new(creds.clone());
    let img = run.path("a.img");
    let md5 = write_random(&img, 3 << 20, 21);
    let i = img.to_str().unwrap();
    let c = common::unique("tls");
    // untrusted: refused at once, with the way out in the hint
    let t0 = std::time::Instant::now();
    let err = fails(&run, &["upload", i, "-c", &c], 2, "certificate");
    assert!(err.contains("--cacert"), "{err}");
    assert!(t0.elapsed().as_secs() < 5, "a certificate error is not retried");
    // --cacert and OS_CACERT
    run.ok(&["upload", i, "-c", &c, "--cacert", &ca, "--no-progress"]);
    let out = run.cmd(&["verify", &run.only_job(), "--deep"]).env("OS_CACERT", &ca).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // --insecure works and says loudly what it costs
    let out = run.run(&["upload", i, "-c", &c, "-o", "insecure.img", "--insecure", "--no-progress"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("TLS certificate verification is OFF"), "{err}");
    let obs_out = std::process::Command::new("curl")
        .args(["-s", "--cacert", &ca, "-H", &format!("X-Auth-User: {}", creds.user), "-H"])
        .arg(format!("X-Auth-Key: {}", creds.key))
        .args(["-D", "-", "-o", "/dev/null", &creds.auth])
        .output()
        .unwrap();
    let hdrs = String::from_utf8_lossy(&obs_out.stdout);
    let token = hdrs.lines().find_map(|l| l.strip_prefix("X-Auth-Token: ")).unwrap().trim().to_string();
    let storage = hdrs.lines().find_map(|l| l.strip_prefix("X-Storage-Url: ")).unwrap().trim().to_string();
    let body = std::process::Command::new("curl")
        .args(["-s", "-f", "--cacert", &ca, "-H", &format!("X-Auth-Token: {token}")])
        .arg(format!("{storage}/{c}/insecure.img"))
        .output()
        .unwrap();
    use md5::Digest;
    assert_eq!(hex::encode(md5::Md5::digest(&body.stdout)), md5);
}

/// Each subcommand's help lists only what it takes, grouped: `status --help` once
/// listed --k5-region and --cacert, `import --help` mixed global and upload flags.
#[test]
fn help_lists_only_what_each_subcommand_takes() {
    let run = Run::with_env(&[]);
    for sub in ["status", "jobs"] {
        let h = run.ok(&[sub, "--help"]);
        for flag in ["--k5-region", "--cacert", "--insecure", "--concurrency", "--import"] {
            assert!(!h.contains(flag), "`{sub} --help` lists {flag}:\n{h}");
        }
    }
    let h = run.ok(&["import", "--help"]);
    assert!(h.contains("Import:") && h.contains("Tuning:") && h.contains("Connection:"), "{h}");
    assert!(!h.contains("--segment-size") && !h.contains("--manifest") && !h.contains("--dry-run"), "{h}");
    let h = run.ok(&["upload", "--help"]);
    assert!(h.contains("--segment-size") && h.contains("Connection:") && h.contains("--k5-region"), "{h}");
}

/// Every signal ends every wait: a login that never answers (the proxy swallows it)
/// ends at SIGTERM with the resumable code, before anything was changed.
#[test]
fn sigterm_ends_a_login_that_never_answers() {
    use common::throttle::{Fault, Throttle};
    let tb = Testbed::get();
    let good = tb.small();
    let proxy = Throttle::with_faults(
        good.port(),
        1 << 40,
        vec![Fault::Stall { method: "GET /auth".into(), after: 0, count: 10 }],
    );
    let run = Run::new(good.via(proxy.port));
    let img = run.path("a.img");
    write_random(&img, 1000, 1);
    let mut child = run.spawn(&["upload", img.to_str().unwrap(), "-c", "x", "--no-progress"]);
    common::wait_for(std::time::Duration::from_secs(10), || {
        (proxy.stats.stalls.load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "still waiting for the login");
    let t0 = std::time::Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed().as_secs() < 10, "SIGTERM did not end the wait");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(75), "{}", run.stderr());
    assert!(run.stderr().contains("interrupted before the upload started"), "{}", run.stderr());
    assert!(run.jobs().is_empty());
}
