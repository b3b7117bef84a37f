//! Test support: the testbed's endpoints, the k5up binary, an independent observer
//! of what Swift holds (curl, not k5up's own client), and a throttling proxy.
#![allow(dead_code)]

pub mod mounts;
pub mod swift_proxy;
pub mod throttle;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde_json::Value;

/// Credentials of one testbed proxy.
#[derive(Debug, Clone)]
pub struct Creds {
    pub auth: String,
    pub user: String,
    pub key: String,
}

impl Creds {
    /// The same credentials through a proxy on `port` in front of this one.
    pub fn via(&self, port: u16) -> Creds {
        let url = reqwest_free_port_swap(&self.auth, port);
        Creds { auth: url, ..self.clone() }
    }
    pub fn port(&self) -> u16 {
        port_of(&self.auth)
    }
}

/// A size as k5up prints it (`16.00 MiB`), for sizes of at least 1 MiB.
pub fn format_mib(n: u64) -> String {
    format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64)
}

/// The port of a URL (`http://127.0.0.1:8083/v1/...` → 8083).
pub fn port_of(url: &str) -> u16 {
    let rest = url.split("://").nth(1).unwrap();
    rest.split('/').next().unwrap().rsplit(':').next().unwrap().parse().unwrap()
}

/// The same URL on 127.0.0.1:`port` (a proxy in front of it).
pub fn via_port(url: &str, port: u16) -> String {
    reqwest_free_port_swap(url, port)
}

fn reqwest_free_port_swap(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_host, path) = rest.split_once('/').unwrap();
    format!("{scheme}://127.0.0.1:{port}/{path}")
}

/// The running testbed, from `testbed/run/env` (written by `testbed/up`).
pub struct Testbed {
    env: HashMap<String, String>,
}

/// The testbed's run directory: `K5UP_TESTBED_RUN` (as `testbed/up` reads it: a
/// worktree can use the testbed another tree started), else `testbed/run` here.
pub fn testbed_run() -> PathBuf {
    match std::env::var_os("K5UP_TESTBED_RUN") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("testbed/run"),
    }
}

impl Testbed {
    pub fn get() -> Testbed {
        let path = testbed_run().join("env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!("{} is missing: start the testbed with `testbed/up` (or run `scripts/test`)", path.display())
        });
        let env = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Testbed { env }
    }
    fn creds(&self, prefix: &str) -> Creds {
        let g = |k: &str| self.env.get(&format!("{prefix}ST_{k}")).cloned().expect("testbed env");
        Creds { auth: g("AUTH"), user: g("USER"), key: g("KEY") }
    }
    /// Stock proxy: Swift's default limits.
    pub fn stock(&self) -> Creds {
        self.creds("STOCK_")
    }
    /// Small max_file_size and max_manifest_segments.
    /// The one-node Ceph RGW (its Swift API), from `testbed/rgw`.
    pub fn rgw(&self) -> Creds {
        assert!(
            self.env.contains_key("RGW_ST_AUTH"),
            "the testbed has no Ceph RGW (no RGW_ST_AUTH in testbed/run/env): start it with `testbed/up`"
        );
        self.creds("RGW_")
    }
    pub fn small(&self) -> Creds {
        self.creds("SMALL_")
    }
    /// Small limits and tokens of a few seconds.
    pub fn short(&self) -> Creds {
        self.creds("SHORT_")
    }
    /// A variable of testbed/run/env, when set.
    pub fn env_var(&self, k: &str) -> Option<String> {
        self.env.get(k).cloned()
    }
    pub fn var(&self, k: &str) -> String {
        self.env.get(k).cloned().unwrap_or_else(|| panic!("{k} missing from testbed/run/env: re-run testbed/up"))
    }
    /// Keystone password credentials of the demo user (an OpenStack RC file).
    pub fn keystone_password_env(&self) -> Vec<(String, String)> {
        ["AUTH_URL", "USERNAME", "PASSWORD", "PROJECT_NAME", "USER_DOMAIN_NAME", "PROJECT_DOMAIN_NAME", "REGION_NAME"]
            .iter()
            .map(|k| (format!("OS_{k}"), self.var(&format!("KS_OS_{k}"))))
            .collect()
    }
}

