//! Swift's naming rules and k5up's deterministic segment names.
//!
//! Reference: <https://docs.openstack.org/swift/latest/api/object_api_v1_overview.html>
//! (container names: at most 256 bytes, no `/`; object names: at most 1024 bytes).

use crate::error::{Error, Result};

/// Swift's default `max_container_name_length`.
pub const MAX_CONTAINER_NAME: usize = 256;
/// Swift's default `max_object_name_length`.
pub const MAX_OBJECT_NAME: usize = 1024;

/// Checks a container name against Swift's rules.
pub fn check_container(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::input("container name is empty"));
    }
    if name.len() > MAX_CONTAINER_NAME {
        return Err(Error::input(format!(
            "container name is {} bytes long; Swift allows at most {MAX_CONTAINER_NAME}",
            name.len()
        )));
    }
    if name.contains('/') {
        return Err(Error::input(format!("container name `{name}` contains `/`, which Swift does not allow")));
    }
    if name.contains('\0') {
        return Err(Error::input("container name contains a NUL byte"));
    }
    if name == "." || name == ".." {
        return Err(Error::input(format!("`{name}` is not a valid container name")));
    }
    Ok(())
}

/// Checks an object name against Swift's rules.
pub fn check_object(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::input("object name is empty"));
    }
    if name.len() > MAX_OBJECT_NAME {
        return Err(Error::input(format!(
            "object name is {} bytes long; Swift allows at most {MAX_OBJECT_NAME}",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(Error::input("object name contains a NUL byte"));
    }
    Ok(())
}

/// Where a job's segments live and how they are named.
///
/// python-swiftclient's convention: SLO segments are
/// `<object>/slo/<mtime>/<size>/<segment_size>/<index:08>`, DLO segments
/// `<object>/<mtime>/<size>/<segment_size>/<index:08>`, both in `<container>_segments`.
/// The same file, target and segment size always give the same names: that is what
/// lets a resume (or a re-run after the journal was lost) find what is already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentNaming {
    /// The container holding the segments.
    pub container: String,
    /// Every segment name starts with this (ends in `/`).
    pub prefix: String,
}

impl SegmentNaming {
    /// The naming for `object` in `container`, for a file of `size` bytes modified at
    /// `mtime_ns` (nanoseconds since the epoch), cut in `segment_size` pieces.
    pub fn new(container: &str, object: &str, slo: bool, mtime_ns: i128, size: u64, segment_size: u64) -> Result<Self> {
        let secs = mtime_ns.div_euclid(1_000_000_000);
        let micros = mtime_ns.rem_euclid(1_000_000_000) / 1000;
        let kind = if slo { "slo/" } else { "" };
        let prefix = format!("{object}/{kind}{secs}.{micros:06}/{size}/{segment_size}/");
        let seg_container = format!("{container}_segments");
        check_container(&seg_container).map_err(|e| e.context("segment container"))?;
        let naming = SegmentNaming { container: seg_container, prefix };
        if naming.name(99_999_999).len() > MAX_OBJECT_NAME {
            return Err(Error::input(format!(
                "object name is too long: its segment names would exceed Swift's {MAX_OBJECT_NAME} bytes"
            ))
            .hint("use a shorter --object name"));
        }
        Ok(naming)
    }

    /// The name of segment `index`.
    pub fn name(&self, index: u64) -> String {
        format!("{}{index:08}", self.prefix)
    }

    /// The index of a segment from its name, if the name is one of ours.
    pub fn index_of(&self, name: &str) -> Option<u64> {
        let rest = name.strip_prefix(&self.prefix)?;
        if rest.len() >= 8 && rest.bytes().all(|b| b.is_ascii_digit()) { rest.parse().ok() } else { None }
    }

    /// The name of a nested-SLO sub-manifest: `<prefix>manifest/<level>/<index:08>`.
    pub fn sub_manifest_name(&self, level: usize, index: usize) -> String {
        format!("{}manifest/{level}/{index:08}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(check_container("images").is_ok());
        assert!(check_container("").is_err());
        assert!(check_container("a/b").is_err());
        assert!(check_container(&"x".repeat(257)).is_err());
        assert!(check_object("dir/disk image ü.vmdk").is_ok());
        assert!(check_object(&"x".repeat(1025)).is_err());
        assert!(check_object("").is_err());
    }

    #[test]
    fn naming_roundtrip() {
        let n = SegmentNaming::new("c", "disk.img", true, 1_700_000_000_123_456_789, 1000, 100).unwrap();
        assert_eq!(n.container, "c_segments");
        assert_eq!(n.name(7), "disk.img/slo/1700000000.123456/1000/100/00000007");
        assert_eq!(n.index_of(&n.name(12345)), Some(12345));
        assert_eq!(n.index_of("disk.img/slo/other"), None);
        let d = SegmentNaming::new("c", "disk.img", false, 1_000_000_000, 1000, 100).unwrap();
        assert_eq!(d.name(0), "disk.img/1.000000/1000/100/00000000");
        assert!(SegmentNaming::new("c", &"x".repeat(1000), true, 0, 1, 1).is_err());
    }
}
