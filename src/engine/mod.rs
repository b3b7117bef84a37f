//! The job lifecycle: create or reopen a job, reconcile it with the server, upload
//! what is missing, write and verify the manifest.

mod finish;
mod importing;
mod maintain;
mod reconcile;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use finish::EMPTY_MD5;
pub use importing::digests_for;
pub use maintain::{Check, VerifyReport};

use crate::digest::{Algo, Whole};
use crate::error::{Error, ErrorKind, Result};
use crate::import::ImportSpec;
use crate::journal::{JobRecord, Journal, Opened, Phase, Root, RunSettings, SegState, SegmentRecord};
use crate::names::{SegmentNaming, check_container, check_object};
use crate::plan::{self, Limits, ManifestKind, Plan};
use crate::progress::Progress;
use crate::source::{self, FileIdentity};
use crate::status::StatusView;
use crate::swift::{Swift, SwiftError};
use crate::upload;

/// Tunables of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Segments in flight at once.
    pub concurrency: usize,
    /// A PUT without progress for this long is abandoned and retried.
    pub stall_timeout: Duration,
    /// `--bwlimit`: bytes per second for all segment bodies together.
    pub bwlimit: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { concurrency: 4, stall_timeout: Duration::from_secs(60), bwlimit: None }
    }
}

/// The tunables the user gave on this run's command line; the others come from the
/// job's journal (its last run), then from the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    /// `--concurrency`.
    pub concurrency: Option<usize>,
    /// `--stall-timeout`.
    pub stall_timeout: Option<Duration>,
    /// `--bwlimit` (`Some(None)`: `--bwlimit off`).
    pub bwlimit: Option<Option<u64>>,
}

impl Given {
    /// What a run of a job uses: these, else the journaled ones, else the defaults.
    pub fn over(&self, journaled: Option<RunSettings>) -> Settings {
        let base = journaled.map_or_else(Settings::default, |j| Settings {
            concurrency: (j.concurrency as usize).max(1),
            stall_timeout: Duration::from_millis(j.stall_timeout_ms),
            bwlimit: j.bwlimit,
        });
        Settings {
            concurrency: self.concurrency.unwrap_or(base.concurrency),
            stall_timeout: self.stall_timeout.unwrap_or(base.stall_timeout),
            bwlimit: self.bwlimit.unwrap_or(base.bwlimit),
        }
    }
}

impl Settings {
    fn journaled(&self) -> RunSettings {
        RunSettings {
            concurrency: self.concurrency as u32,
            stall_timeout_ms: self.stall_timeout.as_millis() as u64,
            bwlimit: self.bwlimit,
        }
    }
}

/// What the user asked to upload.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// The image file.
    pub file: PathBuf,
    /// Target container.
    pub container: String,
    /// Target object (default: the file's name).
    pub object: Option<String>,
    /// `--segment-size`.
    pub segment_size: Option<u64>,
    /// `--manifest` (default: SLO when the server offers it, else DLO).
    pub manifest: Option<ManifestKind>,
    /// The image import to run after the upload (disk format and name filled in when empty).
    pub import: Option<ImportSpec>,
    /// `--digest`: whole-image digests to compute besides those the import needs.
    pub digests: Vec<Algo>,
    /// `--replace`: another job targeting the same object is dropped instead of
    /// refusing this one.
    pub replace: bool,
}

/// A job as planned (what `--dry-run` prints).
#[derive(Debug, Clone)]
pub struct Planned {
    /// The job record (new, or the journaled one).
    pub job: JobRecord,
    /// True when the journal already had this job.
    pub existing: bool,
    /// Levels of SLO manifests (1 = flat).
    pub manifest_levels: u32,
    /// The file's identity as read when it was opened for this run.
    pub opened: FileIdentity,
}

/// Runs jobs against one Swift account and one journal.
#[derive(Debug)]
pub struct Engine {
    /// The journal.
    pub root: Root,
    /// The storage client.
    pub swift: Swift,
    /// The tunables given on the command line (the rest come from the job).
    pub given: Given,
    /// The tunables of the job being run (set when a run starts).
    pub active: std::sync::Mutex<Settings>,
    /// Live counters of the current run.
    pub progress: Arc<Progress>,
    /// Turns true on Ctrl-C / SIGTERM.
    pub cancel: watch::Receiver<bool>,
}

/// The short, deterministic id of a job: the file's identity and the target.
pub fn job_id(identity: &FileIdentity, storage_url: &str, container: &str, object: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        identity.dev.to_string(),
        identity.ino.to_string(),
        identity.size.to_string(),
        identity.mtime_ns.to_string(),
        storage_url.to_string(),
        container.to_string(),
        object.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..4])
}

