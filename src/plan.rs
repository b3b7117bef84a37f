//! The planner: file size + server limits → segment size, count and manifest shape.
//! Pure: no I/O, so every rule here is unit-tested.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::swift::Limits;
use crate::units::format_size;

/// k5up's default segment size: 256 MiB.
///
/// Why: an interrupted segment is sent again whole, so a kill costs at most
/// `concurrency × segment size` of re-sent bytes (1 GiB at the default concurrency of 4);
/// per-request overhead is negligible at this size even on a fast LAN; and up to
/// 250 GiB of image fit in one SLO manifest of at most 1000 segments. Larger images
/// get larger segments (so the manifest stays within `max_manifest_segments`), up to
/// the server's `max_file_size`; only beyond 1000 × max_file_size is the SLO nested.
pub(crate) const DEFAULT_SEGMENT_SIZE: u64 = 256 << 20;

const MIB: u64 = 1 << 20;

/// The smallest segment k5up plans (the last one of a file may be shorter): Swift
/// throttles GETs of SLO segments under 1 MiB (`rate_limit_under_size`) to one a
/// second after the tenth, and every segment costs a request, a listing entry and
/// a journal record.
pub(crate) const MIN_SEGMENT_SIZE: u64 = MIB;

/// The first segments of a new SLO job are this size, and double every
/// [`RAMP_REPEAT`] segments up to the plan's segment size: a link that cannot carry
/// a 256 MiB segment between two outages still confirms segments from its first
/// minute, while on a fast link the small ones cost a few requests within the first
/// GiB (4 × (8 + 16 + 32 + 64 + 128) MiB). A DLO gets no ramp: Swift reads DLO
/// segments after the 10th at one a second, so DLO segments stay large unless the
/// link forces a split.
pub(crate) const RAMP_START: u64 = 8 * MIB;
/// Segments of each size in the ramp (the default concurrency).
pub(crate) const RAMP_REPEAT: u64 = 4;

/// The most segments one job may have: a two-level SLO of 1000 × 1000 entries. At
/// the 1 MiB floor that is a 1 TiB image; larger images need larger segments.
pub(crate) const MAX_SEGMENTS: u64 = 1_000_000;

/// How the segments are tied together into the final object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestKind {
    /// Static Large Object: an explicit, validated list of segments.
    Slo,
    /// Dynamic Large Object: `X-Object-Manifest` naming a segment prefix (as K5 used).
    Dlo,
}

impl ManifestKind {
    /// `slo` or `dlo`.
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestKind::Slo => "slo",
            ManifestKind::Dlo => "dlo",
        }
    }
}

/// The plan of one upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Bytes in the file.
    pub file_size: u64,
    /// Bytes per segment (the last one may be shorter).
    pub segment_size: u64,
    /// Number of segments (0 for an empty file, which is uploaded as a plain empty object).
    pub segment_count: u64,
    /// SLO or DLO.
    pub manifest: ManifestKind,
    /// For SLO: entries per manifest (a larger upload nests sub-manifests). 0 for DLO.
    pub per_manifest: u64,
}

impl Plan {
    /// Offset and length of segment `index`.
    /// An index past the last segment gives an empty range at the end of the file.
    pub fn segment(&self, index: u64) -> (u64, u64) {
        let off = index.saturating_mul(self.segment_size).min(self.file_size);
        (off, self.segment_size.min(self.file_size - off))
    }

    /// The first cuts of a new job: `(offset, length)` pieces covering the file, in
    /// order. An SLO starts with the ramp ([`RAMP_START`]), a DLO is uniform.
    pub fn cuts(&self) -> impl Iterator<Item = (u64, u64)> + use<> {
        self.cuts_around(&[], None).into_iter().map(|(off, len, _)| (off, len))
    }

