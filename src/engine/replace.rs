//! `--replace`: uploading a file in the place of an object another job uploaded.
//!
//! The old object stays whole and readable until the new one is written and
//! verified: the new job has names of its own (a nonce in its prefix), so it never
//! writes over the old segments, and it takes the old job's segments into its
//! `replaces` list instead of deleting them. Once its manifest is verified it
//! deletes them, exactly their names (never anything longer under their prefix).

use super::{Engine, naming_of};
use crate::error::{ErrorKind, Result};
use crate::journal::{BaseSegment, JobRecord, Journal, Replaced};
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

/// When `--base` is the very object this job writes (a new version in the old one's
/// place): the jobs whose segments that object is made of. Only names that prove it
/// (see [`crate::names::job_prefix_of`]: a nonce name of this object, for the base's
/// size, in this job's segment container) count; the base's other segments (those
/// of another object, of k5up 0.2/0.3, of another tool) are left alone. Once this
/// job's object is verified nothing of this object reads them: they join the
/// job's `replaces` list and are deleted then, like a replaced job's. The new
/// object's own segments are copies (see [`super::base`]), never these.
pub(super) fn base_replaced(job: &JobRecord, naming: &SegmentNaming, base: &[BaseSegment]) -> Vec<Replaced> {
    base_prefixes(&job.object, naming, base)
        .into_iter()
        .map(|prefix| Replaced {
            job: "(the base)".into(),
            target: format!("{}/{}", job.container, job.object),
            segment_container: naming.container.clone(),
            segment_prefix: prefix,
        })
        .collect()
}

/// The prefixes of the jobs (not `naming`'s own) whose names the base's segments are,
/// for `object` at the base's size, in `naming`'s segment container.
fn base_prefixes(object: &str, naming: &SegmentNaming, base: &[BaseSegment]) -> BTreeSet<String> {
    let size = base.last().map_or(0, |b| b.offset + b.length);
    base.iter()
        .filter(|b| b.container == naming.container)
        .filter_map(|b| crate::names::job_prefix_of(object, size, &b.name))
        .filter(|p| *p != naming.prefix)
        .collect()
}

/// `more` added to `into`, each segment prefix once.
pub(super) fn merge(into: &mut Vec<Replaced>, more: Vec<Replaced>) {
    for r in more {
        if !into.iter().any(|o| o.segment_container == r.segment_container && o.segment_prefix == r.segment_prefix) {
            into.push(r);
        }
    }
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
        // A container that keeps old versions keeps the old manifests, which name the
        // old segments: deleting them would break every kept version.
        let versioning = self.swift.versioning(&job.container).await.map_err(|e| {
            e.into_error(ErrorKind::Resumable).context(format!(
                "job {}: reading {}'s versioning before deleting replaced segments",
                job.id, job.container
            ))
        })?;
        if let Some((header, value)) = versioning {
            tracing::warn!(
                "job {}: {} keeps old versions ({header}: {value}): the segments of the replaced upload(s) stay in {} under {}, for the versions kept there; delete them with those versions",
                job.id,
                job.container,
                ours.container,
                replaced.iter().map(|r| format!("{}*", r.segment_prefix)).collect::<Vec<_>>().join(", ")
            );
            journal.put_replaces(&[])?;
            return Ok(());
        }
        // Whatever the object reads now stays, whoever's names they are (read from the
        // server: its manifest's leaves; a DLO's are under the job's own prefix).
        let keep: HashSet<String> = if job.plan.segment_count == 0 {
            HashSet::new()
        } else {
            let store = journal.store()?;
            let segs = journal.segments()?;
            super::base::segments_of(&self.swift, &store, &job.container, &job.object, |_| {
                Some(super::base::as_base(job, &segs))
            })
            .await
            .map_err(|e| e.context(format!("job {}: reading its manifest before deleting replaced segments", job.id)))?
            .into_iter()
            .filter(|b| b.container == ours.container)
            .map(|b| b.name)
            .collect()
        };
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
            deleted += super::finish::delete_own(&self.swift, &old, &keep, 4).await.map_err(se)?.deleted;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_base_segments_named_for_this_object_and_size_by_one_job_are_the_replaced_ones() {
        const M: u64 = 1 << 20;
        let ours = SegmentNaming::new("c", "app.raw", true, 2_000_000_000, 4 * M, "j1111111111111111").unwrap();
        let old = SegmentNaming::new("c", "app.raw", true, 1_000_000_000, 4 * M, "j0000000000000000").unwrap();
        let other = SegmentNaming::new("c", "other.raw", true, 1_000_000_000, 4 * M, "j2222222222222222").unwrap();
        let seg = |container: &str, name: String, offset: u64| BaseSegment {
            offset,
            length: M,
            md5: Some("x".into()),
            container: container.into(),
            name,
        };
        let base = vec![
            seg("c_segments", old.name_at(0, M), 0),
            seg("c_segments", old.zero_name(&format!("object+{M}")), M),
            seg("c_segments", ours.name_at(2 * M, M), 2 * M), // the job's own: never
            seg("c_segments", other.name_at(3 * M, M), 3 * M), // another object's
        ];
        assert_eq!(base_prefixes("app.raw", &ours, &base), BTreeSet::from([old.prefix.clone()]));
        // In another container, or of k5up 0.3 (no nonce): not provably the object's.
        let elsewhere = vec![seg("d_segments", old.name_at(0, M), 0)];
        assert!(base_prefixes("app.raw", &ours, &elsewhere).is_empty());
        let nonceless =
            vec![seg("c_segments", "app.raw/slo/1.000000/1048576/bytes/0000000000000000+1048576".into(), 0)];
        assert!(base_prefixes("app.raw", &ours, &nonceless).is_empty());
    }

    #[test]
    fn merged_prefixes_are_kept_once() {
        let r = |p: &str| Replaced {
            job: "a".into(),
            target: "c/o".into(),
            segment_container: "c_segments".into(),
            segment_prefix: p.into(),
        };
        let mut into = vec![r("x/")];
        merge(&mut into, vec![r("x/"), r("y/")]);
        assert_eq!(into.iter().map(|r| r.segment_prefix.as_str()).collect::<Vec<_>>(), ["x/", "y/"]);
    }
}
