//! Swift's naming rules and k5up's deterministic segment names.
//!
//! Reference: <https://docs.openstack.org/swift/latest/api/object_api_v1_overview.html>
//! (container names: at most 256 bytes, no `/`; object names: at most 1024 bytes).

use crate::error::{Error, Result};
use crate::model::SegmentRecord;

/// Swift's default `max_container_name_length`.
pub(crate) const MAX_CONTAINER_NAME: usize = 256;
/// Swift's default `max_object_name_length`.
pub(crate) const MAX_OBJECT_NAME: usize = 1024;

/// Checks a container name against Swift's rules.
pub(crate) fn check_container(name: &str) -> Result<()> {
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
pub(crate) fn check_object(name: &str) -> Result<()> {
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
/// Jobs created by this version name each segment by the bytes it holds, under a
/// prefix of their own:
/// `<object>/[slo/]<mtime>/<size>/<nonce>/bytes/<offset:016>+<length>` in
/// `<container>_segments`, where `<nonce>` (`j` + 16 hex digits) is drawn at random
/// when the job is created. Two jobs never share a segment name, even for two builds
/// of one image with the same size and mtime: a job never PUTs over, nor deletes,
/// another job's segment. The name alone says which range of the file a segment
/// holds, so segments cut to any size, by any run of the job, are recognised and
/// adopted; the fixed-width offset keeps a listing (and so a DLO) in file order.
/// Segments of other jobs of the same object (a lost journal, an earlier build) sit
/// under the same stem (see [`SegmentNaming::stem`]); they are never adopted as
/// they are, only copied on the server into the job's own names once their ETag
/// matches the local MD5 of that range.
///
/// Jobs created by k5up 0.2 and 0.3 have no nonce
/// (`<object>/[slo/]<mtime>/<size>/bytes/…`); they keep their names.
///
/// Jobs created by k5up 0.1 (a uniform plan) follow python-swiftclient's
/// convention, `<object>/[slo/]<mtime>/<size>/<segment_size>/<index:08>`; they keep
/// it, and their segments are never split. The prefix tells the two apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentNaming {
    /// The container holding the segments.
    pub container: String,
    /// Every segment name starts with this (ends in `/`).
    pub prefix: String,
    /// Names say offset and length (`bytes/`); else the index of a uniform plan.
    pub ranged: bool,
}

/// The last component of the prefix of ranged segment names.
const RANGED_DIR: &str = "bytes/";

impl SegmentNaming {
    /// The naming of a new job for `object` in `container`, for a file of `size`
    /// bytes modified at `mtime_ns` (nanoseconds since the epoch), with the job's own
    /// `nonce` (see [`new_nonce`]): segment names say their byte range.
    pub fn new(container: &str, object: &str, slo: bool, mtime_ns: i128, size: u64, nonce: &str) -> Result<Self> {
        if !is_nonce(nonce) {
            return Err(Error::failed(format!("`{nonce}` is not a segment-name nonce")));
        }
        let naming = SegmentNaming::of_job(
            &format!("{container}_segments"),
            &format!("{}{nonce}/{RANGED_DIR}", Self::stem_of(object, slo, mtime_ns, size)),
        );
        check_container(&naming.container).map_err(|e| e.context("segment container"))?;
        if naming.name_at(u64::MAX / 2, u64::MAX / 2).len() > MAX_OBJECT_NAME {
            return Err(Error::input(format!(
                "object name is too long: its segment names would exceed Swift's {MAX_OBJECT_NAME} bytes"
            ))
            .hint("use a shorter --object name"));
        }
        Ok(naming)
    }

    /// The naming of k5up 0.1 (index names of a uniform plan of `segment_size`).
    pub fn indexed(container: &str, object: &str, slo: bool, mtime_ns: i128, size: u64, segment_size: u64) -> Self {
        SegmentNaming::of_job(
            &format!("{container}_segments"),
            &format!("{}{segment_size}/", Self::stem_of(object, slo, mtime_ns, size)),
        )
    }

    fn stem_of(object: &str, slo: bool, mtime_ns: i128, size: u64) -> String {
        let secs = mtime_ns.div_euclid(1_000_000_000);
        let micros = mtime_ns.rem_euclid(1_000_000_000) / 1000;
        let kind = if slo { "slo/" } else { "" };
        format!("{object}/{kind}{secs}.{micros:06}/{size}/")
    }

    /// The naming recorded in a job (its segment container and prefix).
    pub fn of_job(container: &str, prefix: &str) -> Self {
        let ranged = prefix.ends_with(&format!("/{RANGED_DIR}"));
        SegmentNaming { container: container.to_string(), prefix: prefix.to_string(), ranged }
    }

    /// The name of a segment (its journal key is its index, or its offset when ranged).
    pub fn name(&self, s: &SegmentRecord) -> String {
        if self.ranged { self.name_at(s.offset, s.length) } else { format!("{}{:08}", self.prefix, s.index) }
    }

    /// The ranged name of `length` bytes at `offset`.
    pub fn name_at(&self, offset: u64, length: u64) -> String {
        format!("{}{offset:016}+{length}", self.prefix)
    }

    /// How messages name a segment: by index, or by its range as in its name.
    pub fn label(&self, s: &SegmentRecord) -> String {
        if self.ranged { format!("segment {:016}+{}", s.offset, s.length) } else { format!("segment {}", s.index) }
    }

    /// Where the segments of every job of this object and file (size, mtime) live:
    /// the prefix without the job's nonce. `None` for names that have none.
    pub fn stem(&self) -> Option<&str> {
        let head = self.prefix.strip_suffix(RANGED_DIR)?.strip_suffix('/')?;
        let (stem, nonce) = head.rsplit_once('/')?;
        is_nonce(nonce).then(|| &self.prefix[..stem.len() + 1])
    }

    /// The byte range of a segment of another job of the same object and file,
    /// from a name listed under [`SegmentNaming::stem`]: `<nonce>/bytes/<range>`
    /// (a job of this version) or `bytes/<range>` (k5up 0.2/0.3). `None` for this
    /// job's own names and for anything else (a longer name, another object's).
    pub fn foreign_range_of(&self, name: &str) -> Option<(u64, u64)> {
        if name.starts_with(&self.prefix) {
            return None;
        }
        let rest = name.strip_prefix(self.stem()?)?;
        let rest = match rest.split_once('/') {
            Some((nonce, r)) if is_nonce(nonce) => r,
            _ => rest,
        };
        let range = rest.strip_prefix(RANGED_DIR)?;
        parse_range(range)
    }

    /// True when `name` is exactly one of the names this job writes: a segment
    /// (`<prefix><offset:016>+<length>`), a sub-manifest (`<prefix>manifest/<l>/<n>`),
    /// or a zero object, seed or maker (`<zero prefix>{object,seed,maker}+<n>`).
    /// Anything longer (another object whose name happens to start with this
    /// prefix, and its segments) is not, and is never deleted by this job.
    pub fn is_own(&self, name: &str) -> bool {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(rest) = name.strip_prefix(&self.prefix) {
            if self.ranged && parse_range(rest).is_some() {
                return true;
            }
            if !self.ranged && rest.len() >= 8 && digits(rest) {
                return true;
            }
            if let Some(m) = rest.strip_prefix("manifest/")
                && let Some((level, index)) = m.split_once('/')
            {
                return digits(level) && index.len() == 8 && digits(index);
            }
        }
        if self.ranged
            && let Some(leaf) = name.strip_prefix(&self.zero_prefix())
            && let Some((what, len)) = leaf.split_once('+')
        {
            return ["object", "seed", "maker"].contains(&what) && digits(len);
        }
        false
    }

    /// The journal key of a segment from its name, if the name is one of ours:
    /// its index, or (ranged) its offset.
    pub fn key_of(&self, name: &str) -> Option<u64> {
        if self.ranged {
            return self.range_of(name).map(|(off, _)| off);
        }
        let rest = name.strip_prefix(&self.prefix)?;
        if rest.len() >= 8 && rest.bytes().all(|b| b.is_ascii_digit()) { rest.parse().ok() } else { None }
    }

    /// Offset and length of a ranged segment from its name.
    pub fn range_of(&self, name: &str) -> Option<(u64, u64)> {
        if !self.ranged {
            return None;
        }
        parse_range(name.strip_prefix(&self.prefix)?)
    }

    /// The name of `leaf` among the job's zero makers: beside the segments'
    /// `bytes/`, never under it (a DLO reads everything its prefix lists).
    pub fn zero_name(&self, leaf: &str) -> String {
        format!("{}zero/{leaf}", self.prefix.strip_suffix(RANGED_DIR).unwrap_or(&self.prefix))
    }

    /// Where the job's zero objects and makers live (see [`SegmentNaming::zero_name`]).
    pub fn zero_prefix(&self) -> String {
        self.zero_name("")
    }

    /// The name of a nested-SLO sub-manifest: `<prefix>manifest/<level>/<index:08>`.
    pub fn sub_manifest_name(&self, level: usize, index: usize) -> String {
        format!("{}manifest/{level}/{index:08}", self.prefix)
    }
}

/// The segment prefix of the job that wrote `name`, when `name` is exactly one of
/// the names a job of this version writes for `object`, a file of `size` bytes:
/// `<object>/[slo/]<secs>.<micros>/<size>/<nonce>/bytes/<offset:016>+<length>` (a
/// segment) or `…/<nonce>/zero/object+<n>` (the zero object an SLO takes ranges of).
/// A name without a nonce (k5up 0.2/0.3: two jobs with the same size and mtime
/// shared them), of another object or another size, or anything longer, is `None`:
/// only these names prove they belong to one job of this object and nothing else.
pub(crate) fn job_prefix_of(object: &str, size: u64, name: &str) -> Option<String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let rest = name.strip_prefix(object)?.strip_prefix('/')?;
    let rest = rest.strip_prefix("slo/").unwrap_or(rest);
    let (mtime, rest) = rest.split_once('/')?;
    let (secs, micros) = mtime.split_once('.')?;
    if !digits(secs.strip_prefix('-').unwrap_or(secs)) || micros.len() != 6 || !digits(micros) {
        return None;
    }
    let (sz, rest) = rest.split_once('/')?;
    if sz != size.to_string() {
        return None;
    }
    let (nonce, leaf) = rest.split_once('/')?;
    if !is_nonce(nonce) {
        return None;
    }
    let stem_len = name.len() - leaf.len();
    let prefix = format!("{}{RANGED_DIR}", &name[..stem_len]);
    let own = match leaf.strip_prefix(RANGED_DIR) {
        Some(range) => parse_range(range).is_some(),
        None => leaf.strip_prefix("zero/object+").is_some_and(digits),
    };
    (own && SegmentNaming::of_job("", &prefix).is_own(name)).then_some(prefix)
}

