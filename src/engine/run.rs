//! Running a job: check the server (the truth) and the file, reconcile with the
//! listing, upload what is missing, write and verify the manifest, import.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, finish, flush, naming_of, reconcile};
use crate::digest::Whole;
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{JobRecord, Journal, Phase, SegState};
use crate::names::SegmentNaming;
use crate::plan::ManifestKind;
use crate::runtime::blocking;
use crate::source::{self, FileIdentity};
use crate::status::StatusView;
use crate::swift::ListEntry;
use crate::transfer::progress::Progress;
use crate::upload;
use std::collections::HashMap;

impl Engine {
    /// Runs a job on `file`, whose identity `opened` was read when it was opened (and
    /// is not read again here).
    pub(super) async fn run(&self, journal: Journal, file: File, opened: &FileIdentity) -> Result<StatusView> {
        let journal = Arc::new(journal);
        let mut job = journal.job()?;
        let url = self.swift.storage_url().await.map_err(|e| e.into_error(ErrorKind::Resumable))?;
        if url != job.storage_url {
            return Err(Error::input(format!(
                "job {} uploads to {}, but these credentials reach {url}",
                job.id, job.storage_url
            ))
            .hint("use the credentials the job was created with"));
        }
        // The file must be the one the job read: never "complete" over other bytes.
        check_identity(&job, opened)?;
        if let Some(refusal) = self.content_check(&journal, &file)? {
            return Err(refusal);
        }
        // The server is the truth for a finished job too: the object (one HEAD) and
        // its segments (one listing per 10,000).
        if job.manifest_etag.is_some() && !self.object_intact(&job, &journal).await? {
            job.manifest_etag = None;
            job.phase = Phase::Uploading;
        }
        if job.manifest_etag.is_some() {
            // A replaced object whose segments are still to delete (a run stopped
            // after the manifest was verified).
            self.delete_replaced(&journal, &job).await?;
        }
        if job.manifest_etag.is_some() && !import_pending(&journal, &job)? && !super::sharing::share_pending(&journal)?
        {
            tracing::info!("job {} is already complete (ETag {})", job.id, job.manifest_etag.as_deref().unwrap_or(""));
            return StatusView::from_journal(&job, &journal);
        }
        // Tunables: those typed now, else the job's last run's, else the defaults.
        let settings = self.given.over(journal.settings()?);
        journal.put_settings(&settings.journaled())?;
        *self.active.lock().expect("settings lock") = settings;
        if let Ok(mut x) = self.progress.extras.lock() {
            x.settings = Some(settings.journaled());
        }
        job.runs += 1;
        job.last_error = None;
        job.phase = if job.manifest_etag.is_some() && !import_pending(&journal, &job)? {
            Phase::Sharing
        } else if job.manifest_etag.is_some() {
            Phase::Importing
        } else if job.phase == Phase::Manifest {
            Phase::Manifest
        } else {
            Phase::Uploading
        };
        journal.put_job(&job)?;
        flush(&journal)?;
        let _ = self.write_snapshot(&journal, &StatusView::from_journal(&job, &journal)?);
        // Ctrl-C stops any phase; the pool also watches it to abandon segments in flight.
        let mut cancel = self.cancel.clone();
        let result = tokio::select! {
            r = self.run_phases(&journal, Arc::new(file), &mut job) => r,
            _ = crate::runtime::cancelled(&mut cancel) => Err(crate::runtime::interrupted(&job.id)),
        };
        if let Err(e) = &result {
            job.last_error = Some(e.msg.clone());
            if e.kind == ErrorKind::Failed {
                job.phase = Phase::Failed;
            }
            let _ = journal.put_job(&job);
        }
        let flushed = flush(&journal);
        let view = StatusView::live(&job, &self.progress);
        let _ = self.write_snapshot(&journal, &view);
        result?;
        flushed?;
        let mut v = StatusView::from_journal(&job, &journal)?;
        v.running = false;
        let _ = self.write_snapshot(&journal, &v);
        Ok(v)
    }

    /// True when the object of a finished job is on the server with the size and
    /// ETag its manifest was written with. Otherwise says what the server holds: the
    /// run then rebuilds it (segments still whole on the server are adopted, the
    /// manifest written again).
    pub(super) async fn object_intact(&self, job: &JobRecord, journal: &Journal) -> Result<bool> {
        let want = job.manifest_etag.as_deref().unwrap_or_default();
        let head =
            self.swift.head(&job.container, &job.object).await.map_err(|e| e.into_error(ErrorKind::Resumable))?;
        let seen = match head {
            Some(h) if h.size == job.plan.file_size && h.etag.eq_ignore_ascii_case(want) => {
                // The manifest is there; its segments may not be (deleted or
                // overwritten behind k5up's back: a GET would answer 409 or end short).
                let bad = self.segments_not_intact(job, journal).await?;
                if bad.is_empty() {
                    return Ok(true);
                }
                format!(
                    "has its manifest, but {} of its segment(s) are missing or different ({})",
                    bad.len(),
                    bad.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                )
            }
            Some(h) => format!("has size {} and ETag {} (expected {} and {want})", h.size, h.etag, job.plan.file_size),
            None => "is missing".to_string(),
        };
        tracing::warn!(
            "job {}: {}/{} {seen} on the server: rebuilding it (segments still whole there are not sent again)",
            job.id,
            job.container,
            job.object
        );
        Ok(false)
    }

