//! The import phase of a job, and `k5up import JOB`.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, finish, naming_of};
use crate::error::{Error, Result};
use crate::import::{self, ImportSpec};
use crate::journal::{ImportState, JobRecord, Journal, Phase};
use crate::source;
use crate::status::StatusView;

/// First interval between two polls of the import's status.
fn first_poll() -> Duration {
    let ms = std::env::var("K5UP_IMPORT_POLL_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000u64);
    Duration::from_millis(ms.max(10))
}

/// The digests a job computes: those its import needs, plus the user's.
pub(crate) fn digests_for(import: Option<&ImportSpec>, extra: &[crate::digest::Algo]) -> Vec<crate::digest::Algo> {
    let mut v: Vec<_> = import.map(|s| s.kind.digests().to_vec()).unwrap_or_default();
    v.extend_from_slice(extra);
    v.sort();
    v.dedup();
    v
}

impl Engine {
    /// Runs (or continues) the import of a job whose object is complete.
    pub(super) async fn import_phase(
        &self,
        journal: &Arc<Journal>,
        file: &Arc<File>,
        job: &mut JobRecord,
    ) -> Result<()> {
        let Some(spec) = job.import.clone() else { return Ok(()) };
        let etag = job.manifest_etag.clone().unwrap_or_default();
        job.phase = Phase::Importing;
        journal.put_job(job)?;
        super::flush(journal)?;
        // Digests not computed while uploading (an import added later): one read of the file.
        if !journal.digest()?.complete(&job.digests) {
            tracing::info!("job {}: computing the whole-image digests the import needs (one read of the file)", job.id);
            let naming = naming_of(job);
            self.upload_missing(journal, file, job, &naming).await?;
            super::run::ensure_unchanged(job, file)?;
        }
        // The object must still be there, whole, before an image service reads it.
        finish::verify_head(&self.swift, job, &etag, Duration::from_secs(5)).await?;
        let digests = journal.digest()?;
        let progress = self.progress.clone();
        let snap_job = job.clone();
        // The import reports every state change here: journaled durably, then shown.
        let on_state = |s: &ImportState| -> Result<()> {
            journal.put_import(s)?;
            super::flush(journal)?;
            if let Ok(mut x) = progress.extras.lock() {
                x.import = Some(s.clone());
            }
            let _ = self.write_snapshot(journal, &StatusView::live(&snap_job, &progress));
            Ok(())
        };
        let ctx = import::Ctx {
            swift: &self.swift,
            job,
            spec: &spec,
            digests: &digests,
            saved: journal.import()?,
            on_state: &on_state,
            poll: first_poll(),
            // Read only if Glance must be given the data (glance-direct).
            source: super::run::ensure_unchanged(job, file).map(|_| file.clone()).map_err(|e| e.to_string()),
        };
        let done = import::run(&ctx).await?;
        job.phase = Phase::Done;
        journal.put_job(job)?;
        super::flush(journal)?;
        tracing::info!("job {}: imported as {} image {}", job.id, spec.kind.as_str(), done.image_id);
        Ok(())
    }

    /// `k5up import JOB`: (re)runs only the import of an uploaded job; `spec` (when
    /// given) replaces the journaled one.
    pub(crate) async fn import(
        &self,
        id: &str,
        spec: Option<ImportSpec>,
        share: Option<&super::ShareRequest>,
    ) -> Result<StatusView> {
        let journal = self.open_job(id)?;
        let mut job = journal.job()?;
        if job.manifest_etag.is_none() {
            return Err(Error::input(format!("job {id} is not uploaded yet (phase {})", job.phase.as_str()))
                .hint(format!("`k5up resume {id}` finishes the upload, then imports")));
        }
        let (_, file, opened) = source::open(&job.file_path()).map_err(|e| e.context(format!("job {id}")))?;
        if let Some(mut spec) = spec {
            // What was not given again keeps its journaled value (same service).
            if let Some(old) = job.import.as_ref().filter(|o| o.kind == spec.kind) {
                if spec.image_name.is_empty() {
                    spec.image_name = old.image_name.clone();
                }
                if spec.disk_format.is_empty() {
                    spec.disk_format = old.disk_format.clone();
                }
                spec.os_type = spec.os_type.or_else(|| old.os_type.clone());
                spec.min_ram = spec.min_ram.or(old.min_ram);
                spec.min_disk = spec.min_disk.or(old.min_disk);
                spec.endpoint = spec.endpoint.or_else(|| old.endpoint.clone());
            }
            let spec = import::complete(spec, &file, job.plan.file_size, &job.object)?;
            import::preflight(&self.swift, &spec).await?;
            job.digests = digests_for(Some(&spec), &job.digests);
            job.import = Some(spec);
        }
        if job.import.is_none() {
            return Err(Error::input(format!("job {id} has no import to run"))
                .hint("say which: --import k5 or --import glance"));
        }
        if let Some(r) = share {
            let s = self.or_cancel(self.share_state(r)).await?;
            Self::merge_share(&journal, &s)?;
        }
        journal.put_job(&job)?;
        super::flush(&journal)?;
        self.run(journal, file, &opened).await
    }
}