/// A unique container name for one test.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), n % 0xffff_ffff)
}

/// Writes `size` pseudo-random bytes (seeded) to `path`; returns their MD5 hex.
pub fn write_random(path: &Path, size: u64, seed: u64) -> String {
    let mut f = std::fs::File::create(path).unwrap();
    let mut h = Md5::new();
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut left = size;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = buf.len().min(left as usize);
        for chunk in buf[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        f.write_all(&buf[..n]).unwrap();
        h.update(&buf[..n]);
        left -= n as u64;
    }
    hex::encode(h.finalize())
}

/// The last part of a segment's name: `<offset:016>+<length>`.
pub fn piece(off: u64, len: u64) -> String {
    format!("{off:016}+{len}")
}

/// Offset and length of a segment from its name (`.../bytes/<offset:016>+<length>`).
pub fn piece_of(name: &str) -> Option<(u64, u64)> {
    let (off, len) = name.rsplit('/').next()?.split_once('+')?;
    Some((off.parse().ok()?, len.parse().ok()?))
}

/// MD5 of `len` bytes at `off` of the file (reads only that range: callers poll it).
pub fn md5_of_range(path: &Path, off: u64, len: u64) -> String {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    std::fs::File::open(path).unwrap().read_exact_at(&mut buf, off).unwrap();
    hex::encode(Md5::digest(&buf))
}

/// A journal directory and environment for running k5up.
pub struct Run {
    pub dir: tempfile::TempDir,
    /// The credential variables this run passes to k5up.
    pub env: Vec<(String, String)>,
}

impl Run {
    /// A run with Swift v1 (tempauth) credentials.
    pub fn new(creds: Creds) -> Run {
        Run::with_env(&[("ST_AUTH", &creds.auth), ("ST_USER", &creds.user), ("ST_KEY", &creds.key)])
    }
    /// A run with these credential variables (OS_*, ST_*).
    pub fn with_env(vars: &[(&str, &str)]) -> Run {
        let env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Run { dir: tempfile::tempdir().unwrap(), env }
    }
    pub fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// The k5up command with a clean environment: only this run's credentials and journal.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_k5up"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("K5UP_JOURNAL", self.journal())
            .env("K5UP_BACKOFF_INITIAL_MS", "100")
            .stdin(Stdio::null());
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "k5up panicked: {err}");
        out
    }
    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "k5up {args:?} failed ({:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
    /// Starts k5up in the background; its output goes to files (see [`Run::stderr`]).
    pub fn spawn(&self, args: &[&str]) -> Child {
        let out = std::fs::File::create(self.path("spawn.stdout")).unwrap();
        let err = std::fs::File::create(self.path("spawn.stderr")).unwrap();
        self.cmd(args).stdout(out).stderr(err).spawn().unwrap()
    }
    /// Starts `args` in the background and SIGKILLs it once `container` holds at least
    /// `n` objects (as the observer sees them).
    /// The test fails if the job ended on its own before the kill landed.
    pub fn kill_after(&self, args: &[&str], obs: &Observer, container: &str, n: usize) {
        let mut child = self.spawn(args);
        self.wait_segments(&mut child, obs, container, n);
        self.kill(&mut child);
    }

    /// SIGKILLs `child` (spawned by [`Run::spawn`]) and reaps it. Fails the test unless
    /// the kill is what ended it: a child that had already exited (a kill that "landed"
    /// after the job finished or failed would prove nothing about resuming).
    pub fn kill(&self, child: &mut Child) {
        use std::os::unix::process::ExitStatusExt;
        if let Some(status) = child.try_wait().unwrap() {
            panic!("k5up had already ended ({status}) when the kill was due:\n{}", self.stderr());
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "k5up ended on its own ({status}) before the SIGKILL landed:\n{}",
            self.stderr()
        );
    }

    /// Waits until `container` holds at least `n` objects while `child` runs; fails at
    /// once, with its stderr, if the child exits first.
    pub fn wait_segments(&self, child: &mut Child, obs: &Observer, container: &str, n: usize) {
        wait_for(Duration::from_secs(60), || {
            if obs.count_segments(container) >= n {
                return Some(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("k5up exited ({status}) before {n} segments were up:\n{}", self.stderr());
            }
            None
        });
    }
    /// What the last spawned k5up wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("spawn.stderr")).unwrap_or_default()
    }
    /// `status --json` of the only job (or of `job`).
    pub fn status(&self, job: &str) -> Value {
        serde_json::from_str(&self.ok(&["status", job, "--json"])).unwrap()
    }
    pub fn jobs(&self) -> Vec<Value> {
        serde_json::from_str::<Vec<Value>>(&self.ok(&["jobs", "--json"])).unwrap()
    }
    pub fn only_job(&self) -> String {
        let j = self.jobs();
        assert_eq!(j.len(), 1, "{j:?}");
        j[0]["job"].as_str().unwrap().to_string()
    }
    /// The job id `upload --dry-run` reports.
    pub fn job_id(&self, upload_args: &[&str]) -> String {
        let mut a = upload_args.to_vec();
        a.push("--dry-run");
        let out = self.ok(&a);
        out.lines().find_map(|l| l.strip_prefix("job")).unwrap().split_whitespace().next().unwrap().to_string()
    }
}

