//! `--replace`: uploading a file in the place of an object another job uploaded.
//!
//! The old object stays whole and readable until the new one is written and
//! verified: the new job has names of its own (a nonce in its prefix), so it never
//! writes over the old segments, and it takes the old job's segments into its
//! `replaces` list instead of deleting them. Once its manifest is verified it
//! deletes them, exactly their names (never anything longer under their prefix).

use super::{Engine, naming_of};
use crate::error::{ErrorKind, Result};
use crate::journal::{JobRecord, Journal, Replaced};
use crate::names::SegmentNaming;
use crate::swift::ListEntry;
use std::collections::{BTreeSet, HashSet};

/// What a job replacing `old`'s object must delete once its own is verified.
pub(super) fn replaced_of(old: &Journal) -> Result<Vec<Replaced>> {
    let job = old.job()?;
    let mut out = old.replaces()?;
    out.push(Replaced {
        job: job.id.clone(),
        target: format!("{}/{}", job.container, job.object),
        segment_container: job.segment_container.clone(),
        segment_prefix: job.segment_prefix.clone(),
    });
    Ok(out)
}

/// Segments of earlier uploads of this object (same size and mtime) that no job
/// of this journal holds any more (a lost journal, a damaged one set aside): they
/// serve as copy sources, and once this job's object is verified nothing uses them
/// (the object was theirs), so they join the job's `replaces` list and are deleted
/// then, like a replaced object's. Until then the old object stays readable.
pub(super) fn take_earlier_uploads(
    journal: &Journal,
    job: &JobRecord,
    naming: &SegmentNaming,
    foreign: &[ListEntry],
) -> Result<()> {
    let mut replaced = journal.replaces()?;
    let known: HashSet<String> = replaced.iter().map(|r| r.segment_prefix.clone()).collect();
    let found: BTreeSet<String> = foreign
        .iter()
        .filter_map(|e| e.name.rfind("/bytes/").map(|i| e.name[..i + "/bytes/".len()].to_string()))
        .filter(|p| !known.contains(p) && *p != naming.prefix)
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    tracing::info!(
        "job {}: {} earlier upload(s) of {}/{} with no job in this journal: their segments are copied where they match, and deleted once this object is verified",
        job.id,
        found.len(),
        job.container,
        job.object
    );
    replaced.extend(found.into_iter().map(|prefix| Replaced {
        job: "(no journal)".into(),
        target: format!("{}/{}", job.container, job.object),
        segment_container: naming.container.clone(),
        segment_prefix: prefix,
    }));
    journal.put_replaces(&replaced)
}

impl Engine {
    /// Drops the journal of a job whose object is being replaced, keeping
    /// everything it put on the server: the new job took its segments into its
    /// own `replaces` list first (see [`replaced_of`]).
    pub(super) fn drop_replaced(&self, old: Journal) -> Result<()> {
        let id = old.id().to_string();
        self.root.remove(old)?;
        tracing::info!("--replace: job {id} dropped; its segments stay until the new object is written and verified");
        Ok(())
    }

    /// Deletes the segments of the objects this job replaced (its own manifest is
    /// verified), then forgets them.
    pub(super) async fn delete_replaced(&self, journal: &Journal, job: &JobRecord) -> Result<()> {
        let replaced = journal.replaces()?;
        if replaced.is_empty() {
            return Ok(());
        }
        let ours = naming_of(job);
        let mut deleted = 0usize;
        for r in &replaced {
            let old = SegmentNaming::of_job(&r.segment_container, &r.segment_prefix);
            if old == ours {
                continue; // never the job's own
            }
            let se = |e: crate::swift::SwiftError| {
                e.into_error(ErrorKind::Resumable)
                    .context(format!("job {}: deleting the segments of the object it replaced (job {})", job.id, r.job))
            };
            deleted += super::finish::delete_own(&self.swift, &old, &Default::default(), 4).await.map_err(se)?.deleted;
        }
        journal.put_replaces(&[])?;
        tracing::info!(
            "job {}: {deleted} segment object(s) of the replaced upload(s) ({}) deleted",
            job.id,
            replaced.iter().map(|r| format!("job {}", r.job)).collect::<Vec<_>>().join(", ")
        );
        Ok(())
    }
}