/// `<offset:016>+<length>`, exactly (no further `/`, no leading zero in the length).
fn parse_range(rest: &str) -> Option<(u64, u64)> {
    let (off, len) = rest.split_once('+')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if off.len() != 16 || !digits(off) || !digits(len) || len.starts_with('0') {
        return None;
    }
    Some((off.parse().ok()?, len.parse().ok()?))
}

/// A new job's nonce: `j` and 16 random hex digits.
pub(crate) fn new_nonce() -> Result<String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)
        .map_err(|e| Error::failed(format!("no random numbers for a segment-name nonce: {e}")).caused_by(e))?;
    Ok(format!("j{}", hex::encode(b)))
}

fn is_nonce(s: &str) -> bool {
    s.len() == 17 && s.starts_with('j') && s[1..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
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

    fn seg(index: u64, offset: u64, length: u64) -> SegmentRecord {
        SegmentRecord::new(index, offset, length, crate::model::SegKind::Data)
    }

    #[test]
    fn ranged_names_say_their_bytes() {
        let n = SegmentNaming::new("c", "disk.img", true, 1_700_000_000_123_456_789, 1000, N).unwrap();
        assert_eq!(n.container, "c_segments");
        assert!(n.ranged);
        assert_eq!(
            n.name(&seg(100, 100, 200)),
            format!("disk.img/slo/1700000000.123456/1000/{N}/bytes/0000000000000100+200")
        );
        assert_eq!(n.range_of(&n.name_at(5 << 30, 7)), Some((5 << 30, 7)));
        assert_eq!(n.key_of(&n.name_at(42, 7)), Some(42));
        for bad in ["x", "0000000000000100+", "000000000000100+5", "0000000000000100+05", "0000000000000100+5x"] {
            assert_eq!(n.range_of(&format!("{}{bad}", n.prefix)), None, "{bad}");
        }
        assert_eq!(n.key_of(&n.sub_manifest_name(1, 0)), None);
        // In file order when listed (a DLO reads them so).
        assert!(n.name_at(9 << 20, 1 << 20) < n.name_at(10 << 20, 1));
        let d = SegmentNaming::new("c", "disk.img", false, 1_000_000_000, 1000, N).unwrap();
        assert_eq!(d.name_at(0, 1000), format!("disk.img/1.000000/1000/{N}/bytes/0000000000000000+1000"));
        assert!(SegmentNaming::new("c", &"x".repeat(1000), true, 0, 1, N).is_err());
        assert!(SegmentNaming::new("c", "o", true, 0, 1, "../x").is_err());
        assert_eq!(SegmentNaming::of_job("c_segments", &n.prefix), n);
    }

    const N: &str = "j0123456789abcdef";

    #[test]
    fn every_job_has_names_of_its_own() {
        let a = new_nonce().unwrap();
        let b = new_nonce().unwrap();
        assert_ne!(a, b);
        let x = SegmentNaming::new("c", "disk.img", true, 5_000_000_000, 99, &a).unwrap();
        let y = SegmentNaming::new("c", "disk.img", true, 5_000_000_000, 99, &b).unwrap();
        assert_ne!(x.name_at(0, 99), y.name_at(0, 99), "same file, size and mtime: other names");
        assert_eq!(x.stem(), Some("disk.img/slo/5.000000/99/"));
        assert_eq!(x.stem(), y.stem());
        // Another job's segments (and a 0.3 job's) are foreign, with their ranges.
        assert_eq!(x.foreign_range_of(&y.name_at(7, 3)), Some((7, 3)));
        assert_eq!(x.foreign_range_of("disk.img/slo/5.000000/99/bytes/0000000000000007+3"), Some((7, 3)));
        assert_eq!(x.foreign_range_of(&x.name_at(7, 3)), None, "its own are not foreign");
        assert_eq!(x.foreign_range_of(&format!("{}zz/slo/1.000000/9/bytes/0000000000000000+9", y.prefix)), None);
        // A 0.3 job has no stem.
        let old = SegmentNaming::of_job("c_segments", "disk.img/slo/5.000000/99/bytes/");
        assert!(old.ranged);
        assert_eq!(old.stem(), None);
    }

    #[test]
    fn the_job_of_a_segment_name_is_known_only_from_a_nonce_name_of_that_object_and_size() {
        let n = SegmentNaming::new("c", "app.raw", true, 1_700_000_000_123_456_789, 1000, N).unwrap();
        let d = SegmentNaming::new("c", "app.raw", false, 5_000_000_000, 1000, N).unwrap();
        for job in [&n, &d] {
            assert_eq!(job_prefix_of("app.raw", 1000, &job.name_at(0, 1000)), Some(job.prefix.clone()));
            assert_eq!(job_prefix_of("app.raw", 1000, &job.zero_name("object+1048576")), Some(job.prefix.clone()));
            // Another size, another object, a longer name, the zero seed: not provably the job's.
            assert_eq!(job_prefix_of("app.raw", 999, &job.name_at(0, 1000)), None);
            assert_eq!(job_prefix_of("app", 1000, &job.name_at(0, 1000)), None);
            assert_eq!(job_prefix_of("app.raw", 1000, &format!("{}zz", job.name_at(0, 1000))), None);
            assert_eq!(job_prefix_of("app.raw", 1000, &job.zero_name("seed+1048576")), None);
            assert_eq!(job_prefix_of("app.raw", 1000, &job.sub_manifest_name(1, 0)), None);
        }
        // No nonce (k5up 0.2/0.3), an index name (0.1): never.
        assert_eq!(job_prefix_of("app.raw", 1000, "app.raw/slo/1.000000/1000/bytes/0000000000000000+1000"), None);
        let old = SegmentNaming::indexed("c", "app.raw", true, 0, 1000, 100);
        assert_eq!(job_prefix_of("app.raw", 1000, &old.name(&seg(3, 300, 100))), None);
        // An object whose name holds slashes.
        let deep = SegmentNaming::new("c", "a/b/c.raw", true, 0, 7, N).unwrap();
        assert_eq!(job_prefix_of("a/b/c.raw", 7, &deep.name_at(0, 7)), Some(deep.prefix.clone()));
        assert_eq!(job_prefix_of("a/b", 7, &deep.name_at(0, 7)), None);
    }

    #[test]
    fn own_names_are_exact() {
        let n = SegmentNaming::new("c", "a", true, 0, 10, N).unwrap();
        assert!(n.is_own(&n.name_at(0, 10)));
        assert!(n.is_own(&n.sub_manifest_name(1, 3)));
        assert!(n.is_own(&n.zero_name("object+1048576")));
        assert!(n.is_own(&n.zero_name("seed+1048576")));
        assert!(n.is_own(&n.zero_name("maker+2097152")));
        // An object named after this job's prefix, and its own segments: never ours.
        let other = format!("{}zz", n.prefix);
        let o = SegmentNaming::new("c", &other, true, 0, 10, N).unwrap();
        assert!(!n.is_own(&other));
        assert!(!n.is_own(&o.name_at(0, 10)), "{}", o.name_at(0, 10));
        assert!(!n.is_own(&format!("{}/x", n.name_at(0, 10))));
        assert!(!n.is_own(&format!("{}manifest/1/00000001/x", n.prefix)));
        assert!(!n.is_own(&n.zero_name("object+1/x")));
        let old = SegmentNaming::of_job("c_segments", "a/slo/0.000000/10/bytes/");
        assert!(!old.is_own(&o.name_at(0, 10)));
        assert!(old.is_own("a/slo/0.000000/10/bytes/0000000000000000+10"));
        let idx = SegmentNaming::indexed("c", "a", true, 0, 10, 5);
        assert!(idx.is_own(&idx.name(&seg(1, 5, 5))));
        assert!(!idx.is_own(&format!("{}00000001/x", idx.prefix)));
    }

    #[test]
    fn indexed_names_of_older_jobs() {
        let n = SegmentNaming::indexed("c", "disk.img", true, 1_700_000_000_123_456_789, 1000, 100);
        assert!(!n.ranged);
        assert_eq!(n.name(&seg(7, 700, 100)), "disk.img/slo/1700000000.123456/1000/100/00000007");
        assert_eq!(n.key_of(&n.name(&seg(12345, 0, 1))), Some(12345));
        assert_eq!(n.key_of("disk.img/slo/other"), None);
        assert_eq!(n.range_of(&n.name(&seg(7, 700, 100))), None);
        assert_eq!(SegmentNaming::of_job("c_segments", &n.prefix), n);
        // An object whose own name ends in bytes/ is still told apart by the last component.
        let odd = SegmentNaming::indexed("c", "bytes/", true, 0, 10, 5);
        assert!(!odd.ranged);
    }
}
