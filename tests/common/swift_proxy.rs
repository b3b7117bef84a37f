//! One more real Swift proxy over the testbed's backends, with settings of the
//! test's own (e.g. the TempURL digests it allows): the Keystone proxy's
//! configuration with a few lines changed, on a free port, run by the testbed's
//! launcher (`testbed/swiftd.py`), stopped (its process group) when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running proxy started by this test process.
pub struct SwiftProxy {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SwiftProxy {
    /// The testbed's Keystone proxy (`etc/proxy-keystone.conf`: Keystone tokens,
    /// `/info` hidden unless `expose_info`) on a new port, with `tempurl_lines` added
    /// to its `[filter:tempurl]` section (e.g. `allowed_digests = sha256 sha512`).
    pub fn keystone_with_tempurl(tempurl_lines: &str, expose_info: bool) -> SwiftProxy {
        let run = super::testbed_run();
        let conf = std::fs::read_to_string(run.join("etc/proxy-keystone.conf")).expect("the testbed's proxy config");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut out = String::new();
        for line in conf.lines() {
            if line.starts_with("bind_port") {
                out.push_str(&format!("bind_port = {port}\n"));
                continue;
            }
            if line.starts_with("expose_info") {
                out.push_str(&format!("expose_info = {expose_info}\n"));
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if line.trim() == "use = egg:swift#tempurl" {
                out.push_str(tempurl_lines);
                out.push('\n');
            }
        }
        assert!(out.contains(tempurl_lines), "no [filter:tempurl] section in the testbed's proxy config");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.conf");
        std::fs::write(&path, out).unwrap();
        let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("testbed/swiftd.py");
        let child = Command::new("/usr/bin/python3")
            .arg(launcher)
            .arg(run.join("swift"))
            .arg("proxy-server")
            .arg(&path)
            .env("SWIFT_LOG_FILE", dir.path().join("proxy.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a Swift proxy");
        let p = SwiftProxy { port, child, _dir: dir };
        let url = format!("http://127.0.0.1:{port}/healthcheck");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            let ok = Command::new("curl").args(["-s", "-f", "-o", "/dev/null", "--max-time", "2", &url]).status();
            if ok.is_ok_and(|s| s.success()) {
                return p;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the extra Swift proxy on port {port} did not answer within 60 s");
    }
}

impl Drop for SwiftProxy {
    fn drop(&mut self) {
        // Swift's server setsid()s itself: its group is its pid, and holds its workers.
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the process group of a child this test started.
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; then the child itself, had it not made its group yet.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