/// A job behind a throttled proxy: the common start of the kill and resume tests.
pub struct Slow {
    pub proxy: throttle::Throttle,
    pub creds: Creds,
    pub run: Run,
    pub src: PathBuf,
    src_str: String,
    pub md5: String,
    pub size: u64,
    /// The target container (unique to the test).
    pub c: String,
    /// Its segment container.
    pub segs: String,
    pub obs: Observer,
}

impl Slow {
    /// A random file of `size` bytes (seeded), a container named after `prefix`, and a
    /// proxy in front of `upstream` capped at `rate` bytes/s.
    pub fn new(upstream: &Creds, rate: u64, size: u64, seed: u64, prefix: &str) -> Slow {
        let proxy = throttle::Throttle::start(upstream.port(), rate);
        let creds = upstream.via(proxy.port);
        let run = Run::new(creds.clone());
        let src = run.path("disk.img");
        let md5 = write_random(&src, size, seed);
        let c = unique(prefix);
        let obs = Observer::login(&creds);
        Slow {
            src_str: src.to_str().unwrap().to_string(),
            segs: format!("{c}_segments"),
            proxy,
            creds,
            run,
            src,
            md5,
            size,
            c,
            obs,
        }
    }

    /// `upload FILE -c C --segment-size 1MiB --no-progress` plus `extra`.
    pub fn upload_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["upload", &self.src_str, "-c", &self.c, "--segment-size", "1MiB", "--no-progress"];
        a.extend_from_slice(extra);
        a
    }

    /// The object read back: (MD5, length).
    pub fn object(&self) -> Option<(String, u64)> {
        self.obs.get_md5(&self.c, "disk.img")
    }
}

/// The URL path of an object below the storage URL, as Swift decodes it: the
/// container, `%2F`, the object with every `/` encoded (no dot segment anywhere;
/// curl runs with `--path-as-is` as well).
pub fn obj_path(container: &str, object: &str) -> String {
    format!("{}%2F{}", enc_with(container, b"-._~"), enc_with(object, b"-._~"))
}

fn enc(s: &str) -> String {
    enc_with(s, b"-._~/")
}

fn enc_with(s: &str, keep: &[u8]) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// An observer of what Swift holds, through curl (independent of k5up's client).
pub struct Observer {
    pub storage_url: String,
    pub token: String,
}