    /// The first cuts around `zeros` (runs known to hold only zeros: sorted, disjoint,
    /// inside the file): `(offset, length, is_zero)` pieces covering the file, in
    /// order. Data between the runs is cut as by [`Plan::cuts`] (the ramp goes on
    /// across runs); a run is cut in pieces of at most the segment size (a DLO copies
    /// each into a segment of its own). No data piece before a run is under
    /// [`MIN_SEGMENT_SIZE`]. With a `unit`, each run is cut in pieces of exactly
    /// the unit, and the rest of it (under a unit) is data.
    pub fn cuts_around(&self, zeros: &[(u64, u64)], unit: Option<u64>) -> Vec<(u64, u64, bool)> {
        let (size, ramp) = (self.file_size, self.manifest == ManifestKind::Slo);
        let max = self.segment_size.max(1);
        let run_piece = unit.unwrap_or(max).max(1);
        let mut out = vec![];
        let mut n = 0u64;
        let mut at = 0u64;
        let trim = |(o, l): (u64, u64)| (o, unit.map_or(l, |u| l / u.max(1) * u.max(1)));
        let mut runs = zeros.iter().copied().map(trim).filter(|&(o, l)| l > 0 && o + l <= size).peekable();
        while at < size {
            if let Some(&(o, l)) = runs.peek()
                && o <= at
            {
                runs.next();
                let end = o + l;
                while at < end {
                    let len = run_piece.min(end - at);
                    out.push((at, len, true));
                    at += len;
                }
                continue;
            }
            let region_end = runs.peek().map_or(size, |&(o, _)| o);
            let step = if ramp { RAMP_START.checked_shl((n / RAMP_REPEAT) as u32).unwrap_or(u64::MAX) } else { max };
            let rem = region_end - at;
            let mut len = step.min(max).min(rem);
            if region_end < size && rem > len && rem - len < MIN_SEGMENT_SIZE {
                // Never leave a sliver before a run (the file's last piece may be short).
                len = if rem >= 2 * MIN_SEGMENT_SIZE { rem - MIN_SEGMENT_SIZE } else { rem };
            }
            out.push((at, len, false));
            at += len;
            n += 1;
        }
        out
    }

    /// [`Plan::cuts_around`] in at most `cap` cuts (the entries one manifest holds, on
    /// a store that cannot nest manifests): where all the runs would make more, only
    /// the longest runs that fit are skipped, the others are sent as data. Returns the
    /// cuts and the bytes of the runs given up.
    pub fn cuts_around_within(
        &self,
        zeros: &[(u64, u64)],
        unit: Option<u64>,
        cap: u64,
    ) -> (Vec<(u64, u64, bool)>, u64) {
        let zero_bytes = |c: &[(u64, u64, bool)]| c.iter().filter(|c| c.2).map(|c| c.1).sum::<u64>();
        let all = self.cuts_around(zeros, unit);
        if all.len() as u64 <= cap || zeros.is_empty() {
            return (all, 0);
        }
        // Longest first (earliest first among equals): keep(k) skips the k longest.
        let mut order: Vec<usize> = (0..zeros.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(zeros[i].1));
        let keep = |k: usize| {
            let mut runs: Vec<(u64, u64)> = order[..k].iter().map(|&i| zeros[i]).collect();
            runs.sort_unstable();
            self.cuts_around(&runs, unit)
        };
        // keep(lo) fits (none skipped: the plan's own cuts), keep(hi) does not.
        let (mut lo, mut hi) = (0, zeros.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if keep(mid).len() as u64 <= cap { lo = mid } else { hi = mid }
        }
        let cuts = keep(lo);
        let given_up = zero_bytes(&all) - zero_bytes(&cuts);
        (cuts, given_up)
    }

    /// The first cuts of a new version of an image whose previous version (the
    /// base) has segments of `base` lengths, in order: the base's cuts as far as the
    /// file goes (the last one clipped), then cuts of the segment size. A piece under
    /// [`MIN_SEGMENT_SIZE`] that is not the last joins the next one.
    pub fn cuts_along(&self, base: &[u64]) -> Vec<(u64, u64)> {
        let (size, max) = (self.file_size, self.segment_size.max(1));
        let mut lens: Vec<u64> = vec![];
        let mut at = 0u64;
        for &len in base.iter().filter(|&&l| l > 0) {
            if at >= size {
                break;
            }
            let l = len.min(size - at);
            lens.push(l);
            at += l;
        }
        while at < size {
            let l = max.min(size - at);
            lens.push(l);
            at += l;
        }
        let mut out: Vec<(u64, u64)> = vec![];
        let mut carry = 0u64;
        let mut off = 0u64;
        let n = lens.len();
        for (i, l) in lens.into_iter().enumerate() {
            let len = carry + l;
            if len < MIN_SEGMENT_SIZE && i + 1 < n {
                carry = len;
                continue;
            }
            out.push((off, len));
            off += len;
            carry = 0;
        }
        out
    }

