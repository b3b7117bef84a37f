//! Test file systems, mounted by the tests themselves (root, as in CI): a small
//! tmpfs that can be filled up, and a FUSE pass-through whose reads fail with EIO.
//! Each is unmounted, and its process stopped by pid, when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

fn umount(dir: &Path) {
    for _ in 0..50 {
        match Command::new("umount").arg(dir).stderr(Stdio::null()).status() {
            Ok(s) if s.success() => return,
            _ => std::thread::sleep(Duration::from_millis(100)), // busy: a child still closing files
        }
    }
    let _ = Command::new("umount").arg("-l").arg(dir).status();
}

/// A tmpfs of `size` bytes mounted on a directory (created if missing).
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount(8)");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (these tests need root and CAP_SYS_ADMIN, as CI has): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir: dir.to_path_buf() }
    }

    /// Writes a file into the mount until the file system is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let p = self.dir.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let block = vec![0x5au8; 64 << 10];
        loop {
            if let Err(e) = f.write_all(&block) {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
        // Smaller writes take the last pages too.
        while f.write_all(&[0u8; 512]).is_ok() {}
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        umount(&self.dir);
    }
}

/// `src` (a directory) seen through FUSE at `mnt`: reads of bytes `[lo, hi)` of any
/// file fail with EIO while `src/.eio` exists; reads past the offset written in
/// `src/.slow` are slow while it exists (see eiofs.py).
pub struct EioFs {
    pub mnt: PathBuf,
    child: Child,
}

impl EioFs {
    pub fn start(src: &Path, mnt: &Path, lo: u64, hi: u64, first_file: &str) -> EioFs {
        std::fs::create_dir_all(mnt).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/eiofs.py");
        let log = std::fs::File::create(mnt.with_extension("log")).unwrap();
        let child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(src)
            .arg(mnt)
            .arg(lo.to_string())
            .arg(hi.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("python3-fusepy (installed by testbed/up)");
        let mut fs = EioFs { mnt: mnt.to_path_buf(), child };
        let probe = mnt.join(first_file);
        wait_for(Duration::from_secs(20), || {
            if let Ok(Some(s)) = fs.child.try_wait() {
                panic!(
                    "the FUSE file system exited ({s}): {}",
                    std::fs::read_to_string(mnt.with_extension("log")).unwrap_or_default()
                );
            }
            probe.exists().then_some(())
        });
        fs
    }
}

impl Drop for EioFs {
    fn drop(&mut self) {
        umount(&self.mnt);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
