//! The upload phase of a run: reconcile with the listing, then send every segment
//! the server lacks through the transfer core's pool (hasher ahead, zero sources,
//! repeats, copies from `--base` and other uploads of the same file).

use std::fs::File;
use std::sync::Arc;

use super::{Engine, flush, reconcile};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{JobRecord, Journal};
use crate::names::SegmentNaming;
use crate::plan::ManifestKind;
use crate::runtime::blocking;
use crate::status::StatusView;
use crate::swift::ListEntry;
use crate::transfer::progress::Progress;
use crate::upload;
use std::collections::HashMap;

impl Engine {
    /// Reconciles with the listing, then uploads every segment not on the server.
    pub(super) async fn upload_missing(
        &self,
        journal: &Arc<Journal>,
        file: &Arc<File>,
        job: &mut JobRecord,
        naming: &SegmentNaming,
    ) -> Result<()> {
        let (listing, foreign) = self.list_segments(job, naming).await?;
        super::replace::take_earlier_uploads(journal, job, naming, &foreign)?;
        let listed: Arc<HashMap<(u64, u64), ListEntry>> = Arc::new(
            listing
                .iter()
                .filter_map(|e| naming.range_of(&e.name).filter(|r| r.1 == e.bytes).map(|r| (r, e.clone())))
                .collect(),
        );
        let segs = journal.segments()?;
        let r = reconcile::reconcile(segs, listing, naming, job.plan.manifest == ManifestKind::Dlo, &foreign);
        blocking(|| journal.apply(&r.changed, &r.removed))?;
        flush(journal)?;
        if !r.lost.is_empty() {
            tracing::warn!(
                "job {}: {} confirmed segment(s) are no longer on the server; sending them again",
                job.id,
                r.lost.len()
            );
        }
        if !r.adopted.is_empty() {
            tracing::info!("job {}: {} segment(s) found whole on the server, not sent again", job.id, r.adopted.len());
        }
        // Counters start from the journal.
        let all = journal.segments()?;
        let base = StatusView::from_records(job, &all);
        let all_for_hasher = all.clone();
        let p = &self.progress;
        use std::sync::atomic::Ordering::Relaxed;
        p.bytes_total.store(job.plan.file_size, Relaxed);
        p.segments_total.store(all.len() as u64, Relaxed);
        p.bytes_confirmed.store(base.bytes_confirmed, Relaxed);
        p.segments_confirmed.store(base.segments_confirmed, Relaxed);
        p.bytes_sent.store(base.bytes_sent.saturating_sub(job.bytes_sent_other), Relaxed);
        p.bytes_wasted.store(base.bytes_wasted, Relaxed);
        p.bytes_zero.store(base.bytes_zero, Relaxed);
        p.splits.store(journal.splits()?, Relaxed);
        p.bytes_repeated.store(base.bytes_deduplicated, Relaxed);
        p.bytes_copied.store(base.bytes_copied_server_side, Relaxed);
        let whole = self.whole_digests(journal, job)?;
        if r.todo.is_empty() && whole.is_none() {
            return Ok(());
        }
        if !r.todo.is_empty() {
            // Segments the server holds under their names with the right size are
            // hashed and adopted if their MD5 matches: not counted as "to send".
            let listed = r.todo.iter().filter(|(s, e)| e.as_ref().is_some_and(|e| e.bytes == s.length)).count();
            let on_server = if listed > 0 {
                format!("; {listed} more are on the server under their names and are checked before sending")
            } else {
                String::new()
            };
            tracing::info!(
                "job {}: {} of {} segments to send ({} confirmed{on_server})",
                job.id,
                r.todo.len() - listed,
                all.len(),
                base.segments_confirmed
            );
        }
        let settings = self.settings();
        let (requeue, requeued) = tokio::sync::mpsc::unbounded_channel();
        // A DLO's zero segments are copied on the server from a maker of the longest
        // one (at most a segment), or from a zero object of the unit where the store
        // cannot make zeros of any length.
        let store = journal.store()?;
        let rule = super::zero_rule(job, &store);
        let zeros = match (job.plan.manifest, rule, &job.limits.slo) {
            (ManifestKind::Dlo, Some(r), Some(slo)) => Some(Arc::new(match r.unit {
                None => upload::zero_source::ZeroSource::new(
                    naming,
                    job.plan.segment_size.min(job.plan.file_size),
                    slo.max_manifest_segments,
                ),
                Some(u) => upload::zero_source::ZeroSource::plain(naming, u),
            })),
            _ => None,
        };
        let floor = job.plan.file_size.div_ceil(crate::plan::MAX_SEGMENTS);
        let base = copy_sources(journal.base()?, (naming.container.clone(), foreign));
        // A small page cache: read each segment once, hashing it while it is sent
        // (not for a new version: its segments' MD5s find the base's copies).
        let room = crate::memory::page_cache_room();
        let hash_while_sending =
            base.is_empty() && upload::hasher::hash_while_sending(job.plan.segment_size, settings.concurrency, room);
        if hash_while_sending {
            tracing::debug!(
                "job {}: segments are hashed while they are sent (read from storage once; repeats are not looked for) unless the link proves much slower than the disk: {} segments of {} hashed, then sent, would not fit in half the {} of page cache this process can count on",
                job.id,
                settings.concurrency,
                crate::units::format_size(job.plan.segment_size),
                crate::units::format_size(room.unwrap_or(0))
            );
        }
        // Hashed while sent, with whole-image digests to make: the digests read each
        // byte after the body that sends it, from the page cache, within a quarter of it.
        let shared_reads = match (&whole, hash_while_sending) {
            (Some(w), true) => {
                // A quarter: the reader furthest behind may go past the budget, and the
                // kernel's read-ahead and the uploads' own blocks take cache too
                // (bench/lowmem.sh: half read the file 1.21 times, a quarter 1.08).
                let budget = room.unwrap_or(0) / 4;
                tracing::debug!(
                    "job {}: the whole-image digests read what the uploads read, from the page cache (at most {} ahead)",
                    job.id,
                    crate::units::format_size(budget)
                );
                let ranges = r.todo.iter().filter(|(s, _)| !s.is_zero()).map(|(s, _)| (s.offset, s.length));
                Some(upload::shared_reads::SharedReads::new(budget, w.offset(), ranges))
            }
            _ => None,
        };
        let ctx = Arc::new(upload::Ctx {
            swift: self.swift.clone(),
            journal: journal.clone(),
            file: file.clone(),
            naming: naming.clone(),
            progress: self.progress.clone(),
            stall_timeout: settings.stall_timeout,
            job_id: job.id.clone(),
            file_size: job.plan.file_size,
            segment_size: job.plan.segment_size,
            pacer: settings.bwlimit.map(|r| Arc::new(crate::transfer::pace::Pacer::new(r))),
            sizer: crate::transfer::sizer::Sizer::new(floor, naming.ranged, job.plan.manifest == ManifestKind::Slo),
            requeue,
            zero_rule: rule,
            split_cap: super::split_cap(job, &store),
            zeros: zeros.clone(),
            listed: listed.clone(),
            originals: naming.ranged.then(|| upload::repeats::Originals::new(&all)),
            read_mode: upload::ReadMode::new(hash_while_sending, &job.id),
            shared_reads: shared_reads.clone(),
            base,
        });
        let mut cancel = self.cancel.clone();
        let snap_job = job.clone();
        let stage = upload::hasher::Stage {
            journal: journal.clone(),
            file: file.clone(),
            job_id: job.id.clone(),
            naming: naming.clone(),
            zero_rule: rule,
            file_size: job.plan.file_size,
            progress: self.progress.clone(),
            page_cache_room: room,
            listed,
            shared_reads,
        };
        let ready = upload::hasher::spawn(stage, all_for_hasher, r.todo, whole, settings.concurrency);
        let result = upload::run(ctx, ready, requeued, settings.concurrency, &mut cancel, || {
            let v = StatusView::live(&snap_job, &self.progress);
            match self.write_snapshot(journal, &v) {
                // The journal's file system is full: the next journal write would fail
                // at some point sled decides; stop now, cleanly, with the way out.
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::StorageFull) => {
                    Err(Error::resumable(format!("job {}: the journal's file system is full ({})", snap_job.id, e.msg))
                        .hint(format!("free space there, then `k5up resume {}`", snap_job.id))
                        .caused_by(e))
                }
                _ => Ok(()),
            }
        })
        .await;
        if let Some(z) = &zeros {
            job.bytes_sent_other += z.sent();
        }
        result?;
        let (sent, adopted) = (Progress::get(&p.segments_sent), Progress::get(&p.segments_adopted));
        let made = [
            (&p.segments_zero, "zeros"),
            (&p.segments_repeated, "repeats"),
            (&p.segments_copied, "copied from the base"),
        ]
        .into_iter()
        .map(|(c, what)| (Progress::get(c), what))
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!(", {n} {what}"))
        .collect::<String>();
        if adopted > 0 || !made.is_empty() {
            tracing::info!(
                "job {}: {sent} segment(s) sent, {adopted} found whole on the server{made} (not sent)",
                job.id
            );
        }
        self.publish_digests(journal)
    }

    /// The listing of the job's prefix, and the segments of other jobs of the same
    /// object and file (size, mtime) that the server holds whole: those of a job
    /// whose journal was lost, or of an earlier build being replaced. One listing
    /// of the stem serves both. The others' segments are never used as they are
    /// (they are not this job's to keep or delete): a segment of this job with the
    /// same MD5 and length is copied from one on the server instead of being sent.
    async fn list_segments(&self, job: &JobRecord, naming: &SegmentNaming) -> Result<(Vec<ListEntry>, Vec<ListEntry>)> {
        let se = |e: crate::swift::SwiftError| e.into_error(ErrorKind::Resumable);
        let Some(stem) = naming.stem().filter(|_| job.plan.segment_count > 0) else {
            return Ok((self.swift.list(&naming.container, &naming.prefix).await.map_err(se)?, vec![]));
        };
        let (own, others): (Vec<ListEntry>, Vec<ListEntry>) = self
            .swift
            .list(&naming.container, stem)
            .await
            .map_err(se)?
            .into_iter()
            .partition(|e| e.name.starts_with(&naming.prefix));
        let foreign: Vec<ListEntry> = others
            .into_iter()
            .filter(|e| naming.foreign_range_of(&e.name).is_some_and(|(_, len)| len == e.bytes && len > 0))
            .collect();
        if !foreign.is_empty() {
            tracing::info!(
                "job {}: {} segment(s) of other uploads of this file are on the server: the same bytes are copied there, not sent",
                job.id,
                foreign.len()
            );
        }
        Ok((own, foreign))
    }
}

/// What a segment with a given (MD5, length) may be copied from on the server:
/// the segments of `--base`, then those of other uploads of the same file.
fn copy_sources(
    base: Vec<crate::journal::BaseSegment>,
    foreign: (String, Vec<ListEntry>),
) -> HashMap<(String, u64), (String, String)> {
    let mut out: HashMap<(String, u64), (String, String)> =
        base.into_iter().filter_map(|b| Some(((b.md5?, b.length), (b.container, b.name)))).collect();
    let (container, entries) = foreign;
    for e in entries {
        out.entry((e.hash.to_ascii_lowercase(), e.bytes)).or_insert((container.clone(), e.name));
    }
    out
}
