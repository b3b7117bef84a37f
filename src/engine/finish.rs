//! The end of an upload: write the manifest (SLO, nested when needed, or DLO), then
//! HEAD the object and check its size and ETag against the journal.

use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::error::{Error, ErrorKind, Result};
use crate::journal::{JobRecord, SegmentRecord};
use crate::names::SegmentNaming;
use crate::plan::ManifestKind;
use crate::swift::StoreTraits;
use crate::swift::manifest::{Entry, HeartbeatResult, large_object_etag, slo_body, slo_etag, slo_layout};
use crate::swift::{Swift, dlo_manifest_value};
use crate::upload::zero_source::{ZeroSource, holds_zeros, put_zeros};
use crate::zeros::md5_of_zeros;

/// MD5 of nothing: the ETag of an empty object.
pub(crate) const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// How writing the manifest went.
#[derive(Debug)]
pub(super) enum Written {
    /// Written; the object must now have this ETag.
    Ok {
        /// Expected ETag (unquoted).
        etag: String,
        /// Bytes of manifest bodies sent.
        sent: u64,
    },
    /// The server refused some segments (missing, or another ETag/size): send them again.
    Resend(Vec<u64>),
}

/// The ETag the finished object will have.
pub(super) fn expected_etag(job: &JobRecord, segs: &[SegmentRecord], naming: &SegmentNaming) -> String {
    if segs.is_empty() {
        return EMPTY_MD5.to_string();
    }
    match job.plan.manifest {
        ManifestKind::Dlo => large_object_etag(segs.iter().map(|s| s.md5.as_deref().unwrap_or(""))),
        ManifestKind::Slo => slo_etag(&layout(job, segs, naming).top),
    }
}

/// The zero object of an SLO job with zero segments: its name and length (that of
/// the longest zero segment; the others take a range of it).
fn zero_object(segs: &[SegmentRecord], naming: &SegmentNaming) -> Option<(String, u64)> {
    let z = segs.iter().filter(|s| s.is_zero()).map(|s| s.length).max()?;
    Some((naming.zero_name(&format!("object+{z}")), z))
}

fn layout(job: &JobRecord, segs: &[SegmentRecord], naming: &SegmentNaming) -> crate::swift::manifest::SloLayout {
    let zero = zero_object(segs, naming).map(|(name, z)| (format!("/{}/{name}", naming.container), z, md5_of_zeros(z)));
    let entries = segs
        .iter()
        .map(|s| match &zero {
            Some((path, z, md5)) if s.is_zero() => Entry {
                path: path.clone(),
                etag: md5.clone(),
                size_bytes: *z,
                // Swift drops a range that covers the whole segment (and so does its ETag).
                range: (s.length < *z).then(|| format!("0-{}", s.length - 1)),
            },
            // A repeat lists its original again (a segment of this job only).
            _ => Entry::whole(
                format!(
                    "/{}/{}",
                    naming.container,
                    s.repeat_of().map_or_else(|| naming.name(s), |of| naming.name_at(of, s.length))
                ),
                s.md5.clone().unwrap_or_default(),
                s.length,
            ),
        })
        .collect();
    slo_layout(entries, job.plan.per_manifest as usize, &naming.container, |l, i| naming.sub_manifest_name(l, i))
}

/// Makes the SLO's zero object unless the server holds it whole. Returns the
/// bytes put on the wire (the zero seed and its maker, or the zero object itself
/// where the store cannot make zeros).
async fn ensure_zero_object(
    swift: &Swift,
    job: &JobRecord,
    store: &StoreTraits,
    naming: &SegmentNaming,
    name: &str,
    len: u64,
) -> Result<u64> {
    let fail = |e: crate::swift::SwiftError| {
        e.into_error(ErrorKind::Resumable).hint(format!("run `k5up resume {}` to try the manifest again", job.id))
    };
    if holds_zeros(swift, &naming.container, name, len).await.map_err(fail)? {
        return Ok(0);
    }
    if !store.makes_zeros() {
        let sent = put_zeros(swift, &naming.container, name, len).await.map_err(fail)?;
        tracing::info!("job {}: zero object of {} sent (once per job)", job.id, crate::units::format_size(len));
        return Ok(sent);
    }
    let per = job.limits.slo.as_ref().map_or(1000, |s| s.max_manifest_segments);
    let src = ZeroSource::new(naming, len, per);
    src.copy_to(swift, &naming.container, name, len).await.map_err(fail)?;
    tracing::info!("job {}: zero object of {} made on the server", job.id, crate::units::format_size(len));
    Ok(src.sent())
}

