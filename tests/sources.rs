//! Odd sources as an operator meets them: a character device, a FIFO without a
//! writer, a symlink, and a block device (a raw LV or a snapshot is a natural source
//! of a disk image; here a loop device, which needs root, as CI has).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Observer, Run, Testbed, unique, write_random};

const MIB: u64 = 1 << 20;

/// Runs k5up, killing it (and failing the test) if it has not ended within `limit`.
fn run_bounded(run: &Run, args: &[&str], limit: Duration) -> std::process::Output {
    let mut child =
        run.cmd(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("k5up {args:?} still waiting after {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn character_devices_and_fifos_are_refused_at_once() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let c = unique("chr");
    // /dev/zero once uploaded as an empty object and reported success.
    let out = run_bounded(&run, &["upload", "/dev/zero", "-c", &c], Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is a character device"), "{err}");
    // A FIFO without a writer once blocked in open() for ever, deaf to SIGTERM.
    let fifo = run.path("pipe.raw");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = run_bounded(&run, &["upload", fifo.to_str().unwrap(), "-c", &c], Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("FIFO"), "{err}");
    let obs = Observer::login(&tb.small());
    assert!(obs.list(&c, "").is_empty(), "nothing uploaded");
    assert!(run.jobs().is_empty(), "no job");
}

#[test]
fn a_symlink_uploads_under_the_name_the_user_typed() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let target = run.path("build-2026-11-30.raw");
    let md5 = write_random(&target, MIB + 1, 3);
    let link = run.path("golden.raw");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let c = unique("link");
    run.ok(&["upload", link.to_str().unwrap(), "-c", &c, "--no-progress"]);
    let obs = Observer::login(&tb.small());
    assert_eq!(obs.get_md5(&c, "golden.raw"), Some((md5, MIB + 1)));
    assert!(obs.head(&c, "build-2026-11-30.raw").is_none());
}

/// A loop device over a file; detached when dropped.
struct Loop {
    dev: String,
}

impl Loop {
    fn attach(file: &std::path::Path) -> Loop {
        let out = Command::new("losetup").args(["-f", "--show"]).arg(file).output().expect("losetup(8)");
        assert!(
            out.status.success(),
            "cannot attach a loop device (this test needs root, as CI has): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop { dev: String::from_utf8(out.stdout).unwrap().trim().to_string() }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

#[test]
fn a_block_device_uploads_and_resumes() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    // Loop devices have 512-byte sectors: the size is a multiple of it.
    let size = 5 * MIB + 512 * 3;
    let backing = run.path("lv.img");
    let md5 = write_random(&backing, size, 4);
    let lo = Loop::attach(&backing);
    let c = unique("blk");
    let args = ["upload", &lo.dev, "-c", &c, "-o", "lv.raw", "--segment-size", "1MiB", "--no-progress"];
    run.ok(&args);
    let obs = Observer::login(&tb.small());
    assert_eq!(obs.get_md5(&c, "lv.raw"), Some((md5, size)), "the device's bytes");
    // Run again: the same job (identity from the device, not its node's mtime), and
    // nothing is written again: the server's segments and object are untouched.
    let jobs = run.jobs();
    assert_eq!(jobs.len(), 1);
    let segs = obs.list(&format!("{c}_segments"), "");
    assert_eq!(segs.len(), 6);
    let stamp = obs.head(&c, "lv.raw").unwrap()["x-timestamp"].clone();
    let out = run.run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run.jobs().len(), 1, "no second job");
    assert_eq!(obs.list(&format!("{c}_segments"), ""), segs, "no segment sent again");
    assert_eq!(obs.head(&c, "lv.raw").unwrap()["x-timestamp"], stamp, "the object was not written again");
    let v = run.ok(&["verify", jobs[0]["job"].as_str().unwrap(), "--deep"]);
    assert!(v.contains("content") && !v.contains("FAIL"), "{v}");
}

/// A symlink loop is bad input (exit 2), as a missing file is.
#[test]
fn a_symlink_loop_is_bad_input() {
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let (a, b) = (run.path("loop-a"), run.path("loop-b"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    let c = unique("eloop");
    let out = run_bounded(&run, &["upload", a.to_str().unwrap(), "-c", &c], Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("symbolic links"), "{err}");
    assert!(run.jobs().is_empty(), "no job");
}

/// A file name that is not UTF-8 (Latin-1 from an old build host): with -o the file is
/// uploaded and the job goes on across runs (its path kept byte for byte); without
/// -o it is refused, naming -o.
#[test]
fn a_file_name_that_is_not_utf8_uploads_with_an_object_name() {
    use std::os::unix::ffi::OsStrExt;
    let tb = Testbed::get();
    let run = Run::new(tb.small());
    let mut raw = run.dir.path().as_os_str().as_bytes().to_vec();
    raw.extend_from_slice(b"/r\xe9sum\xe9 50%.img");
    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&raw));
    let md5 = write_random(&path, 3 * MIB + 7, 11);
    let c = unique("latin1");
    let out = run.cmd(&["upload"]).arg(&path).args(["-c", &c, "--no-progress"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not valid UTF-8") && err.contains("-o NAME"), "{err}");
    let up = |extra: &[&str]| {
        let out = run
            .cmd(&["upload"])
            .arg(&path)
            .args(["-c", &c, "-o", "resume.img", "--segment-size", "1MiB", "--no-progress"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    up(&[]);
    let obs = Observer::login(&tb.small());
    assert_eq!(obs.get_md5(&c, "resume.img"), Some((md5.clone(), 3 * MIB + 7)));
    // The same command again finds the job and its file (the path read back from the journal).
    let again = up(&[]);
    assert!(again.contains("is complete"), "{again}");
    let jobs = run.jobs();
    assert_eq!(jobs.len(), 1, "one job: {jobs:?}");
    let job = jobs[0]["job"].as_str().unwrap().to_string();
    run.ok(&["verify", &job, "--deep"]);
}
