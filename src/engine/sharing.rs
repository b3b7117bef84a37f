//! The sharing phase of a job (after its import), `k5up share JOB` and `k5up accept`.

use std::sync::Arc;

use super::{Engine, flush};
use crate::error::{Error, Result};
use crate::import::{self, ImportKind};
use crate::journal::{ImportOutcome, JobRecord, Journal, Phase, ShareState};
use crate::status::StatusView;

/// `--share-with` and its companions, as typed.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShareRequest {
    /// Project ids or names.
    pub projects: Vec<String>,
    /// `--share-domain`: the domain of project names (default: the user's).
    pub domain: Option<String>,
    /// `--glance-url` for the sharing (default: the import's Glance, else the catalog's).
    pub glance_url: Option<String>,
}

/// True when the job has projects to share its image with that are not all done,
/// or when its image is not the one they were shared (a later import, e.g. into K5
/// after Glance, makes a new image: the job's projects get it too).
pub(super) fn share_pending(journal: &Journal) -> Result<bool> {
    let Some(s) = journal.share()? else { return Ok(false) };
    if !s.done {
        return Ok(true);
    }
    let imported = journal.import()?.filter(|i| i.outcome == ImportOutcome::Succeeded);
    Ok(imported.is_some_and(|i| s.image_id.as_deref() != Some(i.image_id.as_str())))
}

impl Engine {
    /// Resolves the projects of `req` in Keystone (an unknown project is refused
    /// here, before anything is uploaded) into a sharing request.
    pub(super) async fn share_state(&self, req: &ShareRequest) -> Result<ShareState> {
        let targets = import::projects::resolve(&self.swift, &req.projects, req.domain.as_deref()).await?;
        Ok(ShareState::new(targets, req.glance_url.clone()))
    }

    /// Adds `new` to the job's sharing request (journaled, flushed).
    pub(super) fn merge_share(journal: &Journal, new: &ShareState) -> Result<()> {
        let mut s = journal.share()?.unwrap_or_else(|| ShareState::new(vec![], None));
        s.ask(&new.targets, new.glance_url.clone());
        journal.put_share(&s)?;
        flush(journal)
    }

    /// Runs (or continues) the sharing of a job whose import succeeded.
    pub(super) async fn share_phase(&self, journal: &Arc<Journal>, job: &mut JobRecord) -> Result<()> {
        if !share_pending(journal)? {
            return Ok(());
        }
        let mut state = journal.share()?.unwrap_or_else(|| ShareState::new(vec![], None));
        let imported = journal.import()?.filter(|i| i.outcome == ImportOutcome::Succeeded).ok_or_else(|| {
            Error::input(format!("job {}: the image is not imported yet: there is nothing to share", job.id))
                .hint(format!("`k5up import {} --import glance` (or k5) imports it, then shares it", job.id))
        })?;
        if state.image_id.as_deref() != Some(imported.image_id.as_str()) {
            // A new import (a K5 retry has a new image id): its members start afresh.
            state.image_id = Some(imported.image_id.clone());
            state.members.clear();
            state.visibility = None;
            state.done = false;
        }
        let explicit = state
            .glance_url
            .clone()
            .or_else(|| job.import.as_ref().filter(|s| s.kind == ImportKind::Glance).and_then(|s| s.endpoint.clone()));
        let v1 = matches!(self.swift.auth().credentials(), crate::swift::Credentials::V1 { .. });
        let glance = import::glance::base_url(&self.swift, explicit.as_deref()).await.map_err(|e| {
            if v1 {
                e
            } else {
                e.hint("K5 registers its images in the region's Glance: give its URL with --glance-url")
            }
        })?;
        job.phase = Phase::Sharing;
        journal.put_job(job)?;
        journal.put_share(&state)?;
        flush(journal)?;
        let progress = self.progress.clone();
        let snap_job = job.clone();
        let on_state = |s: &ShareState| -> Result<()> {
            journal.put_share(s)?;
            flush(journal)?;
            if let Ok(mut x) = progress.extras.lock() {
                x.share = Some(s.clone());
            }
            let _ = self.write_snapshot(journal, &StatusView::live(&snap_job, &progress));
            Ok(())
        };
        let ctx = import::share::Ctx { swift: &self.swift, glance, job_id: &job.id, on_state: &on_state };
        match import::share::run(&ctx, state.clone()).await {
            Ok(done) => {
                let said: Vec<String> = done
                    .targets
                    .iter()
                    .map(|t| format!("{}: {}", t.describe(), done.status_of(&t.id).unwrap_or("?")))
                    .collect();
                tracing::info!("job {}: image {} shared with {}", job.id, imported.image_id, said.join(", "));
            }
            Err(e) => {
                let mut s = journal.share()?.unwrap_or(state);
                s.message = Some(e.msg.clone());
                journal.put_share(&s)?;
                flush(journal)?;
                return Err(e);
            }
        }
        job.phase = Phase::Done;
        journal.put_job(job)?;
        flush(journal)
    }

    /// `k5up share JOB --with PROJECT...`: shares the image a job imported.
    pub(crate) async fn share(&self, id: &str, req: &ShareRequest) -> Result<StatusView> {
        self.share_on(self.open_job(id)?, req).await
    }

    /// [`Engine::share`] on a job whose journal is open.
    pub(super) async fn share_on(&self, journal: Journal, req: &ShareRequest) -> Result<StatusView> {
        let journal = Arc::new(journal);
        let mut job = journal.job()?;
        let id = job.id.clone();
        let id = id.as_str();
        let imported = journal.import()?.is_some_and(|i| i.outcome == ImportOutcome::Succeeded);
        if !imported {
            let (what, hint) = match (&job.import, job.manifest_etag.is_some()) {
                (None, _) => (
                    "was never imported: there is no image to share".to_string(),
                    format!("`k5up import {id} --import glance --share-with PROJECT` imports it and shares it"),
                ),
                (Some(_), true) => (
                    "has not finished its import: there is no image to share yet".to_string(),
                    format!("`k5up import {id} --share-with PROJECT` finishes the import and shares it"),
                ),
                (Some(_), false) => (
                    format!("is not uploaded yet (phase {})", job.phase.as_str()),
                    format!("`k5up resume {id}` finishes the upload and the import; share it then"),
                ),
            };
            return Err(Error::input(format!("job {id} {what}")).hint(hint));
        }
        if !req.projects.is_empty() {
            let new = self.or_cancel(self.share_state(req)).await?;
            Self::merge_share(&journal, &new)?;
        }
        let mut cancel = self.cancel.clone();
        let r = tokio::select! {
            r = self.share_phase(&journal, &mut job) => r,
            _ = crate::runtime::cancelled(&mut cancel) => Err(crate::runtime::interrupted(id)),
        };
        if let Err(e) = &r {
            job.last_error = Some(e.msg.clone());
            let _ = journal.put_job(&job);
            let _ = flush(&journal);
        }
        r?;
        let mut v = StatusView::from_journal(&job, &journal)?;
        v.running = false;
        let _ = self.write_snapshot(&journal, &v);
        Ok(v)
    }

    /// `k5up accept IMAGE_ID`: as the member project, accepts an image shared with it.
    pub(crate) async fn accept(&self, image_id: &str, glance_url: Option<&str>) -> Result<String> {
        if image_id.trim().is_empty() {
            return Err(Error::input("the image id is empty").hint("`k5up status JOB` of the owner shows it"));
        }
        let glance = self.or_cancel(import::glance::base_url(&self.swift, glance_url)).await?;
        self.or_cancel(import::share::accept(&self.swift, &glance, image_id)).await
    }
}
