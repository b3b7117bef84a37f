//! `--replace`: uploading a file in the place of an object another job uploaded.
//!
//! The old object stays whole and readable until the new one is written and
//! verified: the new job has names of its own (a nonce in its prefix), so it never
//! writes over the old segments, and it takes the old job's segments into its
//! `replaces` list instead of deleting them. Once its manifest is verified it
//! deletes them, exactly their names (never anything longer under their prefix).

use futures_util::StreamExt;

use super::{Engine, naming_of};
use crate::error::{ErrorKind, Result};
use crate::journal::{JobRecord, Journal, Replaced};
use crate::names::SegmentNaming;

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

impl Engine {
    /// Drops the journal of a job whose object is being replaced, keeping
    /// everything it put on the server. Returns what the new job must delete once
    /// its own object is verified: the old job's segments, and those of what the
    /// old job was itself replacing.
    pub(super) fn take_over(&self, old: Journal) -> Result<Vec<Replaced>> {
        let out = replaced_of(&old)?;
        let job = old.job()?;
        self.root.remove(old)?;
        tracing::info!(
            "--replace: job {} dropped; its segments stay until the new object is written and verified",
            job.id
        );
        Ok(out)
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
            deleted += self.delete_own_names(&old, &job.id).await?;
        }
        journal.put_replaces(&[])?;
        tracing::info!(
            "job {}: {deleted} segment object(s) of the replaced upload(s) ({}) deleted",
            job.id,
            replaced.iter().map(|r| format!("job {}", r.job)).collect::<Vec<_>>().join(", ")
        );
        Ok(())
    }

    /// Deletes exactly the names of `naming` that the server lists (segments,
    /// sub-manifests, zero objects); returns how many.
    pub(super) async fn delete_own_names(&self, naming: &SegmentNaming, job_id: &str) -> Result<usize> {
        let se = |e: crate::swift::SwiftError| {
            e.into_error(ErrorKind::Resumable).context(format!("job {job_id}: deleting the replaced object's segments"))
        };
        let mut listing = self.swift.list(&naming.container, &naming.prefix).await.map_err(se)?;
        if naming.ranged {
            listing.extend(self.swift.list(&naming.container, &naming.zero_prefix()).await.map_err(se)?);
        }
        let names: Vec<String> = listing.into_iter().map(|e| e.name).filter(|n| naming.is_own(n)).collect();
        let results: Vec<_> =
            futures_util::stream::iter(names.iter().map(|n| self.swift.delete(&naming.container, n, "")))
                .buffer_unordered(4)
                .collect()
                .await;
        let mut n = 0;
        for r in results {
            if r.map_err(se)? {
                n += 1;
            }
        }
        Ok(n)
    }
}