    /// The segments of a finished job that the server does not hold as journaled
    /// (name, size and ETag), from one listing of the prefix per 10,000 segments,
    /// and the SLO's zero object if it has zero segments. Labels, in file order.
    pub(super) async fn segments_not_intact(&self, job: &JobRecord, journal: &Journal) -> Result<Vec<String>> {
        let naming = naming_of(job);
        let segs = journal.segments()?;
        if segs.is_empty() {
            return Ok(vec![]);
        }
        let se = |e: crate::swift::SwiftError| e.into_error(ErrorKind::Resumable);
        let listing = self.swift.list(&naming.container, &naming.prefix).await.map_err(se)?;
        let slo = job.plan.manifest == ManifestKind::Slo;
        let mut bad: Vec<String> =
            reconcile::missing_on_server(&segs, &listing, &naming, slo).into_iter().map(|s| naming.label(s)).collect();
        if slo && let Some(z) = segs.iter().filter(|s| s.is_zero()).map(|s| s.length).max() {
            let name = naming.zero_name(&format!("object+{z}"));
            let h = self.swift.head(&naming.container, &name).await.map_err(se)?;
            let md5 = crate::runtime::blocking(|| crate::zeros::md5_of_zeros(z));
            if !h.is_some_and(|h| h.size == z && h.etag.eq_ignore_ascii_case(&md5)) {
                bad.push(format!("zero object {name}"));
            }
        }
        Ok(bad)
    }

