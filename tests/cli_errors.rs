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
    let err = fails(&down, &["upload", i, "-c", "x"], 2, "cannot reach the auth server");
    assert!(err.contains("connection refused") && err.contains("ST_AUTH"), "{err}");
    assert!(t0.elapsed().as_secs() < 10, "a refused first contact is not retried");
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
    for e in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
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
        // The login reaches Swift, its answer is held back (a stall of a GET with no
        // body let the answer through, so /info stalled instead, or, on a new
        // connection, not at all).
        vec![Fault::HoldResponse { method: "GET /auth".into(), count: 10 }],
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

/// A port of 127.0.0.1 where nothing listens (bound, then closed again).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server that reads what comes, then closes the connection: the way a plain-HTTP
/// server hangs up on a TLS hello. It lives as long as the test process.
fn hangs_up() -> u16 {
    use std::io::Read;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let _ = s.read(&mut [0u8; 4096]);
        }
    });
    port
}

/// A plain TCP relay to 127.0.0.1:`upstream` that can be closed: its port then
/// refuses connections (the server is down, the URL unchanged).
struct Relay {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let halt = stop.clone();
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((c, _)) = l.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                let Ok(u) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                for (mut from, mut to) in [(c.try_clone().unwrap(), u.try_clone().unwrap()), (u, c)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Relay { port, stop, thread: Some(thread) }
    }

