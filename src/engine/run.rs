//! Running a job: check the server (the truth) and the file, reconcile with the
//! listing, upload what is missing, write and verify the manifest, import.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, finish, flush, naming_of};
use crate::digest::Whole;
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{JobRecord, Journal, Phase, SegState};
use crate::plan::ManifestKind;
use crate::runtime::blocking;
use crate::source::{self, FileIdentity};
use crate::status::StatusView;

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

    /// Replaces the status snapshot. A failure (a full disk) does not stop the run:
    /// the journal is the truth. It is said once, since `status` from another
    /// terminal then shows older progress.
    pub(super) fn write_snapshot(&self, journal: &Journal, v: &StatusView) -> Result<()> {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let bytes = serde_json::to_vec_pretty(v)
            .map_err(|e| Error::failed(format!("job {}: cannot encode the status: {e}", v.job)).caused_by(e))?;
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
            let store = journal.store()?;
            match finish::write_manifest(&self.swift, job, &store, &segs, &naming).await? {
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