impl Observer {
    pub fn login(c: &Creds) -> Observer {
        let out = Command::new("curl")
            .args(["-s", "-f", "-D", "-", "-o", "/dev/null", "-H"])
            .arg(format!("X-Auth-User: {}", c.user))
            .arg("-H")
            .arg(format!("X-Auth-Key: {}", c.key))
            .arg(&c.auth)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let h = |name: &str| {
            text.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        Observer { storage_url: h("x-storage-url"), token: h("x-auth-token") }
    }

    fn curl(&self, args: &[&str], path: &str) -> Output {
        Command::new("curl")
            .args(["-s", "-S", "-g", "--path-as-is", "-H", &format!("X-Auth-Token: {}", self.token)])
            .args(args)
            .arg(format!("{}/{}", self.storage_url, path))
            .output()
            .unwrap()
    }

    /// MD5 and length of the object's content as a GET reads it: Some when Swift
    /// answers 200 with the whole body, None when it answers 404 — and only then. Any
    /// other outcome (a 5xx, the 409 of an SLO whose segments changed, a body cut short,
    /// a server that is down) fails the test: "no object" is never inferred from a
    /// request that did not get an answer. ([`Observer::get_answer`] returns the
    /// third state, for a test that expects it.)
    pub fn get_md5(&self, container: &str, object: &str) -> Option<(String, u64)> {
        self.get_answer(container, object).found()
    }

    /// The three-state answer of a GET of the object: its MD5 and length (200 with the
    /// whole body), absent (404, and only 404), or an error (anything else, no answer).
    pub fn get_answer(&self, container: &str, object: &str) -> Answer<(String, u64)> {
        let what = format!("GET {container}/{object}");
        let body = tempfile::NamedTempFile::new().unwrap();
        let out = self.curl(&["-o", body.path().to_str().unwrap(), "-w", "%{http_code}"], &obj_path(container, object));
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        match (out.status.success(), code.as_str()) {
            (true, "200") => {
                let (mut h, mut f, mut buf, mut len) = (Md5::new(), body.reopen().unwrap(), vec![0u8; 1 << 20], 0);
                loop {
                    let n = std::io::Read::read(&mut f, &mut buf).unwrap();
                    if n == 0 {
                        break Answer::Present((hex::encode(h.finalize()), len));
                    }
                    h.update(&buf[..n]);
                    len += n as u64;
                }
            }
            (true, "404") => Answer::Absent,
            _ => Answer::error(what, &code, &out),
        }
    }

    /// An observer of the Keystone-authenticated Swift, as the demo user.
    pub fn keystone(tb: &Testbed) -> Observer {
        Observer { storage_url: tb.var("KS_SWIFT_URL"), token: keystone_token(tb, "KS") }
    }

    /// The segments an SLO reads, in order, through nested sub-manifests: (container/name, bytes).
    /// Panics unless every manifest reads as one.
    pub fn slo_leaves(&self, container: &str, object: &str) -> Vec<(String, u64)> {
        let out = self.curl(&["-f"], &format!("{}?multipart-manifest=get", obj_path(container, object)));
        assert!(out.status.success(), "GET manifest {container}/{object}: {out:?}");
        let entries: Vec<Value> = serde_json::from_slice(&out.stdout).expect("an SLO manifest");
        let mut leaves = vec![];
        for e in entries {
            let path = e["name"].as_str().unwrap().trim_start_matches('/').to_string();
            if e["sub_slo"].as_bool() == Some(true) {
                let (c, o) = path.split_once('/').unwrap();
                leaves.extend(self.slo_leaves(c, o));
            } else {
                leaves.push((path, e["bytes"].as_u64().unwrap()));
            }
        }
        leaves
    }

    /// Every object an SLO's manifests name, sub-manifests included, as
    /// `container/name`. Panics unless every manifest reads as one.
    pub fn slo_names(&self, container: &str, object: &str) -> Vec<String> {
        let out = self.curl(&["-f"], &format!("{}?multipart-manifest=get", obj_path(container, object)));
        assert!(out.status.success(), "GET manifest {container}/{object}: {out:?}");
        let entries: Vec<Value> = serde_json::from_slice(&out.stdout).expect("an SLO manifest");
        let mut names = vec![];
        for e in entries {
            let path = e["name"].as_str().unwrap().trim_start_matches('/').to_string();
            if e["sub_slo"].as_bool() == Some(true) {
                let (c, o) = path.split_once('/').unwrap();
                names.extend(self.slo_names(c, o));
            }
            names.push(path);
        }
        names
    }

    /// The listing of `container` under `prefix`: name → entry. A container that does
    /// not exist (404) lists as empty; any other failure fails the test: a listing that
    /// could not be read is never taken for "nothing there".
    pub fn list(&self, container: &str, prefix: &str) -> HashMap<String, Value> {
        let mut all = HashMap::new();
        let mut marker = String::new();
        loop {
            let q = format!("{}?format=json&prefix={}&marker={}", enc(container), enc(prefix), enc(&marker));
            let out = self.curl(&["-w", "\n%{http_code}"], &q);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
            match code {
                "404" => return all,
                "204" => return all,
                "200" => {}
                _ => panic!(
                    "listing {container} (prefix {prefix:?}) failed: HTTP {code:?} {body:.300} ({:?})",
                    out.status
                ),
            }
            let v: Vec<Value> = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("listing {container}: unreadable JSON ({e}): {body:.300}"));
            if v.is_empty() {
                return all;
            }
            marker = v.last().unwrap()["name"].as_str().unwrap().to_string();
            for e in v {
                all.insert(e["name"].as_str().unwrap().to_string(), e);
            }
        }
    }

