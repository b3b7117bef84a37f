//! Disk format detection from a file's header (and, for VHD, its footer).

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Formats Glance accepts that k5up recognises (plus `raw`, the fallback).
pub(crate) const KNOWN: [&str; 6] = ["raw", "qcow2", "vmdk", "vhd", "vhdx", "iso"];

/// The disk format of `file` of `size` bytes: `qcow2`, `vmdk`, `vhdx`, `vhd`, `iso`,
/// or `raw` when no known signature is found.
pub(crate) fn detect(file: &File, size: u64) -> &'static str {
    let mut head = [0u8; 512];
    let n = read_at(file, &mut head, 0);
    let head = &head[..n];
    if head.starts_with(b"QFI\xfb") {
        return "qcow2";
    }
    // Sparse and stream-optimised extents start "KDMV"; a monolithic descriptor is text.
    if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        return "vmdk";
    }
    if head.starts_with(b"vhdxfile") {
        return "vhdx";
    }
    // Dynamic VHDs carry a copy of the footer at the start; fixed ones only at the end.
    if head.starts_with(b"conectix") {
        return "vhd";
    }
    if size >= 512 {
        let mut tail = [0u8; 8];
        if read_at(file, &mut tail, size - 512) == 8 && &tail == b"conectix" {
            return "vhd";
        }
    }
    let mut cd = [0u8; 5];
    if size > 0x8006 && read_at(file, &mut cd, 0x8001) == 5 && &cd == b"CD001" {
        return "iso";
    }
    "raw"
}

fn read_at(file: &File, buf: &mut [u8], off: u64) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fmt_of(bytes: &[u8]) -> &'static str {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        detect(&f, bytes.len() as u64)
    }

    #[test]
    fn signatures() {
        assert_eq!(fmt_of(b"QFI\xfb\0\0\0\x03rest"), "qcow2");
        assert_eq!(fmt_of(b"KDMV\x01\0\0\0"), "vmdk");
        assert_eq!(fmt_of(b"# Disk DescriptorFile\nversion=1\n"), "vmdk");
        assert_eq!(fmt_of(b"vhdxfile\0\0"), "vhdx");
        let mut fixed_vhd = vec![0u8; 4096];
        fixed_vhd[4096 - 512..4096 - 504].copy_from_slice(b"conectix");
        assert_eq!(fmt_of(&fixed_vhd), "vhd");
        let mut iso = vec![0u8; 0x9000];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(fmt_of(&iso), "iso");
        assert_eq!(fmt_of(&[7u8; 1000]), "raw");
        assert_eq!(fmt_of(b""), "raw");
    }
}