/// Writes the manifest of a job whose segments are all confirmed.
pub(super) async fn write_manifest(
    swift: &Swift,
    job: &JobRecord,
    store: &StoreTraits,
    segs: &[SegmentRecord],
    naming: &SegmentNaming,
) -> Result<Written> {
    let fail = |e: crate::swift::SwiftError| {
        e.into_error(ErrorKind::Resumable).hint(format!("run `k5up resume {}` to try the manifest again", job.id))
    };
    if segs.is_empty() {
        let op = format!("PUT empty object {}/{}", job.container, job.object);
        swift
            .put_small(&op, &job.container, &job.object, "", vec![], &[("ETag", EMPTY_MD5.into())])
            .await
            .map_err(fail)?;
        return Ok(Written::Ok { etag: EMPTY_MD5.into(), sent: 0 });
    }
    // A repeat whose original was split since (sent again after it was lost): send it.
    let broken = super::reconcile::broken_repeats(segs.iter());
    if !broken.is_empty() {
        return Ok(Written::Resend(broken.into_iter().collect()));
    }
    match job.plan.manifest {
        ManifestKind::Dlo => {
            // A DLO is whatever its prefix lists: pieces outside the cuts must go first.
            sweep(swift, job, segs, naming).await?;
            let value = dlo_manifest_value(&naming.container, &naming.prefix);
            let op = format!("PUT DLO manifest {}/{}", job.container, job.object);
            swift
                .put_small(&op, &job.container, &job.object, "", vec![], &[("X-Object-Manifest", value)])
                .await
                .map_err(fail)?;
            Ok(Written::Ok { etag: expected_etag(job, segs, naming), sent: 0 })
        }
        ManifestKind::Slo => {
            let l = layout(job, segs, naming);
            if !l.subs.is_empty() && !store.nested_slo {
                return Err(Error::failed(format!(
                    "job {}: {} segments do not fit in one manifest of {} entries, and this store does not take nested manifests",
                    job.id,
                    segs.len(),
                    job.plan.per_manifest
                ))
                .hint(format!("`k5up abort {}`, then upload again with --manifest dlo", job.id)));
            }
            let mut sent = 0;
            if let Some((name, len)) = zero_object(segs, naming) {
                sent += ensure_zero_object(swift, job, store, naming, &name, len).await?;
            }
            if !store.manifest_etag {
                // The store takes no Etag header on a manifest: what the manifest names
                // is checked against the listing first, the object by HEAD after.
                let resend = not_listed(swift, job, segs, naming).await?;
                if !resend.is_empty() {
                    return Ok(Written::Resend(resend));
                }
            }
            for sub in &l.subs {
                let body = slo_body(&sub.entries);
                sent += body.len() as u64;
                let want = slo_etag(&sub.entries);
                let etag = store.manifest_etag.then_some(want.as_str());
                let r = swift.put_slo(&naming.container, &sub.name, body, etag).await.map_err(fail)?;
                if let Some(resend) = check(job, naming, &sub.name, &r, &want)? {
                    return Ok(Written::Resend(resend));
                }
            }
            let body = slo_body(&l.top);
            sent += body.len() as u64;
            let want = slo_etag(&l.top);
            let etag = store.manifest_etag.then_some(want.as_str());
            let r = swift.put_slo(&job.container, &job.object, body, etag).await.map_err(fail)?;
            if let Some(resend) = check(job, naming, &job.object, &r, &want)? {
                return Ok(Written::Resend(resend));
            }
            Ok(Written::Ok { etag: want, sent })
        }
    }
}

/// The keys of the segments the listing of the job's prefix does not hold whole
/// (size and MD5), to send again before a manifest the store does not check by
/// its ETag (the zero object was checked when it was made; repeats name their
/// originals, which are among these).
async fn not_listed(
    swift: &Swift,
    job: &JobRecord,
    segs: &[SegmentRecord],
    naming: &SegmentNaming,
) -> Result<Vec<u64>> {
    let listing = swift.list(&naming.container, &naming.prefix).await.map_err(|e| {
        e.into_error(ErrorKind::Resumable).hint(format!("run `k5up resume {}` to try the manifest again", job.id))
    })?;
    let resend: Vec<u64> =
        super::reconcile::missing_on_server(segs, &listing, naming, true).iter().map(|s| s.index).collect();
    if !resend.is_empty() {
        tracing::warn!(
            "job {}: {} segment(s) of the manifest are missing or differ in the listing of {}; sending them again",
            job.id,
            resend.len(),
            naming.container
        );
    }
    Ok(resend)
}

/// Deletes the job's own names (see [`SegmentNaming::is_own`]) besides the
/// segments of its cuts and the sub-manifests its SLO uses: pieces of other cuts
/// (a segment whose PUT completed unseen before it was split, pieces adopted by
/// nothing after a lost journal). Only for jobs whose names say their bytes: an
/// index-named job of k5up 0.1 never splits. Returns how many were deleted.
pub(super) async fn sweep(
    swift: &Swift,
    job: &JobRecord,
    segs: &[SegmentRecord],
    naming: &SegmentNaming,
) -> Result<usize> {
    if !naming.ranged || segs.is_empty() {
        return Ok(0);
    }
    let se = |e: crate::swift::SwiftError| {
        e.into_error(ErrorKind::Resumable).context(format!("job {}: removing segments outside the manifest", job.id))
    };
    let mut keep: std::collections::HashSet<String> = segs.iter().map(|s| naming.name(s)).collect();
    if job.plan.manifest == ManifestKind::Slo {
        keep.extend(layout(job, segs, naming).subs.into_iter().map(|s| s.name));
        keep.extend(zero_object(segs, naming).map(|z| z.0));
    }
    let gone = delete_own(swift, naming, &keep, 4).await.map_err(se)?;
    if gone.deleted > 0 {
        tracing::info!(
            "job {}: {} segment(s) of other cuts or zero makers deleted from {} (not part of the object)",
            job.id,
            gone.deleted,
            naming.container
        );
    }
    Ok(gone.deleted)
}