    /// Objects in `container` other than the store probe's (a new job's first upload
    /// puts tiny objects under `.k5up-probe/` there for a moment; they are not segments).
    pub fn count_segments(&self, container: &str) -> usize {
        self.list(container, "").keys().filter(|k| !k.starts_with(".k5up-probe/")).count()
    }

    /// Fails unless every object of `before` (an earlier [`Observer::list`] of
    /// `container`) is still there with its `last_modified`: none was sent again.
    pub fn assert_not_resent(&self, container: &str, before: &HashMap<String, Value>, what: &str) {
        let after = self.list(container, "");
        for (name, e) in before {
            let now = after.get(name).unwrap_or_else(|| panic!("{what}{name} is gone from {container}"));
            assert_eq!(now["last_modified"], e["last_modified"], "{what}{name} was sent again");
        }
    }

    /// The start of the request line of any request for an object of `container`
    /// (`PUT /v1/AUTH_x/<container>%2F`), for fault scripts: read from the storage URL.
    pub fn object_request(&self, method: &str, container: &str) -> String {
        let after_scheme = self.storage_url.split_once("://").map(|x| x.1).unwrap_or(&self.storage_url);
        let account = after_scheme.find('/').map(|i| &after_scheme[i..]).unwrap_or("");
        format!("{method} {account}/{}%2F", enc_with(container, b"-._~"))
    }

    /// PUTs `body` as `container/object` (creating the container); panics on failure.
    pub fn put(&self, container: &str, object: &str, body: &[u8]) {
        let out = self.curl(&["-f", "-X", "PUT", "-H", "Content-Length: 0"], &enc(container));
        assert!(out.status.success(), "PUT container {container}: {out:?}");
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), body).unwrap();
        let out = self.curl(
            &["-f", "-X", "PUT", "--data-binary", &format!("@{}", f.path().display())],
            &obj_path(container, object),
        );
        assert!(out.status.success(), "PUT {container}/{object}: {out:?}");
    }

    /// DELETEs `container/object` (with `query`, e.g. `multipart-manifest=delete`);
    /// panics unless the server answers 2xx.
    pub fn delete(&self, container: &str, object: &str, query: &str) {
        let q = if query.is_empty() { String::new() } else { format!("?{query}") };
        let out = self.curl(&["-f", "-X", "DELETE"], &format!("{}{q}", obj_path(container, object)));
        assert!(out.status.success(), "DELETE {container}/{object}{q}: {out:?}");
    }

    /// Response headers of a HEAD (lower-case names): Some on a 2xx, None on a 404 —
    /// and only then. Any other answer, or none (a server that is down), fails the
    /// test: an `is_none()` must mean that Swift said the object is not there.
    /// ([`Observer::head_answer`] returns the third state, for a test that expects it.)
    pub fn head(&self, container: &str, object: &str) -> Option<HashMap<String, String>> {
        self.head_answer(container, object).found()
    }

    /// The three-state answer of a HEAD of the object: its headers (2xx), absent (404,
    /// and only 404), or an error (any other status, no answer).
    pub fn head_answer(&self, container: &str, object: &str) -> Answer<HashMap<String, String>> {
        let what = format!("HEAD {container}/{object}");
        let out = self.curl(&["-I", "-w", "\n%{http_code}"], &obj_path(container, object));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (heads, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        match (out.status.success(), code) {
            (true, c) if c.len() == 3 && c.starts_with('2') => Answer::Present(
                heads
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect(),
            ),
            (true, "404") => Answer::Absent,
            _ => Answer::error(what, code, &out),
        }
    }
}