/// Runs blocking journal work (a flush is an fsync; a snapshot a file write and a
/// rename) without holding up the async worker's other tasks: tokio moves them to
/// another thread meanwhile. Outside a multi-thread runtime, it simply runs `f`.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Makes the journal's writes durable, off the async worker.
fn flush(journal: &Journal) -> Result<()> {
    blocking(|| journal.flush())
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn naming_of(job: &JobRecord) -> SegmentNaming {
    SegmentNaming { container: job.segment_container.clone(), prefix: job.segment_prefix.clone() }
}

/// The first contact with the server: a failure here is most often a wrong URL
/// or credentials, so it is reported at once as bad input.
fn first_contact(e: SwiftError) -> Error {
    let transport = e.origin == crate::swift::Origin::Network;
    let mut err = e.into_error(ErrorKind::BadInput);
    if transport {
        err.kind = ErrorKind::BadInput;
        err.msg = format!("cannot reach the server: {}", err.msg);
        err.hint = Some("check ST_AUTH / OS_AUTH_URL / OS_STORAGE_URL and the network".into());
    }
    err
}

impl Engine {
    /// The tunables of the run under way.
    pub fn settings(&self) -> Settings {
        *self.active.lock().expect("settings lock")
    }

    /// The storage URL, trying a few times only (first contact).
    async fn storage_url_first(&self) -> Result<String> {
        self.swift.with_retry_for(Duration::from_secs(10)).storage_url().await.map_err(first_contact)
    }

    /// Runs `f` (work before a run starts: login, planning) until Ctrl-C or SIGTERM,
    /// which end it at once: nothing has been changed yet.
    async fn or_cancel<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let mut c = self.cancel.clone();
        tokio::select! {
            r = f => r,
            _ = upload::cancelled(&mut c) => Err(Error::resumable("interrupted before the upload started")
                .hint("nothing was changed; run the same command again")),
        }
    }

    /// Plans an upload: opens the file, logs in, reads the limits, and finds or
    /// designs the job. Creates nothing. Ctrl-C ends it at once.
    pub async fn plan(&self, req: &UploadRequest) -> Result<(PathBuf, File, Planned)> {
        self.or_cancel(self.plan_inner(req)).await
    }

    async fn plan_inner(&self, req: &UploadRequest) -> Result<(PathBuf, File, Planned)> {
        let (path, file, ident) = source::open(&req.file)?;
        let object = match &req.object {
            Some(o) => o.clone(),
            // The name the user typed (a symlink's own name), not its target's.
            None => req
                .file
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::input("cannot derive an object name from the file name; use --object"))?
                .to_string(),
        };
        check_container(&req.container)?;
        check_object(&object)?;
        // Refused imports are refused now, not after the upload.
        let import = match req.import.clone() {
            Some(spec) => Some(crate::import::complete(spec, &file, ident.size, &object)?),
            None => None,
        };
        let digests = digests_for(import.as_ref(), &req.digests);
        let storage_url = self.storage_url_first().await?;
        // The import service must answer these credentials now, not after the upload.
        if let Some(spec) = &import {
            crate::import::preflight(&self.swift, spec).await?;
        }
        let id = job_id(&ident, &storage_url, &req.container, &object);
        if self.root.exists(&id) {
            // Read only: a dry run neither locks the job nor rebuilds its journal.
            let job = self.root.read_job(&id).map_err(|e| {
                e.hint(format!("`k5up resume {id}` rebuilds a damaged journal from the server's listing"))
            })?;
            if req.segment_size.is_some_and(|s| s != job.plan.segment_size) {
                return Err(Error::input(format!(
                    "job {id} exists with segment size {}; --segment-size differs",
                    job.plan.segment_size
                ))
                .hint(format!("omit --segment-size to continue it, or `k5up abort {id}` first")));
            }
            if req.manifest.is_some_and(|m| m != job.plan.manifest) {
                return Err(Error::input(format!(
                    "job {id} exists with manifest {}; --manifest differs",
                    job.plan.manifest.as_str()
                ))
                .hint(format!("omit --manifest to continue it, or `k5up abort {id}` first")));
            }
            let mut job = job;
            if import.is_some() && import != job.import {
                job.import = import;
            }
            job.digests = digests_for(job.import.as_ref(), &[job.digests.clone(), digests].concat());
            let levels = job.plan.manifest_levels();
            return Ok((path, file, Planned { job, existing: true, manifest_levels: levels, opened: ident }));
        }
        let others = self.owners_of(&storage_url, &req.container, &object, &id)?;
        if let Some(v) = others.first() {
            if v.running {
                return Err(Error::input(format!(
                    "job {} is uploading {} to {}/{} right now{}",
                    v.job,
                    v.file,
                    v.container,
                    v.object,
                    v.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ))
                .hint("wait for it, or stop it (Ctrl-C, or kill that pid) and run this command again"));
            }
            if !req.replace {
                return Err(Error::input(format!(
                    "{}/{} belongs to job {} (phase {}, file {}); a second job for the same object would overwrite one with the other",
                    v.container, v.object, v.job, v.phase, v.file
                ))
                .hint(format!(
                    "`k5up resume {0}` continues it; `k5up abort {0}` drops it; or add --replace to upload this file in its place",
                    v.job
                )));
            }
        }
        let limits = self.swift.limits().await.map_err(first_contact)?;
        let kind = req.manifest.unwrap_or(if limits.slo.is_some() { ManifestKind::Slo } else { ManifestKind::Dlo });
        // Plan with a provisional segment size to learn the path length, then name for real.
        let probe = SegmentNaming::new(
            &req.container,
            &object,
            kind == ManifestKind::Slo,
            ident.mtime_ns,
            ident.size,
            1 << 40,
        )?;
        let entry_path_len = probe.container.len() + probe.name(0).len() + 2;
        let plan = plan::plan(ident.size, &limits, req.segment_size, kind, entry_path_len)?;
        let naming = SegmentNaming::new(
            &req.container,
            &object,
            kind == ManifestKind::Slo,
            ident.mtime_ns,
            ident.size,
            plan.segment_size,
        )?;
        let job = JobRecord {
            id,
            created_unix: now_unix(),
            file: path.to_str().unwrap_or_default().to_string(),
            identity: ident.clone(),
            auth: self.swift.auth().describe(),
            storage_url,
            container: req.container.clone(),
            object,
            segment_container: naming.container.clone(),
            segment_prefix: naming.prefix.clone(),
            plan: plan.clone(),
            limits,
            phase: Phase::Uploading,
            manifest_etag: None,
            bytes_sent_other: 0,
            last_error: None,
            runs: 0,
            digests,
            import,
        };
        let levels = plan.manifest_levels();
        Ok((path, file, Planned { job, existing: false, manifest_levels: levels, opened: ident }))
    }

    /// `k5up upload`: creates the job (or continues the same one) and runs it.
    pub async fn upload(&self, req: &UploadRequest) -> Result<StatusView> {
        let (_path, file, planned) = self.plan(req).await?;
        let journal = if planned.existing {
            tracing::info!("job {} exists: continuing it", planned.job.id);
            let j = self.open_job(&planned.job.id)?;
            let mut job = j.job()?;
            if job.import != planned.job.import || job.digests != planned.job.digests {
                job.import = planned.job.import.clone();
                job.digests = planned.job.digests.clone();
                j.put_job(&job)?;
                j.flush()?;
            }
            j
        } else {
            if req.replace {
                let j = &planned.job;
                for other in self.owners_of(&j.storage_url, &j.container, &j.object, &j.id)? {
                    let said = self.abort(&other.job, false).await?;
                    tracing::info!("--replace: {said}");
                }
            }
            let p = &planned.job.plan;
            let segs = (0..p.segment_count).map(|i| new_segment(p, i));
            self.root.create(&planned.job, segs)?
        };
        self.run(journal, file, &planned.opened).await
    }

    /// The other jobs of this journal that upload to `container/object` of the
    /// account at `storage_url` (read without taking their locks).
    fn owners_of(&self, storage_url: &str, container: &str, object: &str, except: &str) -> Result<Vec<StatusView>> {
        let mut out = vec![];
        for id in self.root.job_ids()? {
            if id == except {
                continue;
            }
            let v = match crate::status::read(&self.root, &id) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("job {id}: {e} (not checked for the same target)");
                    continue;
                }
            };
            if v.storage_url == storage_url && v.container == container && v.object == object {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Opens a job's journal for a run. A damaged journal is never trusted: it is
    /// set aside and the job rebuilt from its birth record; the next reconciliation
    /// then adopts every segment the server holds whole (hashing the file).
    pub(crate) fn open_job(&self, id: &str) -> Result<Journal> {
        match self.root.open_checked(id)? {
            Opened::Ok(j) => Ok(j),
            Opened::Damaged { reason, birth, held } => {
                let Some(mut job) = birth.map(|b| *b) else {
                    return Err(Error::failed(format!("the journal of job {id} is damaged ({reason}) and cannot be rebuilt"))
                        .hint("remove it from the journal directory and run the same `k5up upload` command again: segments already on the server are adopted"));
                };
                tracing::warn!(
                    "the journal of job {id} is damaged ({reason}): rebuilding it from the server's listing and the file (the damaged copy is kept beside it)"
                );
                job.phase = Phase::Uploading;
                job.last_error = Some(format!("journal rebuilt after damage: {reason}"));
                let p = job.plan.clone();
                self.root.rebuild(held, &job, (0..p.segment_count).map(|i| new_segment(&p, i)))
            }
        }
    }

    /// `k5up resume JOB`.
    pub async fn resume(&self, id: &str) -> Result<StatusView> {
        let journal = self.open_job(id)?;
        let job = journal.job()?;
        let (_, file, opened) = source::open(Path::new(&job.file)).map_err(|e| e.context(format!("job {}", job.id)))?;
        self.or_cancel(self.storage_url_first()).await?;
        self.run(journal, file, &opened).await
    }

    /// Runs a job on `file`, whose identity `opened` was read when it was opened (and
    /// is not read again here).
    async fn run(&self, journal: Journal, file: File, opened: &FileIdentity) -> Result<StatusView> {
        let journal = Arc::new(journal);
        let mut job = journal.job()?;
        let url = self.swift.storage_url().await.map_err(first_contact)?;
        if url != job.storage_url {
            return Err(Error::input(format!(
                "job {} uploads to {}, but these credentials reach {url}",
                job.id, job.storage_url
            ))
            .hint("use the credentials the job was created with"));
        }
        // The server is the truth for a finished job too: one HEAD.
        if job.manifest_etag.is_some() && !self.object_intact(&job).await? {
            job.manifest_etag = None;
            job.phase = Phase::Uploading;
        }
        if job.manifest_etag.is_some() && !import_pending(&journal, &job)? {
            tracing::info!("job {} is already complete (ETag {})", job.id, job.manifest_etag.as_deref().unwrap_or(""));
            return StatusView::from_journal(&job, &journal);
        }
        check_identity(&job, opened)?;
        // Tunables: those typed now, else the job's last run's, else the defaults.
        let settings = self.given.over(journal.settings()?);
        journal.put_settings(&settings.journaled())?;
        *self.active.lock().expect("settings lock") = settings;
        if let Ok(mut x) = self.progress.extras.lock() {
            x.settings = Some(settings.journaled());
        }
        job.runs += 1;
        job.last_error = None;
        job.phase = if job.manifest_etag.is_some() {
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
            _ = upload::cancelled(&mut cancel) => Err(upload::interrupted(&job.id)),
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
    async fn object_intact(&self, job: &JobRecord) -> Result<bool> {
        let want = job.manifest_etag.as_deref().unwrap_or_default();
        let head =
            self.swift.head(&job.container, &job.object).await.map_err(|e| e.into_error(ErrorKind::Resumable))?;
        let seen = match head {
            Some(h) if h.size == job.plan.file_size && h.etag.eq_ignore_ascii_case(want) => return Ok(true),
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

    /// Replaces the status snapshot. A failure (a full disk) does not stop the run:
    /// the journal is the truth. It is said once, since `status` from another
    /// terminal then shows older progress.
    fn write_snapshot(&self, journal: &Journal, v: &StatusView) -> Result<()> {
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

    async fn run_phases(&self, journal: &Arc<Journal>, file: Arc<File>, job: &mut JobRecord) -> Result<()> {
        if job.manifest_etag.is_none() {
            self.upload_phases(journal, &file, job).await?;
        }
        if job.import.is_some() && import_pending(journal, job)? {
            self.import_phase(journal, &file, job).await?;
        }
        Ok(())
    }

    async fn upload_phases(&self, journal: &Arc<Journal>, file: &Arc<File>, job: &mut JobRecord) -> Result<()> {
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
                    job.manifest_etag = Some(etag);
                    job.phase = Phase::Done;
                    journal.put_job(job)?;
                    flush(journal)?;
                    tracing::info!("job {}: {}/{} is complete and verified", job.id, job.container, job.object);
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
                        s.state = SegState::Pending;
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
    async fn upload_missing(
        &self,
        journal: &Arc<Journal>,
        file: &Arc<File>,
        job: &JobRecord,
        naming: &SegmentNaming,
    ) -> Result<()> {
        let listing =
            self.swift.list(&naming.container, &naming.prefix).await.map_err(|e| e.into_error(ErrorKind::Resumable))?;
        let segs = journal.segments()?;
        let r = reconcile::reconcile(segs, listing, naming);
        for s in &r.changed {
            journal.put_segment(s)?;
        }
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
        p.segments_total.store(job.plan.segment_count, Relaxed);
        p.bytes_confirmed.store(base.bytes_confirmed, Relaxed);
        p.segments_confirmed.store(base.segments_confirmed, Relaxed);
        p.bytes_sent.store(base.bytes_sent.saturating_sub(job.bytes_sent_other), Relaxed);
        p.bytes_wasted.store(base.bytes_wasted, Relaxed);
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
                job.plan.segment_count,
                base.segments_confirmed
            );
        }
        let settings = self.settings();
        let ctx = Arc::new(upload::Ctx {
            swift: self.swift.clone(),
            journal: journal.clone(),
            file: file.clone(),
            naming: naming.clone(),
            progress: self.progress.clone(),
            stall_timeout: settings.stall_timeout,
            job_id: job.id.clone(),
            file_size: job.plan.file_size,
            pacer: settings.bwlimit.map(|r| Arc::new(upload::pace::Pacer::new(r))),
        });
        let mut cancel = self.cancel.clone();
        let snap_job = job.clone();
        let ready = upload::hasher::spawn(
            journal.clone(),
            file.clone(),
            job.id.clone(),
            all_for_hasher,
            r.todo,
            whole,
            settings.concurrency,
        );
        upload::run(ctx, ready, settings.concurrency, &mut cancel, || {
            let v = StatusView::live(&snap_job, &self.progress);
            match self.write_snapshot(journal, &v) {
                // The journal's file system is full: the next journal write would fail
                // at some point sled decides; stop now, cleanly, with the way out.
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::StorageFull) => {
                    Err(Error::failed(format!("job {}: the journal's file system is full ({})", snap_job.id, e.msg))
                        .hint(format!("free space there, then `k5up resume {}`", snap_job.id)))
                }
                _ => Ok(()),
            }
        })
        .await?;
        let (sent, adopted) = (Progress::get(&p.segments_sent), Progress::get(&p.segments_adopted));
        if adopted > 0 {
            tracing::info!("job {}: {sent} segment(s) sent, {adopted} found whole on the server (not sent)", job.id);
        }
        self.publish_digests(journal)
    }

    /// The whole-image hashers still to run (`None` when every digest is known).
    fn whole_digests(&self, journal: &Journal, job: &JobRecord) -> Result<Option<Whole>> {
        let saved = journal.digest()?;
        self.publish_digests(journal)?;
        if job.digests.is_empty() || saved.complete(&job.digests) {
            return Ok(None);
        }
        Ok(Some(Whole::resume(&job.digests, &saved)))
    }

    fn publish_digests(&self, journal: &Journal) -> Result<()> {
        let d = journal.digest()?;
        if let Ok(mut x) = self.progress.extras.lock() {
            x.digests = d;
        }
        Ok(())
    }
}

/// True when the job asks for an import that has not succeeded yet.
fn import_pending(journal: &Journal, job: &JobRecord) -> Result<bool> {
    let Some(spec) = &job.import else { return Ok(false) };
    Ok(journal.import()?.is_none_or(|s| s.kind != spec.kind || s.outcome != crate::journal::ImportOutcome::Succeeded))
}

/// Refuses a source whose identity, read now, differs from the journaled one.
fn ensure_unchanged(job: &JobRecord, file: &File) -> Result<()> {
    check_identity(job, &source::identity(file, Path::new(&job.file))?)
}

/// Refuses a source identity that differs from the journaled one.
fn check_identity(job: &JobRecord, now: &FileIdentity) -> Result<()> {
    match job.identity.changes(now) {
        None => Ok(()),
        Some(what) => {
            Err(Error::failed(format!("job {}: {} has changed since the upload started: {what}", job.id, job.file))
                .hint(format!("restore the original file, or `k5up abort {}` and upload the new one", job.id)))
        }
    }
}

fn new_segment(p: &Plan, index: u64) -> SegmentRecord {
    let (offset, length) = p.segment(index);
    SegmentRecord { index, offset, length, md5: None, state: SegState::Pending, attempts: 0, sent: 0, inflight: 0 }
}

/// The limits and plan summary for `--dry-run`.
pub fn describe_limits(l: &Limits) -> String {
    let slo = match &l.slo {
        Some(s) => {
            format!("SLO max_manifest_segments {}, max_manifest_size {}", s.max_manifest_segments, s.max_manifest_size)
        }
        None => "no SLO".into(),
    };
    format!(
        "max_file_size {} ({}), {slo}{}",
        l.max_file_size,
        crate::units::format_size(l.max_file_size),
        if l.from_info { "" } else { " (Swift defaults: /info unavailable)" }
    )
}