/// What [`delete_own`] did.
#[derive(Debug, Default)]
pub(super) struct Deleted {
    /// Names deleted.
    pub deleted: usize,
    /// Names listed under the prefix that are not the job's (left alone).
    pub others: usize,
}

/// Deletes every name the server lists under `naming`'s prefix and zero prefix
/// that is exactly one of the job's own (see [`SegmentNaming::is_own`]), except
/// those in `keep`, `concurrency` at a time. Anything longer under the prefix (an
/// object named after it, and its segments) is someone else's and stays. The one
/// way k5up deletes segments: the sweep, `abort`, and a replaced object's.
pub(super) async fn delete_own(
    swift: &Swift,
    naming: &SegmentNaming,
    keep: &std::collections::HashSet<String>,
    concurrency: usize,
) -> std::result::Result<Deleted, crate::swift::SwiftError> {
    use futures_util::StreamExt;
    let mut listing = swift.list(&naming.container, &naming.prefix).await?;
    if naming.ranged {
        // The zero object, seed and makers.
        listing.extend(swift.list(&naming.container, &naming.zero_prefix()).await?);
    }
    let (own, others): (Vec<_>, Vec<_>) = listing.into_iter().map(|e| e.name).partition(|n| naming.is_own(n));
    let doomed: Vec<String> = own.into_iter().filter(|n| !keep.contains(n)).collect();
    let results: Vec<_> = futures_util::stream::iter(doomed.iter().map(|n| swift.delete(&naming.container, n, "")))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut out = Deleted { deleted: 0, others: others.len() };
    for r in results {
        if r? {
            out.deleted += 1;
        }
    }
    Ok(out)
}

/// Checks a heartbeat result: `Ok(None)` when written with the expected ETag,
/// `Ok(Some(indices))` when segments must be sent again.
fn check(
    job: &JobRecord,
    naming: &SegmentNaming,
    name: &str,
    r: &HeartbeatResult,
    want: &str,
) -> Result<Option<Vec<u64>>> {
    if r.status == 201 || r.status == 200 {
        return match &r.etag {
            Some(e) if !e.eq_ignore_ascii_case(want) => Err(Error::failed(format!(
                "job {}: manifest {name} was written with ETag {e}, expected {want}",
                job.id
            ))),
            _ => Ok(None),
        };
    }
    let prefix = format!("/{}/", naming.container);
    let resend: Vec<u64> = r
        .errors
        .iter()
        .filter_map(|(path, _)| {
            let p = percent_decode_str(path).decode_utf8_lossy();
            naming.key_of(p.strip_prefix(&prefix)?)
        })
        .collect();
    if !resend.is_empty() && resend.len() == r.errors.len() {
        tracing::warn!(
            "job {}: the server refused {} segment(s) in the manifest ({}); sending them again",
            job.id,
            resend.len(),
            r.errors.iter().map(|(p, why)| format!("{p}: {why}")).take(3).collect::<Vec<_>>().join("; ")
        );
        return Ok(Some(resend));
    }
    Err(Error::failed(format!(
        "job {}: the server refused manifest {name}: {} {} {}",
        job.id,
        r.status,
        r.body.trim(),
        r.errors.iter().map(|(p, why)| format!("{p}: {why}")).collect::<Vec<_>>().join("; ")
    ))
    .hint(format!("`k5up verify {}` compares the server with the journal", job.id)))
}

/// HEADs the object until its size and ETag are the expected ones. A DLO is read
/// through an eventually consistent listing, so it gets up to `patience` to settle.
pub(super) async fn verify_head(swift: &Swift, job: &JobRecord, want_etag: &str, patience: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let head = swift.head(&job.container, &job.object).await.map_err(|e| e.into_error(ErrorKind::Resumable))?;
        let (size, etag) = head.map(|h| (h.size, h.etag)).unwrap_or((0, "(missing)".into()));
        if size == job.plan.file_size && etag.eq_ignore_ascii_case(want_etag) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::failed(format!(
                "job {}: {}/{} on the server has size {size} and ETag {etag}; expected size {} and ETag {want_etag}",
                job.id, job.container, job.object, job.plan.file_size
            ))
            .hint(format!("`k5up verify {}` shows which segments differ", job.id)));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