/// What Swift answered about an object, in three states that are never collapsed
/// into two: there, not there (HTTP 404 and nothing else), or no usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    /// The object, as the request read it.
    Present(T),
    /// HTTP 404.
    Absent,
    /// Any other outcome: another status, a body cut short, no answer at all.
    Error {
        /// The request (`GET c/o`).
        what: String,
        /// The HTTP status curl saw (`000`: none).
        status: String,
        /// curl's exit code (0: the transfer completed; 7: no connection; 18: a body
        /// cut short) and its error text.
        curl: String,
    },
}

impl<T> Answer<T> {
    fn error(what: String, status: &str, out: &Output) -> Answer<T> {
        let curl = format!("exit {:?} {}", out.status.code(), String::from_utf8_lossy(&out.stderr).trim());
        Answer::Error { what, status: status.to_string(), curl }
    }
    /// Some when present, None when absent (404); an error fails the test.
    pub fn found(self) -> Option<T> {
        match self {
            Answer::Present(v) => Some(v),
            Answer::Absent => None,
            Answer::Error { what, status, curl } => {
                panic!("{what}: neither the object nor a 404: HTTP {status:?}, curl {curl}")
            }
        }
    }
    /// The HTTP status of an error answer (`000`: none), None for present or absent.
    pub fn error_status(&self) -> Option<&str> {
        match self {
            Answer::Error { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// Polls `f` every 20 ms until it returns Some, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "condition not reached within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Keystone token of the testbed user `prefix` (`KS`: demo, `KS2`: demo2), scoped
/// to its project.
pub fn keystone_token(tb: &Testbed, prefix: &str) -> String {
    let v = |k: &str| tb.var(&format!("{prefix}_OS_{k}"));
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": v("USERNAME"), "domain": {"id": "default"}, "password": v("PASSWORD")}}},
        "scope": {"project": {"id": v("PROJECT_ID")}}}});
    let out = Command::new("curl")
        .args(["-s", "-f", "-D", "-", "-o", "/dev/null", "-H", "Content-Type: application/json", "-d"])
        .arg(body.to_string())
        .arg(format!("{}/auth/tokens", tb.var("KS_OS_AUTH_URL")))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("x-subject-token")))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("no token from Keystone for {prefix}: {text}"))
}

/// The import methods of Glance image `id`'s tasks, as Glance records them.
pub fn glance_import_methods(token: &str, glance: &str, id: &str) -> Vec<String> {
    let v = curl_json(token, "GET", &format!("{glance}/v2/images/{id}/tasks"));
    let tasks = v["tasks"].as_array().unwrap_or_else(|| panic!("not a task list: {v}"));
    tasks.iter().map(|t| t["input"]["import_req"]["method"]["name"].as_str().unwrap_or("?").to_string()).collect()
}

/// The JSON answer of an OpenStack API (Glance, the vmimport emulator), read with
/// curl as `token`. Fails the test unless the server answers 2xx with JSON: an error
/// page is never read as an empty list or a missing field.
pub fn curl_json(token: &str, method: &str, url: &str) -> Value {
    let out = Command::new("curl")
        .args(["-s", "-X", method, "-H", &format!("X-Auth-Token: {token}"), "-H", "Accept: application/json"])
        .args(["-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    assert!(
        out.status.success() && code.len() == 3 && code.starts_with('2'),
        "{method} {url}: HTTP {code:?} {body:.300} (curl {:?})",
        out.status
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {body:.300}"))
}

/// Every image Glance lists for `query` (its filters, e.g. `k5up_job=J`), through all
/// pages: Glance answers a page at a time and links the next one.
pub fn glance_images(glance_url: &str, token: &str, query: &str) -> Vec<Value> {
    let mut url = format!("{glance_url}/v2/images?{query}");
    let mut all: Vec<Value> = vec![];
    loop {
        let v = curl_json(token, "GET", &url);
        let page = v["images"].as_array().unwrap_or_else(|| panic!("GET {url}: not an image list: {v}"));
        all.extend(page.iter().cloned());
        match v["next"].as_str() {
            Some(next) if !page.is_empty() => url = format!("{glance_url}{next}"),
            _ => return all,
        }
    }
}