    /// Replaces the status snapshot. A failure (a full disk) does not stop the run:
    /// the journal is the truth. It is said once, since `status` from another
    /// terminal then shows older progress.
    pub(super) fn write_snapshot(&self, journal: &Journal, v: &StatusView) -> Result<()> {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::failed(e.to_string()))?;
        let r = blocking(|| journal.write_snapshot(&bytes));
        if let Err(e) = &r
            && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "job {}: cannot write the status snapshot ({}); `k5up status` from another terminal shows older progress until it can",
                journal.id(),
                e.msg
            );
        }
        r
    }

    pub(super) async fn run_phases(&self, journal: &Arc<Journal>, file: Arc<File>, job: &mut JobRecord) -> Result<()> {
        if job.manifest_etag.is_none() {
            self.upload_phases(journal, &file, job).await?;
        }
        if job.import.is_some() && import_pending(journal, job)? {
            self.import_phase(journal, &file, job).await?;
        }
        if super::sharing::share_pending(journal)? {
            self.share_phase(journal, job).await?;
        }
        Ok(())
    }

    pub(super) async fn upload_phases(
        &self,
        journal: &Arc<Journal>,
        file: &Arc<File>,
        job: &mut JobRecord,
    ) -> Result<()> {
        let naming = naming_of(job);
        self.swift.ensure_container(&job.container).await.map_err(|e| e.into_error(ErrorKind::Resumable))?;
        if job.plan.segment_count > 0 {
            self.swift.ensure_container(&naming.container).await.map_err(|e| e.into_error(ErrorKind::Resumable))?;
        }
        // Up to three rounds: a manifest the server refuses for missing segments sends those again.
        for round in 0..3 {
            self.upload_missing(journal, file, job, &naming).await?;
            job.phase = Phase::Manifest;
            journal.put_job(job)?;
            flush(journal)?;
            // The file must not have changed while it was being read.
            ensure_unchanged(job, file)?;
            let segs = journal.segments()?;
            let view = StatusView::live(job, &self.progress);
            let _ = self.write_snapshot(journal, &view);
            match finish::write_manifest(&self.swift, job, &segs, &naming).await? {
                finish::Written::Ok { etag, sent } => {
                    job.bytes_sent_other += sent;
                    let patience = if job.plan.manifest == ManifestKind::Dlo {
                        Duration::from_secs(60)
                    } else {
                        Duration::from_secs(5)
                    };
                    finish::verify_head(&self.swift, job, &etag, patience).await?;
                    if job.plan.manifest == ManifestKind::Slo {
                        finish::sweep(&self.swift, job, &segs, &naming).await?;
                    }
                    job.manifest_etag = Some(etag);
                    job.phase = Phase::Done;
                    journal.put_job(job)?;
                    flush(journal)?;
                    tracing::info!("job {}: {}/{} is complete and verified", job.id, job.container, job.object);
                    // Only now: the object it replaces was readable until this moment.
                    self.delete_replaced(journal, job).await?;
                    return Ok(());
                }
                finish::Written::Resend(indices) => {
                    tracing::warn!(
                        "job {}: manifest round {}: {} segment(s) to send again",
                        job.id,
                        round + 1,
                        indices.len()
                    );
                    for mut s in segs.into_iter().filter(|s| indices.contains(&s.index)) {
                        // (`indices` are journal keys: index, or offset for ranged names)
                        s.state = SegState::Pending;
                        if s.repeat_of().is_some() {
                            s.kind = crate::journal::SegKind::Data;
                        }
                        journal.put_segment(&s)?;
                    }
                    flush(journal)?;
                    job.phase = Phase::Uploading;
                }
            }
        }
        Err(Error::failed(format!("job {}: the server kept refusing the manifest", job.id)))
    }

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
        // one (at most a segment).
        let zeros = match (job.plan.manifest, super::zero_run(job), &job.limits.slo) {
            (ManifestKind::Dlo, Some(_), Some(slo)) => Some(Arc::new(upload::zero_source::ZeroSource::new(
                naming,
                job.plan.segment_size.min(job.plan.file_size),
                slo.max_manifest_segments,
            ))),
            _ => None,
        };
        let floor = job.plan.file_size.div_ceil(crate::plan::MAX_SEGMENTS);
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
            zero_run: super::zero_run(job),
            zeros: zeros.clone(),
            listed: listed.clone(),
            originals: naming.ranged.then(|| upload::repeats::Originals::new(&all)),
            base: copy_sources(journal.base()?, (naming.container.clone(), foreign)),
        });
        let mut cancel = self.cancel.clone();
        let snap_job = job.clone();
        let stage = upload::hasher::Stage {
            journal: journal.clone(),
            file: file.clone(),
            job_id: job.id.clone(),
            naming: naming.clone(),
            zero_run: super::zero_run(job),
            file_size: job.plan.file_size,
            progress: self.progress.clone(),
            listed,
        };
        let ready = upload::hasher::spawn(stage, all_for_hasher, r.todo, whole, settings.concurrency);
        let result = upload::run(ctx, ready, requeued, settings.concurrency, &mut cancel, || {
            let v = StatusView::live(&snap_job, &self.progress);
            match self.write_snapshot(journal, &v) {
                // The journal's file system is full: the next journal write would fail
                // at some point sled decides; stop now, cleanly, with the way out.
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::StorageFull) => {
                    Err(Error::resumable(format!("job {}: the journal's file system is full ({})", snap_job.id, e.msg))
                        .hint(format!("free space there, then `k5up resume {}`", snap_job.id)))
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

    /// The whole-image hashers still to run (`None` when every digest is known).
    pub(super) fn whole_digests(&self, journal: &Journal, job: &JobRecord) -> Result<Option<Whole>> {
        let saved = journal.digest()?;
        self.publish_digests(journal)?;
        if job.digests.is_empty() || saved.complete(&job.digests) {
            return Ok(None);
        }
        Ok(Some(Whole::resume(&job.digests, &saved)))
    }

    pub(super) fn publish_digests(&self, journal: &Journal) -> Result<()> {
        let d = journal.digest()?;
        if let Ok(mut x) = self.progress.extras.lock() {
            x.digests = d;
        }
        Ok(())
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

/// True when the job asks for an import that has not succeeded yet.
pub(super) fn import_pending(journal: &Journal, job: &JobRecord) -> Result<bool> {
    let Some(spec) = &job.import else { return Ok(false) };
    Ok(journal.import()?.is_none_or(|s| s.kind != spec.kind || s.outcome != crate::journal::ImportOutcome::Succeeded))
}

/// Refuses a source whose identity, read now, differs from the journaled one.
pub(super) fn ensure_unchanged(job: &JobRecord, file: &File) -> Result<()> {
    check_identity(job, &source::identity(file, &job.file_path())?)
}

/// Refuses a source identity that differs from the journaled one.
pub(super) fn check_identity(job: &JobRecord, now: &FileIdentity) -> Result<()> {
    match job.identity.changes(now) {
        None => Ok(()),
        Some(what) => {
            Err(Error::failed(format!("job {}: {} has changed since the upload started: {what}", job.id, job.file))
                .hint(format!(
                    "restore the original file, or upload this one in its place: `{}` (the old object stays whole until the new one is verified)",
                    super::content::replace_command(job)
                )))
        }
    }
}