    /// Number of manifest levels (1 = a plain SLO, 2 = one level of sub-manifests, ...).
    pub fn manifest_levels(&self) -> u32 {
        self.levels_for(self.segment_count)
    }

    /// Manifest levels for `count` segments (the plan's, or as many as splits made).
    pub fn levels_for(&self, count: u64) -> u32 {
        if self.manifest == ManifestKind::Dlo || count == 0 {
            return 1;
        }
        let mut n = count;
        let mut levels = 1;
        while n > self.per_manifest {
            n = n.div_ceil(self.per_manifest);
            levels += 1;
        }
        levels
    }
}

/// How many cuts [`Plan::cuts`] makes, without making them.
fn ramped_count(size: u64, max: u64, manifest: ManifestKind) -> u64 {
    let (mut at, mut n, mut step) = (0u64, 0u64, RAMP_START);
    while manifest == ManifestKind::Slo && step < max && at < size {
        let ramp = (RAMP_REPEAT * step).min(size - at);
        n += ramp.div_ceil(step);
        at += ramp;
        step *= 2;
    }
    n + (size - at).div_ceil(max.max(1))
}

/// Chooses the segment size and manifest shape.
///
/// `entry_path_len` is the length of one segment's path in a manifest entry, used to
/// keep manifests under `max_manifest_size`.
pub(crate) fn plan(
    file_size: u64,
    limits: &Limits,
    requested: Option<u64>,
    manifest: ManifestKind,
    entry_path_len: usize,
) -> Result<Plan> {
    let slo = match (manifest, &limits.slo) {
        (ManifestKind::Slo, Some(s)) => Some(s),
        (ManifestKind::Slo, None) => {
            return Err(Error::input("the server does not offer SLO (static large objects) in /info")
                .hint("use --manifest dlo"));
        }
        (ManifestKind::Dlo, _) => None,
    };
    let max_seg = limits.max_file_size;
    // 0 fits nothing, not even the empty manifest's segments: refused, never divided by.
    if max_seg == 0 || (max_seg < MIN_SEGMENT_SIZE && file_size > max_seg) {
        return Err(Error::input(format!(
            "the server's max_file_size is {}: below k5up's smallest segment of {}",
            format_size(max_seg),
            format_size(MIN_SEGMENT_SIZE)
        ))
        .hint("ask the Swift operator about the proxy's max_file_size (GET /info)"));
    }
    // Entries per manifest: the segment limit, and what fits in max_manifest_size
    // (an entry is the path plus about 80 bytes of JSON, etag and size).
    let per_manifest = match slo {
        Some(s) => s.max_manifest_segments.min(s.max_manifest_size / (entry_path_len as u64 + 80)).max(2),
        None => 0,
    };
    let segment_size = match requested {
        Some(r) if r < MIN_SEGMENT_SIZE => {
            return Err(Error::input(format!(
                "--segment-size {} is below the smallest segment k5up plans, {}",
                format_size(r),
                format_size(MIN_SEGMENT_SIZE)
            ))
            .hint("Swift throttles reads of SLO segments under 1 MiB; use --segment-size 1MiB or more"));
        }
        Some(r) if r > max_seg => {
            return Err(Error::input(format!(
                "segment size {} is larger than the server's max_file_size {}",
                format_size(r),
                format_size(max_seg)
            ))
            .hint(format!("use --segment-size {} or less", format_size(max_seg))));
        }
        Some(r) => {
            if let Some(s) = slo
                && r < s.min_segment_size
                && file_size > r
            {
                return Err(Error::input(format!(
                    "segment size {r} B is below the server's SLO min_segment_size {} B",
                    s.min_segment_size
                )));
            }
            r
        }
        None => {
            let mut s = DEFAULT_SEGMENT_SIZE;
            let cap = if max_seg >= MIB { max_seg / MIB * MIB } else { max_seg };
            if per_manifest > 0 && ramped_count(file_size, s, manifest) > per_manifest {
                // Grow the segments so one manifest holds them all (ramp included), in whole MiB.
                // Past the file's size a larger segment changes nothing (the ramp alone may
                // not fit, and then the manifest nests): the search stops there, not at a
                // max_file_size of 2^64.
                s = file_size.div_ceil(per_manifest).div_ceil(MIB) * MIB;
                let upper = cap.min(file_size.div_ceil(MIB).saturating_mul(MIB));
                while s < upper && ramped_count(file_size, s, manifest) > per_manifest {
                    s += MIB;
                }
            }
            s.min(cap).max(slo.map_or(1, |l| l.min_segment_size.min(cap)))
        }
    };
    let mut p = Plan { file_size, segment_size, segment_count: 0, manifest, per_manifest };
    let segment_count = if file_size.div_ceil(segment_size) > MAX_SEGMENTS {
        file_size.div_ceil(segment_size)
    } else {
        ramped_count(file_size, segment_size, manifest)
    };
    if segment_count > MAX_SEGMENTS {
        let need = file_size.div_ceil(MAX_SEGMENTS).div_ceil(MIB) * MIB;
        return Err(Error::input(format!(
            "{} in segments of {} would make {segment_count} segments; a job holds at most {MAX_SEGMENTS}",
            format_size(file_size),
            format_size(segment_size)
        ))
        .hint(format!("use --segment-size {} or more", format_size(need))));
    }
    p.segment_count = segment_count;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// Absurd /info values (0, huge) are refused or planned, never a panic
    /// (max_file_size 0 with an empty file once divided by zero).
    #[test]
    fn absurd_limits_never_panic() {
        for mfs in [0, 1, MIN_SEGMENT_SIZE, u64::MAX] {
            for mms in [0, 1, u64::MAX] {
                for mmsize in [0, 1, u64::MAX] {
                    let mut l = Limits::swift_defaults();
                    l.max_file_size = mfs;
                    let s = l.slo.as_mut().unwrap();
                    (s.max_manifest_segments, s.max_manifest_size, s.min_segment_size) = (mms, mmsize, mms);
                    for size in [0, 1, 10 * GIB] {
                        for kind in [ManifestKind::Slo, ManifestKind::Dlo] {
                            let r = std::panic::catch_unwind(|| plan(size, &l, None, kind, 60));
                            assert!(r.is_ok(), "panic: size {size} max_file_size {mfs} segs {mms} size {mmsize}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn default_size_for_small_and_large_files() {
        let l = Limits::swift_defaults();
        let p = plan(10 * GIB, &l, None, ManifestKind::Slo, 60).unwrap();
        assert_eq!(p.segment_size, DEFAULT_SEGMENT_SIZE);
        // The ramp: 4 × (8 + 16 + 32 + 64 + 128) MiB = 992 MiB in 20 segments, then 256 MiB ones.
        assert_eq!(p.segment_count, 20 + (10 * GIB - 992 * MIB).div_ceil(DEFAULT_SEGMENT_SIZE));
        let cuts: Vec<_> = p.cuts().collect();
        assert_eq!(
            cuts[..5],
            [(0, 8 * MIB), (8 * MIB, 8 * MIB), (16 * MIB, 8 * MIB), (24 * MIB, 8 * MIB), (32 * MIB, 16 * MIB)]
        );
        assert_eq!(cuts[20], (992 * MIB, DEFAULT_SEGMENT_SIZE));
        assert_eq!(cuts.iter().map(|c| c.1).sum::<u64>(), 10 * GIB);
        assert!(cuts.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        for (size, max) in [(10 * GIB, DEFAULT_SEGMENT_SIZE), (5, 3), (100 * MIB + 1, 40 * MIB), (GIB, 8 * MIB)] {
            let q = Plan {
                file_size: size,
                segment_size: max,
                segment_count: 0,
                manifest: ManifestKind::Slo,
                per_manifest: 1000,
            };
            assert_eq!(ramped_count(size, max, ManifestKind::Slo), q.cuts().count() as u64, "{size} {max}");
        }
        let d = plan(10 * GIB, &l, None, ManifestKind::Dlo, 60).unwrap();
        assert_eq!((d.segment_count, d.cuts().next()), (40, Some((0, DEFAULT_SEGMENT_SIZE))), "no ramp for DLO");
        assert_eq!(p.manifest_levels(), 1);
        // 300 GiB: segments grow so that one manifest of <= 1000 entries suffices.
        let p = plan(300 * GIB, &l, None, ManifestKind::Slo, 60).unwrap();
        assert!(p.segment_count <= 1000, "{p:?}");
        // As README says: 24 ramp segments, then 313 MiB ones, 1000 in all.
        assert_eq!((p.segment_size, p.segment_count), (313 * MIB, 1000));
        assert_eq!(p.segment_size % MIB, 0);
        assert_eq!(p.manifest_levels(), 1);
        // 10 TiB: capped at max_file_size, so the SLO nests.
        let p = plan(10 * 1024 * GIB, &l, None, ManifestKind::Slo, 60).unwrap();
        assert_eq!(p.segment_size, 5 * GIB);
        assert_eq!(p.manifest_levels(), 2);
    }

    #[test]
    fn cuts_within_a_cap_skip_the_longest_runs_that_fit() {
        let q = Plan {
            file_size: 64 * MIB,
            segment_size: 4 * MIB,
            segment_count: 16,
            manifest: ManifestKind::Slo,
            per_manifest: 1000,
        };
        // Runs of 1 MiB every 2 MiB (each splits a data piece), and one of 8 MiB.
        let mut runs: Vec<(u64, u64)> = (0..20).map(|i| (2 * MIB * i + MIB, MIB)).collect();
        runs.push((48 * MIB, 8 * MIB));
        let (all, none) = q.cuts_around_within(&runs, Some(MIB), 1000);
        assert_eq!((all, none), (q.cuts_around(&runs, Some(MIB)), 0), "under the cap: every run");
        let cap = 30;
        let (cuts, given_up) = q.cuts_around_within(&runs, Some(MIB), cap);
        assert!(cuts.len() as u64 <= cap, "{} cuts for a cap of {cap}", cuts.len());
        assert!(cuts.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0) && cuts.last().map(|c| c.0 + c.1) == Some(64 * MIB));
        let zero: Vec<_> = cuts.iter().filter(|c| c.2).map(|c| (c.0, c.1)).collect();
        assert!(zero.iter().any(|&(o, _)| o == 48 * MIB), "the longest run is kept: {zero:?}");
        let kept: u64 = zero.iter().map(|z| z.1).sum();
        assert_eq!(kept + given_up, 28 * MIB, "what is not skipped is given up");
        assert!(given_up > 0 && given_up < 20 * MIB, "{given_up}");
        // A cap not even the plan's own cuts fit in: the plan's cuts.
        let (cuts, given_up) = q.cuts_around_within(&runs, Some(MIB), 3);
        assert_eq!((cuts, given_up), (q.cuts_around(&[], Some(MIB)), 28 * MIB));
    }

    #[test]
    fn cuts_around_zero_runs_keep_the_ramp_and_cover_the_file() {
        let q = Plan {
            file_size: 100 * MIB + 5,
            segment_size: 16 * MIB,
            segment_count: 0,
            manifest: ManifestKind::Slo,
            per_manifest: 1000,
        };
        let c = q.cuts_around(&[(9 * MIB, 40 * MIB), (60 * MIB, 3 * MIB)], None);
        let mib: Vec<_> = c.iter().map(|&(o, l, z)| (o / MIB, l / MIB, z)).collect();
        assert_eq!(
            mib,
            vec![
                (0, 8, false),
                (8, 1, false), // the ramp's next 8 MiB, cut at the run
                (9, 16, true),
                (25, 16, true),
                (41, 8, true),
                (49, 8, false),
                (57, 3, false), // 8 would leave nothing; 3 reach the run
                (60, 3, true),
                (63, 16, false),
                (79, 16, false),
                (95, 5, false),
            ]
        );
        assert_eq!(c.last().unwrap().1, 5 * MIB + 5);
        assert!(c.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        // A region that would end in a sliver before a run gives the sliver a whole MiB.
        let q = Plan {
            file_size: 40 * MIB,
            segment_size: 8 * MIB,
            segment_count: 0,
            manifest: ManifestKind::Dlo,
            per_manifest: 0,
        };
        let c = q.cuts_around(&[(8 * MIB + MIB / 2, 0), (17 * MIB + MIB / 2, 10 * MIB)], None);
        assert!(c.iter().all(|&(_, l, _)| l >= MIB), "{c:?}");
        assert_eq!(q.cuts_around(&[], None).len(), 5);
    }

    #[test]
    fn cuts_along_a_base_follow_its_segments_then_the_plan() {
        let q = Plan {
            file_size: 100 * MIB,
            segment_size: 32 * MIB,
            segment_count: 0,
            manifest: ManifestKind::Slo,
            per_manifest: 1000,
        };
        // The base: 10, 0.5, 20, 40 MiB (70.5 MiB); the new file is longer.
        let c = q.cuts_along(&[10 * MIB, MIB / 2, 20 * MIB, 40 * MIB]);
        assert_eq!(
            c,
            vec![
                (0, 10 * MIB),
                (10 * MIB, 20 * MIB + MIB / 2),
                (30 * MIB + MIB / 2, 40 * MIB),
                (70 * MIB + MIB / 2, 29 * MIB + MIB / 2)
            ]
        );
        // A shorter file: the base's cuts, the last clipped.
        let q = Plan { file_size: 25 * MIB, ..q };
        assert_eq!(q.cuts_along(&[10 * MIB, 20 * MIB, 40 * MIB]), vec![(0, 10 * MIB), (10 * MIB, 15 * MIB)]);
    }

    #[test]
    fn explicit_size_checked_against_limits() {
        let l = Limits::swift_defaults();
        assert!(plan(GIB, &l, Some(6 * GIB), ManifestKind::Slo, 60).is_err());
        assert!(plan(GIB, &l, Some(0), ManifestKind::Slo, 60).is_err());
        let p = plan(GIB + 1, &l, Some(512 << 20), ManifestKind::Dlo, 60).unwrap();
        assert_eq!(p.segment_count, 3);
        assert_eq!(p.segment(2), (GIB, 1));
        assert_eq!(p.cuts().last(), Some((GIB, 1)));
        // Past the count (once an overflow panic): an empty range at the end.
        assert_eq!(p.segment(3), (GIB + 1, 0));
        assert_eq!(p.segment(u64::MAX), (GIB + 1, 0));
    }

    #[test]
    fn small_server_limits_nest() {
        let mut l = Limits::swift_defaults();
        l.max_file_size = 16 << 20;
        l.slo.as_mut().unwrap().max_manifest_segments = 16;
        let p = plan(100 << 20, &l, Some(MIB), ManifestKind::Slo, 60).unwrap();
        assert_eq!(p.segment_count, 100);
        assert_eq!(p.per_manifest, 16);
        assert_eq!(p.manifest_levels(), 2);
        let p = plan(100 << 20, &l, None, ManifestKind::Slo, 60).unwrap();
        assert_eq!(p.segment_size, 16 << 20);
        // manifest size limit: long paths mean fewer entries per manifest
        l.slo.as_mut().unwrap().max_manifest_size = 10_000;
        let p = plan(100 << 20, &l, Some(MIB), ManifestKind::Slo, 920).unwrap();
        assert_eq!(p.per_manifest, 10);
    }

    #[test]
    fn a_floor_and_a_ceiling_on_segments() {
        let l = Limits::swift_defaults();
        // --segment-size 1B once planned 2.6 million segments for a 2.5 MiB file.
        let e = plan(5 * MIB / 2, &l, Some(1), ManifestKind::Slo, 60).unwrap_err();
        assert!(e.msg.contains("below the smallest segment"), "{}", e.msg);
        assert!(plan(5 * MIB / 2, &l, Some(MIB - 1), ManifestKind::Slo, 60).is_err());
        assert_eq!(plan(5 * MIB / 2, &l, Some(MIB), ManifestKind::Slo, 60).unwrap().segment_count, 3);
        // A tiny max_file_size from /info has the same effect.
        let mut tiny = l.clone();
        tiny.max_file_size = 1000;
        assert!(plan(5 * MIB / 2, &tiny, None, ManifestKind::Slo, 60).is_err());
        assert!(plan(900, &tiny, None, ManifestKind::Slo, 60).is_ok(), "a file that fits one object");
        // Too many segments: refused with the size that would do.
        let e = plan(2 * 1024 * GIB, &l, Some(MIB), ManifestKind::Slo, 60).unwrap_err();
        assert!(e.msg.contains("at most 1000000"), "{}", e.msg);
        assert!(e.hint.as_deref().unwrap_or("").contains("--segment-size 3.00 MiB"), "{:?}", e.hint);
    }

    #[test]
    fn empty_file_has_no_segments() {
        let p = plan(0, &Limits::swift_defaults(), None, ManifestKind::Slo, 60).unwrap();
        assert_eq!(p.segment_count, 0);
    }

    #[test]
    fn slo_requires_server_support() {
        let mut l = Limits::swift_defaults();
        l.slo = None;
        assert!(plan(GIB, &l, None, ManifestKind::Slo, 60).is_err());
        assert!(plan(GIB, &l, None, ManifestKind::Dlo, 60).is_ok());
    }
}