    /// Stops listening: the port refuses from now on.
    fn close(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// The first contact of a new job with an object store that cannot be reached: a
/// host that does not resolve, a closed port, a refused TLS handshake. Exit 2 at
/// once, naming the URL and what to check, instead of retrying `/info` for
/// `--retry-for` (2 h). Nothing is created.
#[test]
fn a_new_job_whose_object_store_cannot_be_reached_is_refused_at_once() {
    let tb = Testbed::get();
    let token = common::Observer::login(&tb.stock()).token;
    let (_dir, img) = small_image();
    let i = img.to_str().unwrap();
    let closed = closed_port();
    let hangup = hangs_up();
    // `.invalid` never resolves (RFC 6761): k5up refuses it without asking the name
    // server, so nothing leaves the machine.
    let cases = [
        (
            "http://nonexistent.invalid:8080/v1/AUTH_test".to_string(),
            "nonexistent.invalid does not resolve",
            "host name in OS_STORAGE_URL",
        ),
        (format!("http://127.0.0.1:{closed}/v1/AUTH_test"), "connection refused", "host and port in OS_STORAGE_URL"),
        // https:// to a plain-http port: Swift answers in plain text, this one hangs up.
        (
            "https://127.0.0.1:8080/v1/AUTH_test".to_string(),
            "does not speak TLS on this port",
            "OS_STORAGE_URL: https://",
        ),
        (
            format!("https://127.0.0.1:{hangup}/v1/AUTH_test"),
            "the server closed the connection",
            "OS_STORAGE_URL: https://",
        ),
    ];
    for (url, what, check) in cases {
        let run = Run::with_env(&[("OS_STORAGE_URL", &url), ("OS_AUTH_TOKEN", &token)]);
        let t0 = std::time::Instant::now();
        // A short budget: were it retried as an outage, it would end in 20 s, not 2 h.
        let err = fails(&run, &["upload", i, "-c", "x", "--no-progress", "--retry-for", "20s"], 2, what);
        assert!(t0.elapsed().as_secs() < 10, "{url}: not retried ({:?})", t0.elapsed());
        let info = url.replace("/v1/AUTH_test", "/info");
        assert!(err.contains(&info), "{url}: names the URL: {err}");
        assert!(err.contains(check) && err.contains("nothing was created"), "{url}: what to check: {err}");
        assert!(!err.contains(&token), "{url}: the token leaked: {err}");
        assert!(run.jobs().is_empty(), "{url}: no job");
    }
    // After a real Keystone login: OS_STORAGE_URL names a closed port.
    let mut env = tb.keystone_password_env();
    env.push(("OS_STORAGE_URL".into(), format!("http://127.0.0.1:{closed}/v1/AUTH_x")));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = Run::with_env(&env);
    let err = fails(
        &run,
        &["upload", i, "-c", "x", "--no-progress", "--retry-for", "20s"],
        2,
        "cannot reach the object store",
    );
    assert!(err.contains("connection refused") && err.contains("OS_STORAGE_URL"), "{err}");
    assert!(!err.contains(&tb.var("KS_OS_PASSWORD")), "the password leaked: {err}");
}

/// `https://` in OS_AUTH_URL for a Keystone that speaks plain HTTP: says that TLS
/// failed, with which host, and what to change (once a generic "cannot reach the
/// server" after 10 s of silent retries).
#[test]
fn https_to_a_plain_http_keystone_says_tls_failed_and_where() {
    let tb = Testbed::get();
    let (_dir, img) = small_image();
    let mut env = tb.keystone_password_env();
    let ks = tb.var("KS_OS_AUTH_URL");
    let hostport = ks.split("://").nth(1).unwrap().split('/').next().unwrap().to_string();
    for (k, v) in env.iter_mut() {
        if k == "OS_AUTH_URL" {
            *v = ks.replace("http://", "https://");
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = Run::with_env(&env);
    let t0 = std::time::Instant::now();
    let err = fails(&run, &["upload", img.to_str().unwrap(), "-c", "x", "--no-progress"], 2, "TLS handshake with");
    assert!(err.contains(&hostport), "names the host: {err}");
    assert!(err.contains("OS_AUTH_URL") && err.contains("http://"), "the way out: {err}");
    assert!(t0.elapsed().as_secs() < 30, "not retried: {:?}", t0.elapsed());
    assert!(run.jobs().is_empty());
}

/// A reset at the first contact may be an outage: it is retried, and each retry is
/// said on stderr (what failed, when the next try comes, how long k5up keeps
/// trying); when `--retry-for` runs out, exit 75 with nothing created.
#[test]
fn a_reset_at_first_contact_is_retried_and_said() {
    use common::throttle::{Fault, Throttle};
    let tb = Testbed::get();
    let good = tb.stock();
    let (_dir, img) = small_image();
    let i = img.to_str().unwrap();
    let c = common::unique("firstreset");
    let proxy = Throttle::with_faults(
        good.port(),
        1 << 40,
        vec![Fault::Reset { method: "GET /info".into(), after: 0, count: 2 }],
    );
    let run = Run::new(good.via(proxy.port));
    let out = run.run(&["upload", i, "-c", &c, "--no-progress"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(proxy.stats.resets.load(std::sync::atomic::Ordering::Relaxed), 2);
    let info = format!("GET http://127.0.0.1:{}/info", proxy.port);
    for want in [format!("{info}: attempt 1 failed"), format!("{info}: attempt 2 failed")] {
        assert!(err.contains(&want), "{want} in: {err}");
    }
    assert!(err.contains("next try in") && err.contains("more without progress (--retry-for 2h)"), "{err}");
    // Reset for ever: given up after --retry-for, exit 75, no job.
    let proxy = Throttle::with_faults(
        good.port(),
        1 << 40,
        vec![Fault::Reset { method: "GET /info".into(), after: 0, count: 1000 }],
    );
    let run = Run::new(good.via(proxy.port));
    let t0 = std::time::Instant::now();
    let out = run.run(&["upload", i, "-c", &c, "--no-progress", "--retry-for", "3s"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(75), "{err}");
    let last: Vec<&str> = err.lines().rev().take(2).collect();
    assert!(last[1].starts_with("k5up: error: cannot reach the object store"), "{err}");
    assert!(last[0].contains("nothing was created yet: run the same command again"), "{err}");
    assert!((3..20).contains(&t0.elapsed().as_secs()), "retried for --retry-for: {:?}", t0.elapsed());
    assert!(proxy.stats.resets.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    assert!(run.jobs().is_empty());
}

/// A first contact that times out is retried too, and said (the connect timeout is
/// 20 s): a port whose listener never accepts, its backlog full.
#[test]
fn a_timeout_at_first_contact_is_retried_and_said() {
    let tb = Testbed::get();
    let token = common::Observer::login(&tb.stock()).token;
    let (_dir, img) = small_image();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listener = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        s.listen(0).unwrap()
    });
    let addr = listener.local_addr().unwrap();
    // Fill the queue: the kernel drops the SYNs that come after.
    let _queued: Vec<_> = (0..2)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500)).ok())
        .collect();
    let url = format!("http://{addr}/v1/AUTH_test");
    let run = Run::with_env(&[("OS_STORAGE_URL", &url), ("OS_AUTH_TOKEN", &token)]);
    let mut child = run.spawn(&["upload", img.to_str().unwrap(), "-c", "x", "--no-progress"]);
    let line = common::wait_for(std::time::Duration::from_secs(60), || {
        let err = run.stderr();
        assert!(child.try_wait().unwrap().is_none(), "k5up ended: {err}");
        err.lines().find(|l| l.contains("attempt 1 failed")).map(str::to_string)
    });
    assert!(line.contains(&format!("GET http://{addr}/info")) && line.contains("timed out"), "{line}");
    assert!(line.contains("next try in") && line.contains("(--retry-for 2h)"), "{line}");
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(75), "{}", run.stderr());
    assert!(run.jobs().is_empty());
    drop(listener);
}

/// For a job that exists, a refused connection may be an outage: `resume`, and the
/// same `upload` command, keep trying for `--retry-for` (exit 75), while a new job
/// with the same credentials is refused at once (exit 2).
#[test]
fn a_job_that_exists_keeps_trying_a_server_that_refuses() {
    let tb = Testbed::get();
    let good = tb.stock();
    let mut relay = Relay::start(good.port());
    let run = Run::new(good.via(relay.port));
    let (_dir, img) = small_image();
    let i = img.to_str().unwrap();
    let c = common::unique("outage");
    run.ok(&["upload", i, "-c", &c, "--no-progress"]);
    let job = run.only_job();
    relay.close();
    for args in [vec!["resume", &job, "--retry-for", "3s"], vec!["upload", i, "-c", &c, "--retry-for", "3s"]] {
        let mut a = args.clone();
        a.push("--no-progress");
        let t0 = std::time::Instant::now();
        let out = run.run(&a);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(75), "{a:?}: {err}");
        assert!(t0.elapsed().as_secs() >= 3, "{a:?}: kept trying: {:?}", t0.elapsed());
        assert!(err.contains("connection refused") && err.contains("attempt 2 failed"), "{a:?}: {err}");
    }
    let err =
        fails(&run, &["upload", i, "-c", &c, "-o", "new.img", "--no-progress"], 2, "cannot reach the auth server");
    assert!(err.contains("connection refused") && err.contains("ST_AUTH"), "{err}");
}

/// `OS_STORAGE_URL` naming a server that is no Swift (`/info` and the account both
/// 404: the testbed's Keystone): exit 2 before anything is created, naming the URL
/// (once "create container … HTTP 404", exit 1). A Swift whose `/info` answers 404
/// while its account answers still uploads, with Swift's default limits.
#[test]
fn a_storage_url_that_is_not_swift_is_refused_at_once() {
    use common::throttle::{Fault, Throttle};
    let tb = Testbed::get();
    let good = tb.stock();
    let token = common::Observer::login(&good).token;
    let (_dir, img) = small_image();
    let i = img.to_str().unwrap();
    let ks = tb.var("KS_OS_AUTH_URL");
    let origin = ks.split("/v3").next().unwrap();
    let url = format!("{origin}/v1/AUTH_test");
    let run = Run::with_env(&[("OS_STORAGE_URL", &url), ("OS_AUTH_TOKEN", &token)]);
    let err = fails(&run, &["upload", i, "-c", "x", "--no-progress"], 2, "this is not a Swift storage URL");
    assert!(err.contains(&format!("{origin}/info")) && err.contains(&url), "names the URLs: {err}");
    assert!(err.contains("check OS_STORAGE_URL") && err.contains("nothing was created"), "{err}");
    assert!(run.jobs().is_empty());
    // A real Swift, its /info answering 404.
    let proxy = Throttle::with_faults(
        good.port(),
        1 << 40,
        vec![Fault::Reply { method: "GET /info".into(), status: 404, retry_after: None, count: 10 }],
    );
    let run = Run::new(good.via(proxy.port));
    let c = common::unique("noinfo");
    run.ok(&["upload", i, "-c", &c, "--no-progress"]);
    assert_eq!(proxy.stats.replies.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(common::Observer::login(&good).get_md5(&c, "a.img").is_some());
}

/// `OS_CLOUD` without the clouds.yaml it needs: a missing file is said to be missing,
/// with the paths searched (once "no such cloud in clouds.yaml", as if the file were
/// there). Exit 2. A cloud found through `$XDG_CONFIG_HOME/openstack` logs in.
#[test]
fn a_missing_clouds_yaml_is_said_to_be_missing() {
    let tb = Testbed::get();
    let (dir, img) = small_image();
    let i = img.to_str().unwrap();
    let cwd = dir.path();
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap();
    let cloud = "k5up-testbed";
    let clouds = tb.var("KS_CLOUDS_YAML");
    let k5up = |vars: &[(&str, &str)], args: &[&str]| {
        let run = Run::with_env(vars);
        let out = run.cmd(args).env("HOME", h).current_dir(cwd).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string(), run)
    };
    let up = ["upload", i, "-c", "x", "--no-progress"];
    // OS_CLIENT_CONFIG_FILE naming a file that is not there.
    let missing = format!("{h}/nowhere/clouds.yaml");
    let (code, err, _) = k5up(&[("OS_CLOUD", cloud), ("OS_CLIENT_CONFIG_FILE", &missing)], &up);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("OS_CLIENT_CONFIG_FILE={missing}: no such file")), "{err}");
    assert!(!err.contains("no such cloud"), "{err}");
    // No clouds.yaml in any place searched (the machine's /etc/openstack may hold one).
    if !std::path::Path::new("/etc/openstack/clouds.yaml").exists() {
        let (code, err, _) = k5up(&[("OS_CLOUD", cloud)], &up);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(&format!("OS_CLOUD={cloud}: no clouds.yaml found")), "{err}");
        for p in [cwd.join("clouds.yaml"), home.path().join(".config/openstack/clouds.yaml")] {
            assert!(err.contains(p.to_str().unwrap()), "names {}: {err}", p.display());
        }
        assert!(err.contains("/etc/openstack/clouds.yaml") && err.contains("OS_CLIENT_CONFIG_FILE"), "{err}");
    }
    // The file is there, the cloud is not: the clouds it has are named (never a secret).
    let (code, err, _) = k5up(&[("OS_CLOUD", "nope"), ("OS_CLIENT_CONFIG_FILE", &clouds)], &up);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("OS_CLOUD=nope: no such cloud") && err.contains(cloud), "{err}");
    assert!(
        !err.contains(&tb.var("KS_OS_PASSWORD")) && !err.contains(&tb.var("KS_OS_APPLICATION_CREDENTIAL_SECRET")),
        "{err}"
    );
    // Found in $XDG_CONFIG_HOME/openstack: a real Keystone login (a dry run creates nothing).
    let xdg = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(xdg.path().join("openstack")).unwrap();
    std::fs::copy(&clouds, xdg.path().join("openstack/clouds.yaml")).unwrap();
    let x = xdg.path().to_str().unwrap();
    let (code, err, _) = k5up(&[("OS_CLOUD", cloud), ("XDG_CONFIG_HOME", x)], &["upload", i, "-c", "x", "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
}

/// The journal's default place follows the XDG rules: an empty HOME (or a relative
/// XDG_STATE_HOME) once put it under the working directory (`./.local/state/k5up`).
/// Without a usable HOME or XDG_STATE_HOME, k5up refuses (exit 2) and names the way
/// out; with XDG_STATE_HOME it uploads and journals there.
#[test]
fn an_empty_home_never_puts_the_journal_in_the_working_directory() {
    let tb = Testbed::get();
    let run = Run::new(tb.stock());
    let (dir, img) = small_image();
    let i = img.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let c = common::unique("nohome");
    let k5up = |extra: &[(&str, &str)], args: &[&str]| {
        let mut cmd = run.cmd(args);
        cmd.env_remove("K5UP_JOURNAL").env("HOME", "").current_dir(cwd.path());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let empty = |why: &str| {
        let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{why}: the working directory got {left:?}");
    };
    let up = ["upload", i, "-c", &c, "--no-progress"];
    for (extra, says) in [
        (vec![], "HOME is empty"),
        (vec![("XDG_STATE_HOME", "state")], "XDG_STATE_HOME (state) is not an absolute path"),
    ] {
        let (code, err) = k5up(&extra, &up);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(err.contains("cannot place the journal") && err.contains(says), "{extra:?}: {err}");
        assert!(err.contains("--journal DIR") && err.contains("set HOME"), "{extra:?}: the way out: {err}");
        empty(&format!("{extra:?}"));
    }
    let (code, err) = k5up(&[], &["jobs"]);
    assert_eq!(code, Some(2), "{err}");
    // XDG_STATE_HOME, absolute: the journal goes there.
    let state = dir.path().join("state");
    let (code, err) = k5up(&[("XDG_STATE_HOME", state.to_str().unwrap())], &up);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::read_dir(state.join("k5up/jobs")).unwrap().count(), 1, "one job journaled there");
    empty("XDG_STATE_HOME");
    assert!(common::Observer::login(&tb.stock()).get_md5(&c, "a.img").is_some());
}
