//! The source file: its identity (so a changed file is never resumed) and range reads.

use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use md5::Digest;
use sha2::Sha256;

use crate::error::{Error, Result};

pub(crate) use crate::zeros::CHUNK;

pub(crate) use crate::model::FileIdentity;

/// Opens `path` as a source: it must be a readable regular file (or a block device).
pub(crate) fn open(path: &Path) -> Result<(PathBuf, File, FileIdentity)> {
    let canon = path.canonicalize().map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    // Checked before opening: opening a FIFO without a writer blocks for ever, and a
    // character device (`/dev/zero`) has no size to plan with.
    let meta = std::fs::metadata(&canon).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let ft = meta.file_type();
    if !ft.is_file() && !ft.is_block_device() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_fifo() {
            "a FIFO (named pipe)"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(Error::input(format!("{} is {what}, not an image file", path.display()))
            .hint("k5up uploads regular files and block devices (a raw LV or a snapshot of it)"));
    }
    if let Some(fs) = pseudo_fs(&canon) {
        return Err(Error::input(format!(
            "{} is on {fs}, whose files report a size that is not their length: it cannot be uploaded as an image",
            path.display()
        ))
        .hint("copy it to a regular file first (`cat FILE > copy.img`), then upload the copy"));
    }
    let file = File::open(&canon).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let id = identity(&file, &canon)?;
    Ok((canon, file, id))
}

/// The name of the kernel's pseudo file system `path` is on, if it is one whose
/// files have no length known up front (procfs, sysfs and the like: size 0, then
/// bytes when read).
fn pseudo_fs(path: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    const KNOWN: &[(i64, &str)] = &[
        (0x9fa0, "procfs (/proc)"),
        (0x6265_6572, "sysfs (/sys)"),
        (0x6462_6720, "debugfs"),
        (0x7472_6163, "tracefs"),
        (0x0027_e0eb, "cgroupfs"),
        (0x6367_7270, "cgroup2fs"),
        (0x7363_6673, "securityfs"),
        (0xcafe_4a11, "bpffs"),
        (0x6265_6570, "configfs"),
        (0x6165_676c, "pstore"),
        (0xde5e_81e4, "efivarfs"),
    ];
    KNOWN.iter().find(|(m, _)| *m == magic).map(|(_, n)| *n)
}

/// Reads the identity of an open file.
pub(crate) fn identity(file: &File, path: &Path) -> Result<FileIdentity> {
    let meta = file.metadata().map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
    let size = size_of(file).map_err(|e| Error::io(format!("cannot size {}", path.display()), e))?;
    // A device node's modification time says nothing of the device's content (udev
    // touches it at will): a block device is known by its size and sampled content.
    // Its node's inode is remade at every boot: the device number stands for it.
    let block = meta.file_type().is_block_device();
    let mtime_ns = if block { 0 } else { meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128 };
    let (dev, ino) = if block { (0, meta.rdev()) } else { (meta.dev(), meta.ino()) };
    let fingerprint = fingerprint(file, size).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    Ok(FileIdentity { size, mtime_ns, dev, ino, fingerprint })
}

/// The change stamp of an open source: its inode change time (which `touch -d`
/// cannot set back), device and inode. A block device's node says nothing of its
/// content: no ctime.
pub(crate) fn stamp(file: &File) -> std::io::Result<crate::model::SourceStamp> {
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        return Ok(crate::model::SourceStamp { ctime_ns: None, dev: 0, ino: meta.rdev() });
    }
    let ctime_ns = meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128;
    Ok(crate::model::SourceStamp { ctime_ns: Some(ctime_ns), dev: meta.dev(), ino: meta.ino() })
}

/// Tells the kernel that `[off, off + len)` of `file` will not be read again, so
/// its page cache goes before pages still to be read a second time (otherwise the
/// pages read twice are the ones it keeps). Advice only: a failure changes nothing.
pub(crate) fn done_with(file: &File, off: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(off), libc::off_t::try_from(len)) else { return };
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), off, len, libc::POSIX_FADV_DONTNEED);
    }
}

/// The size of an open source: a regular file's length, or a block device's size
/// (whose metadata says 0).
pub(crate) fn size_of(file: &File) -> std::io::Result<u64> {
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        use std::io::{Seek, SeekFrom};
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::End(0))
    } else {
        Ok(meta.len())
    }
}

fn fingerprint(file: &File, size: u64) -> std::io::Result<String> {
    const SAMPLES: u64 = 16;
    const BLOCK: u64 = 64 << 10;
    let mut h = Sha256::new();
    h.update(size.to_be_bytes());
    let mut buf = vec![0u8; BLOCK as usize];
    for i in 0..SAMPLES {
        let span = size.saturating_sub(BLOCK);
        let off = span * i / (SAMPLES - 1);
        let len = BLOCK.min(size - off.min(size)) as usize;
        file.read_exact_at(&mut buf[..len], off)?;
        h.update(&buf[..len]);
    }
    Ok(hex::encode(&h.finalize()[..16]))
}

/// MD5 (hex) of `len` bytes at `off` of `file`, read in [`CHUNK`] blocks. Blocking.
pub fn md5_range(file: &File, off: u64, len: u64) -> std::io::Result<String> {
    let whole = crate::zeros::scan_range(file, off, len, None, false)?;
    Ok(whole.into_iter().next().and_then(|p| p.md5).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MD5 hex of a byte slice.
    fn md5_hex(data: &[u8]) -> String {
        hex::encode(md5::Md5::digest(data))
    }
    use std::io::Write;

    #[test]
    fn identity_and_md5() {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        t.write_all(&data).unwrap();
        let (_, f, id) = open(t.path()).unwrap();
        assert_eq!(id.size, data.len() as u64);
        assert_eq!(md5_range(&f, 0, id.size).unwrap(), md5_hex(&data));
        assert_eq!(md5_range(&f, 100, 2_000_000).unwrap(), md5_hex(&data[100..2_000_100]));
        // a change in a sampled block changes the fingerprint
        let w = std::fs::OpenOptions::new().write(true).open(t.path()).unwrap();
        w.write_all_at(b"zz", 0).unwrap();
        let id2 = identity(&f, t.path()).unwrap();
        assert!(id.changes(&id2).is_some());
    }

    #[test]
    fn directories_and_missing_files_are_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let e = open(d.path()).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::BadInput);
        assert!(e.msg.contains("directory"));
        let e = open(&d.path().join("nope")).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::BadInput);
    }

    #[test]
    fn character_devices_and_fifos_are_refused_before_opening() {
        let e = open(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::BadInput);
        assert!(e.msg.contains("character device"), "{}", e.msg);
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // Opening it would block for ever (no writer): refused from its metadata.
        let e = open(&fifo).unwrap_err();
        assert!(e.msg.contains("FIFO"), "{}", e.msg);
    }

    #[test]
    fn files_whose_size_lies_are_refused() {
        for p in ["/proc/self/status", "/proc/cpuinfo", "/sys/kernel/mm/transparent_hugepage/enabled"] {
            if !Path::new(p).exists() {
                continue;
            }
            let e = open(Path::new(p)).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::BadInput, "{p}");
            assert!(e.msg.contains("size that is not their length"), "{p}: {}", e.msg);
        }
        assert!(open(Path::new("/proc/self/status")).is_err(), "procfs is always there on Linux");
    }

    #[test]
    fn empty_file_identity() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let (_, _, id) = open(t.path()).unwrap();
        assert_eq!(id.size, 0);
    }
}
